//! Forwarding one admitted request to its profile's API with the profile's auth headers,
//! and the answer back.
//!
//! - **The credential** comes from the agent's read side (no keychain call, no message to
//!   the agent's task while a valid one is in memory); a miss waits for the one renewal every
//!   waiter shares. A token known to be expired is never sent: without a valid credential
//!   the answer is Keyport's own 502/503 (or 404 for an unknown profile), JSON
//!   `{"error", "message"}` with `X-Keyport-Error`.
//! - **Headers**: the client's `Authorization`, its key carriers and any header the profile
//!   sets are removed in every spelling a server may fold together (case, `_` for `-`), as
//!   are hop-by-hop headers and those `Connection` names; the profile's headers are set;
//!   `Host` is the upstream's.
//! - **Bodies stream** both ways (hyper's `Incoming`, or a direct connection's body, is
//!   passed on frame by frame, so memory stays bounded and server-sent events arrive as
//!   sent). A body of at most [`REPLAY_MAX`] is kept so that a 401 can be answered by
//!   renewing once and replaying.
//! - **Upgrades** (WebSocket) go over an HTTP/1.1 connection and are spliced both ways
//!   after the upstream's 101.
//! - **Redirects** are passed back, never followed; a `Location` on the upstream's origin
//!   under the base URL's path becomes the helper's path, so the client stays on the helper.
//!
//! Left out on purpose: who may ask (`guard.rs`), listening (`mod.rs`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};

use super::guard::{self, Listener, Refusal};
use super::log::Entry;
use super::upstream::{Route, Slot, UpBody, Upstream, UpstreamError};
use super::Shared;
use crate::agent::board::{Lookup, Served};
use crate::error::{Error, ErrorKind};

/// Request bodies up to this size are kept, so a 401 can be answered with a replay.
pub const REPLAY_MAX: usize = 64 * 1024;
/// A proxied request gets a credential valid for at least this long (capped at half the
/// token's lifetime by the board).
const MIN_VALID: i64 = 5;

pub type ReqBody = Either<Incoming, Full<Bytes>>;
pub type RespBody = Either<Logged, Full<Bytes>>;

/// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded either way.
const HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// `a` and `b` name the same header for a server that ignores case and reads `_` as `-`.
fn same_header(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let n = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            n(x) == n(y)
        })
}

