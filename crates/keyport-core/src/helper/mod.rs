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
//! It runs on threads of its own, one single-threaded runtime each, every one accepting on
//! the same listeners: a connection, its requests and their upstream connections stay on
//! one thread (nginx's worker model; a work-stealing runtime measured 0.58x nginx's
//! throughput, mostly in cross-thread wake-ups). A thread holding two connections more than
//! the least busy one stops accepting until that evens out ([`Balance`]): left to the
//! kernel, whichever thread woke first took a burst of connections, and one thread ended up
//! with a quarter more of the work than the other. The agent's own runtime is untouched by
//! request load. Only the board (lock-free reads) and, on a miss, the agent's task are
//! shared.
//!
//! The parts: [`front`] reads a tool's requests (plain HTTP/1.1 itself, the rest through
//! hyper's server), [`guard`] decides who may ask what, [`proxy`] forwards, [`upstream`] knows
//! where and keeps the pooled clients, [`keys`] stores the keys, [`log`] is the access log.
//! A running helper takes a new port, new origins ([`Helper::reload`], [`Helper::set_port`])
//! and a pause ([`Helper::set_paused`]) without a restart. Left out on purpose: the CLI.

pub mod front;
pub mod guard;
pub mod h1;
pub mod keys;
pub mod log;
pub mod proxy;
pub mod upstream;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
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

/// What to do about a port the helper cannot listen on.
const CHOOSE_PORT: &str = "choose another port in Keyport's Settings, with `port` under [helper] in profiles.toml or with keyport agent --helper-port PORT";

/// The port the helper listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7137;

/// What the host starts the helper with.
#[derive(Debug, Clone)]
pub struct HelperOptions {
    /// `None`: no TCP listener (the unix socket only). `Some(0)`: any free port (tests).
    pub port: Option<u16>,
    /// Web origins allowed to call the helper (local web development).
    pub origins: Vec<String>,
    /// Serving threads; `None`: one per core, at most 4.
    pub threads: Option<usize>,
    /// Told `true` when the helper gets its first open connection and `false` when it loses
    /// its last (the host tunes its allocator for load).
    pub on_load: Option<fn(bool)>,
    /// The port is the config's `[helper] port` (not fixed on the command line), so
    /// [`Helper::reload`] moves it when the config's changes.
    pub port_from_config: bool,
}

impl HelperOptions {
    pub fn new(port: Option<u16>, origins: Vec<String>) -> Self {
        HelperOptions {
            port,
            origins,
            threads: None,
            on_load: None,
            port_from_config: false,
        }
    }

    /// Serves on the config's `[helper]` port and origins, following their changes;
    /// `port` (a command line's or test's) fixes the port instead.
    pub fn from_settings(settings: &crate::config::HelperSettings, port: Option<u16>) -> Self {
        HelperOptions {
            port_from_config: port.is_none(),
            ..Self::new(
                Some(port.unwrap_or(settings.port)),
                settings.allowed_origins.clone(),
            )
        }
    }
}

/// Serving threads unless told otherwise: one per core, at most 4.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

/// A listening socket every serving thread accepts on.
enum Listening {
    Tcp(std::net::TcpListener, u16),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixListener),
}

impl Listening {
    fn try_clone(&self) -> std::io::Result<Listening> {
        Ok(match self {
            Listening::Tcp(l, p) => Listening::Tcp(l.try_clone()?, *p),
            #[cfg(unix)]
            Listening::Unix(l) => Listening::Unix(l.try_clone()?),
        })
    }
}

/// What `keyport helper status` and the app show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HelperInfo {
    /// The TCP port it listens on, if it does.
    pub port: Option<u16>,
    /// `http://127.0.0.1:PORT`.
    pub url: Option<String>,
    pub socket: Option<PathBuf>,
    /// Why it does not listen on TCP (or has no keys), in one line with what to do.
    pub error: Option<String>,
    /// Paused: every request is refused (503, `helper_paused`) until it is resumed.
    #[serde(default)]
    pub paused: bool,
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
    /// The serving threads, and how to stop each.
    threads: Mutex<
        Vec<(
            tokio::sync::oneshot::Sender<()>,
            std::thread::JoinHandle<()>,
        )>,
    >,
    tcp_limit: Arc<tokio::sync::Semaphore>,
    unix_limit: Arc<tokio::sync::Semaphore>,
    /// What the serving threads accept on (kept to start them again on another port).
    listening: Mutex<Vec<Listening>>,
    /// Problems by what they are about (`keys`, `socket`, `tcp`, `threads`), for
    /// [`HelperInfo::error`].
    problems: Mutex<BTreeMap<&'static str, String>>,
    pub(crate) paused: AtomicBool,
    /// Told whenever [`HelperInfo`] changes other than its counters (port, error, paused).
    changed: tokio::sync::watch::Sender<()>,
    /// Held while the serving threads are stopped or started again (a port move, a pause,
    /// the stop): one at a time. `true` once stopped for good.
    serving: tokio::sync::Mutex<bool>,
    /// How it was started: serving threads, load callback, whether the port follows the
    /// config.
    opts: HelperOptions,
}

