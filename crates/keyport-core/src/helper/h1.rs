//! A direct HTTP/1.1 client connection for the helper's common case: a request whose body
//! is already in memory (empty, or kept for a replay) to a plain-`http` upstream.
//!
//! The request is written in one `write`, the answer's head parsed with `httparse`, and the
//! answer's body read straight off the socket by the client connection's own task as the
//! client takes it ([`DirectBody`]): no connection task, no channels, no wake-ups between
//! tasks, which is most of what a proxied request costs in user space beside hyper's server.
//! Framing follows RFC 9112 6.3 (no body for `HEAD`, 1xx, 204 and 304; chunked; a length;
//! else to the end of the connection). A connection goes back to its pool (through the
//! [`Slot`] the body holds) only once its answer was read to the end
//! and both sides want to keep it alive.
//!
//! Left out on purpose: TLS, HTTP/2, upgrades and streamed request bodies, which go over
//! hyper (`upstream.rs`); trailers are read and dropped.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::upstream::Slot;

/// The largest answer head read (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Headers an answer may have.
const MAX_HEADERS: usize = 128;
/// How much is read from the socket at a time.
const READ_SIZE: usize = 16 * 1024;
/// A request buffer up to this capacity is kept for the connection's next request.
const WIRE_KEEP: usize = 16 * 1024;

/// Why a request on a direct connection failed.
#[derive(Debug)]
pub struct SendError {
    pub why: String,
    /// Nothing of an answer arrived and the request may be sent again on another
    /// connection (it was not written, or it is idempotent): a kept-alive connection the
    /// server had closed meanwhile.
    pub retry: bool,
}

/// An open HTTP/1.1 connection to an upstream.
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
    /// The last request's bytes, its capacity kept for the next one.
    wire: Vec<u8>,
    /// When it was last put back idle.
    pub(crate) since: Instant,
}

/// How an answer's body is delimited, and how much of it is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes left (0: done).
    Length(u64),
    Chunked(Chunk),
    /// Until the server closes the connection.
    Close,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of chunk data left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

impl Conn {
    pub fn new(io: TcpStream) -> Conn {
        Conn {
            io,
            buf: BytesMut::with_capacity(READ_SIZE),
            wire: Vec::new(),
            since: Instant::now(),
        }
    }

    /// Still open and quiet, as an idle connection must be: a server that closed it (or sent
    /// something unasked) makes it unusable.
    pub fn is_usable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Sends a request (`target` in origin form, `headers` without framing headers) with
    /// `body` and reads the answer's head. The body of the answer comes with the returned
    /// [`DirectBody`], which owns the connection (and `slot`) from then on.
    pub async fn send(
        mut self,
        method: &Method,
        target: &str,
        host: &HeaderValue,
        headers: &HeaderMap,
        body: &Bytes,
        slot: Slot,
    ) -> Result<Response<DirectBody>, SendError> {
        let mut wire = std::mem::take(&mut self.wire);
        wire.clear();
        request_head(&mut wire, method, target, host, headers, body.len());
        wire.extend_from_slice(body);
        let sent = self.io.write_all(&wire).await;
        if wire.capacity() <= WIRE_KEEP {
            self.wire = wire; // reused by the next request on this connection
        }
        if let Err(e) = sent {
            return Err(SendError {
                why: format!("cannot send the request ({e})"),
                retry: true,
            });
        }
        let idempotent = matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        // The head, skipping informational answers (100 Continue, 103 Early Hints).
        let (status, mut headers, keep_alive) = loop {
            match parse_head(&mut self.buf)? {
                Some(h) if h.0.is_informational() => continue,
                Some(h) => break h,
                None => {}
            }
            if self.buf.len() > MAX_HEAD {
                return Err(SendError {
                    why: format!("its answer's head is larger than {} KiB", MAX_HEAD / 1024),
                    retry: false,
                });
            }
            self.buf.reserve(READ_SIZE);
            match tokio::io::AsyncReadExt::read_buf(&mut self.io, &mut self.buf).await {
                Ok(0) => {
                    return Err(SendError {
                        why: "the connection closed before an answer".into(),
                        retry: idempotent && self.buf.is_empty(),
                    })
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(SendError {
                        why: format!("cannot read the answer ({e})"),
                        retry: idempotent && self.buf.is_empty(),
                    })
                }
            }
        };
        let framing = framing(method, status, &headers).map_err(|why| SendError {
            why: why.into(),
            retry: false,
        })?;
        let keep_alive = keep_alive && framing != Framing::Close;
        if headers.contains_key(hyper::header::TRANSFER_ENCODING) {
            // The coding decides where the body ends; a Content-Length beside it would tell
            // the client something else (RFC 9112 6.3: a proxy removes it).
            headers.remove(hyper::header::CONTENT_LENGTH);
        }
        let mut r = Response::new(DirectBody {
            conn: Some(self),
            framing,
            keep_alive,
            slot: Some(slot),
        });
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        r.body_mut().settle();
        Ok(r)
    }
}

