//! The agent's control channel: the wire protocol, and its transport.
//!
//! One JSON object per line each way. A request is answered with one response, except
//! `watch` (a snapshot, then every change, until the client goes) and `login` (the login's
//! steps, then its result; the client may send `cancel_login`, and a client that goes
//! away cancels the login). The CLI asks for tokens, status, renewals and logins, and says
//! when a profile changed. Whoever can open the channel is the user.
//!
//! The transport is platform-specific and only that: on unix a socket in the 0700 runtime
//! dir, mode 0600, that also checks the peer's uid (SO_PEERCRED / getpeereid) and reads
//! request lines of at most [`MAX_REQUEST`] bytes (the `unix` module); elsewhere there is no channel yet (an embedded agent
//! still works, and [`Client::connect`] finds nothing). Left out on purpose: Windows named
//! pipes, and the HTTP helper (its own issue).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{AgentEvent, ProfileStatus};
use crate::error::{ErrorInfo, Result};
use crate::login::{LoginOptions, LoginStep};
use crate::paths::runtime_dir;
use crate::scheme::Credential;
use crate::secret::Secret;

/// The longest request line the agent reads; a longer one is refused.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Token {
        profile: String,
        min_valid: i64,
    },
    Refresh {
        profile: String,
    },
    Status,
    /// The config changed; with a profile, that profile's secrets or token may have too.
    Changed {
        profile: Option<String>,
    },
    /// A snapshot, then every change.
    Watch,
    Login {
        profile: String,
        options: LoginOptions,
    },
    CancelLogin {
        profile: String,
    },
    /// The loopback helper's address and counters.
    Helper,
    /// A helper key operation.
    HelperKey {
        action: crate::helper::keys::KeyAction,
    },
    /// The helper's access log; with `follow`, every entry after it too.
    HelperLog {
        follow: bool,
    },
    /// Pause the helper (every request refused) or resume it.
    HelperPause {
        paused: bool,
    },
}

/// A credential on the wire (the channel is the user's own). `Debug` leaves the header
/// values out.
#[derive(Serialize, Deserialize)]
pub struct WireCredential {
    pub scheme: String,
    pub headers: Vec<(String, String)>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub obtained_at: Option<OffsetDateTime>,
    pub refreshable: bool,
    pub sliding: bool,
    pub widget_url: Option<String>,
}

impl std::fmt::Debug for WireCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(h, _)| h.as_str()).collect();
        f.debug_struct("WireCredential")
            .field("scheme", &self.scheme)
            .field("headers", &names)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl From<&Credential> for WireCredential {
    fn from(c: &Credential) -> Self {
        WireCredential {
            scheme: c.scheme.clone(),
            headers: c
                .headers
                .iter()
                .map(|(h, v)| (h.clone(), v.expose().to_string()))
                .collect(),
            expires_at: c.expires_at,
            obtained_at: c.obtained_at,
            refreshable: c.refreshable,
            sliding: c.sliding,
            widget_url: c.widget_url.clone(),
        }
    }
}

