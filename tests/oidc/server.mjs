// A real OpenID provider (oidc-provider, OpenID-certified) on 127.0.0.1 for Keyport's OAuth
// system tests. Usage: PORT=<port> AT_TTL=<seconds> node server.mjs  (prints "ready" when up)
//
// Clients:
//   keyport-native   public native app: authorization code + PKCE on any loopback port
//                    (RFC 8252), refresh tokens (rotated on every use), device flow
//   keyport-service  confidential: client credentials, client_secret_basic
//   keyport-post     confidential: client credentials, client_secret_post
//   keyport-bench    confidential native app: authorization code + refresh tokens with
//                    client_secret_basic; bench/token-latency.sh logs in with Keyport and
//                    gives oidc-agent (which needs a client secret) a refresh token of it
// The login and consent pages are oidc-provider's own dev interactions (any user name and
// password are accepted); tests drive them with tests/support/fake-browser.py.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const ttl = Number(process.env.AT_TTL || 60);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'keyport-native',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
    },
    {
      client_id: 'keyport-bench',
      client_secret: 'bench-secret-5e1d',
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
    {
      client_id: 'keyport-service',
      client_secret: 'service-secret-0f3b',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    },
    {
      client_id: 'keyport-post',
      client_secret: 'post-secret-91aa',
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    },
  ],
  scopes: ['openid', 'offline_access', 'api'],
  clientBasedCORS: () => false,
  cookies: { keys: ['keyport-test-cookie-key'] },
  // Expiry tests need exact lifetimes.
  clockTolerance: 0,
  ttl: {
    AccessToken: ttl,
    ClientCredentials: ttl,
    RefreshToken: 3600,
    DeviceCode: 600,
    Grant: 3600,
    Interaction: 600,
    Session: 3600,
    IdToken: 3600,
  },
  rotateRefreshToken: true,
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    clientCredentials: { enabled: true },
    // A `resource` (RFC 8707) gets a JWT access token with that audience, so tests can see
    // that Keyport sent it.
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => ({
        scope: 'api',
        audience: resourceIndicator,
        accessTokenFormat: 'jwt',
        accessTokenTTL: ttl,
      }),
    },
  },
});
provider.proxy = false;

provider.on('server_error', (ctx, err) => console.error('server_error', err));

provider.listen(port, '127.0.0.1', () => {
  console.log('ready');
});
