//! Token engines: getting a credential that is valid *now* for profiles whose token comes
//! from a network call.
//!
//! [`Keyport::credential_valid_for`] is the one entry point for every scheme: static
//! schemes render, login endpoints and token exchanges use the keychain cache or fetch
//! (a parent's credential is made valid first, for chains of any depth), OAuth2 profiles use
//! the cache, refresh, or say that a person must run `keyport login`. Stored token state
//! changes only after a successful call, so a failing endpoint never damages it.
//!
//! Every keychain call goes through the process's [`Keychain`] owner (never on an async
//! worker thread), and time comes from the injected [`Clock`]. A stored token carries the
//! [`Profile::token_fingerprint`] it was obtained with and is used only while that still
//! matches; secrets are read *under* the profile's lock, so a `secret set` that slips in
//! between can't make a fetch with old secrets save its token after the change.
//! Left out on purpose: background refresh, retries (the agent's job), and caching of OIDC
//! discovery documents.

mod login;
mod loopback;
mod oauth;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use time::OffsetDateTime;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::{self, HttpOptions};
use crate::keyport::Keyport;
use crate::login::{Cancel, LoginOptions, LoginStep, LoginUi};
use crate::preset::{self, ClientAuth, Preset, SchemeSpec};
use crate::profile::{Profile, MAX_CHAIN};
use crate::scheme::{self, Credential};
use crate::secret::Secret;
use crate::store::{Keychain, SecretBundle};
use crate::token::TokenState;

/// Everything an engine call may read about one profile.
pub(crate) struct Ctx<'a> {
    pub name: &'a str,
    pub profile: &'a Profile,
    pub preset: &'static Preset,
    /// Empty until [`Ctx::load_secrets`] (a cached token needs none).
    pub secrets: SecretBundle,
    pub parent: Option<&'a BTreeMap<String, String>>,
    pub http: HttpOptions,
    pub keychain: &'a Keychain,
    pub clock: &'a dyn Clock,
    /// The profile's [`Profile::token_fingerprint`].
    pub fingerprint: String,
    /// Tokens a call sends (a refresh token, the parent's credential): scrubbed from error
    /// text like the secrets, in case an endpoint echoes what it got.
    pub tokens: Vec<Secret>,
    pub unsaved: &'a Unsaved,
}

/// Token states this process obtained but could not save to the keychain yet, by profile.
#[derive(Debug, Default)]
pub struct Unsaved(std::sync::Mutex<std::collections::HashMap<String, TokenState>>);

impl Unsaved {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, TokenState>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn get(&self, name: &str) -> Option<TokenState> {
        self.map().get(name).cloned()
    }
    fn keep(&self, name: &str, t: TokenState) {
        self.map().insert(name.to_string(), t);
    }
    fn forget(&self, name: &str) {
        self.map().remove(name);
    }
    /// The profiles whose token is only in memory.
    pub fn names(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }
    pub(crate) fn take_all(&self) -> Vec<(String, TokenState)> {
        self.map().drain().collect()
    }
}