impl From<WireCredential> for Credential {
    fn from(w: WireCredential) -> Self {
        Credential {
            scheme: w.scheme,
            headers: w
                .headers
                .into_iter()
                .map(|(h, v)| (h, Secret::new(v)))
                .collect(),
            expires_at: w.expires_at,
            obtained_at: w.obtained_at,
            refreshable: w.refreshable,
            sliding: w.sliding,
            widget_url: w.widget_url,
            fingerprint: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Credential {
        credential: WireCredential,
    },
    Status {
        profiles: Vec<ProfileStatus>,
    },
    Done,
    /// One change (`watch`).
    Event {
        event: AgentEvent,
    },
    /// One step of a login (`login`), before its result.
    Step {
        step: LoginStep,
    },
    Error {
        error: ErrorInfo,
    },
    Helper {
        info: crate::helper::HelperInfo,
    },
    /// The answer to a key operation: the secret it shows, if any, and every key.
    Keys {
        secret: Option<String>,
        keys: Vec<crate::helper::keys::KeyInfo>,
    },
    /// One access log entry (`helper_log`).
    Log {
        entry: crate::helper::log::Entry,
    },
}

/// What the control channel serves: the agent, and the helper when it runs.
#[derive(Clone)]
pub struct Services {
    pub agent: super::AgentHandle,
    pub helper: Option<crate::helper::Helper>,
}

fn no_helper() -> crate::error::Error {
    crate::error::Error::Agent(
        "the running agent does not serve the helper (started with --no-helper): restart it with keyport agent".into(),
    )
}

pub fn socket_path() -> Result<PathBuf> {
    Ok(runtime_dir()?.join("agent.sock"))
}

#[cfg(unix)]
pub use unix::{serve, Client, Listener};

#[cfg(unix)]
mod unix {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;
    use tokio::sync::mpsc;

    use super::{Request, Response, Services, MAX_REQUEST};
    use crate::agent::AgentHandle;
    use crate::error::{Error, ErrorInfo, ErrorKind, Result};
    use crate::login::{Cancel, LoginStep, LoginUi};

    /// The listening socket; removed when dropped.
    pub struct Listener {
        listener: UnixListener,
        path: PathBuf,
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    impl Listener {
        /// Binds the socket (0600). The caller holds the single-agent lock, so a socket
        /// left there is stale. Must run inside a tokio runtime.
        pub fn bind(path: &Path) -> Result<Listener> {
            let _ = std::fs::remove_file(path);
            let io = |action: &'static str| {
                let path = path.to_path_buf();
                move |source| Error::Io {
                    action,
                    path,
                    source,
                }
            };
            let listener = UnixListener::bind(path).map_err(io("cannot listen on"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io("cannot chmod"))?;
            Ok(Listener {
                listener,
                path: path.to_path_buf(),
            })
        }

        pub fn path(&self) -> &Path {
            &self.path
        }
    }

    /// Serves connections until the task is dropped.
    pub async fn serve(listener: Arc<Listener>, services: Services) {
        loop {
            let Ok((stream, _)) = listener.listener.accept().await else {
                // e.g. out of file descriptors: don't spin
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            tokio::spawn(connection(stream, services.clone()));
        }
    }

    enum Line {
        Text(String),
        TooLong,
        Eof,
    }

    /// One line of at most [`MAX_REQUEST`] bytes.
    async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Line {
        let mut buf = Vec::new();
        loop {
            let chunk = match r.fill_buf().await {
                Ok(c) => c,
                Err(_) => return Line::Eof,
            };
            if chunk.is_empty() {
                return if buf.is_empty() {
                    Line::Eof
                } else {
                    Line::Text(String::from_utf8_lossy(&buf).into_owned())
                };
            }
            let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            buf.extend_from_slice(&chunk[..take]);
            r.consume(take);
            if buf.len() > MAX_REQUEST {
                return Line::TooLong;
            }
            if done {
                buf.pop();
                return Line::Text(String::from_utf8_lossy(&buf).into_owned());
            }
        }
    }

    async fn write<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, resp: &Response) -> bool {
        let mut out = serde_json::to_vec(resp).expect("responses serialize");
        out.push(b'\n');
        w.write_all(&out).await.is_ok()
    }

    fn error(kind: ErrorKind, message: String) -> Response {
        Response::Error {
            error: ErrorInfo::new(kind, message),
        }
    }

    async fn connection(stream: tokio::net::UnixStream, services: Services) {
        let handle = &services.agent;
        // The socket is 0600 in a 0700 dir; this holds even when those modes were changed
        // (or a dir up the path is shared): only our own user is served.
        let me = crate::process::uid();
        let peer = stream.peer_cred().map(|c| c.uid());
        if peer.as_ref().ok() != Some(&me) {
            let (r, mut w) = stream.into_split();
            // (its request is read, not served: answering before it was sent would make the
            // client's write fail instead of showing it why)
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                read_line(&mut tokio::io::BufReader::new(r)),
            )
            .await;
            let who = peer.map_or_else(|e| format!("unknown ({e})"), |u| u.to_string());
            let msg = format!("refused: this agent serves only user {me}, not {who}");
            write(&mut w, &error(ErrorKind::Invalid, msg)).await;
            return;
        }
        let (r, mut w) = stream.into_split();
        let mut r = tokio::io::BufReader::new(r);
        loop {
            let line = match read_line(&mut r).await {
                Line::Text(l) => l,
                Line::Eof => return,
                Line::TooLong => {
                    let msg = format!("request longer than {MAX_REQUEST} bytes: refused");
                    write(&mut w, &error(ErrorKind::Invalid, msg)).await;
                    return;
                }
            };
            let req = match serde_json::from_str::<Request>(&line) {
                Ok(req) => req,
                Err(e) => {
                    let msg = format!(
                        "bad request ({e}): is this keyport the same version as the agent?"
                    );
                    if !write(&mut w, &error(ErrorKind::Invalid, msg)).await {
                        return;
                    }
                    continue;
                }
            };
            let resp = match req {
                Request::Watch => return watch(handle, &mut w).await,
                Request::HelperLog { follow } => {
                    return helper_log(services.helper.as_ref(), follow, &mut w).await
                }
                Request::Login { profile, options } => {
                    match login(handle, profile, options, &mut r, &mut w).await {
                        Some(resp) => resp,
                        None => return,
                    }
                }
                other => dispatch(&services, other).await,
            };
            if !write(&mut w, &resp).await {
                return;
            }
        }
    }

    async fn dispatch(services: &Services, req: Request) -> Response {
        let handle = &services.agent;
        let answer =
            |r: Result<Response>| r.unwrap_or_else(|e| Response::Error { error: e.into() });
        match req {
            Request::Helper => answer(
                services
                    .helper
                    .as_ref()
                    .map(|h| Response::Helper { info: h.status() })
                    .ok_or_else(super::no_helper),
            ),
            Request::HelperPause { paused } => {
                let Some(h) = services.helper.as_ref() else {
                    return answer(Err(super::no_helper()));
                };
                h.set_paused(paused).await;
                Response::Helper { info: h.status() }
            }
            Request::HelperKey { action } => {
                let Some(h) = services.helper.as_ref() else {
                    return answer(Err(super::no_helper()));
                };
                answer(h.key(action).await.map(|(secret, keys)| Response::Keys {
                    secret: secret.map(|s| s.expose().to_string()),
                    keys,
                }))
            }
            Request::Token { profile, min_valid } => answer(
                handle
                    .credential(&profile, min_valid)
                    .await
                    .map(|s| Response::Credential {
                        credential: (&s.credential).into(),
                    }),
            ),
            Request::Refresh { profile } => {
                answer(
                    handle
                        .refresh(&profile)
                        .await
                        .map(|s| Response::Credential {
                            credential: (&s.credential).into(),
                        }),
                )
            }
            Request::Status => answer(
                handle
                    .status()
                    .await
                    .map(|profiles| Response::Status { profiles }),
            ),
            Request::Changed { profile } => answer(
                crate::agent::host::reload(handle, services.helper.as_ref(), profile.as_deref())
                    .await
                    .map(|()| Response::Done),
            ),
            Request::CancelLogin { profile } => {
                handle.cancel_login(&profile);
                Response::Done
            }
            Request::Watch | Request::Login { .. } | Request::HelperLog { .. } => {
                unreachable!("handled by the connection")
            }
        }
    }

    async fn watch<W: tokio::io::AsyncWrite + Unpin>(handle: &AgentHandle, w: &mut W) {
        let Ok(mut sub) = handle.subscribe().await else {
            return;
        };
        while let Some(event) = sub.next().await {
            if !write(w, &Response::Event { event }).await {
                return;
            }
        }
    }

    /// The access log, then (with `follow`) every new entry until the client goes.
    async fn helper_log<W: tokio::io::AsyncWrite + Unpin>(
        helper: Option<&crate::helper::Helper>,
        follow: bool,
        w: &mut W,
    ) {
        let Some(h) = helper else {
            let e: ErrorInfo = super::no_helper().into();
            write(w, &Response::Error { error: e }).await;
            return;
        };
        let (kept, mut rx) = h.log();
        for entry in kept {
            if !write(w, &Response::Log { entry }).await {
                return;
            }
        }
        if !follow {
            write(w, &Response::Done).await;
            return;
        }
        loop {
            match rx.recv().await {
                Ok(entry) => {
                    if !write(w, &Response::Log { entry }).await {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    }

    /// Forwards a login's steps to the client.
    struct ChannelUi(mpsc::UnboundedSender<LoginStep>);

    impl LoginUi for ChannelUi {
        fn show(&self, step: &LoginStep) {
            let _ = self.0.send(step.clone());
        }
    }

    /// Runs a login for a client: its steps go to the client as they happen; a
    /// `cancel_login` line or the client going away cancels it. `None`: the client is gone.
    async fn login<R, W>(
        handle: &AgentHandle,
        profile: String,
        options: crate::login::LoginOptions,
        r: &mut R,
        w: &mut W,
    ) -> Option<Response>
    where
        R: AsyncBufRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let cancel = Cancel::new();
        let (tx, mut steps) = mpsc::unbounded_channel();
        let run = handle.login(&profile, options, Arc::new(ChannelUi(tx)), cancel.clone());
        tokio::pin!(run);
        let mut reading = true;
        let mut gone = false;
        loop {
            tokio::select! {
                result = &mut run => {
                    // The steps shown before the end.
                    while let Ok(step) = steps.try_recv() {
                        if !gone && !write(w, &Response::Step { step }).await {
                            gone = true;
                        }
                    }
                    if gone {
                        return None;
                    }
                    return Some(match result {
                        Ok(c) => Response::Credential { credential: (&c).into() },
                        Err(e) => Response::Error { error: e.into() },
                    });
                }
                Some(step) = steps.recv() => {
                    if !gone && !write(w, &Response::Step { step }).await {
                        gone = true;
                        cancel.cancel();
                    }
                }
                line = read_line(r), if reading => match line {
                    Line::Text(l) => {
                        if matches!(serde_json::from_str(&l), Ok(Request::CancelLogin { .. })) {
                            cancel.cancel();
                        }
                    }
                    Line::Eof | Line::TooLong => {
                        reading = false;
                        gone = true;
                        cancel.cancel();
                    }
                },
            }
        }
    }

    /// The CLI's side: blocking, one request at a time.
    pub struct Client {
        stream: UnixStream,
        reader: BufReader<UnixStream>,
    }

    impl Client {
        /// `None` when no agent answers on the socket.
        pub fn connect() -> Option<Client> {
            let stream = UnixStream::connect(super::socket_path().ok()?).ok()?;
            let reader = BufReader::new(stream.try_clone().ok()?);
            Some(Client { stream, reader })
        }

        /// Gives up waiting for an answer after `d` (a token may wait for a renewal: a
        /// chain of token calls).
        pub fn set_timeout(&self, d: Option<Duration>) {
            let _ = self.stream.set_read_timeout(d);
        }

        fn broken(e: std::io::Error) -> Error {
            Error::Agent(format!(
                "the agent did not answer ({e}): is it still running? (`keyport status`)"
            ))
        }

        pub fn send(&mut self, req: &Request) -> Result<()> {
            let mut line = serde_json::to_vec(req).expect("requests serialize");
            line.push(b'\n');
            self.stream.write_all(&line).map_err(Self::broken)
        }

        /// The next response line (of a stream: `watch`, `login`).
        pub fn receive(&mut self) -> Result<Response> {
            let mut answer = String::new();
            let n = self.reader.read_line(&mut answer).map_err(Self::broken)?;
            if n == 0 {
                return Err(Error::Agent(
                    "the agent closed the connection: is it still running? (`keyport status`)"
                        .into(),
                ));
            }
            serde_json::from_str(&answer)
                .map_err(|e| Error::Agent(format!("unreadable answer from the agent ({e})")))
        }

        pub fn call(&mut self, req: &Request) -> Result<Response> {
            self.send(req)?;
            self.receive()
        }

        /// A second handle on the same connection for sending (e.g. `cancel_login` from a
        /// Ctrl-C handler while another thread reads the steps).
        pub fn sender(&self) -> Result<UnixStream> {
            self.stream.try_clone().map_err(Self::broken)
        }
    }
}

/// Where there is no transport yet, no agent can be reached.
#[cfg(not(unix))]
pub struct Client;

#[cfg(not(unix))]
impl Client {
    pub fn connect() -> Option<Client> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::board::Served;

    /// Types that carry header values print without them (a `{:?}` in a log line or a
    /// panic message must not leak a token).
    #[test]
    fn no_token_in_debug() {
        let cred = Credential {
            scheme: "login".into(),
            headers: vec![
                (
                    "Authorization".into(),
                    Secret::new("Bearer canary-tok-7f3a"),
                ),
                ("X-Api-Key".into(), Secret::new("canary-key-7f3a")),
            ],
            expires_at: None,
            refreshable: true,
            widget_url: None,
            obtained_at: None,
            sliding: false,
            fingerprint: None,
        };
        let wire = WireCredential::from(&cred);
        let served = Served::new(cred.clone()).unwrap();
        let resp = Response::Credential {
            credential: WireCredential::from(&cred),
        };
        let token = crate::token::TokenState {
            access_token: Secret::new("canary-tok-7f3a"),
            refresh_token: Some(Secret::new("canary-rt-7f3a")),
            expires_at: None,
            obtained_at: time::OffsetDateTime::UNIX_EPOCH,
            scopes: vec![],
            sliding: false,
            widget_url: None,
            fingerprint: None,
        };
        for text in [
            format!("{cred:?}"),
            format!("{wire:?}"),
            format!("{served:?}"),
            format!("{resp:?}"),
            format!("{token:?}"),
            format!("{:?}", served.headers),
        ] {
            assert!(!text.contains("canary"), "{text}");
        }
        assert!(
            format!("{wire:?}").contains("Authorization"),
            "names stay visible"
        );
    }
}
