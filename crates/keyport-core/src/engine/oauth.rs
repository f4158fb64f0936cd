//! OAuth2 through the `oauth2` crate: client credentials, authorization code + PKCE in the
//! browser, the device authorization grant, refresh (with rotation), revocation, and OIDC
//! discovery from `issuer`.
//!
//! Rules that protect the user's session: a rotated refresh token is saved to the keychain
//! before the new access token is handed out (so a crash cannot lose the only valid
//! refresh token); a refresh token the provider rejects (`invalid_grant`) is dropped and the
//! profile needs `keyport login` again; nothing stored changes when a call fails for any
//! other reason. Left out on purpose: ID token validation (Keyport uses access tokens only),
//! dynamic client registration, and implicit / password grants.

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet, ErrorResponse, HttpClientError,
    PkceCodeChallenge, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse,
    TokenUrl,
};
use serde::Deserialize;
use time::OffsetDateTime;

use super::loopback::{CallbackError, Receiver};
use super::{Ctx, Want};
use crate::error::{Error, Result};
use crate::http::{self, describe_transport, vendor_detail};
use crate::login::{Cancel, LoginOptions, LoginStep, LoginUi};
use crate::preset::{Grant, OAuthSpec};
use crate::secret::Secret;
use crate::token::{jwt_expiry, TokenState};

/// Authorization, device and token endpoints may be set; introspection and revocation are
/// not used through the crate.
type Client = BasicClient<
    EndpointMaybeSet,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
>;

#[derive(Debug, Default)]
struct Endpoints {
    authorize: Option<String>,
    token: Option<String>,
    device: Option<String>,
    revocation: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
}

async fn endpoints(ctx: &Ctx<'_>) -> Result<Endpoints> {
    let get = |f: &str| ctx.profile.settings.get(f).cloned();
    let mut e = Endpoints {
        authorize: get("authorize_url"),
        token: get("token_url"),
        device: get("device_url"),
        revocation: get("revocation_url"),
    };
    if let Some(issuer) = get("issuer") {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let fail = |message: String| Error::Endpoint {
            what: "OpenID discovery",
            url: url.clone(),
            status: None,
            message,
        };
        let client = http::client(&ctx.http)?;
        let resp = client
            .get(http::check_endpoint("issuer", &url, &ctx.http)?)
            .send()
            .await
            .map_err(|e| fail(describe_transport(&e)))?;
        let status = resp.status().as_u16();
        let bytes = http::read_capped(resp)
            .await
            .map_err(|e| fail(e.describe()))?;
        if status != 200 {
            return Err(Error::Endpoint {
                what: "OpenID discovery",
                url: url.clone(),
                status: Some(status),
                message: http::describe_status(status, &bytes),
            });
        }
        let d: Discovery = serde_json::from_slice(&bytes).map_err(|_| {
            fail(format!(
                "answered {status} with a body that is not an OpenID configuration: check issuer"
            ))
        })?;
        if d.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(fail(format!(
                "names issuer {} instead of {issuer}: check issuer",
                d.issuer
            )));
        }
        e.authorize = e.authorize.or(d.authorization_endpoint);
        e.token = e.token.or(d.token_endpoint);
        e.device = e.device.or(d.device_authorization_endpoint);
        e.revocation = e.revocation.or(d.revocation_endpoint);
    }
    for (field, v) in [
        ("authorize_url", &e.authorize),
        ("token_url", &e.token),
        ("device_url", &e.device),
        ("revocation_url", &e.revocation),
    ] {
        if let Some(v) = v {
            http::check_endpoint(field, v, &ctx.http)?;
        }
    }
    Ok(e)
}

