//! The agent host: what the CLI (`keyport agent`) and the desktop app both start, so they
//! run the same thing.
//!
//! [`Host::start`] takes the single-agent lock of the user's runtime dir (a second host,
//! CLI or app, gets [`Error::AgentRunning`] with the first one's pid and never a second set
//! of renewals), starts the [`Agent`], opens the control channel and writes `agent.json`
//! (pid and socket, 0600, for people and scripts), and serves the loopback helper. [`Host::stop`] closes the channel first
//! (new CLI calls go standalone and wait on the profile locks), then stops the agent,
//! which waits for its renewals, then releases the lock. Only the transport differs by
//! platform (see [`control`](super::control)). Left out on purpose: signals, detaching and
//! the tray (the binaries).

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Agent, AgentConfig, AgentHandle};
use crate::error::{Error, Result};
use crate::helper::{Helper, HelperOptions};
use crate::keyport::Keyport;
use crate::notify::Notifier;
use crate::paths::runtime_dir;

pub struct HostOptions {
    pub config: AgentConfig,
    pub notifier: Arc<dyn Notifier>,
    /// Serve the loopback helper (`None`: don't).
    pub helper: Option<HelperOptions>,
}

/// What `agent.json` says.
#[derive(Debug, Serialize, Deserialize)]
pub struct AgentInfo {
    pub pid: u32,
    pub socket: Option<PathBuf>,
}

/// The running agent's `agent.json`, if any.
pub fn running_info() -> Option<AgentInfo> {
    let text = fs::read_to_string(runtime_dir().ok()?.join("agent.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The single-agent lock and `agent.json`; both go when dropped.
struct Claim {
    _lock: fs::File,
    info: PathBuf,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.info);
    }
}

fn claim(socket: Option<PathBuf>) -> Result<Claim> {
    let dir = runtime_dir()?;
    let lock_path = dir.join("agent.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| Error::Io {
            action: "cannot open",
            path: lock_path.clone(),
            source,
        })?;
    if lock.try_lock().is_err() {
        let pid = running_info().map_or_else(|| "?".into(), |i| i.pid.to_string());
        return Err(Error::AgentRunning { pid });
    }
    let info = dir.join("agent.json");
    let text = serde_json::to_string(&AgentInfo {
        pid: std::process::id(),
        socket,
    })
    .expect("serializes");
    let mut opts = fs::OpenOptions::new();
    opts.create(true).truncate(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let io = |source| Error::Io {
        action: "cannot write",
        path: info.clone(),
        source,
    };
    opts.open(&info)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(io)?;
    Ok(Claim { _lock: lock, info })
}

/// Puts a config change in force: the agent re-reads the profiles (and, for `Some(name)`,
/// that profile's keychain items) and its `[agent]` settings; for a change of the whole
/// file (`None`: a hand edit, SIGHUP, a settings change) the helper applies its `[helper]`
/// settings too. A helper port that cannot be bound is said in the helper's status and
/// returned; everything else has been applied.
pub async fn reload(
    agent: &AgentHandle,
    helper: Option<&Helper>,
    name: Option<&str>,
) -> Result<()> {
    agent.changed(name).await?;
    match (name, helper) {
        (None, Some(h)) => h.reload().await,
        _ => Ok(()),
    }
}

pub struct Host {
    agent: Agent,
    helper: Option<Helper>,
    serving: Option<tokio::task::JoinHandle<()>>,
    #[cfg(unix)]
    listener: Option<Arc<super::control::Listener>>,
    claim: Claim,
}

impl Host {
    /// Starts the one agent of this user session. Must run inside a tokio runtime.
    pub async fn start(kp: Arc<Keyport>, opts: HostOptions) -> Result<Host> {
        #[cfg(unix)]
        let socket = Some(super::control::socket_path()?);
        #[cfg(not(unix))]
        let socket: Option<PathBuf> = None;
        let claim = claim(socket.clone())?;
        let agent = Agent::start(kp.clone(), opts.config, opts.notifier)?;
        let helper = match opts.helper {
            Some(h) => Some(Helper::start(agent.handle(), kp, h).await),
            None => None,
        };
        #[cfg(unix)]
        {
            let listener = Arc::new(super::control::Listener::bind(
                socket.as_deref().expect("unix has a socket"),
            )?);
            let services = super::control::Services {
                agent: agent.handle(),
                helper: helper.clone(),
            };
            let serving = tokio::spawn(super::control::serve(listener.clone(), services));
            Ok(Host {
                agent,
                helper,
                serving: Some(serving),
                listener: Some(listener),
                claim,
            })
        }
        #[cfg(not(unix))]
        {
            let _ = socket;
            Ok(Host {
                agent,
                helper,
                serving: None,
                claim,
            })
        }
    }

    pub fn handle(&self) -> AgentHandle {
        self.agent.handle()
    }

    /// [`reload`] for this host's agent and helper.
    pub async fn reload(&self, name: Option<&str>) -> Result<()> {
        reload(&self.agent.handle(), self.helper.as_ref(), name).await
    }

    /// The loopback helper, if it was started.
    pub fn helper(&self) -> Option<&Helper> {
        self.helper.as_ref()
    }

    /// Where the control channel listens, if there is one.
    pub fn socket(&self) -> Option<PathBuf> {
        #[cfg(unix)]
        return self.listener.as_ref().map(|l| l.path().to_path_buf());
        #[cfg(not(unix))]
        None
    }

    /// Closes the control channel, stops the agent (waiting, bounded, for work in flight)
    /// and releases the single-agent lock.
    pub async fn stop(mut self) {
        if let Some(h) = self.helper.take() {
            h.stop().await;
        }
        if let Some(s) = self.serving.take() {
            s.abort();
            let _ = s.await;
        }
        #[cfg(unix)]
        drop(self.listener.take());
        self.agent.stop().await;
        drop(self.claim);
    }
}
