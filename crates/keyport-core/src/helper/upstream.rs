//! Where the helper forwards a profile's requests: its API base URL, parsed once when the
//! config changes (by the agent's task, which publishes it on the board), and the
//! connections to it.
//!
//! Connections are pooled **per helper thread** (a request, its upstream connection and
//! its answer stay on one thread: no lock, no cross-thread wake-up, as in nginx's workers)
//! and kept alive across requests and config changes. Over TLS the upstream is offered
//! HTTP/2 and HTTP/1.1 (ALPN); an HTTP/2 connection carries every request to that upstream
//! at once, an HTTP/1.1 one is reused once its answer was read to the end. Idle HTTP/1.1
//! connections older than [`POOL_IDLE`] are not reused (below common servers' keep-alive
//! timeouts, so a request is never sent on a connection the server is closing). An
//! `Upgrade` request (WebSocket) gets a fresh HTTP/1.1 connection of its own. A request whose
//! body is in memory (most are: empty, or kept for a replay) to a plain-`http` upstream goes
//! over a direct connection ([`h1`]), without hyper's connection task. Trusted roots
//! are the OS's plus a profile's `ca_file`, checked when the config is read.
//! Left out on purpose: the request rules (`guard.rs`) and the forwarding (`proxy.rs`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper::header::HeaderMap;
use hyper::http::uri::{Authority, Scheme};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::h1;
use super::proxy::ReqBody;
use crate::config::Config;
use crate::http::CONNECT_TIMEOUT;

/// How long an idle upstream connection may be reused: below the keep-alive timeouts of
/// common servers (Node's 5 s is the shortest).
pub const POOL_IDLE: Duration = Duration::from_secs(4);
/// Idle HTTP/1.1 connections kept per upstream and thread.
const MAX_IDLE: usize = 256;

/// A profile's upstream, ready to forward to.
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The base URL's path without a trailing `/` (`/api/v3`, or empty).
    pub prefix: String,
    /// `scheme://authority`, as a `Location` on the upstream starts.
    pub origin: String,
    /// Which trusted roots (see [`clients`]).
    roots: usize,
    /// `Host` for HTTP/1.1 requests (the authority).
    host: hyper::header::HeaderValue,
    /// Which connections it may use: one id per (roots, scheme, authority), so upstreams
    /// of several profiles on one server share them, and a request hashes no string.
    pool: PoolKey,
}

/// Why an upstream did not answer.
#[derive(Debug)]
pub enum UpstreamError {
    Connect(String),
    Tls(String),
    Http(hyper::Error),
    /// A direct connection's answer was not usable HTTP, or did not come.
    Answer(String),
}

impl UpstreamError {
    /// One line, saying what to do.
    pub fn describe(&self, origin: &str) -> String {
        match self {
            UpstreamError::Connect(why) => format!(
                "the API {origin} cannot be reached ({why}): check the profile's base_url and that the service is up"
            ),
            UpstreamError::Tls(why) => format!(
                "TLS with the API {origin} failed ({why}): if it uses your organization's CA, set ca_file=PATH on the profile"
            ),
            UpstreamError::Http(e) => {
                let mut last = e.to_string();
                let mut cur = std::error::Error::source(e);
                while let Some(c) = cur {
                    last = c.to_string();
                    cur = c.source();
                }
                format!("the API {origin} failed to answer ({last})")
            }
            UpstreamError::Answer(why) => format!("the API {origin} failed to answer ({why})"),
        }
    }
}

/// One of a thread's connections to an upstream, lent to one request: back in the pool
/// when its answer was read to the end ([`Slot::finish`] for hyper's, `put_back`
/// for a direct one), else closed, freeing the slot for another connection.
pub struct Slot {
    key: PoolKey,
    sender: Option<http1::SendRequest<ReqBody>>,
    done: bool,
    /// A direct connection went back to the pool: nothing left to do.
    returned: bool,
}

impl Slot {
    /// The answer's body was read to its end: the connection can carry the next request.
    pub fn finish(&mut self) {
        self.done = true;
    }

    /// A slot of `key`'s connections, its connection not known yet.
    fn holding(key: PoolKey) -> Slot {
        Slot {
            key,
            sender: None,
            done: false,
            returned: false,
        }
    }