fn connection_tokens(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn is_hop(name: &HeaderName, listed: &[String]) -> bool {
    HOP.contains(&name.as_str())
        || name == header::UPGRADE
        || listed.iter().any(|t| t == name.as_str())
}

/// The headers to send upstream: the client's, cleaned, then the profile's.
pub fn upstream_headers(
    client: &HeaderMap,
    served: &Served,
    upgrade: Option<&HeaderValue>,
) -> HeaderMap {
    let listed = connection_tokens(client);
    let mut out = HeaderMap::with_capacity(client.len() + served.headers.len());
    for (name, value) in client {
        let n = name.as_str();
        let drop = is_hop(name, &listed)
            || name == header::HOST
            || guard::is_key_carrier(name)
            || same_header(n, "authorization")
            || same_header(n, guard::KEY_HEADER)
            || same_header(n, "proxy-authorization")
            || served
                .headers
                .iter()
                .any(|(h, _)| same_header(n, h.as_str()));
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    for (n, v) in &served.headers {
        out.insert(n.clone(), v.clone());
    }
    if let Some(u) = upgrade {
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.insert(header::UPGRADE, u.clone());
    }
    out
}

/// The answer's headers for the client: hop-by-hop ones removed, `Location` rewritten.
fn client_headers(h: &mut HeaderMap, up: &Upstream, profile: &str, upgraded: bool) {
    let listed = connection_tokens(h);
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|n| {
            is_hop(n, &listed) && !(upgraded && (*n == header::UPGRADE || *n == header::CONNECTION))
        })
        .cloned()
        .collect();
    for n in names {
        h.remove(&n);
    }
    if let Some(loc) = h.get(header::LOCATION).and_then(|v| v.to_str().ok()) {
        if let Some(new) = rewrite_location(loc, up, profile) {
            if let Ok(v) = HeaderValue::from_str(&new) {
                h.insert(header::LOCATION, v);
            }
        }
    }
}

/// A `Location` on the upstream's origin under its base path, as the helper's path.
pub fn rewrite_location(loc: &str, up: &Upstream, profile: &str) -> Option<String> {
    let rest = if let Some(r) = strip_prefix_ci(loc, &up.origin) {
        if !(r.is_empty() || r.starts_with('/') || r.starts_with('?')) {
            return None; // e.g. https://api.example.com.evil/
        }
        r
    } else if loc.starts_with('/') && !loc.starts_with("//") {
        loc
    } else {
        return None;
    };
    let after = rest.strip_prefix(up.prefix.as_str())?;
    if !(after.is_empty() || after.starts_with('/') || after.starts_with('?')) {
        return None; // /api/v30 is not under /api/v3
    }
    Some(format!("/{profile}{after}"))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Keyport's own answer: JSON `{"error", "message"}` and `X-Keyport-Error`.
pub fn refusal(status: u16, kind: &str, message: &str) -> Response<RespBody> {
    let body = serde_json::json!({ "error": kind, "message": message }).to_string();
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(kind) {
        h.insert(HeaderName::from_static("x-keyport-error"), v);
    }
    r
}

/// What a paused helper answers.
const PAUSED: &str = "Keyport's helper is paused: resume it from Keyport's tray menu or its helper panel (keyport helper resume)";

/// How an agent error is told to a tool: status and kind.
pub fn error_status(e: &Error) -> (u16, &'static str) {
    match e.kind() {
        ErrorKind::NotFound => (404, "not_found"),
        ErrorKind::LoginRequired
        | ErrorKind::LoginFailed
        | ErrorKind::LoginInProgress
        | ErrorKind::Cancelled => (503, "login_required"),
        ErrorKind::Keychain => (503, "keychain_unavailable"),
        k if k.needs_person() => (503, "renewal_refused"),
        _ => (502, "renewal_failed"),
    }
}

/// One request, start to answer. Never fails: every problem is an answer.
pub(crate) async fn handle(
    sh: Arc<Shared>,
    listener: Listener,
    mut req: Request<ReqBody>,
) -> Result<Response<RespBody>, Infallible> {
    sh.requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let method = req.method().clone();
    // HTTP/2 names the authority in :authority, not Host; and its :path is origin-form.
    // HTTP/1.1 with a scheme or authority in the URI is absolute- or authority-form.
    let target: String = if req.version() == Version::HTTP_2 {
        if let Some(a) = req.uri().authority().map(|a| a.as_str().to_string()) {
            if let Ok(v) = HeaderValue::from_str(&a) {
                req.headers_mut().insert(header::HOST, v);
            }
        }
        req.uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string()
    } else if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        req.uri().to_string()
    } else {
        req.uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string()
    };
    let mut entry = Entry::new(sh.agent.clock().now(), method.as_str(), &target);
    let keys = sh.keys.load();
    let origins = sh.origins.load();
    let admitted = guard::admit(
        listener,
        method.as_str(),
        &target,
        req.headers(),
        &keys.keys,
        &origins,
    );
    let a = match admitted {
        Ok(a) => a,
        Err(r) => return Ok(sh.refused(entry, started, &r)),
    };
    entry.profile = Some(a.profile.to_string());
    if let Some(k) = &a.key {
        keys.touch(k, entry.at);
    }
    entry.key = a.key;
    if sh.paused.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(sh.failed(entry, started, 503, "helper_paused", PAUSED));
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    if a.preflight {
        let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
        *r.status_mut() = StatusCode::NO_CONTENT;
        cors(r.headers_mut(), origin.as_ref(), Some(req.headers()));
        return Ok(sh.done(entry, started, r));
    }
    // (borrowed from `target`, which outlives the request)
    let (profile, path, query) = (a.profile, a.path, a.query);
    drop(keys);
    let route = match sh.agent.board().route(profile) {
        None => {
            let e = Error::ProfileNotFound(profile.to_string());
            return Ok(sh.failed(entry, started, 404, "not_found", &e.to_string()));
        }
        Some(r) => r,
    };
    let up = match route.as_ref() {
        Route::Ready(u) => u,
        Route::Unusable(why) => {
            return Ok(sh.failed(entry, started, 502, "no_api_base_url", why));
        }
    };
    let served = match sh.agent.credential(profile, MIN_VALID).await {
        Ok(s) => s,
        Err(e) => {
            let (status, kind) = error_status(&e);
            return Ok(sh.failed(
                entry,
                started,
                status,
                kind,
                &crate::error::inert(&e.to_string()),
            ));
        }
    };
    let uri: Uri = match format!(
        "{}{}{}{}",
        up.prefix,
        path,
        if query.is_some() { "?" } else { "" },
        query.unwrap_or("")
    )
    .parse()
    {
        Ok(u) => u,
        Err(_) => {
            let r = Refusal::Traversal("not a valid URL path");
            return Ok(sh.refused(entry, started, &r));
        }
    };
    // An Upgrade (WebSocket) over HTTP/1.1; `h2c` is the client's offer to the helper
    // itself, which HTTP/1.1 clients get a plain answer to.
    let upgrade = (req.version() == Version::HTTP_11)
        .then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten()
        .filter(|u| !u.as_bytes().eq_ignore_ascii_case(b"h2c"));
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    // Keep small bodies for a replay after a 401.
    let kept: Option<Bytes> = if body.is_end_stream() {
        Some(Bytes::new())
    } else if upgrade.is_none()
        && content_length(&parts.headers).is_some_and(|n| n <= REPLAY_MAX as u64)
    {
        match Limited::new(body, REPLAY_MAX).collect().await {
            Ok(b) => Some(b.to_bytes()),
            Err(_) => {
                return Ok(sh.failed(
                    entry,
                    started,
                    400,
                    "bad_body",
                    "the request body ended early or was longer than its Content-Length",
                ));
            }
        }
    } else {
        // streamed: no replay
        return Ok(sh
            .forward_streaming(
                entry,
                started,
                up,
                profile,
                parts,
                body,
                uri,
                served,
                origin,
                upgrade,
                client_upgrade,
            )
            .await);
    };
    let kept = kept.expect("set above");
    let send = |served: &Served, upgrade: Option<&HeaderValue>| {
        let headers = upstream_headers(&parts.headers, served, upgrade);
        up.send_kept(
            &parts.method,
            &uri,
            headers,
            kept.clone(),
            upgrade.is_some(),
        )
    };
    let (mut resp, mut slot) = match send(&served, upgrade.as_ref()).await {
        Ok(r) => r,
        Err(e) => return Ok(sh.upstream_failed(entry, started, up, &e)),
    };
    if resp.status() == StatusCode::UNAUTHORIZED && upgrade.is_none() {
        // Renew once (unless someone already did since this request started) and replay.
        let current = match sh.agent.peek(profile, 0) {
            Lookup::Valid(s) => Some(s),
            _ => None,
        };
        let renewed = current.as_ref().is_some_and(|c| !Arc::ptr_eq(c, &served));
        let fresh = if renewed {
            current
        } else if served.challenge() {
            sh.agent.refresh(profile).await.ok()
        } else {
            None
        };
        if let Some(fresh) = fresh {
            // (the 401's body is not read: that connection closes)
            drop((resp, slot));
            match send(&fresh, None).await {
                Ok((r, l)) => (resp, slot) = (r, l),
                Err(e) => return Ok(sh.upstream_failed(entry, started, up, &e)),
            }
        }
    }
    Ok(sh.answer(
        entry,
        started,
        up,
        profile,
        resp,
        slot,
        origin,
        client_upgrade,
    ))
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    if h.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// CORS headers for an allowed origin (the guard refused every other one).
fn cors(h: &mut HeaderMap, origin: Option<&HeaderValue>, preflight: Option<&HeaderMap>) {
    let Some(o) = origin else { return };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(req) = preflight {
        if let Some(m) = req.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m.clone());
        }
        if let Some(hs) = req.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, hs.clone());
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
}