/// How many connections each serving thread has, so that none takes more than its share.
#[derive(Default)]
pub struct Balance {
    open: Vec<std::sync::atomic::AtomicUsize>,
    /// All threads' connections.
    total: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
    /// See [`HelperOptions::on_load`].
    on_load: Option<fn(bool)>,
}

impl Balance {
    /// For `threads` serving threads.
    pub fn new(threads: usize) -> Balance {
        Balance {
            open: (0..threads).map(|_| Default::default()).collect(),
            total: Default::default(),
            changed: tokio::sync::Notify::new(),
            on_load: None,
        }
    }

    /// May thread `me` take another connection: it holds fewer than two more than the
    /// least busy thread.
    pub fn may_accept(&self, me: usize) -> bool {
        let mine = self.open[me].load(Ordering::Relaxed);
        let least = self
            .open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        mine < least + 2
    }

    /// Waits until thread `me` may take another connection.
    pub async fn turn(&self, me: usize) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.may_accept(me) {
                return;
            }
            changed.await;
        }
    }

    /// Thread `me` took a connection; it is counted until the guard drops.
    pub fn took(self: &Arc<Self>, me: usize) -> Counted {
        self.open[me].fetch_add(1, Ordering::Relaxed);
        if self.total.fetch_add(1, Ordering::AcqRel) == 0 {
            if let Some(f) = self.on_load {
                f(true);
            }
        }
        self.changed.notify_waiters();
        Counted {
            balance: self.clone(),
            me,
        }
    }
}

