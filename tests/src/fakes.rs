//! Fake token APIs of the seed services, on loopback, for system tests.
//!
//! One [`Fake`] serves the token endpoints and one protected resource of each service the
//! seed docs describe, with the documented paths, bodies and status codes:
//! - Improvado (seed 000): `POST /api/v3/token` with Basic auth and `{"workspace_id": <int>}`
//!   -> `{"token"}`; tokens live `lifetime` and are renewed on each use; `GET
//!   /api/v3/datasources` needs `Bearer`; bad credentials or tokens get 401.
//! - Patchworks (seed 001): `POST /fabric/api/login` with `{"username","password"}` ->
//!   `{"message","token","expires_in"}`.
//! - Airbyte (seed 004): operator token (`POST /api/v1/account/applications/token`), scoped
//!   token (`POST /api/v1/embedded/scoped-token`, a JWT with `exp` and the
//!   `io.airbyte.auth.workspace_scope` claim), widget token (`POST
//!   /api/v1/embedded/widget-token`, base64 JSON of token + widgetUrl, `allowed_origin`
//!   validated with 422 bodies), `GET /api/v1/embedded/scoped-token/info`, and workspace
//!   isolation (`GET /api/v1/embedded/sources?workspace_id=` answers 403 for another
//!   workspace's token); 401/403/422 bodies as the seed shows them.
//!
//! Faults can be switched on for the token endpoints (500, garbage, slow, any canned
//! answer). Every request is logged for assertions.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

pub const IMPROVADO_USER: &str = "analyst@example.com";
pub const IMPROVADO_PASSWORD: &str = "imp-pw-3c9d";
pub const PATCHWORKS_USER: &str = "me@patchworks.com";
pub const PATCHWORKS_PASSWORD: &str = "a1b2c3d4e5f6";
pub const AIRBYTE_CLIENT_ID: &str = "app-client-1";
pub const AIRBYTE_CLIENT_SECRET: &str = "app-secret-7e2a";
pub const US_REGION: &str = "645a183f-b12b-4c6e-8ad3-99e165603450";

/// A fault on the token endpoints.
#[derive(Debug, Clone)]
pub enum Fault {
    None,
    /// Answer with this status and body (e.g. the seed's error bodies).
    Answer(u16, String),
    /// 200 with a body that is not JSON.
    Garbage,
    /// Wait this long before answering normally.
    Slow(Duration),
    /// Answer with this status and an error message quoting what the request sent (its
    /// Authorization header and body): an endpoint that echoes credentials.
    Echo(u16),
    /// 200 with a body that goes on and on (this many MiB, chunked), as fast as it is read.
    Flood(u64),
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

#[derive(Debug, Clone)]
enum Kind {
    Improvado,
    Patchworks,
    Operator,
    Scoped { workspace_id: String },
}

struct Issued {
    kind: Kind,
    expires: Instant,
    sliding: bool,
}

/// Lifetimes the fake gives its tokens.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub improvado: Duration,
    pub patchworks: Duration,
    pub operator: Duration,
    pub scoped: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            improvado: Duration::from_secs(1800),
            patchworks: Duration::from_secs(86400),
            operator: Duration::from_secs(900),
            scoped: Duration::from_secs(1200),
        }
    }
}

struct State {
    log: Vec<Logged>,
    fault: Fault,
    lifetimes: Lifetimes,
    tokens: HashMap<String, Issued>,
    workspaces: HashMap<String, (String, String)>, // name -> (id, region)
    next: u64,
    unauthorized_uses: u64,
    /// False between `stop_listening` and `listen_again`: requests already accepted are still
    /// answered, and must not get a token.
    listening: bool,
}

pub struct Fake {
    pub url: String,
    port: u16,
    state: Arc<Mutex<State>>,
    /// Cleared to stop the accept loop.
    open: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop_listening();
    }
}

/// A listening socket on 127.0.0.1:`port` with a long accept queue (std's 128 overflows when
/// the helper opens 128 connections at once, and overflowed connections wait for TCP
/// retransmits), blocking.
fn listen(port: u16) -> TcpListener {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let std = rt
        .block_on(async {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.set_reuseaddr(true)?;
            s.bind(([127, 0, 0, 1], port).into())?;
            s.listen(1024)?.into_std()
        })
        .expect("bind fake");
    std.set_nonblocking(false).unwrap();
    std
}