impl Shared {
    fn finish(&self, mut entry: Entry, started: Instant, status: u16) -> Entry {
        entry.status = status;
        entry.ms = started.elapsed().as_secs_f64() * 1000.0;
        entry
    }

    /// A Keyport answer that is not an upstream's; logged now.
    fn done(&self, entry: Entry, started: Instant, r: Response<RespBody>) -> Response<RespBody> {
        let e = self.finish(entry, started, r.status().as_u16());
        self.log.push(e);
        r
    }

    pub(crate) fn refused(
        &self,
        mut entry: Entry,
        started: Instant,
        r: &Refusal,
    ) -> Response<RespBody> {
        // A right key used out of its scope: the log names it (the panel shows whose it was).
        if let Refusal::KeyNotForProfile { key } | Refusal::ReadOnlyKey { key } = r {
            entry.key = Some(key.clone());
        }
        self.failed(entry, started, r.status(), r.kind(), &r.message())
    }

    fn failed(
        &self,
        mut entry: Entry,
        started: Instant,
        status: u16,
        kind: &str,
        message: &str,
    ) -> Response<RespBody> {
        entry.refusal = Some(kind.to_string());
        entry.reason = Some(message.to_string());
        self.refusals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let r = refusal(status, kind, message);
        self.done(entry, started, r)
    }

