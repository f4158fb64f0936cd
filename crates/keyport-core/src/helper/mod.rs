//! The loopback helper: any local tool reaches a profile's API through
//! `http://127.0.0.1:PORT/<profile>/<path>` with the profile's auth headers added, so it needs
//! a URL and a helper key, never the real secret.
//!
//! The agent serves it ([`Helper::start`], called by the agent host): on a fixed TCP port on
//! 127.0.0.1 (and `[::1]` when it can), HTTP/1.1 and h2c, needing a key; and on a unix
//! socket in the runtime dir (0600, peer uid checked) that needs none. A port in use is
//! reported ([`HelperInfo::error`]) while the socket, renewals and the CLI keep working.
//! Connections are bounded ([`MAX_CONNECTIONS`]), request heads too ([`MAX_HEAD`]).
//!
//! The parts: [`guard`] decides who may ask what, [`proxy`] forwards, [`upstream`] knows
//! where and keeps the pooled clients, [`keys`] stores the keys, [`log`] is the access log.
//! Left out on purpose: the CLI, and changing the port or origins of a running helper
//! (restart the agent).

pub mod guard;
pub mod keys;
pub mod log;
pub mod proxy;
pub mod upstream;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::agent::AgentHandle;
use crate::error::{Error, Result};
use crate::keyport::Keyport;
use crate::secret::Secret;
use guard::{Key, Listener};
use keys::{KeyAction, KeyInfo, StoredKey};

/// Connections served at once (per listener); more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// The largest request head (request line and headers) read; a larger one gets 431.
pub const MAX_HEAD: usize = 32 * 1024;
/// A client must send its request head within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The port the helper listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7137;

/// What the host starts the helper with.
#[derive(Debug, Clone)]
pub struct HelperOptions {
    /// `None`: no TCP listener (the unix socket only). `Some(0)`: any free port (tests).
    pub port: Option<u16>,
    /// Web origins allowed to call the helper (local web development).
    pub origins: Vec<String>,
}

/// What `keyport helper status` and the app show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HelperInfo {
    /// The TCP port it listens on, if it does.
    pub port: Option<u16>,
    /// `http://127.0.0.1:PORT`.
    pub url: Option<String>,
    pub socket: Option<PathBuf>,
    /// Why it does not listen on TCP (or has no keys), in one line with what to do.
    pub error: Option<String>,
    pub requests: u64,
    pub refusals: u64,
    /// Keychain calls of the whole process so far (a proxied request makes none).
    pub keychain_calls: u64,
}

/// The keys in force, as the guard reads them, with each key's last use.
#[derive(Default)]
pub(crate) struct KeySet {
    pub keys: Vec<Key>,
    last_used: Vec<Arc<AtomicI64>>,
}

impl KeySet {
    fn new(stored: &[StoredKey], old: &KeySet) -> KeySet {
        let last_used = stored
            .iter()
            .map(|k| {
                old.keys
                    .iter()
                    .position(|o| o.name == k.name)
                    .map_or_else(|| Arc::new(AtomicI64::new(0)), |i| old.last_used[i].clone())
            })
            .collect();
        KeySet {
            keys: stored.iter().map(StoredKey::key).collect(),
            last_used,
        }
    }

    /// Records a use of key `name` (a write only when the second changed).
    pub fn touch(&self, name: &str, at: OffsetDateTime) {
        if let Some(i) = self.keys.iter().position(|k| k.name == name) {
            let t = at.unix_timestamp();
            if self.last_used[i].load(Ordering::Relaxed) != t {
                self.last_used[i].store(t, Ordering::Relaxed);
            }
        }
    }

    fn last_used(&self, name: &str) -> Option<OffsetDateTime> {
        let i = self.keys.iter().position(|k| k.name == name)?;
        let t = self.last_used[i].load(Ordering::Relaxed);
        (t != 0)
            .then(|| OffsetDateTime::from_unix_timestamp(t).ok())
            .flatten()
    }
}