/// The accept loop: a thread per connection, one request per connection (answered with
/// `Connection: close`). A thread of its own for every connection, because a client's pool
/// may hold connections open without sending anything (hyper's connect race leaves such
/// idle connections): tiny_http, used here before, parked a pool thread on each and could
/// leave connections with a request unread behind them until the client gave up on the idle
/// ones (200 concurrent requests through the helper hung that way).
/// Stops, closing the socket, when `open` is cleared and the loop is woken by a connection.
fn serve(listener: TcpListener, open: Arc<AtomicBool>, state: Arc<Mutex<State>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if !open.load(Ordering::SeqCst) {
                return;
            }
            let Ok(conn) = conn else { continue };
            let state = state.clone();
            std::thread::spawn(move || {
                if let Some(req) = Request::read(conn) {
                    handle(&state, req);
                }
            });
        }
    })
}

/// One request as read off its connection, to be answered on it.
struct Request {
    stream: TcpStream,
    method: String,
    url: String,
    authorization: Option<String>,
    body: String,
}

impl Request {
    /// Reads a request head (up to 64 KiB) and its body (`Content-Length` or chunked, up to
    /// 16 MiB); `None` for a connection that closes, stalls for 30 s or sends no HTTP.
    fn read(mut stream: TcpStream) -> Option<Request> {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 * 1024 {
                return None;
            }
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&buf[..head_end]).ok()?.to_string();
        let mut rest = buf[head_end..].to_vec();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next()?.split(' ');
        let method = request_line.next()?.to_string();
        let url = request_line.next()?.to_string();
        let (mut length, mut chunked, mut expect, mut authorization) = (0usize, false, false, None);
        for (name, value) in lines.filter_map(|l| l.split_once(':')) {
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().ok()?,
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "expect" => expect = value.eq_ignore_ascii_case("100-continue"),
                "authorization" => authorization = Some(value.to_string()),
                _ => {}
            }
        }
        if expect {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
        }
        const MAX_BODY: usize = 16 << 20;
        let mut fill = |rest: &mut Vec<u8>, want: usize| -> Option<()> {
            while rest.len() < want {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 || rest.len() > MAX_BODY {
                    return None;
                }
                rest.extend_from_slice(&chunk[..n]);
            }
            Some(())
        };
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    let more = rest.len() + 1;
                    fill(&mut rest, more)?;
                };
                let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
                let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
                fill(&mut rest, line_end + 2 + size + 2)?;
                body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
                rest.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break body;
                }
                if body.len() > MAX_BODY {
                    return None;
                }
            }
        } else {
            if length > MAX_BODY {
                return None;
            }
            fill(&mut rest, length)?;
            rest.truncate(length);
            rest
        };
        Some(Request {
            stream,
            method,
            url,
            authorization,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    fn head(&mut self, status: u16, headers: &str) -> std::io::Result<()> {
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            422 => "Unprocessable Entity",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Status",
        };
        write!(
            self.stream,
            "HTTP/1.1 {status} {reason}\r\n{headers}Connection: close\r\n\r\n"
        )
    }
}

