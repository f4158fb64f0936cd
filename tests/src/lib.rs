//! Helpers for Keyport's system tests: run the real `keyport` binary in a throw-away config
//! dir against the real keychain of the headless session (tests/support/headless-session.sh),
//! and look at what it left behind (`secret-tool`, the config dir).
//!
//! Each test uses profile names with a random suffix, so tests running in parallel in one
//! keyring (and leftovers of a failed run) never collide.

pub mod fakes;
pub mod oidc;
pub mod upstream;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The workspace's target dir (`target/debug`), found from this test binary's path.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build --workspace --bins), or run ./scripts/test.sh",
        p.display()
    );
    p
}

/// Panics with instructions unless we run inside a desktop session with a keychain.
pub fn require_session() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "system tests need a D-Bus session with an unlocked keychain: run them with \
         tests/support/headless-session.sh cargo test (./scripts/test.sh does)"
    );
}

/// A unique profile name: `prefix-<pid>-<n>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The result of one `keyport` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        self
    }

    /// A failure (exit 1) with exactly one line on stderr that contains `needle`.
    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Self {
        assert_eq!(self.code, 1, "expected exit 1, got {self:#?}");
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "stderr must be one line: {self:#?}"
        );
        assert!(self.stderr.starts_with("keyport: "), "{self:#?}");
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {self:#?}"
        );
        self
    }
}

/// A `keyport` with its own config dir.
pub struct Keyport {
    pub dir: tempfile::TempDir,
}

impl Default for Keyport {
    fn default() -> Self {
        Self::new()
    }
}

impl Keyport {
    pub fn new() -> Self {
        Keyport {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir().join("profiles.toml")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(bin("keyport"));
        self.env(&mut c);
        c
    }

    /// Points `c` (`keyport`, the app, or a tool that runs `keyport`) at this config: its
    /// config dir, its own runtime dir (its own agent or none, its own lock files) and its
    /// own helper port (tests run in parallel; 0 picks a free one).
    pub fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("KEYPORT_CONFIG_DIR", self.config_dir())
            .env("KEYPORT_RUNTIME_DIR", self.dir.path().join("run"))
            .env("KEYPORT_HELPER_PORT", "0")
    }

    /// Runs `keyport ARGS` with `stdin` piped in (not a TTY).
    pub fn run_with(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keyport");
        // keyport may exit (e.g. on a bad argument) before reading its input
        match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                panic!("writing keyport's stdin: {e}")
            }
            _ => {}
        }
        Run::from(child.wait_with_output().expect("wait keyport"))
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, "")
    }

    /// `keyport profile add NAME --preset PRESET ARGS...` with `secrets` (field, value) read
    /// from stdin; must succeed.
    pub fn add(&self, name: &str, preset: &str, args: &[&str], secrets: &[(&str, &str)]) {
        let mut full = vec!["profile", "add", name, "--preset", preset];
        full.extend_from_slice(args);
        for (field, _) in secrets {
            full.extend(["--secret", field]);
        }
        let stdin: String = secrets.iter().map(|(_, v)| format!("{v}\n")).collect();
        self.run_with(&full, &stdin).ok();
    }

    /// A `basic` profile: user `u`, password `pw`.
    pub fn add_basic(&self, name: &str) {
        self.add(
            name,
            "basic",
            &["--set", "username=u"],
            &[("password", "pw")],
        );
    }

    /// The config file's bytes (empty when there is none).
    pub fn config_bytes(&self) -> Vec<u8> {
        std::fs::read(self.config_file()).unwrap_or_default()
    }
}

/// `secret-tool lookup service S username A`: the item's secret, if there is one.
pub fn secret_tool_lookup(service: &str, account: &str) -> Option<String> {
    let o = Command::new("secret-tool")
        .args(["lookup", "service", service, "username", account])
        .output()
        .expect("secret-tool (apt-get install libsecret-tools)");
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `secret-tool search` output for an item (label, attributes, created/modified).
pub fn secret_tool_search(service: &str, account: &str) -> String {
    let o = Command::new("secret-tool")
        .args(["search", "--all", "service", service, "username", account])
        .output()
        .expect("secret-tool");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that no file under `dir` contains any of `needles` (secret values).
pub fn assert_no_bytes_under(dir: &Path, needles: &[&str]) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "secret {n:?} found in {}",
                f.display()
            );
        }
    }
}

/// A running `keyport agent --foreground` for one [`Keyport`]; stopped with SIGTERM on drop.
pub struct AgentProc {
    pub child: std::process::Child,
    pub runtime_dir: PathBuf,
}

