//! A tool's connection to the helper: plain HTTP/1.1 requests served directly, anything
//! else handed to hyper.
//!
//! Most of what tools send is a keep-alive HTTP/1.1 request with no body or a small one
//! (curl, Python `requests`, a BI tool's GETs). Those are read here with `httparse`, their
//! body (at most [`REPLAY_MAX`]) read into memory, answered by `proxy::handle` like any
//! other, and the answer written back with the head and a body that is already complete
//! in one `write`: no connection task or dispatcher between the socket and the proxy, and
//! one head timer per connection instead of hyper's one per request (see `serve`).
//!
//! The first request that is not of that kind (h2c, HTTP/1.0, `CONNECT`, an `Upgrade`, a
//! chunked or larger body, `Expect`, a head that does not parse or is too large, more
//! than [`MAX_HEADERS`] headers) hands the connection over to hyper's server, with the
//! bytes read so far, for the rest of its life: its answers (400, 431, `100 Continue`,
//! upgrades, streamed uploads) are hyper's, as before this module.
//!
//! Left out on purpose: who may ask and where it goes (`guard.rs`, `proxy.rs`), listening
//! (`mod.rs`).

use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Body;
use hyper::header::{self, HeaderName};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::guard::Listener;
use super::h1::Span;
use super::proxy::{self, REPLAY_MAX};
use super::{Shared, HEAD_TIMEOUT, MAX_HEAD};

/// Headers a request served here may have; one with more goes to hyper (which allows 100).
pub const MAX_HEADERS: usize = 64;
/// How much is read from the socket at a time.
const READ_SIZE: usize = 8 * 1024;
/// An answer's body is gathered behind its head into one write up to this size.
const GATHER: usize = 64 * 1024;

/// Serves one client connection until it closes.
///
/// A client must send each request (head and body) within [`HEAD_TIMEOUT`] of the helper
/// starting to wait for it. That is watched by one timer per connection which is moved
/// (to the current request's deadline) only when it fires, so at most once per
/// `HEAD_TIMEOUT`: a timer set for every request, as hyper's server does for its
/// `header_read_timeout`, re-registers with tokio's timer wheel each time and wakes the
/// thread's I/O driver (an `eventfd` write, then an extra `epoll_wait` round), measured at
/// about 0.15 of each per request under load.
pub(crate) async fn serve<S>(sh: Arc<Shared>, listener: Listener, mut io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut out: Vec<u8> = Vec::with_capacity(READ_SIZE);
    // One timer for the connection, moved only when it fires early (see above).
    let timer = tokio::time::sleep(HEAD_TIMEOUT);
    tokio::pin!(timer);
    loop {
        let next = within(
            HEAD_TIMEOUT,
            timer.as_mut(),
            read_request(&mut io, &mut buf),
        )
        .await;
        let (req, close) = match next {
            Ok(Ok(Next::Direct(req, close))) => (req, close),
            Ok(Ok(Next::Hyper)) => {
                let io = Prefixed {
                    prefix: buf.freeze(),
                    io,
                };
                return super::serve_hyper(sh, listener, io).await;
            }
            // closed, failed or too slow to send its head: hyper closes those silently too
            Ok(Ok(Next::Closed)) | Ok(Err(_)) | Err(_) => return,
        };
        let head_only = req.method() == Method::HEAD;
        let Ok(resp) = proxy::handle(sh.clone(), listener, req).await;
        if write_answer(&mut io, &mut out, resp, head_only, close)
            .await
            .is_err()
            || close
        {
            let _ = io.shutdown().await;
            return;
        }
    }
}

/// `fut`, or `Err` once `limit` has passed since this call. `timer` is the connection's one
/// timer: it is moved only when it fires before this call's deadline (it was set for an
/// earlier call), never on the way in, so that arming it costs nothing per request.
async fn within<F: std::future::Future>(
    limit: std::time::Duration,
    mut timer: Pin<&mut tokio::time::Sleep>,
    fut: F,
) -> Result<F::Output, ()> {
    let started = tokio::time::Instant::now();
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            r = &mut fut => return Ok(r),
            () = timer.as_mut() => {
                if started.elapsed() >= limit {
                    return Err(());
                }
                timer.as_mut().reset(started + limit);
            }
        }
    }
}

