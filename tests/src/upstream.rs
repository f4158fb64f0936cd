//! A test API behind the loopback helper: what the helper must forward, stream, upgrade and
//! rewrite, on loopback (plain HTTP/1.1, or TLS with HTTP/2 offered by ALPN).
//!
//! Routes (under any prefix, so a profile's base URL path can be checked):
//! - `.../echo...`: JSON `{method, path, version, headers: [[name, value]...], body_bytes}`;
//! - `.../download/N`: N bytes, streamed in 64 KiB chunks;
//! - `.../upload`: reads the body, answers `{"bytes": N}`;
//! - `.../sse`: server-sent events, one per [`Upstream::send_event`] call;
//! - `.../unauthorized-once`: 401 the first time, then the echo;
//! - `.../redirect`: 302 to `<origin><prefix>/echo/after-redirect`;
//! - `.../ws`: answers an `Upgrade` with 101 and echoes every byte after it.
//!
//! Every request is logged (method, path, headers) for "nothing reached the upstream".

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

struct State {
    log: Mutex<Vec<Seen>>,
    unauthorized_once: Mutex<bool>,
    events: Mutex<Vec<tokio::sync::mpsc::UnboundedSender<String>>>,
    origin: Mutex<String>,
}

pub struct Upstream {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<State>,
    _rt: tokio::runtime::Runtime,
}

fn full(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

async fn handle(
    state: Arc<State>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let version = format!("{:?}", req.version());
    let method = req.method().to_string();
    state.log.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path: path.clone(),
        version: version.clone(),
        headers: headers.clone(),
    });
    let p = path.split('?').next().unwrap_or_default().to_string();
    if p.ends_with("/ws") && req.headers().contains_key("upgrade") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let (mut r, mut w) = tokio::io::split(hyper_util::rt::TokioIo::new(up));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()).boxed());
        *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", "echo".parse().unwrap());
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return Ok(r);
    }
    if let Some(n) = p
        .rsplit_once("/download/")
        .map(|(_, n)| n.parse::<u64>().unwrap_or(0))
    {
        let stream = futures_stream(n);
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut()
            .insert("content-length", n.to_string().parse().unwrap());
        return Ok(r);
    }
    if p.ends_with("/upload") {
        let mut body = req.into_body();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => return Ok(full(400, "{}")),
            }
        }
        return Ok(full(200, json!({ "bytes": n }).to_string()));
    }
    if p.ends_with("/sse") {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        state.events.lock().unwrap().push(tx);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            let e = rx.recv().await?;
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(e))), rx))
        });
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return Ok(r);
    }
    if p.ends_with("/unauthorized-once") {
        let mut first = state.unauthorized_once.lock().unwrap();
        if !*first {
            *first = true;
            return Ok(full(401, r#"{"detail": "token expired"}"#));
        }
    }
    if p.ends_with("/redirect") {
        let prefix = p.trim_end_matches("/redirect");
        let loc = format!(
            "{}{prefix}/echo/after-redirect",
            state.origin.lock().unwrap()
        );
        let mut r = full(302, "{}");
        r.headers_mut().insert("location", loc.parse().unwrap());
        return Ok(r);
    }
    let mut body = req.into_body();
    let mut n = 0u64;
    while let Some(Ok(f)) = body.frame().await {
        n += f.data_ref().map_or(0, |d| d.len() as u64);
    }
    let v = json!({"method": method, "path": path, "version": version, "headers": headers, "body_bytes": n});
    Ok(full(200, v.to_string()))
}

fn futures_stream(
    n: u64,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    futures_util::stream::unfold(n, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let take = left.min(chunk.len() as u64) as usize;
            Some((Ok(Frame::data(chunk.slice(..take))), left - take as u64))
        }
    })
}

impl Upstream {
    /// Plain HTTP/1.1 on 127.0.0.1.
    pub fn start() -> Upstream {
        Self::serve(None)
    }

    /// TLS on 127.0.0.1 with `cert`/`key` (PEM files), offering HTTP/2 and HTTP/1.1 (ALPN).
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Upstream {
        use rustls_pki_types::pem::PemObject as _;
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))))
    }

    fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let state = Arc::new(State {
            log: Mutex::new(Vec::new()),
            unauthorized_once: Mutex::new(false),
            events: Mutex::new(Vec::new()),
            origin: Mutex::new(url.clone()),
        });
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, tls) = (st.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let b = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    match tls {
                        Some(acceptor) => {
                            let Ok(s) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = b
                                .serve_connection_with_upgrades(
                                    hyper_util::rt::TokioIo::new(s),
                                    service,
                                )
                                .await;
                        }
                        None => {
                            let _ = b
                                .serve_connection_with_upgrades(
                                    hyper_util::rt::TokioIo::new(stream),
                                    service,
                                )
                                .await;
                        }
                    }
                });
            }
        });
        Upstream {
            url,
            state,
            _rt: rt,
        }
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Seen> {
        self.state.log.lock().unwrap().clone()
    }

    /// Sends one server-sent event to every open `/sse` stream; returns how many got it.
    pub fn send_event(&self, data: &str) -> usize {
        let mut subs = self.state.events.lock().unwrap();
        subs.retain(|tx| tx.send(format!("data: {data}\n\n")).is_ok());
        subs.len()
    }
}

/// A private CA and a leaf certificate for 127.0.0.1 in `dir`: (ca.pem, leaf.pem, leaf.key).
pub fn make_ca(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |f: &str| dir.join(f).display().to_string();
    let openssl = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Keyport Test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("leaf.key"),
        "-out",
        &p("leaf.csr"),
    ]);
    std::fs::write(
        p("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext"),
        "-out",
        &p("leaf.pem"),
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}