impl Fake {
    pub fn start(lifetimes: Lifetimes) -> Self {
        let listener = listen(0);
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            log: Vec::new(),
            fault: Fault::None,
            lifetimes,
            tokens: HashMap::new(),
            workspaces: HashMap::new(),
            next: 1,
            unauthorized_uses: 0,
            listening: true,
        }));
        let open = Arc::new(AtomicBool::new(true));
        let thread = serve(listener, open.clone(), state.clone());
        Fake {
            url: format!("http://127.0.0.1:{port}"),
            port,
            state,
            open,
            thread: Some(thread),
        }
    }

    /// Closes the listening socket: connections are refused until [`Self::listen_again`].
    pub fn stop_listening(&mut self) {
        self.state.lock().unwrap().listening = false;
        if let Some(t) = self.thread.take() {
            self.open.store(false, Ordering::SeqCst);
            let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
            let _ = t.join();
        }
    }

    /// Listens on the same port again (tokens issued before stay valid).
    pub fn listen_again(&mut self) {
        let listener = listen(self.port);
        self.state.lock().unwrap().listening = true;
        self.open = Arc::new(AtomicBool::new(true));
        self.thread = Some(serve(listener, self.open.clone(), self.state.clone()));
    }

    /// Lifetimes of the tokens issued from now on.
    pub fn set_lifetimes(&self, l: Lifetimes) {
        self.state.lock().unwrap().lifetimes = l;
    }

    pub fn set_fault(&self, f: Fault) {
        self.state.lock().unwrap().fault = f;
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Requests to paths ending in `suffix`.
    pub fn count(&self, suffix: &str) -> usize {
        self.log()
            .iter()
            .filter(|l| l.path.ends_with(suffix))
            .count()
    }

    /// How often a protected resource was called with a token it rejected.
    pub fn unauthorized_uses(&self) -> u64 {
        self.state.lock().unwrap().unauthorized_uses
    }

    /// Calls a protected resource of the fake with `header_lines` (as `keyport header`
    /// prints them); returns the status.
    pub fn call(&self, path: &str, header_lines: &str) -> u16 {
        let mut req = ureq::get(&format!("{}{path}", self.url));
        for line in header_lines.lines() {
            let (h, v) = line.split_once(": ").expect("Name: value");
            req = req.set(h, v);
        }
        match req.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("calling the fake: {e}"),
        }
    }
}