impl<'a> Ctx<'a> {
    fn new(kp: &'a Keyport, cfg: &'a Config, name: &'a str) -> Result<Self> {
        let profile = cfg.get(name)?;
        let preset = preset::get(&profile.preset)?;
        let parent = profile
            .settings
            .get("parent")
            .map(|p| cfg.get(p).map(|p| &p.settings))
            .transpose()?;
        Ok(Ctx {
            name,
            profile,
            preset,
            secrets: SecretBundle::default(),
            parent,
            http: HttpOptions {
                allow_insecure_http: profile.allow_insecure_http,
                ca_file: profile.ca_file.clone(),
            },
            keychain: kp.keychain(),
            clock: kp.clock().as_ref(),
            fingerprint: profile.token_fingerprint(),
            tokens: Vec::new(),
            unsaved: kp.unsaved(),
        })
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Reads the profile's secrets item (one keychain call).
    pub async fn load_secrets(&mut self) -> Result<()> {
        let name = self.name.to_string();
        self.secrets = self
            .keychain
            .run(move |s| SecretBundle::load(s, &name))
            .await?;
        Ok(())
    }

    /// The token state, if there is one obtained with the current settings and secrets:
    /// one this process could not save yet (its save is tried again now), else the stored
    /// one (one keychain call).
    pub async fn load_token(&self) -> Result<Option<TokenState>> {
        let pending = self.unsaved.get(self.name);
        if let Some(t) = pending.filter(|t| t.matches(&self.fingerprint)) {
            if self.write_token(&t).await.is_ok() {
                self.unsaved.forget(self.name);
            }
            return Ok(Some(t));
        }
        let name = self.name.to_string();
        let t = self
            .keychain
            .run(move |s| TokenState::load(s, &name))
            .await?;
        Ok(t.filter(|t| t.matches(&self.fingerprint)))
    }

    async fn write_token(&self, t: &TokenState) -> Result<()> {
        let (name, t) = (self.name.to_string(), t.clone());
        Ok(self.keychain.run(move |s| t.save(s, &name)).await?)
    }

    /// Saves token state, stamped with the profile's fingerprint. Callers hold the
    /// profile's lock. A failed write does not lose the token: it is kept in this process
    /// and the save is tried again on its next use (a rotated refresh token may be the only
    /// valid one there is).
    pub async fn save_token(&self, t: &mut TokenState) -> Result<()> {
        t.fingerprint = Some(self.fingerprint.clone());
        self.unsaved.forget(self.name);
        if self.write_token(t).await.is_err() {
            self.unsaved.keep(self.name, t.clone());
        }
        Ok(())
    }

    /// Deletes the token state. Callers hold the profile's lock.
    pub async fn delete_token(&self) -> Result<bool> {
        self.unsaved.forget(self.name);
        let name = self.name.to_string();
        Ok(self
            .keychain
            .run(move |s| TokenState::delete(s, &name))
            .await?)
    }

    /// A field's value: settings (with aliases resolved), then secrets, then
    /// `parent.FIELD` from the parent's settings.
    pub fn lookup(&self, field: &str) -> Option<&str> {
        if let Some(pf) = field.strip_prefix("parent.") {
            return self.parent.and_then(|p| p.get(pf)).map(String::as_str);
        }
        if let Some(v) = self.profile.settings.get(field) {
            let alias = self.preset.field(field).and_then(|f| f.aliases.get(v));
            return Some(alias.map_or(v.as_str(), String::as_str));
        }
        self.secrets.get(field).map(Secret::expose)
    }

    pub fn missing(&self, field: &str) -> Error {
        if self.preset.field(field).is_some_and(|f| f.secret) {
            Error::SecretNotSet {
                profile: self.name.to_string(),
                field: field.to_string(),
            }
        } else {
            Error::MissingField {
                preset: self.preset.name.clone(),
                field: field.to_string(),
                hint: format!(
                    "set it with `keyport profile set {} {field}=VALUE`",
                    self.name
                ),
            }
        }
    }

    /// [`Self::scrub`] for a validation error that quotes a value (a rendered URL).
    pub fn scrub_err(&self, e: Error) -> Error {
        match e {
            Error::InvalidValue { field, message } => Error::InvalidValue {
                field,
                message: self.scrub(message),
            },
            other => other,
        }
    }

    /// Removes this profile's secret values, and the tokens the call sends, from a message.
    pub fn scrub(&self, msg: String) -> String {
        http::scrub(
            msg,
            self.secrets
                .fields()
                .filter_map(|f| self.secrets.get(f))
                .chain(&self.tokens)
                .map(Secret::expose),
        )
    }

    fn bearer(&self, t: &TokenState, refreshable: bool) -> Credential {
        let mut headers = vec![(
            "Authorization".to_string(),
            Secret::new(format!("Bearer {}", t.access_token.expose())),
        )];
        for (h, v) in &self.profile.extra_headers {
            headers.push((h.clone(), Secret::new(v.clone())));
        }
        Credential {
            scheme: self.preset.scheme_name().to_string(),
            headers,
            expires_at: t.expires_at,
            refreshable,
            widget_url: t.widget_url.clone(),
            obtained_at: Some(t.obtained_at),
            sliding: t.sliding,
            fingerprint: Some(self.fingerprint.clone()),
        }
    }
}

/// Can Keyport renew this token without a person? Login endpoints and client credentials
/// always can; browser and device logins only with a refresh token.
fn refreshable(scheme: &SchemeSpec, t: &TokenState) -> bool {
    match scheme {
        SchemeSpec::Oauth2(spec) => {
            spec.grant == preset::Grant::ClientCredentials || t.refresh_token.is_some()
        }
        _ => true,
    }
}

/// What a caller needs from a token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Want {
    /// Valid for at least this many more seconds.
    pub min_valid: i64,
    /// Obtained after this (forces a renewal of what the caller already has).
    pub newer_than: Option<OffsetDateTime>,
}

