//! Admission: who may use the loopback helper and which requests it forwards, decided
//! before anything reaches an upstream. Pure functions of the request line and headers,
//! so every rule is unit-tested with hostile inputs.
//!
//! - **Host** (TCP only): exactly the helper's own address and port (`127.0.0.1:PORT`,
//!   `localhost:PORT`, `[::1]:PORT`), so a web page that rebinds a DNS name to 127.0.0.1
//!   gets nothing. A missing or empty Host is refused too.
//! - **Origin**: a request a browser sends cross-site carries one; it is refused unless the
//!   origin is on the allow-list (local web development).
//! - **Key** (TCP only; the unix socket is the user's own): 256 bits, compared in constant
//!   time, carried as `X-Keyport-Key: KEY`, `Authorization: Bearer KEY` or as the password
//!   of Basic auth (for tools that only have those fields). A scoped key may be limited to
//!   some profiles and to read-only methods.
//! - **Target**: origin-form only (`/profile/path?query`): no absolute-form, no `CONNECT`;
//!   the profile is a valid profile name; the path inside it cannot climb out (`.`/`..`
//!   segments raw or percent-encoded, encoded slashes or backslashes, `%25` double
//!   encoding, backslashes, empty segments such as `//host`, NUL).
//!
//! Left out on purpose: what the helper does with an admitted request (the proxy).

use std::collections::BTreeSet;

use reqwest::header::{HeaderMap, HeaderName, AUTHORIZATION, HOST, ORIGIN};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// The header that carries a helper key.
pub const KEY_HEADER: &str = "x-keyport-key";

/// Where a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `127.0.0.1:port` (and `[::1]:port`): needs a key and the right Host.
    Tcp { port: u16 },
    /// The 0600 unix socket in the user's runtime dir: the user's own.
    Unix,
}

/// A helper key and what it may do.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub secret: Secret,
    /// `None`: every profile.
    pub profiles: Option<BTreeSet<String>>,
    /// GET, HEAD and OPTIONS only.
    pub read_only: bool,
}

impl Key {
    fn allows(&self, profile: &str, method: &str) -> Result<(), Refusal> {
        if self.profiles.as_ref().is_some_and(|p| !p.contains(profile)) {
            return Err(Refusal::KeyNotForProfile {
                key: self.name.clone(),
            });
        }
        if self.read_only && !matches!(method, "GET" | "HEAD" | "OPTIONS") {
            return Err(Refusal::ReadOnlyKey {
                key: self.name.clone(),
            });
        }
        Ok(())
    }
}

/// An admitted request: which profile, the path and query to send to its API, and the key
/// it used (none on the unix socket).
#[derive(Debug, PartialEq, Eq)]
pub struct Admitted<'a> {
    pub profile: &'a str,
    /// Starts with `/` (possibly just `/`), still percent-encoded as the client sent it.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub key: Option<String>,
    /// A CORS preflight from an allowed origin: answered by the helper itself.
    pub preflight: bool,
}

/// Why a request was refused; every one is a status and one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    WrongHost(String),
    Origin(String),
    NoKey,
    WrongKey,
    KeyNotForProfile { key: String },
    ReadOnlyKey { key: String },
    Connect,
    NotOriginForm,
    BadProfileName,
    Traversal(&'static str),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::WrongHost(_) => 421,
            Refusal::Origin(_) => 403,
            Refusal::NoKey | Refusal::WrongKey => 401,
            Refusal::KeyNotForProfile { .. } | Refusal::ReadOnlyKey { .. } => 403,
            Refusal::Connect => 405,
            Refusal::NotOriginForm | Refusal::BadProfileName | Refusal::Traversal(_) => 400,
        }
    }

    /// The `error` a tool can tell Keyport's refusals by (`X-Keyport-Error`).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::WrongHost(_) => "wrong_host",
            Refusal::Origin(_) => "origin_refused",
            Refusal::NoKey => "no_key",
            Refusal::WrongKey => "wrong_key",
            Refusal::KeyNotForProfile { .. } => "key_not_for_profile",
            Refusal::ReadOnlyKey { .. } => "read_only_key",
            Refusal::Connect => "connect_refused",
            Refusal::NotOriginForm => "bad_target",
            Refusal::BadProfileName => "bad_profile",
            Refusal::Traversal(_) => "bad_path",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::WrongHost(h) => format!("Host '{h}' is not this helper's address: use http://127.0.0.1:PORT/ (a web page rebinding a name to 127.0.0.1 gets nothing)"),
            Refusal::Origin(o) => format!("requests from the web origin '{o}' are refused: add it to the helper's allowed origins for local web development"),
            Refusal::NoKey => "no helper key: send it as X-Keyport-Key, as Authorization: Bearer KEY, or as the Basic auth password (keyport helper key)".into(),
            Refusal::WrongKey => "this is not a helper key (revoked, or mistyped): see keyport helper key".into(),
            Refusal::KeyNotForProfile { key } => format!("the helper key '{key}' is not for this profile"),
            Refusal::ReadOnlyKey { key } => format!("the helper key '{key}' is read-only (GET, HEAD, OPTIONS)"),
            Refusal::Connect => "CONNECT is not served: the helper is a reverse proxy for one profile's API per path".into(),
            Refusal::NotOriginForm => "the request target must be a path (/PROFILE/PATH), not an absolute URL".into(),
            Refusal::BadProfileName => "the path must start with a profile name: /PROFILE/PATH".into(),
            Refusal::Traversal(why) => format!("the path cannot leave the profile's API ({why})"),
        }
    }
}