fn b64url(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn respond(mut req: Request, status: u16, body: &str) {
    let headers = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if req.head(status, &headers).is_ok() {
        let _ = req.stream.write_all(body.as_bytes());
    }
}

const UNAUTHORIZED: &str = r#"{"detail": "Invalid authentication credentials"}"#;
const FORBIDDEN: &str = r#"{"detail": "Access denied to this resource"}"#;

fn handle(state: &Mutex<State>, req: Request) {
    let body = req.body.clone();
    let method = req.method.clone();
    let url = req.url.clone();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let authorization = req.authorization.clone();
    let is_token_endpoint = method == "POST"
        && (path.ends_with("/token") || path.ends_with("/login") || path.ends_with("-token"));
    let fault = {
        let mut s = state.lock().unwrap();
        s.log.push(Logged {
            method: method.clone(),
            path: path.clone(),
            authorization: authorization.clone(),
            body: body.clone(),
        });
        if is_token_endpoint {
            s.fault.clone()
        } else {
            Fault::None
        }
    };
    match fault {
        Fault::None => {}
        Fault::Answer(code, b) => return respond(req, code, &b),
        Fault::Garbage => return respond(req, 200, "<html>Service Unavailable</html>"),
        Fault::Flood(mib) => {
            // chunks of JSON whitespace: a parser would wait for more
            let mut req = req;
            if req.head(200, "Transfer-Encoding: chunked\r\n").is_err() {
                return;
            }
            let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
            for _ in 0..(mib << 4) {
                if req.stream.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
            }
            let _ = req.stream.write_all(b"0\r\n\r\n");
            return;
        }
        Fault::Echo(code) => {
            let said = format!(
                "you sent {} with {body}",
                authorization.clone().unwrap_or_default()
            );
            return respond(req, code, &json!({ "message": said }).to_string());
        }
        Fault::Slow(d) => std::thread::sleep(d),
    }
    if !state.lock().unwrap().listening {
        // a leftover of a closed listener: no token (the caller sees a server error)
        return respond(req, 503, r#"{"message": "closed"}"#);
    }
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let bearer = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string);
    let mut s = state.lock().unwrap();
    let now = Instant::now();
    let issue = |s: &mut State, kind: Kind, life: Duration, sliding: bool, token: String| {
        s.tokens.insert(
            token.clone(),
            Issued {
                kind,
                expires: now + life,
                sliding,
            },
        );
        token
    };
    // A valid token of the wanted kind (renewing a sliding one), or None.
    let check = |s: &mut State, want: &dyn Fn(&Kind) -> bool| -> Option<Kind> {
        let t = bearer.as_ref()?;
        let life = s.lifetimes.improvado;
        let issued = s.tokens.get_mut(t)?;
        if issued.expires <= now || !want(&issued.kind) {
            return None;
        }
        if issued.sliding {
            issued.expires = now + life;
        }
        Some(issued.kind.clone())
    };
    let n = s.next;
    s.next += 1;
    match (method.as_str(), path.as_str()) {
        // --- Improvado (seed 000)
        ("POST", "/api/v3/token") => {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{IMPROVADO_USER}:{IMPROVADO_PASSWORD}"))
            );
            if authorization.as_deref() != Some(&expected) {
                return respond(req, 401, r#"{"detail": "Unauthorized"}"#);
            }
            if !json["workspace_id"].is_i64() {
                return respond(req, 422, r#"{"detail": "workspace_id must be an integer"}"#);
            }
            let life = s.lifetimes.improvado;
            let t = issue(&mut s, Kind::Improvado, life, true, format!("imp-token-{n}"));
            respond(req, 200, &json!({ "token": t }).to_string())
        }
        ("GET", "/api/v3/datasources") => match check(&mut s, &|k| matches!(k, Kind::Improvado)) {
            Some(_) => respond(req, 200, r#"{"datasources": []}"#),
            None => {
                s.unauthorized_uses += 1;
                respond(req, 401, r#"{"detail": "Unauthorized"}"#)
            }
        },
        // --- Patchworks (seed 001)
        ("POST", "/fabric/api/login") => {
            if json["username"] != PATCHWORKS_USER || json["password"] != PATCHWORKS_PASSWORD {
                return respond(req, 401, r#"{"message": "These credentials do not match our records."}"#);
            }
            let life = s.lifetimes.patchworks;
            let t = issue(&mut s, Kind::Patchworks, life, false, format!("eyJ0eXAiOiJKV-pw-{n}"));
            respond(
                req,
                200,
                &json!({"message": "You have successfully logged in.", "token": t, "expires_in": life.as_secs()}).to_string(),
            )
        }
        ("GET", "/api/v1/flows") => match check(&mut s, &|k| matches!(k, Kind::Patchworks)) {
            Some(_) => respond(req, 200, r#"{"data": []}"#),
            None => {
                s.unauthorized_uses += 1;
                respond(req, 401, r#"{"message": "Unauthenticated."}"#)
            }
        },
        // --- Airbyte (seed 004)
        ("POST", "/api/v1/account/applications/token") => {
            if json["client_id"] != AIRBYTE_CLIENT_ID || json["client_secret"] != AIRBYTE_CLIENT_SECRET {
                return respond(req, 401, UNAUTHORIZED);
            }
            let life = s.lifetimes.operator;
            let t = issue(&mut s, Kind::Operator, life, false, format!("op-token-{n}"));
            respond(
                req,
                200,
                &json!({"access_token": t, "token_type": "Bearer", "expires_in": life.as_secs()}).to_string(),
            )
        }
        ("POST", p @ ("/api/v1/embedded/scoped-token" | "/api/v1/embedded/widget-token")) => {
            if check(&mut s, &|k| matches!(k, Kind::Operator)).is_none() {
                return respond(req, 401, UNAUTHORIZED);
            }
            let widget = p.ends_with("widget-token");
            let mut missing = Vec::new();
            if !json["workspace_name"].is_string() {
                missing.push("workspace_name");
            }
            if widget && !json["allowed_origin"].is_string() {
                missing.push("allowed_origin");
            }
            if !missing.is_empty() {
                let detail: Vec<Value> = missing
                    .iter()
                    .map(|f| json!({"loc": ["body", f], "msg": "field required", "type": "value_error.missing"}))
                    .collect();
                return respond(req, 422, &json!({ "detail": detail }).to_string());
            }
            let origin = json["allowed_origin"].as_str().unwrap_or_default().to_string();
            if widget && (origin.ends_with('/') || !origin.contains("://") || origin.contains('*')) {
                let d = json!({"detail": [{"loc": ["body", "allowed_origin"], "msg": "invalid origin", "type": "value_error"}]});
                return respond(req, 422, &d.to_string());
            }
            let name = json["workspace_name"].as_str().unwrap().to_string();
            let region = json["region_id"].as_str().unwrap_or(US_REGION).to_string();
            let count = s.workspaces.len();
            // "The region_id is only used when creating a new workspace"
            let (ws, _) = s
                .workspaces
                .entry(name)
                .or_insert_with(|| (format!("a1b2c3d4-e5f6-7890-ab12-{count:012}"), region))
                .clone();
            let life = s.lifetimes.scoped;
            let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() + life;
            let jwt = format!(
                "{}.{}.{}",
                b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
                b64url(
                    json!({"exp": exp.as_secs(), "n": n, "io.airbyte.auth.workspace_scope": {"workspaceId": ws}})
                        .to_string()
                        .as_bytes()
                ),
                b64url(format!("sig-{n}").as_bytes())
            );
            issue(&mut s, Kind::Scoped { workspace_id: ws.clone() }, life, false, jwt.clone());
            let token = if widget {
                let widget_url = format!("https://app.airbyte.ai/quick-start/widget?workspaceId={ws}&allowedOrigin={origin}");
                base64::engine::general_purpose::STANDARD
                    .encode(json!({"token": jwt, "widgetUrl": widget_url}).to_string())
            } else {
                jwt
            };
            respond(req, 200, &json!({ "token": token }).to_string())
        }
        ("GET", "/api/v1/embedded/scoped-token/info") => match check(&mut s, &|k| matches!(k, Kind::Scoped { .. })) {
            Some(Kind::Scoped { workspace_id }) => respond(
                req,
                200,
                &json!({"organization_id": "12345678-1234-1234-1234-123456789012", "workspace ID": workspace_id}).to_string(),
            ),
            _ => {
                s.unauthorized_uses += 1;
                respond(req, 401, UNAUTHORIZED)
            }
        },
        ("GET", "/api/v1/embedded/sources") => match check(&mut s, &|k| matches!(k, Kind::Scoped { .. })) {
            Some(Kind::Scoped { workspace_id }) => {
                let asked = query.split('&').find_map(|kv| kv.strip_prefix("workspace_id="));
                if asked.is_some_and(|a| a != workspace_id) {
                    respond(req, 403, FORBIDDEN)
                } else {
                    respond(req, 200, r#"{"sources": []}"#)
                }
            }
            _ => {
                s.unauthorized_uses += 1;
                respond(req, 401, UNAUTHORIZED)
            }
        },
        _ => respond(req, 404, r#"{"detail": "Not Found"}"#),
    }
}

/// The workspace id the fake gave a workspace name (after a token was issued for it).
pub fn workspace_claim(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let v: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?,
    )
    .ok()?;
    v["io.airbyte.auth.workspace_scope"]["workspaceId"]
        .as_str()
        .map(str::to_string)
}

/// Profiles of the seed services pointed at a fake, with the fake's credentials.
impl Fake {
    /// An `improvado` profile (workspace 42); Keyport assumes tokens live `token_lifetime` s.
    pub fn add_improvado(&self, kp: &crate::Keyport, name: &str, token_lifetime: u64) {
        let (url, lifetime) = (
            format!("base_url={}/api/v3", self.url),
            format!("token_lifetime={token_lifetime}"),
        );
        let user = format!("username={IMPROVADO_USER}");
        let args = [
            "--set",
            &url,
            "--set",
            &user,
            "--set",
            "workspace_id=42",
            "--set",
            &lifetime,
        ];
        kp.add(
            name,
            "improvado",
            &args,
            &[("password", IMPROVADO_PASSWORD)],
        );
    }

    pub fn add_patchworks(&self, kp: &crate::Keyport, name: &str) {
        let (url, user) = (
            format!("base_url={}", self.url),
            format!("username={PATCHWORKS_USER}"),
        );
        kp.add(
            name,
            "patchworks-login",
            &["--set", &url, "--set", &user],
            &[("password", PATCHWORKS_PASSWORD)],
        );
    }

    pub fn add_airbyte_operator(&self, kp: &crate::Keyport, name: &str) {
        let (url, id) = (
            format!("base_url={}/api/v1", self.url),
            format!("client_id={AIRBYTE_CLIENT_ID}"),
        );
        kp.add(
            name,
            "airbyte-operator",
            &["--set", &url, "--set", &id],
            &[("client_secret", AIRBYTE_CLIENT_SECRET)],
        );
    }
}

/// An `airbyte-scoped` profile for `workspace`, issued by the operator profile `parent`.
pub fn add_airbyte_scoped(kp: &crate::Keyport, name: &str, parent: &str, workspace: &str) {
    let (p, w) = (
        format!("parent={parent}"),
        format!("workspace_name={workspace}"),
    );
    kp.add(name, "airbyte-scoped", &["--set", &p, "--set", &w], &[]);
}