/// What the connection offers next.
// (moved once per request: a Box would be one more allocation for each)
#[allow(clippy::large_enum_variant)]
enum Next {
    /// A request to serve here, and whether the client asked to close after it.
    Direct(Request<proxy::ReqBody>, bool),
    /// Something for hyper: everything from its first byte is still in the buffer.
    Hyper,
    /// The client closed between requests.
    Closed,
}

/// Reads the next request: its head, and its body when it is served here.
async fn read_request<S: AsyncRead + Unpin>(io: &mut S, buf: &mut BytesMut) -> io::Result<Next> {
    loop {
        if !buf.is_empty() {
            match parse(buf) {
                Parsed::Partial if buf.len() <= MAX_HEAD => {}
                Parsed::Partial | Parsed::Other => return Ok(Next::Hyper),
                Parsed::Direct {
                    method,
                    spans,
                    len,
                    body,
                    close,
                } => {
                    while buf.len() < len + body {
                        buf.reserve(len + body - buf.len());
                        if io.read_buf(buf).await? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    // The head's values and target are slices of its bytes, not copies.
                    let head = buf.split_to(len).freeze();
                    let body = buf.split_to(body).freeze();
                    if let Some(req) = spans.request(&head, method, body.clone()) {
                        return Ok(Next::Direct(req, close));
                    }
                    // httparse took it, `http` does not: hyper answers it, from its start
                    let mut again = BytesMut::with_capacity(head.len() + body.len() + buf.len());
                    again.extend_from_slice(&head);
                    again.extend_from_slice(&body);
                    again.extend_from_slice(buf);
                    *buf = again;
                    return Ok(Next::Hyper);
                }
            }
        }
        buf.reserve(READ_SIZE);
        if io.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(Next::Closed)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

#[allow(clippy::large_enum_variant)] // as `Next`
enum Parsed {
    /// Not all of the head is there yet.
    Partial,
    /// Served here: the method, where its parts are, the head's length, the body's length,
    /// whether to close after it.
    Direct {
        method: Method,
        spans: Spans,
        len: usize,
        body: usize,
        close: bool,
    },
    /// For hyper.
    Other,
}

/// Where the target and each header's name and value are in a head, as `(start, end)`.
struct Spans {
    target: Span,
    headers: [(Span, Span); MAX_HEADERS],
    n: usize,
}

impl Spans {
    /// The request, its parts sliced out of `head` (the bytes `parse` saw), with `body`;
    /// `None` if a part is not valid for `http` (httparse is a little more lenient).
    fn request(
        &self,
        head: &Bytes,
        method: Method,
        body: Bytes,
    ) -> Option<Request<proxy::ReqBody>> {
        let (a, b) = self.target;
        let uri = Uri::from_maybe_shared(head.slice(a as usize..b as usize)).ok()?;
        let headers = super::h1::header_map(head, &self.headers[..self.n]).ok()?;
        let mut req = Request::new(Either::Right(Full::new(body)));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;
        Some(req)
    }
}

/// Parses the head at the front of `buf` and decides who serves it.
fn parse(buf: &[u8]) -> Parsed {
    // (uninitialized: nothing to fill in before each parse)
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut []);
    let len = match r.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other, // hyper answers it (or it is h2c's preface)
    };
    if len > MAX_HEAD {
        return Parsed::Other; // hyper answers 431
    }
    let (Some(1), Some(method), Some(target)) = (r.version, r.method, r.path) else {
        return Parsed::Other;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Other;
    };
    if method == Method::CONNECT {
        return Parsed::Other;
    }
    let span = |part: &[u8]| super::h1::span(buf, part);
    let mut spans = Spans {
        target: span(target.as_bytes()),
        headers: [((0, 0), (0, 0)); MAX_HEADERS],
        n: r.headers.len(),
    };
    let mut body = None;
    let mut close = false;
    for (i, h) in r.headers.iter().enumerate() {
        let name = h.name.as_bytes();
        spans.headers[i] = (span(name), span(h.value));
        let is = |n: &HeaderName| name.eq_ignore_ascii_case(n.as_str().as_bytes());
        if is(&header::CONTENT_LENGTH) {
            match super::h1::digits(h.value.trim_ascii(), 10) {
                Some(n) if n <= REPLAY_MAX as u64 && body.is_none() => body = Some(n as usize),
                _ => return Parsed::Other, // larger (streamed), repeated or invalid
            }
        } else if is(&header::TRANSFER_ENCODING) || is(&header::UPGRADE) || is(&header::EXPECT) {
            return Parsed::Other;
        } else if is(&header::CONNECTION) {
            close |= h
                .value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    Parsed::Direct {
        method,
        spans,
        len,
        body: body.unwrap_or(0),
        close,
    }
}

/// Writes an answer: its head, then its body with a `Content-Length` when its size is
/// known and chunked otherwise (none after `HEAD`, 1xx, 204 and 304). A body that is
/// complete goes out with the head in one write; one still arriving (server-sent events, a
/// download) is written frame by frame as it comes.
async fn write_answer<S, B>(
    io: &mut S,
    out: &mut Vec<u8>,
    resp: Response<B>,
    head_only: bool,
    close: bool,
) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let bodiless = head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let size = body.size_hint().exact();
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (n, v) in &parts.headers {
        if !bodiless && (n == header::CONTENT_LENGTH || n == header::TRANSFER_ENCODING) {
            continue; // the framing below is this connection's
        }
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let chunked = !bodiless && size.is_none();
    // (writes to a Vec cannot fail)
    match size {
        _ if bodiless => {}
        Some(n) => _ = write!(out, "content-length: {n}\r\n"),
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    drop(parts); // (its header values may hold the upstream connection's read buffer)
    if bodiless {
        drop(body); // logs it (and puts a finished upstream connection back)
        return io.write_all(out).await;
    }
    let mut sent: u64 = 0;
    while !body.is_end_stream() {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame
            .map_err(|e| io::Error::other(e.to_string()))?
            .into_data()
        else {
            continue; // trailers: dropped
        };
        sent += data.len() as u64;
        if size.is_some_and(|n| sent > n) {
            return Err(io::Error::other("the body is longer than its length"));
        }
        if data.is_empty() {
            continue;
        }
        if chunked {
            _ = write!(out, "{:x}\r\n", data.len());
        }
        if out.len() + data.len() <= GATHER {
            out.extend_from_slice(&data);
        } else {
            io.write_all(out).await?;
            out.clear();
            io.write_all(&data).await?;
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if !body.is_end_stream() && !out.is_empty() {
            // more is coming, maybe later: what there is goes now
            io.write_all(out).await?;
            out.clear();
        }
    }
    if size.is_some_and(|n| sent != n) {
        return Err(io::Error::other("the body ended before its length"));
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    drop(body);
    io.write_all(out).await
}

/// Appends the current time as an HTTP date (formatted once a second per thread).
fn date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs || c.1.is_empty() {
            *c = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(c.1.as_bytes());
    });
}

/// A stream whose first bytes were already read: they are read again first.
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    io: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn direct(raw: &str) -> Option<(Request<proxy::ReqBody>, usize, usize, bool)> {
        match parse(raw.as_bytes()) {
            Parsed::Direct {
                method,
                spans,
                len,
                body,
                close,
            } => {
                let head = Bytes::copy_from_slice(&raw.as_bytes()[..len]);
                let req = spans.request(&head, method, Bytes::new()).expect("valid");
                Some((req, len, body, close))
            }
            _ => None,
        }
    }

    #[test]
    fn plain_requests_are_served_here_and_the_rest_goes_to_hyper() {
        let raw = "GET /p/x?q=1 HTTP/1.1\r\nHost: 127.0.0.1:7137\r\nX-Keyport-Key: k\r\n\r\nGET";
        let (req, len, body, close) = direct(raw).expect("served here");
        assert_eq!(len, raw.len() - 3, "the next request stays in the buffer");
        assert_eq!((body, close), (0, false));
        assert_eq!(req.uri(), "/p/x?q=1");
        assert_eq!(req.headers()["x-keyport-key"], "k");
        let (_, _, body, close) = direct(
            "POST /p/x HTTP/1.1\r\nContent-Length: 5\r\nConnection: Keep-Alive, Close\r\n\r\n",
        )
        .unwrap();
        assert_eq!((body, close), (5, true));
        assert!(matches!(
            parse(b"GET /p/x HTTP/1.1\r\nHost: a\r\n"),
            Parsed::Partial
        ));
        for other in [
            "GET /p/x HTTP/1.0\r\n\r\n".to_string(),
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(),
            "CONNECT example.com:443 HTTP/1.1\r\n\r\n".into(),
            "GET /p/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n".into(),
            "POST /p/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            "POST /p/x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n".into(),
            format!(
                "POST /p/x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                REPLAY_MAX + 1
            ),
            "POST /p/x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n".into(),
            "POST /p/x HTTP/1.1\r\nContent-Length: +3\r\n\r\n".into(),
            "GET /p/x HTTP/1.1\r\nBad Header: x\r\n\r\n".into(),
            format!(
                "GET /p/x HTTP/1.1\r\n{}\r\n",
                "X-A: 1\r\n".repeat(MAX_HEADERS + 1)
            ),
            format!("GET /p/x HTTP/1.1\r\nX-A: {}\r\n\r\n", "a".repeat(MAX_HEAD)),
        ] {
            assert!(
                matches!(parse(other.as_bytes()), Parsed::Other),
                "{other:?}"
            );
        }
    }

    async fn written<B>(resp: Response<B>, head_only: bool, close: bool) -> String
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let (mut out, mut wire) = (Vec::new(), Vec::new());
        write_answer(&mut wire, &mut out, resp, head_only, close)
            .await
            .unwrap();
        String::from_utf8(wire).unwrap()
    }

    #[tokio::test]
    async fn answers_are_framed_for_this_connection() {
        let mut r = proxy::refusal(404, "not_found", "no profile x");
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        let w = written(r, false, false).await;
        let (head, body) = w.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(
            !head.contains("999") && !head.contains("connection"),
            "{head}"
        );
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(body.contains("not_found"));

        let w = written(proxy::refusal(503, "login_required", "log in"), true, true).await;
        assert!(w.ends_with("\r\n\r\n"), "HEAD: no body: {w}");
        assert!(w.contains("\r\nconnection: close\r\n"));

        // a body of unknown length goes chunked, each part as it comes
        let w = written(Response::new(Parts(vec!["ab", "cde"])), false, false).await;
        assert!(w.contains("transfer-encoding: chunked\r\n"), "{w}");
        assert!(
            w.ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
            "{w:?}"
        );
    }

    /// A body of unknown length.
    struct Parts(Vec<&'static str>);

    impl Body for Parts {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(if self.0.is_empty() {
                None
            } else {
                Some(Ok(hyper::body::Frame::data(Bytes::from_static(
                    self.0.remove(0).as_bytes(),
                ))))
            })
        }
    }

    #[tokio::test]
    async fn a_head_http_does_not_take_goes_to_hyper_whole() {
        // httparse takes `<` in a target, `http`'s Uri does not
        let raw = b"POST /p/a<b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /";
        assert!(matches!(parse(raw), Parsed::Direct { .. }));
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(raw).await.unwrap();
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_request(&mut b, &mut buf).await.unwrap(),
            Next::Hyper
        ));
        assert_eq!(&buf[..], raw, "every byte, in order, for hyper to read");
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_has_its_whole_limit_on_one_timer() {
        use std::time::Duration;
        use tokio::time::{advance, sleep, Instant};
        let limit = Duration::from_secs(30);
        let t0 = Instant::now();
        let timer = sleep(limit);
        tokio::pin!(timer);
        // a request that comes in time, then one that starts at 20 s
        assert_eq!(within(limit, timer.as_mut(), async { 1 }).await, Ok(1));
        advance(Duration::from_secs(20)).await;
        assert_eq!(timer.deadline(), t0 + limit, "not moved by a request");
        let never = std::future::pending::<()>();
        assert_eq!(within(limit, timer.as_mut(), never).await, Err(()));
        assert_eq!(
            Instant::now() - t0,
            Duration::from_secs(50),
            "timed out 30 s after it started, not when the timer first fired at 30 s"
        );
        // a slow one that finishes before its limit
        let slow = sleep(Duration::from_secs(29));
        assert_eq!(within(limit, timer.as_mut(), slow).await, Ok(()));
    }

    #[tokio::test]
    async fn hyper_reads_what_was_already_read_first() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let mut p = Prefixed {
            prefix: Bytes::from_static(b"hello"),
            io: b,
        };
        let mut all = String::new();
        p.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }
}