/// Is `host` exactly this helper's address?
fn host_ok(host: &str, port: u16) -> bool {
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    p == port.to_string()
        && (name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost") || name == "[::1]")
}

/// The key a request presents, from any of its three carriers.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(k) = headers.get(KEY_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(k.trim().to_string());
    }
    let auth = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = auth.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(_, pw)| pw.to_string());
    }
    None
}

/// The key among `keys` that `presented` is, compared in constant time against every
/// key (the time taken does not tell which key, or how much of one, matched).
fn find_key<'k>(keys: &'k [Key], presented: &str) -> Option<&'k Key> {
    let mut found = None;
    for k in keys {
        let same: bool = k
            .secret
            .expose()
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into();
        if same && found.is_none() {
            found = Some(k);
        }
    }
    found
}

/// Checks the path inside the profile's API (after `/profile`).
fn check_path(path: &str) -> Result<(), Refusal> {
    if path.contains('\\') {
        return Err(Refusal::Traversal("a backslash"));
    }
    let lower = path.to_ascii_lowercase();
    for (enc, why) in [
        ("%2f", "an encoded slash"),
        ("%5c", "an encoded backslash"),
        ("%25", "double encoding"),
        ("%00", "a NUL"),
    ] {
        if lower.contains(enc) {
            return Err(Refusal::Traversal(why));
        }
    }
    // (the first segment is empty: the path starts with '/')
    for (i, seg) in path.split('/').enumerate().skip(1) {
        let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return Err(Refusal::Traversal("a '.' or '..' segment"));
        }
        let last = i == path.split('/').count() - 1;
        if seg.is_empty() && !last {
            return Err(Refusal::Traversal("an empty segment ('//')"));
        }
    }
    Ok(())
}

