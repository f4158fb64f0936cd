//! The agent: owns every profile's token lifecycle, so a token is valid whenever a tool asks,
//! and serves credentials from memory to any number of readers.
//!
//! Two sides. The **read side** ([`board::Board`]) holds each profile's current credential
//! with its header values prepared; readers ([`AgentHandle::credential`], a request handler
//! using [`AgentHandle::board`]) load it without a lock, a message or a keychain call. Only a
//! miss (nothing valid for as long as asked) goes to the **owner**: one task (`core.rs`)
//! that owns all state and runs one renewal per profile however many wait. The owner sleeps
//! on an injected [`Clock`] until the earliest due time in its
//! timers (a renewal, an "expires soon", an expiry), so an idle agent never wakes, and
//! after a suspend or clock jump whatever became due runs at once. Network and keychain
//! work runs in spawned tasks that report back; keychain calls go through the process's
//! one keychain owner, and stored tokens are read one at a time, requested profiles first.
//!
//! Rules: renew at ~2/3 of a token's life (see [`schedule`]); on failure keep serving the old
//! token until it really expires, retry with capped, jittered backoff; a failure only a
//! person can fix (a refused password, a refresh token the provider rejected) is not
//! retried until something changes; a sliding token (Improvado) is renewed only while it is
//! being handed out; a token obtained with other settings or secrets (its fingerprint
//! differs) is never served. Changes reach the agent per profile ([`AgentHandle::changed`]):
//! an unknown name is "not found" at once, never a reload. Every change is published to
//! subscribers ([`AgentHandle::subscribe`]). Interactive logins run here too, single-flight
//! per profile, with the caller's [`LoginUi`]. [`Agent::stop`] waits, bounded, for work in
//! flight, so a rotated refresh token is always saved. Notifications: once per event per
//! token, rate-limited, switchable per profile (`notify=false`) and globally.
//! Left out on purpose: the control channel and the single-agent lock ([`host`],
//! [`control`]), and process concerns such as signals (the binaries).

pub mod board;
pub mod control;
mod core;
pub mod host;
pub mod schedule;
mod timers;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::clock::Clock;
use crate::error::{Error, ErrorInfo, ErrorKind, Result};
use crate::keyport::Keyport;
use crate::login::{Cancel, LoginOptions, LoginStep, LoginUi};
use crate::notify::Notifier;
use crate::scheme::Credential;
use board::{Board, Lookup, Served};

pub use host::{Host, HostOptions};

/// Tunables; the defaults suit real tokens, tests shorten them.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Renew no later than this before expiry; warn this long before a token that can't be
    /// renewed expires. `None`: the config's `[agent] lead`, followed as it changes.
    pub lead: Option<Duration>,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Notify after this many failed renewals in a row.
    pub notify_after_failures: u32,
    /// Desktop notifications on or off; `None`: the config's `[agent] notifications`,
    /// followed as it changes.
    pub notifications: Option<bool>,
    pub notifications_per_minute: usize,
    /// How long [`Agent::stop`] waits for renewals and logins in flight. Longer than a token
    /// call may take, so a refresh whose new refresh token the provider already issued is
    /// saved rather than cut off.
    pub stop_grace: Duration,
    /// Events a slow subscriber may fall behind by before it gets a fresh snapshot instead.
    pub event_buffer: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            lead: None,
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(300),
            notify_after_failures: 3,
            notifications: None,
            notifications_per_minute: 10,
            stop_grace: crate::http::total_timeout() + Duration::from_secs(5),
            event_buffer: 1024,
        }
    }
}

/// A profile's state as `keyport status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum State {
    Valid,
    Refreshing,
    /// Cannot be renewed automatically and expires soon.
    Expiring,
    Expired,
    LoginRequired,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ProfileStatus {
    pub name: String,
    pub preset: String,
    pub scheme: String,
    pub state: State,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub next_refresh_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub last_refresh_at: Option<OffsetDateTime>,
    pub failures: u32,
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_kind: Option<ErrorKind>,
    /// An interactive login of this profile is running in the agent.
    #[serde(default)]
    pub login_in_progress: bool,
}