/// Appends a request's head to `w`.
fn request_head(
    w: &mut Vec<u8>,
    method: &Method,
    target: &str,
    host: &HeaderValue,
    headers: &HeaderMap,
    len: usize,
) {
    w.extend_from_slice(method.as_str().as_bytes());
    w.push(b' ');
    w.extend_from_slice(target.as_bytes());
    w.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    w.extend_from_slice(host.as_bytes());
    w.extend_from_slice(b"\r\n");
    for (n, v) in headers {
        if n == hyper::header::HOST
            || n == hyper::header::CONTENT_LENGTH
            || n == hyper::header::TRANSFER_ENCODING
            || n == hyper::header::EXPECT
        {
            continue; // ours below (and the whole body is here: nothing to wait for)
        }
        w.extend_from_slice(n.as_str().as_bytes());
        w.extend_from_slice(b": ");
        w.extend_from_slice(v.as_bytes());
        w.extend_from_slice(b"\r\n");
    }
    let bodiless = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::TRACE
    );
    if len > 0 || !bodiless {
        use std::io::Write;
        let _ = write!(w, "content-length: {len}\r\n"); // (a Vec takes every write)
    }
    w.extend_from_slice(b"\r\n");
}

/// An answer's head from the front of `buf` (consumed), or `None` if it is not all there.
/// Header values are slices of the read bytes, not copies.
fn parse_head(buf: &mut BytesMut) -> Result<Option<(StatusCode, HeaderMap, bool)>, SendError> {
    let bad = |why: String| SendError { why, retry: false };
    // (uninitialized: nothing to fill in before each parse)
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut r, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(format!("its answer is not HTTP ({e})"))),
    };
    let status = r
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| bad("its answer has no valid status".into()))?;
    let mut keep_alive = r.version == Some(1);
    let mut spans = [((0, 0), (0, 0)); MAX_HEADERS];
    for (i, h) in r.headers.iter().enumerate() {
        spans[i] = (span(buf, h.name.as_bytes()), span(buf, h.value));
        if h.name.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|b| *b == b',') {
                let t = t.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && r.version == Some(0) {
                    keep_alive = true;
                }
            }
        }
    }
    let count = r.headers.len();
    let head = buf.split_to(n).freeze();
    let headers = header_map(&head, &spans[..count]).map_err(|e| match e {
        BadHeader::Name(n) => bad(format!("its answer has an invalid header name {n:?}")),
        BadHeader::Value(n) => bad(format!("its answer's header {n} has an invalid value")),
    })?;
    Ok(Some((status, headers, keep_alive)))
}

/// A header httparse took and `http` does not (httparse is a little more lenient).
pub(crate) enum BadHeader {
    Name(String),
    Value(HeaderName),
}

/// The headers at `spans` in `head`, their values slices of it (not copies).
pub(crate) fn header_map(head: &Bytes, spans: &[(Span, Span)]) -> Result<HeaderMap, BadHeader> {
    let mut headers = HeaderMap::with_capacity(spans.len());
    for &((n0, n1), (v0, v1)) in spans {
        let name = &head[n0 as usize..n1 as usize];
        let name = HeaderName::from_bytes(name)
            .map_err(|_| BadHeader::Name(String::from_utf8_lossy(name).into_owned()))?;
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize)) else {
            return Err(BadHeader::Value(name));
        };
        headers.append(name, value);
    }
    Ok(headers)
}

/// Where a part of a head is in it: `(start, end)` (heads are far smaller than 4 GiB).
pub(crate) type Span = (u32, u32);