    /// A direct connection whose answer was read to the end, back to the pool.
    pub(crate) fn put_back(mut self, conn: h1::Conn) {
        let key = self.key;
        self.returned = true;
        let kept = POOL.with(|p| {
            let mut idle = p.direct.borrow_mut();
            let list = idle.entry(key).or_default();
            (list.len() < MAX_IDLE).then(|| list.push(conn)).is_some()
        });
        if kept {
            wake(key);
        } else {
            release(key);
        }
    }

    #[cfg(test)]
    pub(crate) fn test_new(key: PoolKey) -> Slot {
        assert!(take_slot(key).is_none(), "a free slot");
        Slot::holding(key)
    }
}

/// A pool of its own, for a test.
#[cfg(test)]
pub(crate) fn test_pool_key() -> PoolKey {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    pool_of(0, false, &format!("test-{n}.invalid").parse().unwrap())
}

/// An idle direct connection of the pool, for a test.
#[cfg(test)]
pub(crate) fn test_take_back(key: PoolKey) -> Option<h1::Conn> {
    take_idle_direct(key)
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.returned {
            return;
        }
        let reusable = self.done && self.sender.as_ref().is_some_and(|s| !s.is_closed());
        let key = self.key;
        match self.sender.take() {
            Some(sender) if reusable => POOL.with(|p| {
                let mut idle = p.idle.borrow_mut();
                let list = idle.entry(key).or_default();
                if list.len() < MAX_IDLE {
                    list.push((sender, Instant::now()));
                    drop(idle);
                    wake(key);
                } else {
                    drop(idle);
                    release(key);
                }
            }),
            _ => release(key),
        }
    }
}

/// A pool of upstream connections (see [`Upstream::pool`]).
type PoolKey = u32;

/// The pool of connections with these roots, scheme and authority (for the life of the
/// process, so a config change keeps the connections).
fn pool_of(roots: usize, https: bool, authority: &Authority) -> PoolKey {
    type Pools = Mutex<Vec<(usize, bool, Authority)>>;
    static POOLS: OnceLock<Pools> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let key = (roots, https, authority.clone());
    let i = pools.iter().position(|k| *k == key).unwrap_or_else(|| {
        pools.push(key);
        pools.len() - 1
    });
    i as PoolKey
}

/// The thread-local maps, by pool (foldhash, as the board's names).
type ByPool<V> = HashMap<PoolKey, V, foldhash::fast::RandomState>;

/// HTTP/1.1 connections a thread keeps open to one upstream at most; more requests wait
/// for one of them (an upstream that accepts slowly is not flooded with connections).
const MAX_OPEN: usize = 64;

type Waiter = tokio::sync::oneshot::Sender<()>;
/// An idle connection and since when.
type Idle = (http1::SendRequest<ReqBody>, Instant);

/// A thread's open HTTP/1.1 connections to one upstream, and the requests waiting for one.
#[derive(Default)]
struct Slots {
    open: usize,
    waiters: std::collections::VecDeque<Waiter>,
}

#[derive(Default)]
struct Pool {
    idle: RefCell<ByPool<Vec<Idle>>>,
    direct: RefCell<ByPool<Vec<h1::Conn>>>,
    h2: RefCell<ByPool<http2::SendRequest<ReqBody>>>,
    slots: RefCell<ByPool<Slots>>,
}

/// An idle connection fit for reuse (stale ones are closed, freeing their slots).
fn take_idle(key: PoolKey) -> Option<http1::SendRequest<ReqBody>> {
    loop {
        let got = POOL.with(|p| p.idle.borrow_mut().get_mut(&key)?.pop())?;
        let (s, since) = got;
        if since.elapsed() < POOL_IDLE && !s.is_closed() {
            return Some(s);
        }
        release(key);
    }
}

/// An idle direct connection fit for reuse (stale or closed ones are dropped, freeing their
/// slots).
fn take_idle_direct(key: PoolKey) -> Option<h1::Conn> {
    loop {
        let c = POOL.with(|p| p.direct.borrow_mut().get_mut(&key)?.pop())?;
        if c.since.elapsed() < POOL_IDLE && c.is_usable() {
            return Some(c);
        }
        release(key);
    }
}