/// Decides whether the helper forwards a request. `target` is the request-target as sent
/// (for HTTP/2, the `:path`), `headers` its headers; `keys` the keys in force; `origins`
/// the allowed web origins.
pub fn admit<'a>(
    listener: Listener,
    method: &str,
    target: &'a str,
    headers: &HeaderMap,
    keys: &[Key],
    origins: &[String],
) -> Result<Admitted<'a>, Refusal> {
    if let Listener::Tcp { port } = listener {
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !host_ok(host, port) {
            return Err(Refusal::WrongHost(crate::error::inert(host)));
        }
    }
    let origin = headers.get(ORIGIN).map(|v| {
        v.to_str()
            .map_or_else(|_| "(not text)".to_string(), |s| s.to_string())
    });
    if let Some(o) = &origin {
        if !origins.iter().any(|a| a == o) {
            return Err(Refusal::Origin(crate::error::inert(o)));
        }
    }
    if method == "CONNECT" {
        return Err(Refusal::Connect);
    }
    if !target.starts_with('/') {
        return Err(Refusal::NotOriginForm);
    }
    let (path_all, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let after = &path_all[1..];
    let (profile, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    if crate::profile::check_name(profile).is_err() {
        return Err(Refusal::BadProfileName);
    }
    check_path(path)?;
    let preflight = method == "OPTIONS"
        && origin.is_some()
        && headers.contains_key(HeaderName::from_static("access-control-request-method"));
    let key = match listener {
        Listener::Unix => None,
        // A preflight carries no credentials (browsers never send them on one).
        Listener::Tcp { .. } if preflight => None,
        Listener::Tcp { .. } => {
            let presented = presented_key(headers).ok_or(Refusal::NoKey)?;
            let key = find_key(keys, &presented).ok_or(Refusal::WrongKey)?;
            key.allows(profile, method)?;
            Some(key.name.clone())
        }
    };
    Ok(Admitted {
        profile,
        path,
        query,
        key,
        preflight,
    })
}

/// The headers that carry a helper key: removed before a request is forwarded.
pub fn is_key_carrier(name: &HeaderName) -> bool {
    name.as_str() == KEY_HEADER || name == AUTHORIZATION
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const KEY: &str = "4f1c0a9b2d3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

    fn keys() -> Vec<Key> {
        vec![
            Key {
                name: "default".into(),
                secret: Secret::new(KEY),
                profiles: None,
                read_only: false,
            },
            Key {
                name: "notebook".into(),
                secret: Secret::new("b".repeat(64)),
                profiles: Some(["imp".to_string()].into()),
                read_only: true,
            },
        ]
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const TCP: Listener = Listener::Tcp { port: 7137 };

    fn tcp(method: &str, target: &str, h: &[(&str, &str)]) -> Result<(), Refusal> {
        admit(
            TCP,
            method,
            target,
            &headers(h),
            &keys(),
            &["http://localhost:5173".into()],
        )
        .map(|_| ())
    }

    #[test]
    fn a_good_request_names_profile_path_query_and_key() {
        let h = headers(&[("host", "127.0.0.1:7137"), ("x-keyport-key", KEY)]);
        let a = admit(TCP, "GET", "/imp/v3/workspaces?page=2", &h, &keys(), &[]).unwrap();
        assert_eq!(
            a,
            Admitted {
                profile: "imp",
                path: "/v3/workspaces",
                query: Some("page=2"),
                key: Some("default".into()),
                preflight: false,
            }
        );
        let h = headers(&[("host", "localhost:7137"), ("x-keyport-key", KEY)]);
        assert_eq!(
            admit(TCP, "GET", "/imp", &h, &keys(), &[]).unwrap().path,
            "/"
        );
    }

    #[test]
    fn the_key_comes_in_any_of_three_carriers() {
        use base64::Engine as _;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("anyone:{KEY}"))
        );
        let bearer = format!("Bearer {KEY}");
        for h in [
            vec![("host", "127.0.0.1:7137"), ("x-keyport-key", KEY)],
            vec![
                ("host", "127.0.0.1:7137"),
                ("authorization", bearer.as_str()),
            ],
            vec![("host", "[::1]:7137"), ("authorization", basic.as_str())],
        ] {
            assert_eq!(tcp("GET", "/imp/x", &h), Ok(()), "{h:?}");
        }
    }

    #[test]
    fn hostile_requests_are_refused_with_a_status_and_a_reason() {
        let good_host = ("host", "127.0.0.1:7137");
        let key = ("x-keyport-key", KEY);
        let short_key = &KEY[..63];
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Refusal);
        let cases: Vec<Case> = vec![
            ("GET", "/imp/x", vec![good_host], Refusal::NoKey),
            (
                "GET",
                "/imp/x",
                vec![good_host, ("x-keyport-key", "wrong")],
                Refusal::WrongKey,
            ),
            (
                "GET",
                "/imp/x",
                vec![good_host, ("x-keyport-key", short_key)],
                Refusal::WrongKey,
            ),
            (
                "GET",
                "/imp/x",
                vec![key],
                Refusal::WrongHost(String::new()),
            ),
            (
                "GET",
                "/imp/x",
                vec![("host", ""), key],
                Refusal::WrongHost(String::new()),
            ),
            (
                "GET",
                "/imp/x",
                vec![("host", "evil.example:7137"), key],
                Refusal::WrongHost("evil.example:7137".into()),
            ),
            (
                "GET",
                "/imp/x",
                vec![("host", "127.0.0.1:80"), key],
                Refusal::WrongHost("127.0.0.1:80".into()),
            ),
            (
                "GET",
                "/imp/x",
                vec![("host", "127.0.0.1.evil:7137"), key],
                Refusal::WrongHost("127.0.0.1.evil:7137".into()),
            ),
            (
                "GET",
                "/imp/x",
                vec![good_host, key, ("origin", "https://evil.example")],
                Refusal::Origin("https://evil.example".into()),
            ),
            (
                "CONNECT",
                "api.example.com:443",
                vec![good_host, key],
                Refusal::Connect,
            ),
            (
                "GET",
                "http://api.example.com/x",
                vec![good_host, key],
                Refusal::NotOriginForm,
            ),
            ("GET", "*", vec![good_host, key], Refusal::NotOriginForm),
            (
                "GET",
                "/Imp/x",
                vec![good_host, key],
                Refusal::BadProfileName,
            ),
            (
                "GET",
                "/imp@evil.example/x",
                vec![good_host, key],
                Refusal::BadProfileName,
            ),
            (
                "GET",
                "//evil.example/x",
                vec![good_host, key],
                Refusal::BadProfileName,
            ),
            (
                "GET",
                "/imp/../other/x",
                vec![good_host, key],
                Refusal::Traversal("a '.' or '..' segment"),
            ),
            (
                "GET",
                "/imp/%2e%2e/other",
                vec![good_host, key],
                Refusal::Traversal("a '.' or '..' segment"),
            ),
            (
                "GET",
                "/imp/%2E./x",
                vec![good_host, key],
                Refusal::Traversal("a '.' or '..' segment"),
            ),
            (
                "GET",
                "/imp/./x",
                vec![good_host, key],
                Refusal::Traversal("a '.' or '..' segment"),
            ),
            (
                "GET",
                "/imp/a%2f..%2fb",
                vec![good_host, key],
                Refusal::Traversal("an encoded slash"),
            ),
            (
                "GET",
                "/imp/a%5cb",
                vec![good_host, key],
                Refusal::Traversal("an encoded backslash"),
            ),
            (
                "GET",
                "/imp/%252e%252e/x",
                vec![good_host, key],
                Refusal::Traversal("double encoding"),
            ),
            (
                "GET",
                "/imp/a\\..\\b",
                vec![good_host, key],
                Refusal::Traversal("a backslash"),
            ),
            (
                "GET",
                "/imp//evil.example/x",
                vec![good_host, key],
                Refusal::Traversal("an empty segment ('//')"),
            ),
            (
                "GET",
                "/imp/a%00b",
                vec![good_host, key],
                Refusal::Traversal("a NUL"),
            ),
        ];
        for (method, target, h, want) in cases {
            let got = tcp(method, target, &h).unwrap_err();
            assert_eq!(got, want, "{method} {target} {h:?}");
            assert!(got.status() >= 400 && !got.message().is_empty());
        }
    }

    #[test]
    fn scoped_keys_stay_in_their_lane() {
        let nb = "b".repeat(64);
        let h = [("host", "127.0.0.1:7137"), ("x-keyport-key", nb.as_str())];
        assert_eq!(tcp("GET", "/imp/x", &h), Ok(()));
        assert_eq!(
            tcp("GET", "/pw/x", &h),
            Err(Refusal::KeyNotForProfile {
                key: "notebook".into()
            })
        );
        assert_eq!(
            tcp("POST", "/imp/x", &h),
            Err(Refusal::ReadOnlyKey {
                key: "notebook".into()
            })
        );
    }

    #[test]
    fn allowed_origins_and_their_preflights() {
        let dev = ("origin", "http://localhost:5173");
        let pre = [
            ("host", "127.0.0.1:7137"),
            dev,
            ("access-control-request-method", "GET"),
        ];
        let h = headers(&pre);
        let a = admit(
            TCP,
            "OPTIONS",
            "/imp/x",
            &h,
            &keys(),
            &["http://localhost:5173".into()],
        )
        .unwrap();
        assert!(a.preflight && a.key.is_none(), "{a:?}");
        // the request itself needs the key like any other
        assert_eq!(
            tcp("GET", "/imp/x", &[("host", "127.0.0.1:7137"), dev]),
            Err(Refusal::NoKey)
        );
    }

    #[test]
    fn the_unix_socket_needs_no_key_but_keeps_every_other_rule() {
        let h = headers(&[("host", "localhost")]);
        let a = admit(Listener::Unix, "POST", "/pw/flows", &h, &[], &[]).unwrap();
        assert_eq!((a.profile, a.path, a.key), ("pw", "/flows", None));
        assert!(admit(Listener::Unix, "GET", "/pw/../x", &h, &[], &[]).is_err());
        let web = headers(&[("origin", "https://evil.example")]);
        assert!(admit(Listener::Unix, "GET", "/pw/x", &web, &[], &[]).is_err());
    }

    #[test]
    fn key_carriers_are_recognized_for_removal() {
        assert!(is_key_carrier(&HeaderName::from_static("x-keyport-key")));
        assert!(is_key_carrier(&AUTHORIZATION));
        assert!(!is_key_carrier(&HeaderName::from_static("accept")));
    }
}