/// Where `part`, a slice of `base` (as httparse hands them out), is in it.
pub(crate) fn span(base: &[u8], part: &[u8]) -> Span {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    (start as u32, (start + part.len()) as u32)
}

/// RFC 9112 6.3.
fn framing(method: &Method, status: StatusCode, h: &HeaderMap) -> Result<Framing, &'static str> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Done);
    }
    if let Some(te) = h
        .get_all(hyper::header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let last = te.as_bytes().rsplit(|b| *b == b',').next().unwrap_or(b"");
        return Ok(if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        });
    }
    let mut length = None;
    for v in h.get_all(hyper::header::CONTENT_LENGTH) {
        let n = digits(v.as_bytes().trim_ascii(), 10)
            .ok_or("its answer has an invalid Content-Length")?;
        if length.is_some_and(|l| l != n) {
            return Err("its answer has two different Content-Lengths");
        }
        length = Some(n);
    }
    Ok(match length {
        Some(0) => Framing::Done,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// A number of only digits in `radix` (no sign, no space: `+5` is not a length, as a
/// server and a client that disagree on a length disagree on where an answer ends).
pub(crate) fn digits(s: &[u8], radix: u32) -> Option<u64> {
    if s.is_empty() || !s.iter().all(|b| (*b as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(s).ok()?, radix).ok()
}

/// An answer's body, read off the connection as the client takes it. Once read to its end
/// the connection goes back to the pool; dropped earlier, the connection is closed.
pub struct DirectBody {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    slot: Option<Slot>,
}

/// What the buffered bytes give.
enum Step {
    Data(Bytes),
    More,
    Done,
}

impl DirectBody {
    /// Once the body is complete: the connection back to the pool (if it may be reused).
    fn settle(&mut self) {
        if self.framing != Framing::Done {
            return;
        }
        let conn = self.conn.take();
        if let (Some(mut conn), Some(slot)) = (conn, self.slot.take()) {
            if self.keep_alive && conn.buf.is_empty() {
                conn.since = Instant::now();
                slot.put_back(conn);
            } // else: both dropped, the connection closes and the slot is freed
        }
    }

    /// Decodes what is buffered.
    fn step(&mut self) -> Result<Step, std::io::Error> {
        let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Step::Done);
        };
        let buf = &mut conn.buf;
        loop {
            match self.framing {
                Framing::Done => return Ok(Step::Done),
                Framing::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = (left.min(buf.len() as u64)) as usize;
                    self.framing = if left == n as u64 {
                        Framing::Done
                    } else {
                        Framing::Length(left - n as u64)
                    };
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                Framing::Close => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = (left.min(buf.len() as u64)) as usize;
                    self.framing = Framing::Chunked(if left == n as u64 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n as u64)
                    });
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                Framing::Chunked(state) => {
                    let Some(i) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() > 4096 {
                            return Err(bad("a chunk line of the answer is too long"));
                        }
                        return Ok(Step::More);
                    };
                    let line = buf.split_to(i + 2);
                    let line = &line[..i];
                    self.framing = match state {
                        Chunk::Size => {
                            let hex = line.split(|b| *b == b';').next().unwrap_or(b"");
                            let size = digits(hex.trim_ascii(), 16)
                                .ok_or_else(|| bad("the answer's chunked body is malformed"))?;
                            Framing::Chunked(if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            })
                        }
                        Chunk::DataEnd if line.is_empty() => Framing::Chunked(Chunk::Size),
                        Chunk::DataEnd => {
                            return Err(bad("the answer's chunked body is malformed"));
                        }
                        Chunk::Trailers if line.is_empty() => Framing::Done,
                        Chunk::Trailers => Framing::Chunked(Chunk::Trailers),
                        Chunk::Data(_) => unreachable!("handled above"),
                    };
                }
            }
        }
    }
}