/// A change in the agent, as subscribers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// Every profile's state: the first thing a subscriber gets, and what it gets instead
    /// of the events it missed after falling behind.
    Snapshot {
        profiles: Vec<ProfileStatus>,
    },
    Added {
        profile: ProfileStatus,
    },
    /// Its settings or secrets changed.
    Changed {
        profile: ProfileStatus,
    },
    Removed {
        name: String,
    },
    /// Its state changed (`from` -> `profile.state`).
    State {
        profile: ProfileStatus,
        from: State,
    },
    RenewalStarted {
        name: String,
    },
    RenewalSucceeded {
        profile: ProfileStatus,
    },
    RenewalFailed {
        profile: ProfileStatus,
        error: ErrorInfo,
    },
    /// A step of an interactive login the agent runs.
    Login {
        name: String,
        step: LoginStep,
    },
}

impl AgentEvent {
    /// The profile the event is about (none for a snapshot).
    pub fn profile(&self) -> Option<&str> {
        match self {
            AgentEvent::Snapshot { .. } => None,
            AgentEvent::Added { profile }
            | AgentEvent::Changed { profile }
            | AgentEvent::State { profile, .. }
            | AgentEvent::RenewalSucceeded { profile }
            | AgentEvent::RenewalFailed { profile, .. } => Some(&profile.name),
            AgentEvent::Removed { name }
            | AgentEvent::RenewalStarted { name }
            | AgentEvent::Login { name, .. } => Some(name),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T>>;

/// What reaches the agent's task.
pub(crate) enum Msg {
    Miss {
        name: String,
        min_valid: i64,
        reply: Reply<Arc<Served>>,
    },
    Refresh {
        name: String,
        reply: Reply<Arc<Served>>,
    },
    Status {
        reply: oneshot::Sender<Vec<ProfileStatus>>,
    },
    Subscribe {
        reply: oneshot::Sender<(Vec<ProfileStatus>, broadcast::Receiver<AgentEvent>)>,
    },
    /// The config (and, for `Some(name)`, that profile's keychain items) changed.
    Changed {
        name: Option<String>,
        reply: Option<Reply<()>>,
    },
    Login {
        name: String,
        opts: LoginOptions,
        ui: Arc<dyn LoginUi>,
        cancel: Cancel,
        reply: Option<Reply<Credential>>,
    },
    CancelLogin {
        name: String,
    },
    Stop,
    // Results of work the task spawned.
    ConfigLoaded {
        result: Result<crate::config::Config>,
        /// The requests this read answers: the names whose keychain items to re-read.
        requests: Vec<(Option<String>, Option<Reply<()>>)>,
    },
    Loaded {
        name: String,
        seq: u64,
        result: Result<Option<Credential>>,
    },
    Renewed {
        name: String,
        seq: u64,
        result: Result<Credential>,
    },
    LoginFinished {
        name: String,
        seq: u64,
        result: Result<Credential>,
        reply: Option<Reply<Credential>>,
    },
}

fn stopping() -> Error {
    Error::Agent("the agent is stopping".into())
}

/// A cheap, cloneable way to talk to a running agent in this process.
#[derive(Clone)]
pub struct AgentHandle {
    tx: mpsc::UnboundedSender<Msg>,
    board: Arc<Board>,
    clock: Arc<dyn Clock>,
}

impl AgentHandle {
    async fn ask<T>(&self, msg: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(msg(reply)).map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())
    }

    /// The read side: what a request handler reads, without the agent's task.
    pub fn board(&self) -> &Board {
        &self.board
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// From memory only: a credential valid for `min_valid` seconds, a refusal, or a miss.
    pub fn peek(&self, name: &str, min_valid: i64) -> Lookup {
        self.board.lookup(name, min_valid, self.clock.now())
    }

    /// A credential valid for `min_valid` seconds (or the freshest one a renewal gave):
    /// from memory when there is one, else after the one renewal every waiter shares.
    pub async fn credential(&self, name: &str, min_valid: i64) -> Result<Arc<Served>> {
        match self.peek(name, min_valid) {
            Lookup::Valid(s) => Ok(s),
            Lookup::Refused(e) => Err(e.into()),
            Lookup::NotFound => Err(Error::ProfileNotFound(name.to_string())),
            Lookup::Miss => {
                self.ask(|reply| Msg::Miss {
                    name: name.to_string(),
                    min_valid,
                    reply,
                })
                .await?
            }
        }
    }

    /// Renews now.
    pub async fn refresh(&self, name: &str) -> Result<Arc<Served>> {
        self.ask(|reply| Msg::Refresh {
            name: name.to_string(),
            reply,
        })
        .await?
    }

    pub async fn status(&self) -> Result<Vec<ProfileStatus>> {
        self.ask(|reply| Msg::Status { reply }).await
    }

    /// Tells the agent that the config changed and, with `Some(name)`, that this profile's
    /// secrets or token may have changed too (after `keyport profile ...`, `secret set`,
    /// `login`, `logout`). Returns once the agent knows.
    pub async fn changed(&self, name: Option<&str>) -> Result<()> {
        self.ask(|reply| Msg::Changed {
            name: name.map(str::to_string),
            reply: Some(reply),
        })
        .await?
    }

    /// Every profile's state now, and every change from then on.
    pub async fn subscribe(&self) -> Result<Subscription> {
        let (snapshot, rx) = self.ask(|reply| Msg::Subscribe { reply }).await?;
        Ok(Subscription {
            first: Some(snapshot),
            rx,
            handle: self.clone(),
        })
    }

    /// Runs an interactive login in the agent, showing its steps on `ui`; `cancel` stops
    /// it. A second login of the same profile while one runs is refused
    /// ([`Error::LoginInProgress`]).
    pub async fn login(
        &self,
        name: &str,
        opts: LoginOptions,
        ui: Arc<dyn LoginUi>,
        cancel: Cancel,
    ) -> Result<Credential> {
        self.ask(|reply| Msg::Login {
            name: name.to_string(),
            opts,
            ui,
            cancel,
            reply: Some(reply),
        })
        .await?
    }

    /// Starts a login and returns at once (the notification's "Log in").
    pub fn start_login(&self, name: &str, opts: LoginOptions, ui: Arc<dyn LoginUi>) {
        let _ = self.tx.send(Msg::Login {
            name: name.to_string(),
            opts,
            ui,
            cancel: Cancel::new(),
            reply: None,
        });
    }

    /// Cancels the login of `name` that the agent runs, if any.
    pub fn cancel_login(&self, name: &str) {
        let _ = self.tx.send(Msg::CancelLogin {
            name: name.to_string(),
        });
    }
}

/// A subscription to the agent's changes.
pub struct Subscription {
    first: Option<Vec<ProfileStatus>>,
    rx: broadcast::Receiver<AgentEvent>,
    handle: AgentHandle,
}

impl Subscription {
    /// The next change; first a [`AgentEvent::Snapshot`], and a fresh one after falling
    /// behind (so nothing is silently lost). `None` once the agent stopped.
    pub async fn next(&mut self) -> Option<AgentEvent> {
        if let Some(profiles) = self.first.take() {
            return Some(AgentEvent::Snapshot { profiles });
        }
        match self.rx.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Closed) => None,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let fresh = self.handle.subscribe().await.ok()?;
                *self = fresh;
                self.first
                    .take()
                    .map(|profiles| AgentEvent::Snapshot { profiles })
            }
        }
    }
}