fn client(ctx: &Ctx<'_>, e: &Endpoints, redirect: Option<String>) -> Result<Client> {
    let bad = |field: &'static str| {
        move |err: oauth2::url::ParseError| Error::invalid(field, err.to_string())
    };
    let client_id = ctx
        .lookup("client_id")
        .ok_or_else(|| ctx.missing("client_id"))?;
    let mut c = BasicClient::new(ClientId::new(client_id.to_string()))
        .set_auth_uri_option(
            e.authorize
                .clone()
                .map(AuthUrl::new)
                .transpose()
                .map_err(bad("authorize_url"))?,
        )
        .set_token_uri_option(
            e.token
                .clone()
                .map(TokenUrl::new)
                .transpose()
                .map_err(bad("token_url"))?,
        )
        .set_device_authorization_url_option(
            e.device
                .clone()
                .map(DeviceAuthorizationUrl::new)
                .transpose()
                .map_err(bad("device_url"))?,
        );
    match ctx.secrets.get("client_secret") {
        Some(s) => {
            c = c.set_client_secret(ClientSecret::new(s.expose().to_string()));
            if ctx.lookup("client_auth") == Some("post") {
                c = c.set_auth_type(AuthType::RequestBody);
            }
        }
        // A public client identifies itself with client_id in the body.
        None => c = c.set_auth_type(AuthType::RequestBody),
    }
    if let Some(r) = redirect {
        c = c.set_redirect_uri(RedirectUrl::new(r).map_err(bad("redirect_uri"))?);
    }
    Ok(c)
}

fn scopes(ctx: &Ctx<'_>) -> Vec<Scope> {
    ctx.lookup("scopes")
        .unwrap_or_default()
        .split_whitespace()
        .map(|s| Scope::new(s.to_string()))
        .collect()
}

/// One line for a failed token request.
fn token_error<T: ErrorResponse + std::fmt::Display>(
    ctx: &Ctx<'_>,
    url: &Option<String>,
    e: &RequestTokenError<HttpClientError<reqwest::Error>, T>,
) -> Error {
    // An OAuth error response is the provider refusing (400/401), except when it says it is
    // temporarily unable to answer.
    let status = match e {
        RequestTokenError::ServerResponse(r) => {
            let code = serde_json::to_value(r)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string));
            match code.as_deref() {
                Some("temporarily_unavailable" | "server_error") => None,
                _ => Some(400),
            }
        }
        _ => None,
    };
    let message = match e {
        RequestTokenError::ServerResponse(r) => {
            let text = serde_json::to_vec(r)
                .ok()
                .and_then(|b| vendor_detail(&b))
                .unwrap_or_else(|| r.to_string());
            format!("answered: {text}; check the profile's client_id, client_secret and scopes")
        }
        RequestTokenError::Request(HttpClientError::Reqwest(re)) => describe_transport(re),
        RequestTokenError::Request(HttpClientError::Other(m)) => m.clone(),
        RequestTokenError::Request(other) => format!("failed: {other}"),
        RequestTokenError::Parse(_, body) => {
            if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
                "answered JSON that is not a token response (no access_token?): check token_url"
                    .into()
            } else {
                "answered with a body that is not JSON: is the URL a token endpoint?".into()
            }
        }
        RequestTokenError::Other(m) => m.clone(),
    };
    Error::Endpoint {
        what: "token endpoint",
        url: url.clone().unwrap_or_default(),
        status,
        message: ctx.scrub(message),
    }
}

fn is_invalid_grant<RE>(e: &RequestTokenError<RE, oauth2::basic::BasicErrorResponse>) -> bool
where
    RE: std::error::Error + 'static,
{
    matches!(e, RequestTokenError::ServerResponse(r) if *r.error() == BasicErrorResponseType::InvalidGrant)
}