impl Body for DirectBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        loop {
            match self.step() {
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(Step::Data(d)) => {
                    self.settle();
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Ok(Step::Done) => {
                    self.settle();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
            }
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            conn.buf.reserve(READ_SIZE);
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut conn.io),
                cx,
                &mut conn.buf
            ));
            match read {
                Ok(0) if self.framing == Framing::Close => {
                    self.framing = Framing::Done;
                    self.keep_alive = false;
                    self.settle();
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the API closed the connection before the end of its answer",
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;

    fn head(status: u16, headers: &[(&str, &str)]) -> (Method, StatusCode, HeaderMap) {
        let mut h = HeaderMap::new();
        for (n, v) in headers {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        (Method::GET, StatusCode::from_u16(status).unwrap(), h)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |m: Method, (_, s, h): (Method, StatusCode, HeaderMap)| framing(&m, s, &h);
        assert_eq!(
            f(Method::HEAD, head(200, &[("content-length", "5")])),
            Ok(Framing::Done)
        );
        assert_eq!(f(Method::GET, head(204, &[])), Ok(Framing::Done));
        assert_eq!(
            f(Method::GET, head(304, &[("content-length", "5")])),
            Ok(Framing::Done)
        );
        assert_eq!(
            f(
                Method::GET,
                head(
                    200,
                    &[
                        ("transfer-encoding", "gzip, chunked"),
                        ("content-length", "5")
                    ]
                )
            ),
            Ok(Framing::Chunked(Chunk::Size))
        );
        assert_eq!(
            f(Method::GET, head(200, &[("transfer-encoding", "gzip")])),
            Ok(Framing::Close)
        );
        assert_eq!(
            f(Method::GET, head(200, &[("content-length", "7")])),
            Ok(Framing::Length(7))
        );
        assert_eq!(
            f(Method::GET, head(200, &[("content-length", "0")])),
            Ok(Framing::Done)
        );
        assert_eq!(f(Method::GET, head(200, &[])), Ok(Framing::Close));
        assert!(f(
            Method::GET,
            head(200, &[("content-length", "5"), ("content-length", "6")])
        )
        .is_err());
        assert!(f(Method::GET, head(200, &[("content-length", "-1")])).is_err());
        assert!(f(Method::GET, head(200, &[("content-length", "+5")])).is_err());
        assert!(f(
            Method::GET,
            head(200, &[("content-length", "99999999999999999999")])
        )
        .is_err());
        assert_eq!(digits(b"1f", 16), Some(31));
        assert_eq!(digits(b"+1f", 16), None);
        assert_eq!(digits(b"", 16), None);
    }

    #[test]
    fn the_request_head_has_host_and_a_length_where_one_is_due() {
        let host = HeaderValue::from_static("api.example.com:8080");
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("token k:s"));
        h.insert("content-length", HeaderValue::from_static("999"));
        h.insert("expect", HeaderValue::from_static("100-continue"));
        let req_head = |m: &Method, t: &str, host: &HeaderValue, h: &HeaderMap, len: usize| {
            let mut w = b"(kept)".to_vec();
            request_head(&mut w, m, t, host, h, len);
            let s = String::from_utf8(w).unwrap();
            s.strip_prefix("(kept)").expect("appended").to_string()
        };
        let get = req_head(&Method::GET, "/a?b=1", &host, &h, 0);
        assert_eq!(
            get,
            "GET /a?b=1 HTTP/1.1\r\nhost: api.example.com:8080\r\nauthorization: token k:s\r\n\r\n"
        );
        let post = req_head(&Method::POST, "/p", &host, &h, 0);
        assert!(post.ends_with("content-length: 0\r\n\r\n"), "{post}");
        let put = req_head(&Method::PUT, "/p", &host, &h, 12);
        assert!(
            put.ends_with("content-length: 12\r\n\r\n") && !put.contains("999"),
            "{put}"
        );
    }

    #[test]
    fn answer_heads_are_parsed_and_garbage_refused() {
        let mut b =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nhi"[..]);
        let (s, h, ka) = parse_head(&mut b).unwrap().unwrap();
        assert_eq!(
            (s.as_u16(), ka, h["x-a"].as_bytes()),
            (200, true, &b"1"[..])
        );
        assert_eq!(&b[..], b"hi", "the body is left");
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"[..]);
        assert!(!parse_head(&mut b).unwrap().unwrap().2);
        let mut b = BytesMut::from(&b"HTTP/1.0 200 OK\r\n\r\n"[..]);
        assert!(
            !parse_head(&mut b).unwrap().unwrap().2,
            "1.0 closes by default"
        );
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-"[..]);
        assert!(parse_head(&mut b).unwrap().is_none(), "partial");
        let mut b = BytesMut::from(&b"<html>Service Unavailable</html>\r\n\r\n"[..]);
        let e = parse_head(&mut b).unwrap_err();
        assert!(e.why.contains("not HTTP") && !e.retry, "{}", e.why);
    }

    /// A server on loopback that answers each request with the next of `answers` (raw
    /// bytes), and records what it was sent.
    async fn server(answers: Vec<&'static [u8]>) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let t = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut seen = Vec::new();
            for a in answers {
                let mut b = [0u8; 4096];
                let n = s.read(&mut b).await.unwrap();
                seen.extend_from_slice(&b[..n]);
                s.write_all(a).await.unwrap();
            }
            seen
        });
        (port, t)
    }

    /// `GET /` on `conn`, with a slot of `key`.
    async fn get(conn: Conn, key: u32) -> Result<Response<DirectBody>, SendError> {
        get_at(conn, key, "h", "/").await
    }

    /// `GET target` with `Host: host` on `conn`, with a slot of `key`.
    async fn get_at(
        conn: Conn,
        key: u32,
        host: &'static str,
        target: &str,
    ) -> Result<Response<DirectBody>, SendError> {
        let host = HeaderValue::from_static(host);
        let slot = Slot::test_new(key);
        conn.send(
            &Method::GET,
            target,
            &host,
            &HeaderMap::new(),
            &Bytes::new(),
            slot,
        )
        .await
    }

    #[tokio::test]
    async fn bodies_of_every_framing_are_read_and_the_connection_reused() {
        let answers: Vec<&'static [u8]> = vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\nto the end",
        ];
        let (port, t) = server(answers).await;
        let key = super::super::upstream::test_pool_key();
        let mut conn = Some(Conn::new(
            TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
        ));
        let mut got = Vec::new();
        for i in 0..4 {
            let r = get_at(conn.take().unwrap(), key, "example", "/x")
                .await
                .unwrap();
            if i == 1 {
                assert!(
                    !r.headers().contains_key("content-length"),
                    "chunked wins, and the length beside it is not passed on"
                );
            }
            let body = r.into_body().collect().await.unwrap().to_bytes();
            got.push(String::from_utf8(body.to_vec()).unwrap());
            if i < 3 {
                conn = super::super::upstream::test_take_back(key);
                assert!(
                    conn.as_ref().is_some_and(Conn::is_usable),
                    "back in the pool"
                );
            } else {
                assert!(
                    super::super::upstream::test_take_back(key).is_none(),
                    "read to its end: closed"
                );
            }
        }
        assert_eq!(got, ["hello", "abcde", "", "to the end"]);
        let seen = String::from_utf8(t.await.unwrap()).unwrap();
        assert_eq!(
            seen.matches("GET /x HTTP/1.1\r\nhost: example\r\n\r\n")
                .count(),
            4
        );
    }

    #[tokio::test]
    async fn a_malformed_chunked_body_is_an_error_and_the_connection_not_reused() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n"[..],
        ] {
            let (port, _t) = server(vec![answer]).await;
            let key = super::super::upstream::test_pool_key();
            let conn = Conn::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
            let r = get(conn, key).await.unwrap();
            let e = r.into_body().collect().await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
            assert!(super::super::upstream::test_take_back(key).is_none());
        }
    }

    #[tokio::test]
    async fn a_closed_idle_connection_is_unusable_and_a_short_body_an_error() {
        let (port, t) = server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]).await;
        let key = super::super::upstream::test_pool_key();
        let conn = Conn::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        let r = get(conn, key).await.unwrap();
        t.await.unwrap(); // the server has closed its end
        let e = r.into_body().collect().await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        assert!(super::super::upstream::test_take_back(key).is_none());
        // an idle connection the server closed
        let (port, t) = server(vec![]).await;
        let conn = Conn::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        t.await.unwrap();
        let mut closed = false;
        for _ in 0..100 {
            if !conn.is_usable() {
                closed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(closed, "the server's close is seen");
        let e = get(conn, key).await.err().expect("no answer");
        assert!(
            e.retry,
            "a GET nothing came back for may go on another connection"
        );
    }
}
