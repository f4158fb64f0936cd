//! The agent: owns every profile's token lifecycle, so a token is valid whenever a tool asks.
//!
//! One task owns all state (no locks around it) and talks through a command channel:
//! `token`, `refresh`, `status`, `reload`, `login`, `stop`. It sleeps until the earliest due
//! time of any profile (a renewal, an "expires soon" or an "expired" moment), so an idle
//! agent with a thousand static profiles never wakes. Work that touches the network or the
//! keychain runs in spawned tasks that report back, so answering from memory is never
//! blocked by a slow endpoint.
//!
//! Rules: renew at ~2/3 of a token's life (see [`schedule`]); one renewal per profile at a
//! time, however many callers wait (single-flight; across processes the engine's lock file
//! adds the same guarantee); on failure keep serving the old token until it really expires,
//! retry with capped, jittered backoff and record the cause; an OAuth profile whose refresh
//! token is rejected becomes `login_required` instead of retrying; a sliding token (Improvado)
//! is renewed only while it is being handed out, not when idle; a chain's child renewal
//! makes its parent valid first (the engine does). Notifications: once per event per token,
//! rate-limited, switchable per profile (`notify=false`) and globally.
//! Left out on purpose: the control socket (see [`control`]) and process concerns (the CLI).

pub mod control;
pub mod schedule;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::engine::LoginOptions;
use crate::error::Error;
use crate::keyport::Keyport;
use crate::notify::{Event, Notice, Notifier};
use crate::preset::{self, Grant, SchemeSpec};
use crate::profile::{parse_datetime, Profile};
use crate::scheme::Credential;
use schedule::{backoff, refresh_at, Jitter, RateLimit};

/// Tunables; the defaults suit real tokens, tests shorten them.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Renew no later than this before expiry; warn this long before a token that can't be
    /// renewed expires.
    pub lead: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Notify after this many failed renewals in a row.
    pub notify_after_failures: u32,
    pub notifications: bool,
    pub notifications_per_minute: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            lead: Duration::from_secs(120),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(300),
            notify_after_failures: 3,
            notifications: true,
            notifications_per_minute: 10,
        }
    }
}

/// A profile's state as `keyport status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ProfileStatus {
    pub name: String,
    pub preset: String,
    pub scheme: String,
    pub state: State,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_refresh_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_refresh_at: Option<OffsetDateTime>,
    pub failures: u32,
    pub last_error: Option<String>,
}

/// An agent answer that failed: the kind lets the CLI pick its exit code.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AgentError {
    pub kind: String,
    pub message: String,
}