/// The token state of a token response; refused when a token could not travel in a header.
fn state_from<R: TokenResponse>(
    r: &R,
    token_url: &Option<String>,
    old_refresh: Option<&Secret>,
    requested: &[Scope],
    now: OffsetDateTime,
) -> Result<TokenState> {
    let access = r.access_token().secret().to_string();
    let url = token_url.as_deref().unwrap_or_default();
    super::check_token("token endpoint", url, &access)?;
    if let Some(rt) = r.refresh_token() {
        super::check_token("token endpoint", url, rt.secret())?;
    }
    let expires_at = r
        .expires_in()
        .and_then(|d| {
            crate::token::expiry_after(now, i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        })
        .or_else(|| jwt_expiry(&access));
    Ok(TokenState {
        access_token: Secret::new(access),
        // A provider that does not rotate returns no new refresh token: keep the old one.
        refresh_token: r
            .refresh_token()
            .map(|t| Secret::new(t.secret().to_string()))
            .or_else(|| old_refresh.cloned()),
        expires_at,
        obtained_at: now,
        scopes: r
            .scopes()
            .map(|s| s.iter().map(|x| x.to_string()).collect())
            .unwrap_or_else(|| requested.iter().map(|x| x.to_string()).collect()),
        sliding: false,
        widget_url: None,
        fingerprint: None,
    })
}

/// A token valid for `min_valid` seconds without a person: the cache, a refresh, or (for
/// client credentials) a new token. Otherwise [`Error::LoginRequired`].
pub(super) async fn ensure(ctx: &mut Ctx<'_>, spec: &OAuthSpec, want: &Want) -> Result<TokenState> {
    let now = ctx.now();
    if spec.persist {
        if let Some(t) = ctx.load_token().await?.filter(|t| want.met_by(t, now)) {
            return Ok(t);
        }
    }
    // One refresh at a time per profile, across processes: a rotating refresh token used
    // twice would revoke the grant. (A token that is never persisted has nothing to share.)
    let _lock = match spec.persist {
        true => Some(super::lock(ctx.name).await?),
        false => None,
    };
    let cached = match spec.persist {
        true => ctx.load_token().await?,
        false => None,
    };
    let after = ctx.now();
    if let Some(t) = cached
        .as_ref()
        .filter(|t| want.met_after_wait(t, after, now))
    {
        return Ok(t.clone());
    }
    ctx.load_secrets().await?;
    match spec.grant {
        Grant::ClientCredentials => {
            let e = endpoints(ctx).await?;
            let c = client(ctx, &e, None)?;
            let http = http::Capped(http::client(&ctx.http)?);
            let scopes = scopes(ctx);
            let mut req = c
                .exchange_client_credentials()
                .map_err(|err| Error::invalid("token_url", err.to_string()))?
                .add_scopes(scopes.clone());
            for p in ["audience", "resource"] {
                if let Some(v) = ctx.lookup(p) {
                    req = req.add_extra_param(p, v.to_string());
                }
            }
            let r = req
                .request_async(&http)
                .await
                .map_err(|err| token_error(ctx, &e.token, &err))?;
            let mut t = state_from(&r, &e.token, None, &scopes, ctx.now())?;
            if spec.persist {
                ctx.save_token(&mut t).await?;
            }
            Ok(t)
        }
        Grant::AuthorizationCode | Grant::DeviceCode => {
            let Some(rt) = cached.as_ref().and_then(|t| t.refresh_token.clone()) else {
                return Err(Error::LoginRequired {
                    profile: ctx.name.to_string(),
                    reason: if cached.is_some() {
                        "the token expired and there is no refresh token".into()
                    } else {
                        "not logged in".into()
                    },
                });
            };
            refresh(
                ctx,
                &rt,
                cached
                    .as_ref()
                    .map(|t| t.scopes.clone())
                    .unwrap_or_default(),
            )
            .await
        }
    }
}

async fn refresh(ctx: &mut Ctx<'_>, rt: &Secret, old_scopes: Vec<String>) -> Result<TokenState> {
    ctx.tokens.push(rt.clone());
    let ctx = &*ctx;
    let e = endpoints(ctx).await?;
    let c = client(ctx, &e, None)?;
    let http = http::Capped(http::client(&ctx.http)?);
    let rt_value = RefreshToken::new(rt.expose().to_string());
    let result = c
        .exchange_refresh_token(&rt_value)
        .map_err(|err| Error::invalid("token_url", err.to_string()))?
        .request_async(&http)
        .await;
    match result {
        Ok(r) => {
            let requested: Vec<Scope> = old_scopes.into_iter().map(Scope::new).collect();
            let mut t = state_from(&r, &e.token, Some(rt), &requested, ctx.now())?;
            // Save before anyone uses the new access token: if the provider rotated the
            // refresh token, the old one is now dead and this is the only copy. (The
            // keychain owner finishes a save it started even if this task is dropped.)
            ctx.save_token(&mut t).await?;
            Ok(t)
        }
        Err(err) if is_invalid_grant(&err) => {
            // Forget the dead refresh token, unless a login saved a new session meanwhile.
            let stored = ctx.load_token().await?.and_then(|t| t.refresh_token);
            if stored.as_ref() == Some(rt) {
                ctx.delete_token().await?;
            }
            Err(Error::LoginRequired {
                profile: ctx.name.to_string(),
                reason: "the identity provider rejected the refresh token (invalid_grant)".into(),
            })
        }
        Err(err) => Err(token_error(ctx, &e.token, &err)),
    }
}

/// `keyport login`: the browser (authorization code + PKCE) or device flow; stores the
/// result.
pub(super) async fn login(
    ctx: &Ctx<'_>,
    spec: &OAuthSpec,
    opts: &LoginOptions,
    ui: &dyn LoginUi,
    cancel: &Cancel,
) -> Result<TokenState> {
    let failed = |message: String| Error::Login {
        profile: ctx.name.to_string(),
        message,
    };
    let cancelled = || Error::LoginCancelled {
        profile: ctx.name.to_string(),
    };
    let waiting = LoginStep::Waiting {
        timeout_secs: opts.timeout.as_secs(),
    };
    let e = endpoints(ctx).await?;
    let http = http::Capped(http::client(&ctx.http)?);
    let scopes = scopes(ctx);
    let r = match spec.grant {
        Grant::ClientCredentials => {
            return Err(failed(format!(
                "it uses client credentials, which need no interactive login: use keyport token {}",
                ctx.name
            )))
        }
        Grant::AuthorizationCode => {
            let port = match ctx.lookup("redirect_port") {
                Some(p) => p
                    .parse::<u16>()
                    .map_err(|_| Error::invalid("redirect_port", format!("'{p}' is not a port")))?,
                None => 0,
            };
            let receiver = Receiver::bind(port)
                .await
                .map_err(|err| failed(err.to_string()))?;
            let c = client(ctx, &e, Some(receiver.redirect_uri()))?;
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            let mut req = c
                .authorize_url(CsrfToken::new_random)
                .map_err(|err| Error::invalid("authorize_url", err.to_string()))?
                .set_pkce_challenge(challenge)
                .add_scopes(scopes.clone());
            // OIDC: offline_access (a refresh token) is granted only with prompt=consent;
            // --force also makes the provider ask for credentials again.
            let mut prompt = Vec::new();
            if opts.force {
                prompt.push("login");
            }
            if scopes.iter().any(|s| s.as_str() == "offline_access") {
                prompt.push("consent");
            }
            if !prompt.is_empty() {
                req = req.add_extra_param("prompt", prompt.join(" "));
            }
            let (url, state) = req.url();
            ui.show(&LoginStep::OpenUrl {
                open: receiver.start_url(url.as_str()),
                url: url.to_string(),
            });
            ui.show(&waiting);
            let code = receiver
                .wait(state.secret(), opts.timeout, cancel)
                .await
                .map_err(|err| match err {
                    CallbackError::Interrupted => cancelled(),
                    other => failed(other.to_string()),
                })?;
            ui.show(&LoginStep::Exchanging);
            c.exchange_code(AuthorizationCode::new(code))
                .map_err(|err| Error::invalid("token_url", err.to_string()))?
                .set_pkce_verifier(verifier)
                .request_async(&http)
                .await
                .map_err(|err| token_error(ctx, &e.token, &err))?
        }
        Grant::DeviceCode => {
            let c = client(ctx, &e, None)?;
            let details: oauth2::StandardDeviceAuthorizationResponse = c
                .exchange_device_code()
                .map_err(|_| Error::invalid("device_url", "no device authorization endpoint: set device_url or an issuer that has one"))?
                .add_scopes(scopes.clone())
                .request_async(&http)
                .await
                .map_err(|err| token_error(ctx, &e.device, &err))?;
            // URLs from the provider go to a browser command: the same rules as the
            // profile's own URLs (https, or http to loopback, or the profile's opt-in).
            // (the parsed form is what is used from here on: no stray whitespace or
            // control characters of the provider's)
            let checked = |field: &str, url: &str| {
                http::check_endpoint(field, url, &ctx.http)
                    .map(|u| u.to_string())
                    .map_err(|err| {
                        failed(format!(
                            "the identity provider gave a verification URL Keyport will not open ({err})"
                        ))
                    })
            };
            let verification_uri = checked("verification_uri", details.verification_uri())?;
            let complete = details
                .verification_uri_complete()
                .map(|u| checked("verification_uri_complete", u.secret()))
                .transpose()?;
            crate::engine::check_token(
                "device authorization endpoint",
                e.device.as_deref().unwrap_or_default(),
                details.user_code().secret(),
            )?;
            // A loopback start URL for the browser: the complete URL carries the user code.
            let redirector = match &complete {
                Some(u) => {
                    let r = Receiver::bind(0)
                        .await
                        .map_err(|err| failed(err.to_string()))?;
                    let open = r.start_url(u);
                    Some((open, AbortOnDrop(r.serve_starts())))
                }
                None => None,
            };
            ui.show(&LoginStep::DeviceCode {
                verification_uri,
                user_code: details.user_code().secret().to_string(),
                verification_uri_complete: complete,
                open: redirector.as_ref().map(|(o, _)| o.clone()),
            });
            ui.show(&waiting);
            let poll = c
                .exchange_device_access_token(&details)
                .map_err(|err| Error::invalid("token_url", err.to_string()))?
                .request_async(&http, tokio::time::sleep, Some(opts.timeout));
            tokio::select! {
                r = poll => r.map_err(|err| match &err {
                    RequestTokenError::ServerResponse(r) => failed(format!(
                        "the identity provider ended the device login: {}",
                        serde_json::to_vec(r).ok().and_then(|b| vendor_detail(&b)).unwrap_or_else(|| r.to_string())
                    )),
                    _ => token_error(ctx, &e.token, &err),
                })?,
                _ = cancel.cancelled() => return Err(cancelled()),
            }
        }
    };
    let mut t = state_from(&r, &e.token, None, &scopes, ctx.now())?;
    // Under the profile's lock, so a refresh running elsewhere can't interleave with it.
    let _lock = super::lock(ctx.name).await?;
    ctx.save_token(&mut t).await?;
    Ok(t)
}

/// Stops a task when dropped (the device flow's start-URL server ends with the login).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `keyport logout`: revoke at the provider when it has a revocation endpoint (best
/// effort: the local state is forgotten either way); returns a note about revocation.
///
/// Revocation (RFC 7009) is one form POST, done here rather than through the oauth2 crate,
/// which insists on https even for a loopback provider; Keyport's own http rule applies.
pub(super) async fn logout(ctx: &mut Ctx<'_>) -> Result<Option<String>> {
    // Whatever is stored is revoked, also a token from other settings.
    let name = ctx.name.to_string();
    let Some(t) = ctx
        .keychain
        .run(move |s| TokenState::load(s, &name))
        .await?
    else {
        return Ok(None);
    };
    ctx.tokens.push(t.access_token.clone());
    ctx.tokens.extend(t.refresh_token.clone());
    let ctx = &*ctx;
    let note = match endpoints(ctx).await {
        Err(err) => Some(format!("could not reach the provider to revoke: {err}")),
        Ok(Endpoints {
            revocation: None, ..
        }) => None,
        Ok(Endpoints {
            revocation: Some(url),
            ..
        }) => Some(match revoke(ctx, &url, &t).await {
            Ok(()) => "revoked at the identity provider".to_string(),
            Err(err) => format!("{err}; the token was forgotten locally"),
        }),
    };
    let _lock = super::lock(ctx.name).await?;
    ctx.delete_token().await?;
    Ok(note)
}

async fn revoke(ctx: &Ctx<'_>, url: &str, t: &TokenState) -> Result<()> {
    let (token, hint) = match &t.refresh_token {
        Some(r) => (r.expose(), "refresh_token"),
        None => (t.access_token.expose(), "access_token"),
    };
    let client_id = ctx
        .lookup("client_id")
        .ok_or_else(|| ctx.missing("client_id"))?;
    let mut form = vec![("token", token), ("token_type_hint", hint)];
    let mut req =
        http::client(&ctx.http)?.post(http::check_endpoint("revocation_url", url, &ctx.http)?);
    match ctx.secrets.get("client_secret") {
        Some(secret) if ctx.lookup("client_auth") != Some("post") => {
            req = req.basic_auth(client_id, Some(secret.expose()));
        }
        Some(secret) => form.extend([("client_id", client_id), ("client_secret", secret.expose())]),
        None => form.push(("client_id", client_id)),
    }
    let fail = |message: String| Error::Endpoint {
        what: "revocation endpoint",
        url: url.to_string(),
        status: None,
        message: ctx.scrub(message),
    };
    let resp = req
        .form(&form)
        .send()
        .await
        .map_err(|e| fail(describe_transport(&e)))?;
    let status = resp.status().as_u16();
    if status == 200 {
        return Ok(());
    }
    let body = http::read_capped(resp).await.unwrap_or_default();
    Err(fail(http::describe_status(status, &body)))
}