/// A running agent.
pub struct Agent {
    handle: AgentHandle,
    task: tokio::task::JoinHandle<()>,
    /// Closes when every task the agent spawned has finished.
    drained: mpsc::Receiver<()>,
    kp: Arc<Keyport>,
    grace: Duration,
}

impl Agent {
    /// Reads the profiles and starts the agent on the current tokio runtime. Once this
    /// returns, every profile is on the board (a request for it waits for its stored
    /// token, if that is still being read; it is never "not found").
    pub fn start(
        kp: Arc<Keyport>,
        config: AgentConfig,
        notifier: Arc<dyn Notifier>,
    ) -> Result<Agent> {
        let cfg = kp.load()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let board = Arc::new(Board::default());
        let handle = AgentHandle {
            tx: tx.clone(),
            board: board.clone(),
            clock: kp.clock().clone(),
        };
        let (drain, drained) = mpsc::channel(1);
        let grace = config.stop_grace;
        let core = core::Core::new(kp.clone(), cfg, config, notifier, handle.clone(), drain);
        let task = tokio::spawn(core.run(rx));
        Ok(Agent {
            handle,
            task,
            drained,
            kp,
            grace,
        })
    }

    pub fn handle(&self) -> AgentHandle {
        self.handle.clone()
    }

    /// Stops the agent: no new work; waiters are told it stops; logins are cancelled;
    /// renewals in flight are waited for (at most `stop_grace`) and so is the keychain, so
    /// a token being saved is saved.
    pub async fn stop(mut self) {
        let _ = self.handle.tx.send(Msg::Stop);
        let _ = (&mut self.task).await;
        let drained = async {
            let _ = self.drained.recv().await;
            // a rotated token the keychain refused earlier: one more try before exiting
            let _ = self.kp.save_unsaved().await;
            self.kp.keychain().flush().await;
        };
        let _ = tokio::time::timeout(self.grace, drained).await;
    }
}

#[cfg(test)]
mod tests;