/// A connection counted by [`Balance`].
pub struct Counted {
    balance: Arc<Balance>,
    me: usize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.balance.open[self.me].fetch_sub(1, Ordering::Relaxed);
        if self.balance.total.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(f) = self.balance.on_load {
                f(false);
            }
        }
        self.balance.changed.notify_waiters();
    }
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
            threads: Mutex::new(Vec::new()),
            tcp_limit: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            unix_limit: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            listening: Mutex::new(Vec::new()),
            problems: Mutex::new(BTreeMap::new()),
            paused: AtomicBool::new(false),
            changed: tokio::sync::watch::Sender::new(()),
            serving: tokio::sync::Mutex::new(false),
            opts: opts.clone(),
        });
        let helper = Helper { sh };
        if let Err(e) = helper.key(KeyAction::Show).await {
            helper.problem(
                "keys",
                Some(format!(
                    "the helper keys cannot be read, so TCP requests are refused ({e})"
                )),
            );
        }
        let mut listening = Vec::new();
        #[cfg(unix)]
        match bind_unix() {
            Ok((l, path)) => {
                listening.push(Listening::Unix(l));
                helper.info(|i| i.socket = Some(path));
            }
            Err(e) => helper.problem("socket", Some(e.to_string())),
        }
        if let Some(port) = opts.port {
            match bind_tcp(port) {
                Ok((ls, port)) => {
                    listening.extend(ls.into_iter().map(|l| Listening::Tcp(l, port)));
                    helper.listening_on(Some(port));
                }
                Err(e) => helper.problem(
                    "tcp",
                    Some(format!(
                        "{e}: the helper serves only its unix socket; {CHOOSE_PORT}"
                    )),
                ),
            }
        }
        *lock(&helper.sh.listening) = listening;
        helper.serve_all();
        helper
    }

    /// Starts the serving threads on what the helper listens on.
    fn serve_all(&self) {
        let listening = lock(&self.sh.listening);
        let threads = self.sh.opts.threads.unwrap_or_else(default_threads);
        let started = self.serve(threads.max(1), self.sh.opts.on_load, &listening);
        self.problem(
            "threads",
            started
                .err()
                .map(|e| format!("cannot start the helper's threads ({e})")),
        );
    }

    /// Records (or clears) the problem about `what`; [`HelperInfo::error`] joins them.
    fn problem(&self, what: &'static str, problem: Option<String>) {
        let mut p = lock(&self.sh.problems);
        match problem {
            Some(text) => p.insert(what, text),
            None => p.remove(what),
        };
        let error = (!p.is_empty()).then(|| p.values().cloned().collect::<Vec<_>>().join("; "));
        drop(p);
        self.info(|i| i.error = error);
    }

    fn listening_on(&self, port: Option<u16>) {
        self.info(|i| {
            i.port = port;
            i.url = port.map(|p| format!("http://127.0.0.1:{p}"));
        });
    }

    /// Moves the TCP listener to `port`. The new port is bound first: a port in use is an
    /// error (in one line, saying what to do) and the helper stays where it was. The
    /// serving threads start again, so connections open at the time end (tools reconnect).
    pub async fn set_port(&self, port: u16) -> Result<()> {
        let stopped = self.sh.serving.lock().await;
        if *stopped {
            return Err(Error::Agent("the helper has stopped".into()));
        }
        if self.status().port == Some(port) && port != 0 {
            self.problem("tcp", None);
            return Ok(());
        }
        let (ls, port) = bind_tcp(port).map_err(|e| {
            let now = self.status().port.map_or_else(
                || "it serves only its unix socket".to_string(),
                |p| format!("it stays on port {p}"),
            );
            Error::invalid(
                "port",
                format!("{e}: the helper did not move, {now}; {CHOOSE_PORT}"),
            )
        })?;
        self.stop_threads().await;
        {
            let mut listening = lock(&self.sh.listening);
            listening.retain(|l| !matches!(l, Listening::Tcp(..)));
            listening.extend(ls.into_iter().map(|l| Listening::Tcp(l, port)));
        }
        self.listening_on(Some(port));
        self.problem("tcp", None);
        self.serve_all();
        drop(stopped);
        Ok(())
    }

    /// The web origins whose pages may call the helper, from the next request on.
    pub fn set_origins(&self, origins: Vec<String>) {
        self.sh.origins.store(Arc::new(origins));
    }

    /// Pauses (every request refused with 503 `helper_paused`, said in the log) or resumes.
    /// Pausing also ends the connections open at the time (the serving threads start
    /// again), so no transfer or WebSocket already under way goes on.
    pub async fn set_paused(&self, paused: bool) {
        let stopped = self.sh.serving.lock().await;
        let was = self.sh.paused.swap(paused, Ordering::Relaxed);
        if paused && !was && !*stopped {
            self.stop_threads().await;
            self.serve_all();
        }
        drop(stopped);
        self.info(|i| i.paused = paused);
    }

    /// Applies the config's `[helper]` settings: the origins, and the port unless it was
    /// fixed at start. A new port that cannot be bound is said in [`HelperInfo::error`]
    /// (the helper stays where it was) and returned.
    pub async fn reload(&self) -> Result<()> {
        let settings = self.sh.kp.load()?.helper;
        self.set_origins(settings.allowed_origins);
        if self.sh.opts.port_from_config && self.sh.opts.port.is_some() {
            if let Err(e) = self.set_port(settings.port).await {
                self.problem("tcp", Some(e.to_string()));
                return Err(e);
            }
        }
        Ok(())
    }

    /// Starts `n` serving threads, each accepting on every listener.
    fn serve(
        &self,
        n: usize,
        on_load: Option<fn(bool)>,
        listening: &[Listening],
    ) -> std::io::Result<()> {
        let mut balance = Balance::new(n);
        balance.on_load = on_load;
        let balance = Arc::new(balance);
        for i in 0..n {
            let balance = balance.clone();
            let mine = listening
                .iter()
                .map(Listening::try_clone)
                .collect::<std::io::Result<Vec<_>>>()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let sh = self.sh.clone();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let t = std::thread::Builder::new()
                .name(format!("helper-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        for l in mine {
                            if let Err(e) = accept(sh.clone(), l, balance.clone(), i) {
                                let mut entry = log::Entry::new(sh.agent.clock().now(), "-", "-");
                                entry.refusal = Some("internal".into());
                                entry.reason = Some(format!("a helper thread cannot listen ({e})"));
                                sh.log.push(entry);
                            }
                        }
                        let _ = stopped.await;
                    });
                    // dropping the runtime ends this thread's connections
                })?;
            self.sh
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((stop, t));
        }
        Ok(())
    }

    fn info(&self, f: impl FnOnce(&mut HelperInfo)) {
        f(&mut lock(&self.sh.info));
        self.sh.changed.send_replace(());
    }

    /// Wakes whenever the status changes other than its counters (port, problems, pause),
    /// e.g. when the CLI pauses the helper of the app's agent.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<()> {
        self.sh.changed.subscribe()
    }

    /// The helper's address, counters and any problem.
    pub fn status(&self) -> HelperInfo {
        let mut i = lock(&self.sh.info).clone();
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

    /// Stops serving: listeners close, connections end, the threads are joined.
    pub async fn stop(&self) {
        let mut stopped = self.sh.serving.lock().await;
        *stopped = true;
        self.stop_threads().await;
        lock(&self.sh.listening).clear();
        #[cfg(unix)]
        if let Some(p) = self.status().socket {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Stops the serving threads (their connections end) and waits for them.
    async fn stop_threads(&self) {
        let threads: Vec<_> = lock(&self.sh.threads).drain(..).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for (stop, t) in threads {
                let _ = stop.send(());
                let _ = t.join();
            }
        })
        .await;
    }
}