pub(crate) struct Shared {
    agent: AgentHandle,
    kp: Arc<Keyport>,
    pub(crate) keys: ArcSwap<KeySet>,
    /// The stored keys (`None` until read); key operations take this lock, so they run one
    /// at a time.
    stored: tokio::sync::Mutex<Option<Vec<StoredKey>>>,
    origins: ArcSwap<Vec<String>>,
    pub(crate) log: log::AccessLog,
    info: Mutex<HelperInfo>,
    requests: AtomicU64,
    refusals: AtomicU64,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The running helper; cheap to clone.
#[derive(Clone)]
pub struct Helper {
    sh: Arc<Shared>,
}

impl Helper {
    /// Loads the keys (one keychain call; a default key is made on first start), binds the
    /// listeners and serves. A port in use or a keychain that cannot give the keys is
    /// recorded in [`HelperInfo::error`], not fatal. Must run inside a tokio runtime.
    pub async fn start(agent: AgentHandle, kp: Arc<Keyport>, opts: HelperOptions) -> Helper {
        let sh = Arc::new(Shared {
            agent,
            kp,
            keys: ArcSwap::from_pointee(KeySet::default()),
            stored: tokio::sync::Mutex::new(None),
            origins: ArcSwap::from_pointee(opts.origins.clone()),
            log: log::AccessLog::default(),
            info: Mutex::new(HelperInfo::default()),
            requests: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let helper = Helper { sh };
        let mut errors = Vec::new();
        if let Err(e) = helper.key(KeyAction::Show).await {
            errors.push(format!(
                "the helper keys cannot be read, so TCP requests are refused ({e})"
            ));
        }
        #[cfg(unix)]
        match helper.bind_unix() {
            Ok(path) => helper.info(|i| i.socket = Some(path)),
            Err(e) => errors.push(e.to_string()),
        }
        if let Some(port) = opts.port {
            match helper.bind_tcp(port) {
                Ok(port) => helper.info(|i| {
                    i.port = Some(port);
                    i.url = Some(format!("http://127.0.0.1:{port}"));
                }),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            helper.info(|i| i.error = Some(errors.join("; ")));
        }
        helper
    }

    fn info(&self, f: impl FnOnce(&mut HelperInfo)) {
        f(&mut self.sh.info.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The helper's address, counters and any problem.
    pub fn status(&self) -> HelperInfo {
        let mut i = self
            .sh
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        i.requests = self.sh.requests.load(Ordering::Relaxed);
        i.refusals = self.sh.refusals.load(Ordering::Relaxed);
        i.keychain_calls = self.sh.kp.keychain().calls();
        i
    }

    /// Runs a key operation: the keychain is written first, so a failed write changes
    /// nothing. Returns the secret to show (`show`, `rotate`, `create`) and every key.
    pub async fn key(&self, action: KeyAction) -> Result<(Option<Secret>, Vec<KeyInfo>)> {
        let mut guard = self.sh.stored.lock().await;
        let kc = self.sh.kp.keychain();
        if guard.is_none() {
            *guard = Some(keys::load(kc).await?);
        }
        let stored = guard.as_mut().expect("read above");
        let names: BTreeSet<String> = match &action {
            KeyAction::Create { .. } => self.sh.kp.load()?.profiles.into_keys().collect(),
            _ => BTreeSet::new(),
        };
        let now = self.sh.agent.clock().now();
        let secret = keys::change(kc, stored, &action, &names, now).await?;
        let set = KeySet::new(stored, &self.sh.keys.load());
        let infos = stored
            .iter()
            .map(|k| KeyInfo::of(k, set.last_used(&k.name)))
            .collect();
        self.sh.keys.store(Arc::new(set));
        Ok((secret, infos))
    }

    /// The access log kept so far, and every entry from now on.
    pub fn log(
        &self,
    ) -> (
        Vec<log::Entry>,
        tokio::sync::broadcast::Receiver<log::Entry>,
    ) {
        self.sh.log.subscribe()
    }

    /// Stops listening (connections in flight finish on their own).
    pub fn stop(&self) {
        for t in self
            .sh
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
        #[cfg(unix)]
        if let Some(p) = self.status().socket {
            let _ = std::fs::remove_file(p);
        }
    }

    fn spawn(&self, t: impl std::future::Future<Output = ()> + Send + 'static) {
        let h = tokio::spawn(t);
        self.sh
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(h);
    }

    fn bind_tcp(&self, port: u16) -> std::result::Result<u16, String> {
        let v4 = std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                format!("port {port} on 127.0.0.1 is in use (another program, or another Keyport): the helper serves only its unix socket; choose another port with keyport agent --helper-port PORT or `port` under [helper] in profiles.toml")
            } else {
                format!("cannot listen on 127.0.0.1:{port} ({e}): choose another port with keyport agent --helper-port PORT")
            }
        })?;
        let port = v4.local_addr().map_err(|e| e.to_string())?.port();
        let mut listeners = vec![v4];
        // [::1] on the same port, where the machine has IPv6 loopback.
        if let Ok(v6) = std::net::TcpListener::bind(("::1", port)) {
            listeners.push(v6);
        }
        for l in listeners {
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            let l = tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?;
            let sh = self.sh.clone();
            self.spawn(async move {
                let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
                loop {
                    let Ok(permit) = limit.clone().acquire_owned().await else {
                        return;
                    };
                    let Ok((stream, _)) = l.accept().await else {
                        // e.g. out of file descriptors: don't spin
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let sh = sh.clone();
                    tokio::spawn(async move {
                        serve_connection(sh, Listener::Tcp { port }, stream).await;
                        drop(permit);
                    });
                }
            });
        }
        Ok(port)
    }

    #[cfg(unix)]
    fn bind_unix(&self) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let path = crate::paths::runtime_dir()?.join("helper.sock");
        let _ = std::fs::remove_file(&path);
        let io = |action: &'static str| {
            let path = path.clone();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        let l = tokio::net::UnixListener::bind(&path).map_err(io("cannot listen on"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot chmod"))?;
        let sh = self.sh.clone();
        self.spawn(async move {
            let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
            let me = crate::process::uid();
            loop {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                let Ok((stream, _)) = l.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                // 0600 in a 0700 dir, and still: only our own user is served.
                if stream.peer_cred().map(|c| c.uid()).ok() != Some(me) {
                    let mut e = log::Entry::new(sh.agent.clock().now(), "-", "-");
                    e.refusal = Some("wrong_user".into());
                    e.reason = Some(format!("a process of another user connected to the helper socket; this helper serves only user {me}"));
                    sh.log.push(e);
                    continue;
                }
                let sh = sh.clone();
                tokio::spawn(async move {
                    serve_connection(sh, Listener::Unix, stream).await;
                    drop(permit);
                });
            }
        });
        Ok(path)
    }
}

/// Serves one client connection: HTTP/1.1 (with upgrades) or h2c by its first bytes.
async fn serve_connection<S>(sh: Arc<Shared>, listener: Listener, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD as u32)
        .max_concurrent_streams(256);
    let service = {
        let sh = sh.clone();
        hyper::service::service_fn(move |req| {
            sh.requests.fetch_add(1, Ordering::Relaxed);
            proxy::handle(sh.clone(), listener, req)
        })
    };
    if let Err(e) = b
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
    {
        // hyper answered 431 itself; the refusal still goes in the log.
        if let Some(he) = e.downcast_ref::<hyper::Error>() {
            if he.is_parse_too_large() {
                let mut entry = log::Entry::new(sh.agent.clock().now(), "-", "-");
                entry.status = 431;
                entry.refusal = Some("head_too_large".into());
                entry.reason = Some(format!(
                    "the request head is larger than {} KiB: refused",
                    MAX_HEAD / 1024
                ));
                sh.refusals.fetch_add(1, Ordering::Relaxed);
                sh.log.push(entry);
            }
        }
    }
}