    fn upstream_failed(
        &self,
        entry: Entry,
        started: Instant,
        up: &Upstream,
        e: &UpstreamError,
    ) -> Response<RespBody> {
        let why = crate::error::inert(&e.describe(&up.origin));
        self.failed(entry, started, 502, "upstream_failed", &why)
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward_streaming(
        self: &Arc<Self>,
        entry: Entry,
        started: Instant,
        up: &Upstream,
        profile: &str,
        parts: hyper::http::request::Parts,
        body: ReqBody,
        uri: Uri,
        served: Arc<Served>,
        origin: Option<HeaderValue>,
        upgrade: Option<HeaderValue>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<RespBody> {
        let mut r = Request::new(body);
        *r.method_mut() = parts.method;
        *r.uri_mut() = uri;
        *r.headers_mut() = upstream_headers(&parts.headers, &served, upgrade.as_ref());
        match up.send(r, upgrade.is_some()).await {
            Ok((resp, slot)) => {
                if resp.status() == StatusCode::UNAUTHORIZED && served.challenge() {
                    // too big to replay: pass the 401 back, and renew for the next request
                    let (agent, name) = (self.agent.clone(), profile.to_string());
                    tokio::spawn(async move {
                        let _ = agent.refresh(&name).await;
                    });
                }
                self.answer(
                    entry,
                    started,
                    up,
                    profile,
                    resp.map(UpBody::Hyper),
                    slot,
                    origin,
                    client_upgrade,
                )
            }
            Err(e) => self.upstream_failed(entry, started, up, &e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn answer(
        self: &Arc<Self>,
        entry: Entry,
        started: Instant,
        up: &Upstream,
        profile: &str,
        mut resp: Response<UpBody>,
        slot: Option<Slot>,
        origin: Option<HeaderValue>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<RespBody> {
        let upgraded = resp.status() == StatusCode::SWITCHING_PROTOCOLS && client_upgrade.is_some();
        if upgraded {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let client_upgrade = client_upgrade.expect("checked");
            tokio::spawn(async move {
                if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                    let mut c = hyper_util::rt::TokioIo::new(c);
                    let mut u = hyper_util::rt::TokioIo::new(u);
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                }
            });
        }
        client_headers(resp.headers_mut(), up, profile, upgraded);
        cors(resp.headers_mut(), origin.as_ref(), None);
        let status = resp.status().as_u16();
        let entry = self.finish(entry, started, status);
        resp.map(|body| {
            Either::Left(Logged {
                body,
                entry: Some(entry),
                log: self.clone(),
                slot,
            })
        })
    }
}

/// An upstream's body on its way to the client; its log entry is written when it ends
/// (or the client goes away), with the bytes sent.
pub struct Logged {
    body: UpBody,
    entry: Option<Entry>,
    log: Arc<Shared>,
    /// hyper's upstream connection, back in the pool once the body was read to its end (a
    /// direct connection is in its body).
    slot: Option<Slot>,
}

impl Drop for Logged {
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            if let Some(l) = self.slot.as_mut() {
                l.finish(); // (an empty body is never polled)
            }
        }
        if let Some(e) = self.entry.take() {
            self.log.log.push(e);
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                if let (Some(d), Some(e)) = (f.data_ref(), self.entry.as_mut()) {
                    e.bytes += d.len() as u64;
                }
                if self.body.is_end_stream() {
                    if let Some(l) = self.slot.as_mut() {
                        l.finish();
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(l) = self.slot.as_mut() {
                    l.finish();
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::Credential;
    use crate::secret::Secret;

    fn served(headers: &[(&str, &str)]) -> Served {
        Served::new(Credential {
            scheme: "header".into(),
            headers: headers
                .iter()
                .map(|(h, v)| (h.to_string(), Secret::new(*v)))
                .collect(),
            expires_at: None,
            refreshable: false,
            widget_url: None,
            obtained_at: None,
            sliding: false,
            fingerprint: None,
        })
        .unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn client_auth_key_carriers_and_profile_headers_go_in_every_spelling() {
        let s = served(&[("Authorization", "token k:s"), ("X-Api-Key", "real")]);
        let client = map(&[
            ("host", "127.0.0.1:7137"),
            ("authorization", "Bearer helperkey"),
            ("x-keyport-key", "helperkey"),
            ("x_keyport_key", "helperkey"),
            ("x-api-key", "forged"),
            ("x_api_key", "forged"),
            ("X_API-KEY", "forged"),
            ("proxy-authorization", "Basic x"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "hop"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("accept", "application/json"),
            ("x-request-id", "r1"),
        ]);
        let out = upstream_headers(&client, &s, None);
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            ["accept", "authorization", "x-api-key", "x-request-id"]
        );
        assert_eq!(out["authorization"], "token k:s");
        assert_eq!(out["x-api-key"], "real");
        assert_eq!(out.get_all("x-api-key").iter().count(), 1);
        assert!(out["authorization"].is_sensitive());
    }

    #[test]
    fn an_upgrade_keeps_its_upgrade_header() {
        let s = served(&[("Authorization", "Bearer t")]);
        let client = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        let u = client.get("upgrade").cloned();
        let out = upstream_headers(&client, &s, u.as_ref());
        assert_eq!(out["upgrade"], "websocket");
        assert_eq!(out["connection"], "upgrade");
        assert_eq!(out["sec-websocket-key"], "k");
    }

    fn upstream() -> Upstream {
        let cfg = {
            let p = crate::preset::get("basic").unwrap();
            let mut prof = crate::profile::Profile::new(p);
            prof.apply_setting(p, "username", "u").unwrap();
            prof.settings
                .insert("base_url".into(), "https://api.example.com/api/v3".into());
            let mut c = crate::config::Config::default();
            c.profiles.insert("imp".into(), prof);
            c
        };
        match Route::of(&cfg, "imp") {
            Route::Ready(u) => u,
            Route::Unusable(w) => panic!("{w}"),
        }
    }

    #[test]
    fn locations_on_the_upstream_stay_on_the_helper() {
        let up = upstream();
        for (loc, want) in [
            (
                "https://api.example.com/api/v3/x?page=2",
                Some("/imp/x?page=2"),
            ),
            ("HTTPS://API.EXAMPLE.COM/api/v3", Some("/imp")),
            ("/api/v3/y", Some("/imp/y")),
            ("/api/v30/y", None),
            ("/other", None),
            ("https://api.example.com.evil/api/v3/x", None),
            ("https://elsewhere.example/api/v3/x", None),
            ("//api.example.com/api/v3/x", None),
        ] {
            assert_eq!(rewrite_location(loc, &up, "imp").as_deref(), want, "{loc}");
        }
    }

    #[test]
    fn refusals_are_json_with_a_kind_header() {
        let r = refusal(503, "login_required", "log in: keyport login imp");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["x-keyport-error"], "login_required");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(
            error_status(&Error::ProfileNotFound("x".into())),
            (404, "not_found")
        );
        assert_eq!(
            error_status(&Error::LoginRequired {
                profile: "x".into(),
                reason: "r".into()
            })
            .1,
            "login_required"
        );
    }
}