impl Want {
    fn valid_for(min_valid: i64) -> Self {
        Want {
            min_valid,
            newer_than: None,
        }
    }

    pub fn met_by(&self, t: &TokenState, now: OffsetDateTime) -> bool {
        t.valid_for(
            now,
            effective_min_valid(self.min_valid, Some(t.obtained_at), t.expires_at),
        ) && self.newer_than.is_none_or(|n| t.obtained_at > n)
    }

    /// After waiting for the lock: a token another process obtained meanwhile is the
    /// freshest there is; use it if it is still valid at all.
    pub fn met_after_wait(
        &self,
        t: &TokenState,
        now: OffsetDateTime,
        waited_since: OffsetDateTime,
    ) -> bool {
        self.met_by(t, now)
            || (self.newer_than.is_none() && t.obtained_at >= waited_since && t.valid_for(now, 0))
    }
}

/// `min_valid`, capped at half the token's lifetime: asking more of a token than it can ever
/// have would otherwise renew it on every request.
pub fn effective_min_valid(
    min_valid: i64,
    obtained: Option<OffsetDateTime>,
    expires: Option<OffsetDateTime>,
) -> i64 {
    match (obtained, expires) {
        (Some(o), Some(x)) => min_valid.min((x - o).whole_seconds() / 2),
        _ => min_valid,
    }
}

/// A token an endpoint returned goes into an HTTP header as it is: one with a line break or
/// another control character could add headers of the endpoint's choosing (or break
/// `keyport header`'s one-line-per-header output). Refused before anything is stored.
pub(crate) fn check_token(what: &'static str, url: &str, token: &str) -> Result<()> {
    if token.is_empty() || token.chars().any(char::is_control) {
        return Err(Error::Endpoint {
            what,
            url: url.to_string(),
            status: None,
            message: "returned a token that is empty or has a line break or control character: refused, nothing was stored (is the endpoint what the profile says?)".into(),
        });
    }
    Ok(())
}

/// The cross-process lock of one profile's token (taken off the async threads).
pub(crate) async fn lock(name: &str) -> Result<crate::paths::ProfileLock> {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || crate::paths::ProfileLock::acquire(&name))
        .await
        .map_err(|e| Error::Internal(format!("taking the profile lock failed: {e}")))?
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

impl Keyport {
    /// A credential for `name` that stays valid for at least `min_valid` seconds: from the
    /// keychain cache when possible, else refreshed or fetched. [`Error::LoginRequired`]
    /// when only an interactive login can help.
    pub async fn credential_valid_for(&self, name: &str, min_valid: i64) -> Result<Credential> {
        let cfg = self.load()?;
        self.credential_valid_for_in(&cfg, name, min_valid).await
    }

    /// [`Self::credential_valid_for`] with a config already loaded (the agent's snapshot).
    pub async fn credential_valid_for_in(
        &self,
        cfg: &Config,
        name: &str,
        min_valid: i64,
    ) -> Result<Credential> {
        self.credential_in(cfg, name, Want::valid_for(min_valid), 0)
            .await
    }

    /// Renews a token now (the agent's scheduled refresh), unless the stored one was
    /// obtained after `newer_than` (another process just renewed it). For static schemes,
    /// renders as usual.
    pub async fn renew(
        &self,
        name: &str,
        newer_than: Option<OffsetDateTime>,
    ) -> Result<Credential> {
        let cfg = self.load()?;
        self.renew_in(&cfg, name, newer_than).await
    }