/// `None`: the caller may open a connection (the slot is its); else a receiver that is
/// woken when a connection comes back or a slot is freed.
fn take_slot(key: PoolKey) -> Option<tokio::sync::oneshot::Receiver<()>> {
    POOL.with(|p| {
        let mut slots = p.slots.borrow_mut();
        let sl = slots.entry(key).or_default();
        if sl.open < MAX_OPEN {
            sl.open += 1;
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        sl.waiters.push_back(tx);
        Some(rx)
    })
}

/// When no idle connection was fit: a slot for a new connection, or `None` once one may
/// have come back (the caller looks again). If all are taken and `close_other` finds (and
/// drops) an idle connection of the other kind, direct or hyper's, its slot is freed.
async fn slot_or_wait(key: PoolKey, close_other: fn(PoolKey) -> bool) -> Option<Slot> {
    match take_slot(key) {
        None => Some(Slot::holding(key)),
        Some(_) if close_other(key) => {
            release(key);
            None
        }
        // a connection came back or a slot was freed (or, at worst, look again soon)
        Some(rx) => {
            let _ = tokio::time::timeout(Duration::from_millis(100), rx).await;
            None
        }
    }
}

/// Wakes the first request still waiting for a connection of `key`.
fn wake(key: PoolKey) {
    POOL.with(|p| {
        if let Some(sl) = p.slots.borrow_mut().get_mut(&key) {
            while let Some(w) = sl.waiters.pop_front() {
                if w.send(()).is_ok() {
                    return;
                }
            }
        }
    })
}

/// A connection of `key` is gone: its slot is free.
fn release(key: PoolKey) {
    POOL.with(|p| {
        if let Some(sl) = p.slots.borrow_mut().get_mut(&key) {
            sl.open = sl.open.saturating_sub(1);
        }
    });
    wake(key);
}

thread_local! {
    static POOL: Pool = Pool::default();
}

enum Fresh {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

impl Upstream {
    /// Sends `req` (its URI: the path and query) to this upstream over this thread's pool.
    /// `upgrade`: a fresh HTTP/1.1 connection that may switch protocols. The slot, for an
    /// HTTP/1.1 answer, goes back to the pool when the answer's body was read.
    pub async fn send(
        &self,
        mut req: Request<ReqBody>,
        upgrade: bool,
    ) -> Result<(Response<Incoming>, Option<Slot>), UpstreamError> {
        let key = self.pool;
        if upgrade {
            let Fresh::H1(mut s) = self.connect(false, true).await? else {
                unreachable!("HTTP/1.1 only")
            };
            self.for_h1(&mut req);
            let r = s.send_request(req).await.map_err(UpstreamError::Http)?;
            return Ok((r, None));
        }
        // An HTTP/2 connection to this upstream: every request goes on it.
        let h2 = POOL.with(|p| p.h2.borrow().get(&key).cloned());
        if let Some(mut h2) = h2 {
            if h2.is_ready() {
                self.for_h2(&mut req);
                match h2.try_send_request(req).await {
                    Ok(r) => return Ok((r, None)),
                    Err(mut e) => match e.take_message() {
                        // not sent: the connection went away, try a fresh one
                        Some(back) => {
                            req = back;
                            POOL.with(|p| p.h2.borrow_mut().remove(&key));
                        }
                        None => return Err(UpstreamError::Http(e.into_error())),
                    },
                }
            } else {
                POOL.with(|p| p.h2.borrow_mut().remove(&key));
            }
        }
        // An idle HTTP/1.1 connection (newest first), else a new one if this thread has
        // fewer than MAX_OPEN to the upstream, else wait for one to come back. A slot holds
        // the connection's slot from here on: if this request is dropped, the slot is freed.
        let mut slot = loop {
            if let Some(mut s) = take_idle(key) {
                let mut slot = Slot::holding(key);
                // (just back from its last answer: the connection may still be finishing it)
                if s.ready().await.is_err() {
                    continue;
                }
                self.for_h1(&mut req);
                match s.try_send_request(req).await {
                    Ok(r) => {
                        slot.sender = Some(s);
                        return Ok((r, Some(slot)));
                    }
                    Err(mut e) => match e.take_message() {
                        Some(back) => req = back, // closed before it was sent: the next one
                        None => return Err(UpstreamError::Http(e.into_error())),
                    },
                }
                continue;
            }
            if let Some(slot) = slot_or_wait(key, |k| take_idle_direct(k).is_some()).await {
                break slot;
            }
        };
        match self.connect(true, false).await? {
            Fresh::H2(mut h2) => {
                drop(slot); // (one HTTP/2 connection carries everything)
                POOL.with(|p| p.h2.borrow_mut().insert(key, h2.clone()));
                self.for_h2(&mut req);
                let r = h2.send_request(req).await.map_err(UpstreamError::Http)?;
                Ok((r, None))
            }
            Fresh::H1(mut s) => {
                self.for_h1(&mut req);
                let r = s.send_request(req).await.map_err(UpstreamError::Http)?;
                slot.sender = Some(s);
                Ok((r, Some(slot)))
            }
        }
    }

    /// HTTP/1.1: origin-form target and a Host header.
    fn for_h1(&self, req: &mut Request<ReqBody>) {
        *req.version_mut() = hyper::Version::HTTP_11;
        req.headers_mut()
            .insert(hyper::header::HOST, self.host.clone());
    }

    /// HTTP/2: the scheme and authority go in the URI (:scheme, :authority), no Host.
    fn for_h2(&self, req: &mut Request<ReqBody>) {
        *req.version_mut() = hyper::Version::HTTP_2;
        req.headers_mut().remove(hyper::header::HOST);
        let pq = req.uri().path_and_query().cloned();
        let mut parts = hyper::http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = pq;
        if let Ok(u) = hyper::Uri::from_parts(parts) {
            *req.uri_mut() = u;
        }
    }

    /// Sends a request whose body is all in `body`: over a direct connection to a plain-http
    /// upstream (no slot is returned: the answer's body holds it), else as [`Self::send`].
    pub async fn send_kept(
        &self,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Bytes,
        upgrade: bool,
    ) -> Result<(Response<UpBody>, Option<Slot>), UpstreamError> {
        let key = self.pool;
        if upgrade
            || self.scheme == Scheme::HTTPS
            || POOL.with(|p| p.h2.borrow().contains_key(&key))
        {
            let mut r = Request::new(Either::Right(Full::new(body)));
            *r.method_mut() = method.clone();
            *r.uri_mut() = uri.clone();
            *r.headers_mut() = headers;
            let (resp, slot) = self.send(r, upgrade).await?;
            return Ok((resp.map(UpBody::Hyper), slot));
        }
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        // An idle connection (newest first), else a slot for a new one, as in `send`; a
        // request that found its kept-alive connection closed by the server goes on the next.
        let slot = loop {
            if let Some(conn) = take_idle_direct(key) {
                let slot = Slot::holding(key);
                match conn
                    .send(method, target, &self.host, &headers, &body, slot)
                    .await
                {
                    Ok(r) => return Ok((r.map(UpBody::Direct), None)),
                    Err(e) if e.retry => continue,
                    Err(e) => return Err(UpstreamError::Answer(e.why)),
                }
            }
            // (an idle hyper connection is a streamed upload's)
            if let Some(slot) = slot_or_wait(key, |k| take_idle(k).is_some()).await {
                break slot;
            }
        };
        let (tcp, _) = self.connect_tcp().await?;
        match h1::Conn::new(tcp)
            .send(method, target, &self.host, &headers, &body, slot)
            .await
        {
            Ok(r) => Ok((r.map(UpBody::Direct), None)),
            Err(e) => Err(UpstreamError::Answer(e.why)),
        }
    }

    /// A TCP connection to the upstream, and its host name.
    async fn connect_tcp(&self) -> Result<(tokio::net::TcpStream, String), UpstreamError> {
        let https = self.scheme == Scheme::HTTPS;
        let host = self
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = self
            .authority
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| {
            UpstreamError::Connect(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
        })?
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        Ok((tcp, host))
    }

    async fn connect(&self, h2: bool, upgrades: bool) -> Result<Fresh, UpstreamError> {
        let https = self.scheme == Scheme::HTTPS;
        let (tcp, host) = self.connect_tcp().await?;
        if !https {
            return h1(TokioIo::new(tcp), upgrades).await;
        }
        let (both, only_h1) = tls_configs(self.roots);
        let cfg = if h2 { both } else { only_h1 };
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| UpstreamError::Tls(format!("'{host}' is not a TLS server name ({e})")))?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| UpstreamError::Tls(e.to_string()))?;
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(tls))
                .await
                .map_err(UpstreamError::Http)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            return Ok(Fresh::H2(sender));
        }
        h1(TokioIo::new(tls), upgrades).await
    }
}

