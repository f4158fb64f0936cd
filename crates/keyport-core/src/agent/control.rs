//! The agent's control channel: a unix socket in the runtime dir, mode 0600 in a 0700
//! directory, speaking one JSON object per line each way. The CLI asks it for tokens,
//! status, renewals and reloads; whoever can open the socket is the user.
//!
//! Starting an agent takes an exclusive lock file first, so a second agent refuses to start
//! (with the first one's pid) instead of stealing the socket. `agent.json` beside it records
//! pid and socket for people and scripts. Left out on purpose: an HTTP listener (the loopback
//! helper is its own issue) and Windows named pipes (the agent is unix-only for now).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::{AgentError, AgentHandle, ProfileStatus};
use crate::error::{Error, Result};
use crate::paths::runtime_dir;
use crate::scheme::Credential;
use crate::secret::Secret;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Token { profile: String, min_valid: i64 },
    Refresh { profile: String },
    Status,
    Reload,
}

/// A credential on the wire (the socket is the user's own).
#[derive(Debug, Serialize, Deserialize)]
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
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Credential { credential: WireCredential },
    Status { profiles: Vec<ProfileStatus> },
    Done,
    Error { error: AgentError },
}

pub fn socket_path() -> Result<PathBuf> {
    Ok(runtime_dir()?.join("agent.sock"))
}

fn info_path() -> Result<PathBuf> {
    Ok(runtime_dir()?.join("agent.json"))
}

/// What `agent.json` says.
#[derive(Debug, Serialize, Deserialize)]
pub struct AgentInfo {
    pub pid: u32,
    pub socket: PathBuf,
}

pub fn running_info() -> Option<AgentInfo> {
    let text = fs::read_to_string(info_path().ok()?).ok()?;
    serde_json::from_str(&text).ok()
}

/// The listening side, holding the single-agent lock until dropped.
pub struct Listener {
    pub listener: UnixListener,
    _lock: fs::File,
    socket: PathBuf,
    info: PathBuf,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.socket);
        let _ = fs::remove_file(&self.info);
    }
}

fn io(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// Takes the single-agent lock, binds the socket (0600) and writes `agent.json` (0600).
/// Must run inside a tokio runtime.
pub fn bind() -> Result<Listener> {
    let dir = runtime_dir()?;
    let lock_path = dir.join("agent.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("cannot open", &lock_path))?;
    if lock.try_lock().is_err() {
        let pid = running_info().map_or_else(|| "?".into(), |i| i.pid.to_string());
        return Err(Error::invalid(
            "agent",
            format!("an agent is already running (pid {pid}): use it, or stop it with `kill {pid}` first"),
        ));
    }
    let socket = dir.join("agent.sock");
    let _ = fs::remove_file(&socket); // stale: we hold the lock, so nobody serves it
    let listener = UnixListener::bind(&socket).map_err(io("cannot listen on", &socket))?;
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))
        .map_err(io("cannot chmod", &socket))?;
    let info = dir.join("agent.json");
    let text = serde_json::to_string(&AgentInfo {
        pid: std::process::id(),
        socket: socket.clone(),
    })
    .expect("serializes");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode_0600()
        .open(&info)
        .map_err(io("cannot write", &info))?;
    f.write_all(text.as_bytes())
        .map_err(io("cannot write", &info))?;
    Ok(Listener {
        listener,
        _lock: lock,
        socket,
        info,
    })
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// Serves requests until the listener is dropped.
pub async fn serve(listener: &UnixListener, handle: AgentHandle) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // e.g. out of file descriptors: don't spin
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let resp = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => dispatch(&handle, req).await,
                    Err(e) => Response::Error {
                        error: AgentError {
                            kind: "error".into(),
                            message: format!("bad request ({e})"),
                        },
                    },
                };
                let mut out = serde_json::to_string(&resp).expect("serializes");
                out.push('\n');
                if w.write_all(out.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn dispatch(handle: &AgentHandle, req: Request) -> Response {
    let cred = |r: std::result::Result<Credential, AgentError>| match r {
        Ok(c) => Response::Credential {
            credential: (&c).into(),
        },
        Err(error) => Response::Error { error },
    };
    match req {
        Request::Token { profile, min_valid } => cred(handle.token(&profile, min_valid).await),
        Request::Refresh { profile } => cred(handle.refresh(&profile).await),
        Request::Status => match handle.status().await {
            Ok(profiles) => Response::Status { profiles },
            Err(error) => Response::Error { error },
        },
        Request::Reload => match handle.reload().await {
            Ok(()) => Response::Done,
            Err(error) => Response::Error { error },
        },
    }
}

/// The CLI's side: blocking, one request per call.
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// `None` when no agent answers on the socket.
    pub fn connect() -> Option<Client> {
        let stream = UnixStream::connect(socket_path().ok()?).ok()?;
        // A token request may wait for a renewal (a chain of token calls).
        stream
            .set_read_timeout(Some(Duration::from_secs(150)))
            .ok()?;
        Some(Client { stream })
    }

    pub fn call(&mut self, req: &Request) -> Result<Response> {
        let mut line = serde_json::to_string(req).expect("serializes");
        line.push('\n');
        let broken = |e: std::io::Error| {
            Error::invalid(
                "agent",
                format!("the agent did not answer ({e}): is it still running?"),
            )
        };
        self.stream.write_all(line.as_bytes()).map_err(broken)?;
        let mut answer = String::new();
        BufReader::new(&self.stream)
            .read_line(&mut answer)
            .map_err(broken)?;
        serde_json::from_str(&answer)
            .map_err(|e| Error::invalid("agent", format!("unreadable answer ({e})")))
    }
}