    /// [`Self::renew`] with a config already loaded (the agent's snapshot).
    pub async fn renew_in(
        &self,
        cfg: &Config,
        name: &str,
        newer_than: Option<OffsetDateTime>,
    ) -> Result<Credential> {
        let want = Want {
            min_valid: 0,
            // Nothing known: anything stored now is too old.
            newer_than: Some(newer_than.unwrap_or_else(|| self.clock().now())),
        };
        self.credential_in(cfg, name, want, 0).await
    }

    /// The stored token of a token engine as a credential (even expired), with no network
    /// call: one keychain read. `None` for static schemes (they render on demand), for
    /// tokens that are never persisted, and for a token obtained with other settings or
    /// secrets than the profile's now.
    pub async fn stored_credential_in(
        &self,
        cfg: &Config,
        name: &str,
    ) -> Result<Option<Credential>> {
        let ctx = Ctx::new(self, cfg, name)?;
        let scheme = &ctx.preset.auth.scheme;
        let persisted = match scheme {
            SchemeSpec::Login(_) => true,
            SchemeSpec::Oauth2(spec) => spec.persist,
            _ => false,
        };
        if !persisted {
            return Ok(None);
        }
        Ok(ctx
            .load_token()
            .await?
            .map(|t| ctx.bearer(&t, refreshable(scheme, &t))))
    }