async fn h1<T>(io: T, upgrades: bool) -> Result<Fresh, UpstreamError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(UpstreamError::Http)?;
    if upgrades {
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
    } else {
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    Ok(Fresh::H1(sender))
}

/// An upstream's answer body: hyper's, or read off a direct connection.
pub enum UpBody {
    Hyper(Incoming),
    Direct(h1::DirectBody),
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpBody::Hyper(b) => std::pin::Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            UpBody::Direct(b) => std::pin::Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Hyper(b) => b.is_end_stream(),
            UpBody::Direct(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Hyper(b) => b.size_hint(),
            UpBody::Direct(b) => b.size_hint(),
        }
    }
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
        let roots = match roots_for(ca_file.as_deref()) {
            Ok(c) => c,
            Err(e) => return Route::Unusable(e),
        };
        let Ok(host) = hyper::header::HeaderValue::from_str(authority.as_str()) else {
            return Route::Unusable(format!("base_url '{base}' has an unusable host"));
        };
        Route::Ready(Upstream {
            origin: format!("{scheme}://{authority}"),
            pool: pool_of(roots, scheme == Scheme::HTTPS, &authority),
            host,
            scheme,
            authority,
            prefix: url.path().trim_end_matches('/').to_string(),
            roots,
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

/// The TLS configs in use, by `ca_file` (offering h2 and HTTP/1.1, and HTTP/1.1 only):
/// checked when the config is read (so a bad `ca_file` makes the route unusable with a
/// reason), kept for the life of the process.
type Tls = (Arc<rustls::ClientConfig>, Arc<rustls::ClientConfig>);
type Registry = Mutex<Vec<(Option<String>, Tls)>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The index of the TLS configs trusting the OS roots plus `ca_file`.
fn roots_for(ca_file: Option<&str>) -> Result<usize, String> {
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = reg.iter().position(|(k, _)| k.as_deref() == ca_file) {
        return Ok(i);
    }
    let mut both = tls_config(ca_file)?;
    let mut only_h1 = both.clone();
    both.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    only_h1.alpn_protocols = vec![b"http/1.1".to_vec()];
    reg.push((
        ca_file.map(str::to_string),
        (Arc::new(both), Arc::new(only_h1)),
    ));
    Ok(reg.len() - 1)
}

fn tls_configs(i: usize) -> Tls {
    registry().lock().unwrap_or_else(|e| e.into_inner())[i]
        .1
        .clone()
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

    /// An API on loopback answering every request on every connection with `ok`.
    async fn api() -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut b = [0u8; 4096];
                    while let Ok(n @ 1..) = s.read(&mut b).await {
                        seen.extend_from_slice(&b[..n]);
                        while let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..i + 4);
                            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn idle_connections_of_the_other_kind_give_up_their_slots() {
        let port = api().await;
        let Route::Ready(up) =
            Route::of(&cfg(Some(&format!("http://127.0.0.1:{port}")), false), "p")
        else {
            panic!("ready")
        };
        let get = || {
            let mut r = Request::new(Either::Right(Full::new(Bytes::new())));
            *r.uri_mut() = "/x".parse().unwrap();
            r
        };
        // Every slot of this thread taken by a hyper connection, then all of them idle.
        let mut held = Vec::new();
        for _ in 0..MAX_OPEN {
            held.push(up.send(get(), false).await.unwrap());
        }
        for (r, slot) in held {
            use http_body_util::BodyExt;
            assert_eq!(
                &r.into_body().collect().await.unwrap().to_bytes()[..],
                b"ok"
            );
            slot.unwrap().finish();
        }
        // A direct request gets a slot by closing one of them, at once.
        let uri: Uri = "/x".parse().unwrap();
        let direct = up.send_kept(&Method::GET, &uri, HeaderMap::new(), Bytes::new(), false);
        let (r, _) = tokio::time::timeout(Duration::from_secs(5), direct)
            .await
            .expect("not left waiting for a slot")
            .unwrap();
        assert!(matches!(r.body(), UpBody::Direct(_)));
        drop(r); // (its body unread: that connection closes)
                 // ... and so does a hyper request when direct ones hold every slot.
        let mut held = Vec::new();
        for _ in 0..MAX_OPEN {
            let uri = "/x".parse().unwrap();
            held.push(
                up.send_kept(&Method::GET, &uri, HeaderMap::new(), Bytes::new(), false)
                    .await
                    .unwrap(),
            );
        }
        for (r, _) in held {
            use http_body_util::BodyExt;
            assert_eq!(
                &r.into_body().collect().await.unwrap().to_bytes()[..],
                b"ok"
            );
        }
        let (r, _) = tokio::time::timeout(Duration::from_secs(5), up.send(get(), false))
            .await
            .expect("not left waiting for a slot")
            .unwrap();
        assert_eq!(r.status(), 200);
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
