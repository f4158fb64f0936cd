//! Where the helper forwards a profile's requests: its API base URL, parsed once when the
//! config changes (by the agent's task, which publishes it on the board), and the pooled
//! HTTP client for it.
//!
//! One client per set of trusted roots (the OS roots, plus a profile's `ca_file`), shared by
//! every profile that trusts the same, and kept for the life of the process: connections to
//! an upstream stay pooled and alive across requests and config changes. Each client speaks
//! HTTP/2 to upstreams that offer it over TLS (ALPN) and HTTP/1.1 otherwise; a second,
//! HTTP/1.1-only client carries `Upgrade` requests (WebSocket), which HTTP/2 cannot.
//! Left out on purpose: the request rules (`guard.rs`) and the forwarding (`proxy.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hyper::http::uri::{Authority, Scheme};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Config;
use crate::http::CONNECT_TIMEOUT;

pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
pub type UpstreamClient = Client<Connector, super::proxy::ReqBody>;

/// How long a pooled upstream connection may sit idle: below the keep-alive timeouts of
/// common servers (Node's 5 s is the shortest), so the pool never sends a request on a
/// connection the server is closing.
pub const POOL_IDLE: Duration = Duration::from_secs(4);

/// The two clients for one set of trusted roots.
pub struct Clients {
    pub pooled: UpstreamClient,
    pub upgrade: UpstreamClient,
}

/// A profile's upstream, ready to forward to.
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The base URL's path without a trailing `/` (`/api/v3`, or empty).
    pub prefix: String,
    /// `scheme://authority`, as a `Location` on the upstream starts.
    pub origin: String,
    pub clients: Arc<Clients>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({}{})", self.origin, self.prefix)
    }
}

/// What the helper does with a profile's requests.
#[derive(Debug)]
pub enum Route {
    Ready(Upstream),
    /// Not forwarded, and why (one line, saying what to set).
    Unusable(String),
}

impl Route {
    /// The route of profile `name` in `cfg`.
    pub fn of(cfg: &Config, name: &str) -> Route {
        let Some(base) = cfg.api_base_url(name) else {
            return Route::Unusable(format!(
                "profile '{name}' has no API base URL, so the helper cannot tell where to send its requests: set one with keyport profile set {name} base_url=URL"
            ));
        };
        // The rules of the profile that set the base URL (a child uses its parent's API).
        let owner = owner_of(cfg, name);
        let ca_file = owner.and_then(|p| p.ca_file.clone());
        let insecure = owner.is_some_and(|p| p.allow_insecure_http);
        if let Err(e) = crate::profile::check_url("base_url", base, insecure) {
            return Route::Unusable(e.to_string());
        }
        let Ok(url) = url::Url::parse(base) else {
            return Route::Unusable(format!("base_url '{base}' is not a URL"));
        };
        let scheme = if url.scheme() == "https" {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            Some(h) => h.to_string(),
            None => return Route::Unusable(format!("base_url '{base}' has no host")),
        };
        let hostport = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let Ok(authority) = hostport.parse::<Authority>() else {
            return Route::Unusable(format!("base_url '{base}' has an unusable host"));
        };
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Route::Unusable(format!(
                "base_url '{base}' must be scheme://host[:port][/path], without user, query or fragment"
            ));
        }
        let clients = match clients_for(ca_file.as_deref()) {
            Ok(c) => c,
            Err(e) => return Route::Unusable(e),
        };
        Route::Ready(Upstream {
            origin: format!("{scheme}://{authority}"),
            scheme,
            authority,
            prefix: url.path().trim_end_matches('/').to_string(),
            clients,
        })
    }
}

fn owner_of<'c>(cfg: &'c Config, name: &str) -> Option<&'c crate::profile::Profile> {
    let mut at = cfg.profiles.get(name)?;
    for _ in 0..=crate::profile::MAX_CHAIN {
        if at.settings.contains_key("base_url") {
            return Some(at);
        }
        at = cfg.profiles.get(at.settings.get("parent")?)?;
    }
    None
}

/// The clients trusting the OS roots plus `ca_file`; built once per process and set of roots.
fn clients_for(ca_file: Option<&str>) -> Result<Arc<Clients>, String> {
    static CACHE: OnceLock<Mutex<HashMap<Option<String>, Arc<Clients>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = ca_file.map(str::to_string);
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let tls = tls_config(ca_file)?;
    let build = |h2: bool| {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http();
        let connector = if h2 {
            b.enable_all_versions().wrap_connector(http)
        } else {
            b.enable_http1().wrap_connector(http)
        };
        Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(256)
            .build(connector)
    };
    let clients = Arc::new(Clients {
        pooled: build(true),
        upgrade: build(false),
    });
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, clients.clone());
    Ok(clients)
}

fn tls_config(ca_file: Option<&str>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs();
    for cert in native {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read ca_file {path} ({e})"))?;
        let mut n = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("ca_file {path} is not PEM certificates ({e})"))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {path}: a certificate rustls refuses ({e})"))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("ca_file {path} holds no PEM certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS ({e})"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The OS's trusted roots (loaded once per process).
fn rustls_native_certs() -> Vec<rustls_pki_types::CertificateDer<'static>> {
    static ROOTS: OnceLock<Vec<rustls_pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| rustls_native_certs::load_native_certs().certs)
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset;
    use crate::profile::Profile;

    fn cfg(base: Option<&str>, insecure: bool) -> Config {
        let p = preset::get("basic").unwrap();
        let mut prof = Profile::new(p);
        prof.apply_setting(p, "username", "u").unwrap();
        prof.allow_insecure_http = insecure;
        if let Some(b) = base {
            prof.settings.insert("base_url".into(), b.into());
        }
        let mut c = Config::default();
        c.profiles.insert("p".into(), prof);
        c
    }

    #[test]
    fn a_base_url_becomes_scheme_authority_and_prefix() {
        let Route::Ready(u) = Route::of(&cfg(Some("https://api.example.com/api/v3/"), false), "p")
        else {
            panic!("ready")
        };
        assert_eq!(u.origin, "https://api.example.com");
        assert_eq!(u.prefix, "/api/v3");
        let Route::Ready(u) = Route::of(&cfg(Some("http://127.0.0.1:8080"), false), "p") else {
            panic!("ready")
        };
        assert_eq!(
            (u.origin.as_str(), u.prefix.as_str()),
            ("http://127.0.0.1:8080", "")
        );
    }

    #[test]
    fn unusable_routes_say_what_to_set() {
        let Route::Unusable(why) = Route::of(&cfg(None, false), "p") else {
            panic!("unusable")
        };
        assert!(why.contains("keyport profile set p base_url=URL"), "{why}");
        let Route::Unusable(why) = Route::of(&cfg(Some("http://api.example.com"), false), "p")
        else {
            panic!("plain http to a remote host")
        };
        assert!(why.contains("allow_insecure_http"), "{why}");
        assert!(matches!(
            Route::of(&cfg(Some("http://api.example.com"), true), "p"),
            Route::Ready(_)
        ));
    }
}