/// A mutex's contents, even after a panic elsewhere (the data stays consistent: every
/// holder only replaces whole values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connections the kernel queues before the helper accepts them (std's default, 128, is
/// overflowed by a burst of 200 clients: their requests then wait for TCP retransmits).
const BACKLOG: u32 = 1024;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}

fn bind_tcp(port: u16) -> std::result::Result<(Vec<std::net::TcpListener>, u16), String> {
    let v4 = listen(([127, 0, 0, 1], port).into()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("port {port} on 127.0.0.1 is in use (another program, or another Keyport)")
        } else {
            format!("cannot listen on 127.0.0.1:{port} ({e})")
        }
    })?;
    let port = v4.local_addr().map_err(|e| e.to_string())?.port();
    let mut listeners = vec![v4];
    // [::1] on the same port, where the machine has IPv6 loopback.
    if let Ok(v6) = listen((std::net::Ipv6Addr::LOCALHOST, port).into()) {
        listeners.push(v6);
    }
    for l in &listeners {
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    Ok((listeners, port))
}

#[cfg(unix)]
fn bind_unix() -> Result<(std::os::unix::net::UnixListener, PathBuf)> {
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
    let l = std::os::unix::net::UnixListener::bind(&path).map_err(io("cannot listen on"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(io("cannot chmod"))?;
    l.set_nonblocking(true).map_err(io("cannot listen on"))?;
    Ok((l, path))
}

/// Accepts connections on `l` in this thread's runtime until it stops.
fn accept(sh: Arc<Shared>, l: Listening, balance: Arc<Balance>, me: usize) -> std::io::Result<()> {
    match l {
        Listening::Tcp(l, port) => {
            let l = tokio::net::TcpListener::from_std(l)?;
            tokio::spawn(async move {
                loop {
                    balance.turn(me).await;
                    let Ok(permit) = sh.tcp_limit.clone().acquire_owned().await else {
                        return;
                    };
                    let Ok((stream, _)) = l.accept().await else {
                        // e.g. out of file descriptors: don't spin
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let sh = sh.clone();
                    let counted = balance.took(me);
                    tokio::spawn(async move {
                        front::serve(sh, Listener::Tcp { port }, stream).await;
                        drop((permit, counted));
                    });
                }
            });
        }
        #[cfg(unix)]
        Listening::Unix(l) => {
            let l = tokio::net::UnixListener::from_std(l)?;
            tokio::spawn(async move {
                let me = crate::process::uid();
                loop {
                    let Ok(permit) = sh.unix_limit.clone().acquire_owned().await else {
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
                        front::serve(sh, Listener::Unix, stream).await;
                        drop(permit);
                    });
                }
            });
        }
    }
    Ok(())
}

/// Serves the rest of a client connection with hyper (what [`front`] does not serve):
/// HTTP/1.1 (with upgrades) or h2c by its first bytes.
async fn serve_hyper<S>(sh: Arc<Shared>, listener: Listener, stream: S)
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
            proxy::handle(sh.clone(), listener, req.map(http_body_util::Either::Left))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_hears_when_the_first_connection_opens_and_the_last_closes() {
        static SEEN: Mutex<Vec<bool>> = Mutex::new(Vec::new());
        let mut b = Balance::new(2);
        b.on_load = Some(|busy| SEEN.lock().unwrap().push(busy));
        let b = Arc::new(b);
        let first = b.took(0);
        let second = b.took(1);
        assert_eq!(*SEEN.lock().unwrap(), [true], "once, at the first");
        drop(first);
        assert_eq!(*SEEN.lock().unwrap(), [true]);
        drop(second);
        let third = b.took(1);
        drop(third);
        assert_eq!(*SEEN.lock().unwrap(), [true, false, true, false]);
    }

    #[tokio::test]
    async fn a_thread_two_connections_ahead_waits_until_the_others_catch_up() {
        let b = Arc::new(Balance::new(2));
        let mut held = vec![b.took(0), b.took(0)];
        assert!(!b.may_accept(0), "two ahead of thread 1");
        assert!(b.may_accept(1), "the least busy thread always may");
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.turn(0).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let other = b.took(1); // thread 1 catches up: thread 0 may go on
        waiting.await.unwrap();
        held.pop(); // and a closed connection counts too
        assert!(b.may_accept(0) && b.may_accept(1));
        drop((held, other));
        assert_eq!(
            b.open
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .sum::<usize>(),
            0
        );
    }
}