impl From<&Error> for AgentError {
    fn from(e: &Error) -> Self {
        AgentError {
            kind: match e {
                Error::LoginRequired { .. } => "login_required",
                Error::ProfileNotFound(_) => "not_found",
                _ => "error",
            }
            .into(),
            message: e.to_string(),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, AgentError>>;

enum Msg {
    Token {
        name: String,
        min_valid: i64,
        reply: Reply<Credential>,
    },
    Refresh {
        name: String,
        reply: Reply<Credential>,
    },
    Status {
        reply: oneshot::Sender<Vec<ProfileStatus>>,
    },
    Reload {
        reply: Option<oneshot::Sender<()>>,
    },
    Login {
        name: String,
    },
    Stop,
    // from spawned work
    Loaded {
        name: String,
        epoch: u64,
        result: Result<Option<Credential>, Error>,
    },
    Renewed {
        name: String,
        epoch: u64,
        result: Result<Credential, Error>,
    },
    LoggedIn {
        name: String,
        result: Result<Credential, Error>,
    },
}

/// How a profile's credential comes about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Rendered from secrets; may have a known expiry (pasted bearer token).
    Static,
    /// Fetched by a login endpoint / exchange / client credentials: renewable unattended.
    Fetched,
    /// Browser or device login: renewable only with a refresh token.
    Interactive,
}

struct Entry {
    /// The profile itself lives in the agent's config snapshot; only what is needed here.
    preset: &'static preset::Preset,
    kind: Kind,
    notify: bool,
    cred: Option<Credential>,
    /// Static profiles: the expiry the user set, known without the keychain.
    static_expiry: Option<OffsetDateTime>,
    state: State,
    last_error: Option<String>,
    failures: u32,
    next_refresh_at: Option<OffsetDateTime>,
    last_refresh_at: Option<OffsetDateTime>,
    in_flight: bool,
    waiters: Vec<Reply<Credential>>,
    used_since_fetch: bool,
    /// Sequence number of the latest keychain read; older reads' results are dropped.
    load_seq: u64,
    /// Sequence number of the latest renewal; only its result clears `in_flight`.
    renewal_seq: u64,
    /// The last renewal failed in a way only a person can fix (e.g. a wrong password):
    /// don't try again until the profile or its secrets change (a reload).
    blocked: bool,
    /// Events already notified for the current token.
    notified: HashSet<Event>,
    loaded: bool,
    /// A keychain read of the stored token is under way; requests wait for it.
    loading: bool,
}

impl Entry {
    fn expires_at(&self) -> Option<OffsetDateTime> {
        self.cred
            .as_ref()
            .and_then(|c| c.expires_at)
            .or(self.static_expiry)
    }

    /// Can Keyport keep this token valid without a person?
    fn automatic(&self) -> bool {
        let renewable = match self.kind {
            Kind::Static => false,
            Kind::Fetched => true,
            Kind::Interactive => self.cred.as_ref().is_some_and(|c| c.refreshable),
        };
        renewable && self.state != State::Expiring
    }

    /// The next moment something is due for this profile. Must agree with `Core::tick`:
    /// every time returned here is consumed there, or the loop would spin.
    fn due(&self, lead: Duration) -> Option<OffsetDateTime> {
        if !self.loaded || self.in_flight {
            return None;
        }
        let mut due = self.next_refresh_at;
        if let Some(exp) = self.expires_at() {
            if !self.automatic() {
                if self.state == State::Valid {
                    due = min_opt(due, Some(exp - lead));
                }
                if matches!(self.state, State::Valid | State::Expiring) {
                    due = min_opt(due, Some(exp));
                }
            } else if self.state == State::Valid {
                due = min_opt(due, Some(exp));
            }
        }
        due
    }
}

fn min_opt(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn kind_of(profile: &Profile) -> Kind {
    match preset::get(&profile.preset).map(|p| &p.auth.scheme) {
        Ok(SchemeSpec::Login(_)) => Kind::Fetched,
        Ok(SchemeSpec::Oauth2(o)) if o.grant == Grant::ClientCredentials => Kind::Fetched,
        Ok(SchemeSpec::Oauth2(_)) => Kind::Interactive,
        _ => Kind::Static,
    }
}

/// A cheap, cloneable way to talk to a running agent.
#[derive(Clone)]
pub struct AgentHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

fn gone() -> AgentError {
    AgentError {
        kind: "error".into(),
        message: "the agent is stopping".into(),
    }
}

impl AgentHandle {
    /// A credential valid for `min_valid` seconds (or the freshest one renewal gave).
    pub async fn token(&self, name: &str, min_valid: i64) -> Result<Credential, AgentError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Token {
                name: name.into(),
                min_valid,
                reply,
            })
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Renews now.
    pub async fn refresh(&self, name: &str) -> Result<Credential, AgentError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Refresh {
                name: name.into(),
                reply,
            })
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub async fn status(&self) -> Result<Vec<ProfileStatus>, AgentError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Msg::Status { reply }).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Re-reads the profiles (after `keyport profile ...` or `secret set`).
    pub async fn reload(&self) -> Result<(), AgentError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Reload { reply: Some(reply) })
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Starts an interactive login (the notification's "Log in" action).
    pub fn login(&self, name: &str) {
        let _ = self.tx.send(Msg::Login { name: name.into() });
    }
}