impl Keyport {
    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Starts the agent with `args` and extra environment, and waits until it answers.
    pub fn start_agent(&self, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> AgentProc {
        let mut c = self.command();
        c.args(["agent", "--foreground"]).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn agent");
        let socket = self.runtime_dir().join("agent.sock");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(std::time::Instant::now() < until, "the agent did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        AgentProc {
            child,
            runtime_dir: self.runtime_dir(),
        }
    }

    /// `keyport status --json`, by profile name.
    pub fn status(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        let r = self.run(&["status", "--json"]).ok();
        let v: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
        v.into_iter()
            .map(|p| (p["name"].as_str().unwrap().to_string(), p))
            .collect()
    }
}

impl AgentProc {
    /// SIGTERM, then the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait agent")
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if self.alive() {
            self.stop();
        }
    }
}

/// Everything the session's sink recorded so far (notifications and tray registrations),
/// one JSON object per record; none outside a headless session.
pub fn sink_records() -> Vec<serde_json::Value> {
    let Some(path) = std::env::var_os("NOTIFY_SINK_LOG") else {
        return Vec::new();
    };
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect()
}

/// The notifications the session's sink recorded for `profile` (summary, body, actions).
pub fn notifications_for(profile: &str) -> Vec<serde_json::Value> {
    sink_records()
        .into_iter()
        .filter(|n| {
            n["method"] == "Notify" && n["summary"].as_str().is_some_and(|s| s.contains(profile))
        })
        .collect()
}

/// `keyport status --watch --json`: the agent's live events, one JSON object per line,
/// read on a thread. Tests wait for the event that must follow an action instead of
/// sleeping or polling.
pub struct Watch {
    child: std::process::Child,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
    /// Every event seen so far (also those a `wait_for` skipped).
    pub seen: Vec<serde_json::Value>,
    /// Each profile's state as of the events seen so far.
    states: std::collections::HashMap<String, String>,
}

impl Keyport {
    /// Subscribes to the running agent; returns once its snapshot arrived, so every later
    /// change is seen.
    pub fn watch(&self) -> Watch {
        let mut child = self
            .command()
            .args(["status", "--watch", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn keyport status --watch");
        let out = child.stdout.take().unwrap();
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let mut w = Watch {
            child,
            events,
            seen: Vec::new(),
            states: Default::default(),
        };
        w.wait_for("the agent's snapshot", |e| e["event"] == "snapshot");
        w
    }
}

impl Watch {
    /// The next event that satisfies `pred`; fails the test after 30 s.
    #[track_caller]
    pub fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    self.track(&e);
                    self.seen.push(e.clone());
                    if pred(&e) {
                        return e;
                    }
                }
                Err(_) => panic!("no event for {what} within 30 s; seen: {:#?}", self.seen),
            }
        }
    }

    fn track(&mut self, e: &serde_json::Value) {
        let mut set = |p: &serde_json::Value| {
            if let (Some(n), Some(s)) = (p["name"].as_str(), p["state"].as_str()) {
                self.states.insert(n.to_string(), s.to_string());
            }
        };
        match e["event"].as_str() {
            Some("snapshot") => e["profiles"].as_array().into_iter().flatten().for_each(set),
            Some("removed") => {
                self.states.remove(e["name"].as_str().unwrap_or_default());
            }
            _ if e["profile"].is_object() => set(&e["profile"]),
            _ => {}
        }
    }

    /// Waits until `profile` is in `state` (at once if it already is).
    #[track_caller]
    pub fn wait_state(&mut self, profile: &str, state: &str) {
        if self.states.get(profile).map(String::as_str) == Some(state) {
            return;
        }
        self.wait_for(&format!("{profile} to become {state}"), |e| {
            e["profile"]["name"] == profile && e["profile"]["state"] == state
        });
    }

    /// The next failed renewal of `profile` whose error contains `text`.
    #[track_caller]
    pub fn wait_failure(&mut self, profile: &str, text: &str) -> serde_json::Value {
        self.wait_for(
            &format!("a renewal of {profile} failing with {text:?}"),
            |e| {
                e["event"] == "renewal_failed"
                    && e["profile"]["name"] == profile
                    && e["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(text))
            },
        )
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Held by the tests that load the keychain daemon the most (hundreds of Secret Service
/// sessions in a burst), so that they never overlap: Debian 12's gnome-keyring 42 aborts
/// when many short-lived clients open sessions while it is busy, and every later test of
/// the run would lose its keychain. (Keyport itself is gentle: one keychain owner per
/// process; these tests simulate many processes on purpose.)
pub fn keychain_heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}