    fn credential_in<'a>(
        &'a self,
        cfg: &'a Config,
        name: &'a str,
        want: Want,
        depth: usize,
    ) -> BoxFut<'a, Credential> {
        Box::pin(async move {
            if depth > MAX_CHAIN {
                return Err(Error::invalid(
                    "parent",
                    format!("the parent chain is longer than {MAX_CHAIN}"),
                ));
            }
            let mut ctx = Ctx::new(self, cfg, name)?;
            let now = ctx.now();
            let scheme = &ctx.preset.auth.scheme;
            match scheme {
                SchemeSpec::Login(spec) => {
                    // The secrets are needed only to fetch, not to hand out a stored token
                    // that will do: check that first (one keychain read instead of two).
                    if let Some(t) = ctx.load_token().await?.filter(|t| want.met_by(t, now)) {
                        return Ok(ctx.bearer(&t, true));
                    }
                    // Slow path: one process at a time per profile. Whoever waited finds the
                    // token the other one saved.
                    let _lock = lock(name).await?;
                    let after = ctx.now();
                    if let Some(t) = ctx
                        .load_token()
                        .await?
                        .filter(|t| want.met_after_wait(t, after, now))
                    {
                        return Ok(ctx.bearer(&t, true));
                    }
                    ctx.load_secrets().await?;
                    let parent = match spec.client_auth {
                        ClientAuth::Parent => {
                            let p = ctx.lookup("parent").ok_or_else(|| ctx.missing("parent"))?;
                            // The parent must outlive the exchange call, not be renewed.
                            let pw = Want::valid_for(want.min_valid.max(30));
                            let c = self.credential_in(cfg, p, pw, depth + 1).await?;
                            for (_, v) in &c.headers {
                                // the whole header value, and the token without its scheme
                                ctx.tokens.push(v.clone());
                                if let Some((_, t)) = v.expose().split_once(' ') {
                                    ctx.tokens.push(Secret::new(t));
                                }
                            }
                            Some(c)
                        }
                        _ => None,
                    };
                    let mut t = login::fetch(&ctx, spec, parent.as_ref()).await?;
                    ctx.save_token(&mut t).await?;
                    Ok(ctx.bearer(&t, true))
                }
                SchemeSpec::Oauth2(spec) => {
                    let t = oauth::ensure(&mut ctx, spec, &want).await?;
                    Ok(ctx.bearer(&t, refreshable(scheme, &t)))
                }
                _ => {
                    ctx.load_secrets().await?;
                    let mut c = scheme::render(name, ctx.profile, ctx.preset, &ctx.secrets, now)?;
                    c.fingerprint = Some(ctx.fingerprint.clone());
                    Ok(c)
                }
            }
        })
    }

    /// The flow of [`Keyport::login`] (in `login.rs`), once the login lock is held.
    pub(crate) async fn login_flow(
        &self,
        name: &str,
        opts: &LoginOptions,
        ui: &dyn LoginUi,
        cancel: &Cancel,
    ) -> Result<Credential> {
        let cfg = self.load()?;
        let mut ctx = Ctx::new(self, &cfg, name)?;
        let SchemeSpec::Oauth2(spec) = &ctx.preset.auth.scheme else {
            return Err(Error::Login {
                profile: name.to_string(),
                message: format!(
                    "its preset '{}' has no interactive login: use keyport token {name}",
                    ctx.preset.name
                ),
            });
        };
        if !opts.force {
            if let Ok(t) = oauth::ensure(&mut ctx, spec, &Want::valid_for(30)).await {
                ui.show(&LoginStep::AlreadyLoggedIn);
                return Ok(ctx.bearer(&t, t.refresh_token.is_some()));
            }
        }
        ctx.load_secrets().await?;
        let t = oauth::login(&ctx, spec, opts, ui, cancel).await?;
        Ok(ctx.bearer(&t, t.refresh_token.is_some()))
    }

    /// `keyport logout NAME`: forgets the token state, revoking it at the identity provider
    /// when it has a revocation endpoint. Returns a note about revocation.
    pub async fn logout(&self, name: &str) -> Result<Option<String>> {
        let cfg = self.load()?;
        let mut ctx = Ctx::new(self, &cfg, name)?;
        match &ctx.preset.auth.scheme {
            SchemeSpec::Oauth2(_) => {
                ctx.load_secrets().await?;
                oauth::logout(&mut ctx).await
            }
            _ => {
                let _lock = lock(name).await?;
                ctx.delete_token().await?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::config::ConfigStore;
    use crate::keyport::Keyport;
    use crate::store::{MemoryStore, SecretBundle};
    use crate::Secret;

    /// A loopback endpoint that answers every request with `status` and `body` (JSON).
    pub(crate) fn answering(status: u16, body: &'static str) -> String {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                let h =
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
                        .unwrap();
                let _ = req.respond(
                    tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header(h),
                );
            }
        });
        url
    }

    fn keyport() -> (tempfile::TempDir, Keyport, Arc<MemoryStore>) {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::default());
        let kp = Keyport::new(ConfigStore::new(d.path()), store.clone());
        (d, kp, store)
    }

    #[tokio::test]
    async fn an_oauth_token_with_a_line_break_is_refused_and_not_stored() {
        let url = answering(
            200,
            r#"{"access_token": "at\r\nX-Evil: 1", "token_type": "Bearer", "expires_in": 60}"#,
        );
        let (_d, kp, store) = keyport();
        let sets = [
            ("token_url".to_string(), format!("{url}/token")),
            ("client_id".into(), "app".into()),
        ];
        let draft = kp
            .draft(
                "cc",
                "oauth2-client-credentials",
                &sets,
                &["client_secret".to_string()].into(),
            )
            .unwrap();
        let mut b = SecretBundle::default();
        b.insert("client_secret", Secret::new("s"));
        kp.add("cc", draft, b).unwrap();
        let e = kp
            .credential_valid_for("cc", 30)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("line break or control character"), "{e}");
        assert!(!e.contains("Evil"), "{e}");
        assert_eq!(
            crate::token::TokenState::load(store.as_ref(), "cc").unwrap(),
            None,
            "nothing stored"
        );
    }

    #[tokio::test]
    async fn a_refresh_token_echoed_by_the_provider_is_scrubbed() {
        let url = answering(
            400,
            r#"{"error": "invalid_request", "error_description": "refresh_token rt-canary-1 is malformed"}"#,
        );
        let (_d, kp, store) = keyport();
        let sets = [
            ("authorize_url".to_string(), format!("{url}/authorize")),
            ("token_url".into(), format!("{url}/token")),
            ("client_id".into(), "app".into()),
        ];
        let draft = kp
            .draft("ac", "oauth2-auth-code", &sets, &Default::default())
            .unwrap();
        kp.add("ac", draft, SecretBundle::default()).unwrap();
        let fp = kp.load().unwrap().get("ac").unwrap().token_fingerprint();
        let t = crate::token::TokenState {
            access_token: Secret::new("at-old"),
            refresh_token: Some(Secret::new("rt-canary-1")),
            expires_at: Some(time::OffsetDateTime::now_utc() - time::Duration::minutes(1)),
            obtained_at: time::OffsetDateTime::now_utc() - time::Duration::hours(1),
            scopes: vec![],
            sliding: false,
            widget_url: None,
            fingerprint: Some(fp),
        };
        t.save(store.as_ref(), "ac").unwrap();
        let e = kp
            .credential_valid_for("ac", 30)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("is malformed"), "{e}");
        assert!(!e.contains("rt-canary-1"), "{e}");
        assert_eq!(
            crate::token::TokenState::load(store.as_ref(), "ac").unwrap(),
            Some(t),
            "a failed refresh changes nothing stored"
        );
    }

    /// A login UI that records the steps.
    #[derive(Default)]
    struct Steps(std::sync::Mutex<Vec<crate::login::LoginStep>>);

    impl crate::login::LoginUi for Steps {
        fn show(&self, step: &crate::login::LoginStep) {
            self.0.lock().unwrap().push(step.clone());
        }
    }

    #[tokio::test]
    async fn a_verification_url_that_is_not_http_never_reaches_the_browser() {
        let url = answering(
            200,
            r#"{"device_code": "d", "user_code": "ABCD-EFGH", "verification_uri": "file:///etc/passwd", "expires_in": 600, "interval": 1}"#,
        );
        let (_d, kp, _store) = keyport();
        let sets = [
            ("device_url".to_string(), format!("{url}/device")),
            ("token_url".into(), format!("{url}/token")),
            ("client_id".into(), "app".into()),
        ];
        let draft = kp
            .draft("dev", "oauth2-device", &sets, &Default::default())
            .unwrap();
        kp.add("dev", draft, SecretBundle::default()).unwrap();
        let ui = Steps::default();
        let opts = crate::login::LoginOptions::default();
        let e = kp
            .login("dev", &opts, &ui, &crate::login::Cancel::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("verification URL Keyport will not open"), "{e}");
        let steps = ui.0.lock().unwrap();
        assert!(
            !steps.iter().any(|s| matches!(
                s,
                crate::login::LoginStep::OpenUrl { .. }
                    | crate::login::LoginStep::DeviceCode { .. }
            )),
            "{steps:?}"
        );
    }

    /// An endpoint that answers with a JSON body that never ends (up to 64 MiB, chunked).
    fn flooding() -> String {
        struct Endless(u64);
        impl std::io::Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Ok(0);
                }
                let n = buf.len().min(self.0 as usize);
                buf[..n].fill(b'a');
                if self.0 == 64 << 20 {
                    buf[0] = b'"'; // the start of a JSON string
                }
                self.0 -= n as u64;
                Ok(n)
            }
        }
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                std::thread::spawn(move || {
                    let r =
                        tiny_http::Response::new(200.into(), vec![], Endless(64 << 20), None, None);
                    let _ = req.respond(r);
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn an_endless_oauth_answer_is_refused_at_a_mebibyte() {
        let url = flooding();
        let (_d, kp, _store) = keyport();
        let sets = [
            ("token_url".to_string(), format!("{url}/token")),
            ("client_id".into(), "app".into()),
        ];
        let draft = kp
            .draft(
                "flood",
                "oauth2-client-credentials",
                &sets,
                &["client_secret".to_string()].into(),
            )
            .unwrap();
        let mut b = SecretBundle::default();
        b.insert("client_secret", Secret::new("s"));
        kp.add("flood", draft, b).unwrap();
        let e = kp
            .credential_valid_for("flood", 30)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("token endpoint") && e.contains("more than 1024 KiB"),
            "{e}"
        );
    }
}