pub struct Agent {
    handle: AgentHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    /// Starts the agent on the current tokio runtime.
    pub fn start(kp: Arc<Keyport>, config: AgentConfig, notifier: Arc<dyn Notifier>) -> Agent {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = AgentHandle { tx: tx.clone() };
        let core = Core {
            kp,
            cfg: Arc::new(Config::default()),
            config: config.clone(),
            notifier,
            entries: BTreeMap::new(),
            tx,
            jitter: Jitter::new(),
            rate: RateLimit::new(config.notifications_per_minute),
            next_epoch: 1,
        };
        let task = tokio::spawn(core.run(rx));
        Agent { handle, task }
    }

    pub fn handle(&self) -> AgentHandle {
        self.handle.clone()
    }

    /// Stops the loop and waits for it (at most 5 s).
    pub async fn stop(self) {
        let _ = self.handle.tx.send(Msg::Stop);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

struct Core {
    kp: Arc<Keyport>,
    /// The profiles as of the last reload; tasks use this snapshot instead of re-reading.
    cfg: Arc<Config>,
    config: AgentConfig,
    notifier: Arc<dyn Notifier>,
    entries: BTreeMap<String, Entry>,
    tx: mpsc::UnboundedSender<Msg>,
    jitter: Jitter,
    rate: RateLimit,
    next_epoch: u64,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Errors a person must fix (no point retrying on a timer): wrong credentials or settings.
fn needs_person(e: &Error) -> bool {
    e.needs_person()
}

impl Core {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        self.reload();
        loop {
            let due = self
                .entries
                .values()
                .filter_map(|e| e.due(self.config.lead))
                .min();
            let sleep = async {
                match due {
                    Some(at) => {
                        let wait = (at - now()).max(time::Duration::ZERO);
                        tokio::time::sleep(wait.try_into().unwrap_or_default()).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    None | Some(Msg::Stop) => break,
                    Some(m) => self.handle(m),
                },
                _ = sleep => self.tick(),
            }
        }
        for e in self.entries.values_mut() {
            for w in e.waiters.drain(..) {
                let _ = w.send(Err(gone()));
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Token {
                name,
                min_valid,
                reply,
            } => self.token(name, min_valid, reply),
            Msg::Refresh { name, reply } => {
                let Some(e) = self.entries.get_mut(&name) else {
                    let _ = reply.send(Err((&Error::ProfileNotFound(name)).into()));
                    return;
                };
                e.waiters.push(reply);
                if e.kind == Kind::Static {
                    e.cred = None;
                }
                self.start_renewal(&name);
            }
            Msg::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Msg::Reload { reply } => {
                self.reload();
                if let Some(r) = reply {
                    let _ = r.send(());
                }
            }
            Msg::Login { name } => {
                let (kp, tx) = (self.kp.clone(), self.tx.clone());
                tokio::spawn(async move {
                    let result = kp.login(&name, &LoginOptions::default()).await;
                    let _ = tx.send(Msg::LoggedIn { name, result });
                });
            }
            Msg::Stop => {}
            Msg::Loaded {
                name,
                epoch,
                result,
            } => self.loaded(name, epoch, result),
            Msg::Renewed {
                name,
                epoch,
                result,
            } => self.renewed(name, epoch, result),
            Msg::LoggedIn { name, result } => match result {
                Ok(cred) => {
                    if let Some(e) = self.entries.get_mut(&name) {
                        // The login supersedes any renewal still running (its result, from
                        // the old session, will be ignored).
                        e.renewal_seq = self.next_epoch;
                        self.next_epoch += 1;
                        e.in_flight = true; // as if this were the renewal; renewed() settles it
                        let seq = e.renewal_seq;
                        self.renewed(name, seq, Ok(cred));
                    }
                }
                Err(err) => {
                    if let Some(e) = self.entries.get_mut(&name) {
                        e.last_error = Some(err.to_string());
                    }
                }
            },
        }
    }

    /// Reads the config; new or changed profiles are (re)loaded, removed ones dropped.
    fn reload(&mut self) {
        let cfg = match self.kp.load() {
            Ok(c) => Arc::new(c),
            Err(err) => {
                eprintln!("keyport agent: {err}");
                return;
            }
        };
        let old = std::mem::replace(&mut self.cfg, cfg.clone());
        let mut to_load = Vec::new();
        self.entries.retain(|name, e| {
            let keep = cfg.profiles.contains_key(name);
            if !keep {
                for w in e.waiters.drain(..) {
                    let _ = w.send(Err((&Error::ProfileNotFound(name.clone())).into()));
                }
            }
            keep
        });
        for (name, profile) in &cfg.profiles {
            let name = name.clone();
            let unchanged =
                self.entries.contains_key(&name) && old.profiles.get(&name) == Some(profile);
            if unchanged {
                // Secrets or tokens may have changed behind our back (`secret set`,
                // `keyport login` from another process): look again, without dropping
                // what we serve meanwhile.
                if self.entries[&name].kind != Kind::Static {
                    to_load.push(name);
                } else if let Some(e) = self.entries.get_mut(&name) {
                    e.cred = None;
                }
                continue;
            }
            let kind = kind_of(profile);
            let Ok(preset) = preset::get(&profile.preset) else {
                continue;
            };
            let static_expiry = (kind == Kind::Static)
                .then(|| {
                    profile
                        .settings
                        .get("expires_at")
                        .and_then(|v| parse_datetime("expires_at", v).ok())
                })
                .flatten();
            let notify = profile.notify;
            let waiters = self
                .entries
                .remove(&name)
                .map(|e| e.waiters)
                .unwrap_or_default();
            self.entries.insert(
                name.clone(),
                Entry {
                    notify,
                    kind,
                    static_expiry,
                    cred: None,
                    // until the stored token has been read (or fetched)
                    state: if kind == Kind::Static {
                        State::Valid
                    } else {
                        State::Refreshing
                    },
                    last_error: None,
                    failures: 0,
                    next_refresh_at: None,
                    last_refresh_at: None,
                    in_flight: false,
                    waiters,
                    used_since_fetch: false,
                    load_seq: 0,
                    renewal_seq: 0,
                    blocked: false,
                    notified: HashSet::new(),
                    loaded: kind == Kind::Static,
                    loading: false,
                    preset,
                },
            );
            if kind != Kind::Static {
                to_load.push(name);
            }
        }
        self.load_entries(to_load);
    }

    /// Reads the stored tokens of `names` from the keychain, one after the other, on one
    /// blocking thread (the keychain is not re-entrant, and a thousand parallel D-Bus
    /// sessions would only cost memory). Each result arrives as its own message.
    fn load_entries(&mut self, names: Vec<String>) {
        let mut batch = Vec::with_capacity(names.len());
        for name in names {
            let Some(e) = self.entries.get_mut(&name) else {
                continue;
            };
            e.load_seq = self.next_epoch;
            self.next_epoch += 1;
            e.loading = true;
            batch.push((name, e.load_seq));
        }
        if batch.is_empty() {
            return;
        }
        let (kp, tx, cfg) = (self.kp.clone(), self.tx.clone(), self.cfg.clone());
        tokio::task::spawn_blocking(move || {
            for (name, epoch) in batch {
                // A panic in one read must not leave the others (and their waiters) hanging.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    kp.stored_credential_in(&cfg, &name)
                }))
                .unwrap_or_else(|_| {
                    Err(Error::invalid(
                        "agent",
                        "reading the stored token failed unexpectedly",
                    ))
                });
                if tx
                    .send(Msg::Loaded {
                        name,
                        epoch,
                        result,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
    }

    fn loaded(&mut self, name: String, epoch: u64, result: Result<Option<Credential>, Error>) {
        let t = now();
        let lead = self.config.lead;
        let Some(e) = self.entries.get_mut(&name).filter(|e| e.load_seq == epoch) else {
            return;
        };
        e.loaded = true;
        e.loading = false;
        // A reload means the user changed something: worth trying again.
        e.blocked = false;
        match result {
            Ok(Some(cred)) if cred.expires_at.is_none_or(|x| x > t) => {
                let same = e
                    .cred
                    .as_ref()
                    .is_some_and(|c| c.obtained_at == cred.obtained_at);
                if !same {
                    e.notified.clear();
                    e.failures = 0;
                    e.last_error = None;
                    e.state = State::Valid;
                    e.next_refresh_at = match (cred.obtained_at, cred.expires_at, cred.refreshable)
                    {
                        (Some(o), Some(x), true) => {
                            Some(refresh_at(o, x, lead, self.jitter.sample()))
                        }
                        _ => None,
                    };
                    e.cred = Some(cred);
                }
            }
            // An expired access token with a refresh token: refresh it.
            Ok(Some(cred)) if cred.refreshable => {
                e.cred = Some(cred);
                self.start_renewal(&name);
            }
            Ok(_) if e.kind == Kind::Interactive => {
                e.cred = None;
                self.login_required(&name, "not logged in, or the session expired".into());
            }
            // No usable token stored: get one now, so it is ready before anyone asks.
            Ok(_) => {
                e.cred = None;
                self.start_renewal(&name);
            }
            Err(err) => {
                e.state = State::Error;
                e.last_error = Some(err.to_string());
            }
        }
        // Requests that arrived while we were reading.
        if let Some(e) = self
            .entries
            .get_mut(&name)
            .filter(|e| !e.waiters.is_empty() && !e.in_flight)
        {
            let valid = e
                .cred
                .clone()
                .filter(|c| c.expires_at.is_none_or(|x| x > t));
            match (valid, e.state) {
                (Some(c), _) => {
                    for w in e.waiters.drain(..) {
                        let _ = w.send(Ok(c.clone()));
                    }
                }
                (None, State::LoginRequired) => {
                    let err = Error::LoginRequired {
                        profile: name.clone(),
                        reason: e.last_error.clone().unwrap_or_default(),
                    };
                    for w in e.waiters.drain(..) {
                        let _ = w.send(Err((&err).into()));
                    }
                }
                _ => self.start_renewal(&name),
            }
        }
    }

    fn token(&mut self, name: String, min_valid: i64, reply: Reply<Credential>) {
        if !self.entries.contains_key(&name) {
            self.reload(); // a profile added since the last reload
        }
        let t = now();
        let Some(e) = self.entries.get_mut(&name) else {
            let _ = reply.send(Err((&Error::ProfileNotFound(name)).into()));
            return;
        };
        e.used_since_fetch = true;
        if e.loading {
            e.waiters.push(reply);
            return;
        }
        if let Some(c) = &e.cred {
            let min = crate::engine::effective_min_valid(min_valid, c.obtained_at, c.expires_at);
            let ok = c
                .expires_at
                .is_none_or(|x| x - t >= time::Duration::seconds(min));
            if ok {
                let _ = reply.send(Ok(c.clone()));
                return;
            }
        }
        let backing_off = e.state == State::Error && e.next_refresh_at.is_some_and(|r| r > t);
        if !e.in_flight && (e.blocked || backing_off) {
            // Don't hammer an endpoint that just failed (a wrong password could lock the
            // account): serve the old token while it lasts, else the last error, until the
            // backoff ends or something changes.
            let unexpired = e
                .cred
                .clone()
                .filter(|c| c.expires_at.is_none_or(|x| x > t));
            let _ = reply.send(match unexpired {
                Some(c) => Ok(c),
                None => Err(AgentError {
                    kind: "error".into(),
                    message: e
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "renewal failed".into()),
                }),
            });
            return;
        }
        if e.state == State::LoginRequired && e.kind == Kind::Interactive && !e.in_flight {
            let msg = e
                .last_error
                .clone()
                .unwrap_or_else(|| "not logged in".into());
            let _ = reply.send(Err((&Error::LoginRequired {
                profile: name,
                reason: msg,
            })
                .into()));
            return;
        }
        e.waiters.push(reply);
        self.start_renewal(&name);
    }

    /// Starts one renewal (or, for static profiles, one render) unless one is running.
    fn start_renewal(&mut self, name: &str) {
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        if e.in_flight {
            return;
        }
        e.in_flight = true;
        e.renewal_seq = self.next_epoch;
        self.next_epoch += 1;
        if e.kind != Kind::Static {
            e.state = State::Refreshing;
        }
        let newer_than = e.cred.as_ref().and_then(|c| c.obtained_at);
        let (kp, tx, name, epoch, kind) = (
            self.kp.clone(),
            self.tx.clone(),
            name.to_string(),
            e.renewal_seq,
            e.kind,
        );
        let cfg = self.cfg.clone();
        tokio::spawn(async move {
            // The work runs in a task of its own so that even a panic in it becomes an
            // answer (otherwise `in_flight` would stay set and waiters would hang).
            let work = tokio::spawn({
                let name = name.clone();
                async move {
                    match kind {
                        Kind::Static => kp.credential_valid_for_in(&cfg, &name, 0).await,
                        _ => kp.renew_in(&cfg, &name, newer_than).await,
                    }
                }
            });
            let result = work.await.unwrap_or_else(|e| {
                Err(Error::invalid(
                    "agent",
                    format!("the renewal failed unexpectedly ({e})"),
                ))
            });
            let _ = tx.send(Msg::Renewed {
                name,
                epoch,
                result,
            });
        });
    }

    fn renewed(&mut self, name: String, epoch: u64, result: Result<Credential, Error>) {
        let t = now();
        let (lead, base, cap) = (
            self.config.lead,
            self.config.backoff_base,
            self.config.backoff_cap,
        );
        let jitter = self.jitter.sample();
        let Some(e) = self.entries.get_mut(&name) else {
            return;
        };
        if e.renewal_seq != epoch || !e.in_flight {
            // Superseded (a login, or the profile was replaced): newer work owns the entry.
            return;
        }
        e.in_flight = false;
        e.loaded = true;
        match result {
            Ok(cred) => {
                e.notified.clear();
                e.failures = 0;
                e.last_error = None;
                e.state = State::Valid;
                e.used_since_fetch = !e.waiters.is_empty();
                if e.kind != Kind::Static {
                    e.last_refresh_at = Some(t);
                }
                // Never sooner than the backoff base: a token that arrives already expired
                // (clock skew, expires_in 0) must not make us renew in a tight loop.
                e.next_refresh_at = match (cred.obtained_at, cred.expires_at, cred.refreshable) {
                    (Some(o), Some(x), true) => Some(refresh_at(o, x, lead, jitter).max(t + base)),
                    _ => None,
                };
                for w in e.waiters.drain(..) {
                    let _ = w.send(Ok(cred.clone()));
                }
                e.cred = Some(cred);
            }
            Err(err) => {
                let old = e
                    .cred
                    .clone()
                    .filter(|c| c.expires_at.is_none_or(|x| x > t));
                // Keep serving the old token until it really expires.
                for w in e.waiters.drain(..) {
                    let _ = w.send(match &old {
                        Some(c) => Ok(c.clone()),
                        None => Err((&err).into()),
                    });
                }
                let msg = err.to_string();
                e.last_error = Some(msg.clone());
                if e.kind == Kind::Static {
                    // rendering failed (e.g. the pasted token expired): said to the caller
                } else if matches!(err, Error::LoginRequired { .. }) {
                    e.cred = old;
                    self.login_required(&name, msg);
                } else if needs_person(&err) || e.kind == Kind::Static {
                    e.next_refresh_at = None;
                    e.blocked = e.kind != Kind::Static;
                    e.state = if old.is_some() {
                        State::Expiring
                    } else {
                        State::Error
                    };
                    if old.is_some() {
                        self.notify(&name, Event::Expiring, msg);
                    }
                } else {
                    e.failures += 1;
                    e.state = State::Error;
                    let wait = backoff(e.failures, base, cap, jitter);
                    e.next_refresh_at = Some(t + wait);
                    if e.failures >= self.config.notify_after_failures {
                        self.notify(&name, Event::RenewalFailing, msg);
                    }
                }
            }
        }
    }

    fn login_required(&mut self, name: &str, reason: String) {
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        e.state = State::LoginRequired;
        e.next_refresh_at = None;
        e.last_error = Some(reason.clone());
        self.notify(name, Event::LoginRequired, reason);
    }

    /// Timers: renewals due, tokens about to expire or expired.
    fn tick(&mut self) {
        let t = now();
        let lead = time::Duration::try_from(self.config.lead).unwrap_or(time::Duration::ZERO);
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in names {
            let e = &self.entries[&name];
            if !e.loaded || e.in_flight {
                continue;
            }
            let exp = e.expires_at();
            if e.next_refresh_at.is_some_and(|r| r <= t) {
                let e = self.entries.get_mut(&name).unwrap();
                e.next_refresh_at = None;
                // A sliding token nobody used since it was fetched is left to lapse: the
                // next request fetches a new one (no needless token calls when idle).
                if e.cred.as_ref().is_some_and(|c| c.sliding)
                    && !e.used_since_fetch
                    && e.failures == 0
                {
                    continue;
                }
                self.start_renewal(&name);
                continue;
            }
            let Some(exp) = exp else { continue };
            let automatic = e.automatic();
            let (kind, state) = (e.kind, e.state);
            if t >= exp && matches!(state, State::Valid | State::Expiring) {
                self.entries.get_mut(&name).unwrap().state = State::Expired;
                if automatic {
                    // e.g. an idle sliding token: the next request fetches a new one
                } else if kind == Kind::Interactive {
                    self.login_required(&name, "the token expired and cannot be refreshed".into());
                } else {
                    self.notify(&name, Event::Expired, String::new());
                }
            } else if !automatic && state == State::Valid && t >= exp - lead {
                self.entries.get_mut(&name).unwrap().state = State::Expiring;
                self.notify(&name, Event::Expiring, String::new());
            }
        }
    }

    fn notify(&mut self, name: &str, event: Event, cause: String) {
        let t = now();
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        if !self.config.notifications || !e.notify || e.notified.contains(&event) {
            return;
        }
        // Rate-limited first, recorded after: an event dropped by the limit can still be
        // told when it happens again.
        if !self.rate.allow(t) {
            return;
        }
        e.notified.insert(event);
        let when = e
            .expires_at()
            .and_then(|x| {
                x.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let fix = match e.kind {
            Kind::Interactive => format!("Log in again: keyport login {name}"),
            Kind::Static => format!("Paste a new token: keyport secret set {name} token"),
            Kind::Fetched => format!("Check it with: keyport token {name}"),
        };
        let cause = if cause.is_empty() {
            String::new()
        } else {
            format!(" ({cause})")
        };
        let (summary, body) = match event {
            Event::Expiring => (
                format!("Keyport: {name} expires soon"),
                format!("The token of '{name}' expires at {when} and cannot be renewed automatically{cause}. {fix}"),
            ),
            Event::Expired => (
                format!("Keyport: {name} expired"),
                format!("The token of '{name}' expired at {when}. {fix}"),
            ),
            Event::RenewalFailing => (
                format!("Keyport: cannot renew {name}"),
                format!(
                    "{} renewals of '{name}' failed{cause}. Keyport keeps trying; the current token works until {when}.",
                    e.failures
                ),
            ),
            Event::LoginRequired => (
                format!("Keyport: log in to {name}"),
                format!("'{name}' needs you to log in{cause}. Choose Log in to open your browser, or run: keyport login {name}"),
            ),
        };
        let on_login: Option<crate::notify::OnLogin> = (event == Event::LoginRequired).then(|| {
            let handle = AgentHandle {
                tx: self.tx.clone(),
            };
            let name = name.to_string();
            Box::new(move || handle.login(&name)) as crate::notify::OnLogin
        });
        self.notifier.send(
            Notice {
                profile: name.to_string(),
                event,
                summary,
                body,
            },
            on_login,
        );
    }

    fn status(&self) -> Vec<ProfileStatus> {
        self.entries
            .iter()
            .map(|(name, e)| ProfileStatus {
                name: name.clone(),
                preset: e.preset.name.clone(),
                scheme: e.preset.scheme_name().to_string(),
                state: e.state,
                expires_at: e.expires_at(),
                next_refresh_at: e.next_refresh_at,
                last_refresh_at: e.last_refresh_at,
                failures: e.failures,
                last_error: e.last_error.clone(),
            })
            .collect()
    }
}
