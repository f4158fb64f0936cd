//! The agent's owner task: every profile's state machine, its timers, renewals, loads of
//! stored tokens, logins, notifications and events. One task owns all of it, so there are
//! no locks; it publishes what readers may take to the board after every change.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc};

use super::board::{Served, Slot};
use super::schedule::{backoff, refresh_at, Jitter, RateLimit};
use super::timers::Timers;
use super::{stopping, AgentConfig, AgentEvent, AgentHandle, Msg, ProfileStatus, Reply, State};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, ErrorInfo, Result};
use crate::helper::upstream::Route;
use crate::keyport::Keyport;
use crate::login::{Cancel, DesktopLoginUi, LoginOptions, LoginStep, LoginUi};
use crate::notify::{Event, Notice, Notifier};
use crate::preset::{self, Grant, SchemeSpec};
use crate::profile::{parse_datetime, Profile};
use crate::scheme::Credential;

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

fn kind_of(profile: &Profile) -> Kind {
    match preset::get(&profile.preset).map(|p| &p.auth.scheme) {
        Ok(SchemeSpec::Login(_)) => Kind::Fetched,
        Ok(SchemeSpec::Oauth2(o)) if o.grant == Grant::ClientCredentials => Kind::Fetched,
        Ok(SchemeSpec::Oauth2(_)) => Kind::Interactive,
        _ => Kind::Static,
    }
}

struct Entry {
    preset: &'static preset::Preset,
    kind: Kind,
    notify: bool,
    /// The profile's token fingerprint: credentials made for another one are not served.
    fingerprint: String,
    parent: Option<String>,
    slot: Arc<Slot>,
    cred: Option<Arc<Served>>,
    /// Static profiles: the expiry the user set, known without the keychain.
    static_expiry: Option<OffsetDateTime>,
    state: State,
    /// The state subscribers were last told.
    announced: State,
    last_error: Option<ErrorInfo>,
    failures: u32,
    next_refresh_at: Option<OffsetDateTime>,
    last_refresh_at: Option<OffsetDateTime>,
    /// The renewal in flight; only its result counts.
    renewing: Option<u64>,
    /// The stored token is being read (queued or in flight); requests wait for it.
    loading: Option<u64>,
    /// The last renewal failed in a way only a person can fix (e.g. a wrong password):
    /// don't try again until the profile or its secrets change.
    blocked: bool,
    waiters: Vec<Reply<Arc<Served>>>,
    /// Events already notified for the current token.
    notified: HashSet<Event>,
    /// The login in flight and how to cancel it.
    login: Option<(u64, Cancel)>,
}

impl Entry {
    fn new(profile: &Profile) -> Option<Entry> {
        let preset = preset::get(&profile.preset).ok()?;
        let kind = kind_of(profile);
        let static_expiry = (kind == Kind::Static)
            .then(|| {
                profile
                    .settings
                    .get("expires_at")
                    .and_then(|v| parse_datetime("expires_at", v).ok())
            })
            .flatten();
        // until the stored token has been read (or fetched)
        let state = if kind == Kind::Static {
            State::Valid
        } else {
            State::Refreshing
        };
        Some(Entry {
            preset,
            kind,
            notify: profile.notify,
            fingerprint: profile.token_fingerprint(),
            parent: profile.settings.get("parent").cloned(),
            slot: Arc::new(Slot::default()),
            cred: None,
            static_expiry,
            state,
            announced: state,
            last_error: None,
            failures: 0,
            next_refresh_at: None,
            last_refresh_at: None,
            renewing: None,
            loading: None,
            blocked: false,
            waiters: Vec::new(),
            notified: HashSet::new(),
            login: None,
        })
    }

    fn expires_at(&self) -> Option<OffsetDateTime> {
        self.cred
            .as_ref()
            .and_then(|c| c.credential.expires_at)
            .or(self.static_expiry)
    }

    fn refreshable(&self) -> bool {
        self.cred.as_ref().is_some_and(|c| c.credential.refreshable)
    }

    /// Can Keyport keep this token valid without a person?
    fn automatic(&self) -> bool {
        let renewable = match self.kind {
            Kind::Static => false,
            Kind::Fetched => true,
            Kind::Interactive => self.refreshable(),
        };
        renewable && self.state != State::Expiring
    }

    fn busy(&self) -> bool {
        self.renewing.is_some() || self.loading.is_some()
    }

    /// The next moment something is due for this profile. Must agree with `Core::tick`:
    /// every time returned here is consumed there, or the loop would spin.
    fn due(&self, lead: time::Duration) -> Option<OffsetDateTime> {
        if self.busy() {
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

/// Shows a login's steps on the caller's UI and publishes them as events.
struct TeeUi {
    name: String,
    inner: Arc<dyn LoginUi>,
    events: broadcast::Sender<AgentEvent>,
}

impl LoginUi for TeeUi {
    fn show(&self, step: &LoginStep) {
        self.inner.show(step);
        let _ = self.events.send(AgentEvent::Login {
            name: self.name.clone(),
            step: step.clone(),
        });
    }
}

type ChangeRequest = (Option<String>, Option<Reply<()>>);

pub(crate) struct Core {
    kp: Arc<Keyport>,
    clock: Arc<dyn Clock>,
    /// The profiles as of the last change; renewals use this snapshot.
    cfg: Arc<Config>,
    config: AgentConfig,
    /// In force: the command line's, else the config's `[agent]` settings.
    lead: time::Duration,
    notifications: bool,
    notifier: Arc<dyn Notifier>,
    handle: AgentHandle,
    entries: BTreeMap<String, Entry>,
    timers: Timers,
    /// Entries changed since the last [`Core::flush`].
    dirty: BTreeSet<String>,
    events: broadcast::Sender<AgentEvent>,
    jitter: Jitter,
    rate: RateLimit,
    seq: u64,
    /// Stored tokens to read, one at a time: requested profiles first.
    urgent: VecDeque<String>,
    background: VecDeque<String>,
    load_in_flight: bool,
    /// A config read is in flight; changes that arrive meanwhile wait for the next one.
    config_loading: bool,
    pending_changes: Vec<ChangeRequest>,
    /// Every spawned task holds a clone; [`super::Agent::stop`] waits for all to drop.
    drain: mpsc::Sender<()>,
}

impl Core {
    pub fn new(
        kp: Arc<Keyport>,
        cfg: Config,
        config: AgentConfig,
        notifier: Arc<dyn Notifier>,
        handle: AgentHandle,
        drain: mpsc::Sender<()>,
    ) -> Core {
        let (events, _) = broadcast::channel(config.event_buffer.max(16));
        let mut core = Core {
            clock: kp.clock().clone(),
            kp,
            cfg: Arc::new(Config::default()),
            // (both set from the config by `apply_config` below)
            lead: time::Duration::ZERO,
            notifications: false,
            rate: RateLimit::new(config.notifications_per_minute),
            config,
            notifier,
            handle,
            entries: BTreeMap::new(),
            timers: Timers::default(),
            dirty: BTreeSet::new(),
            events,
            jitter: Jitter::new(),
            seq: 1,
            urgent: VecDeque::new(),
            background: VecDeque::new(),
            load_in_flight: false,
            config_loading: false,
            pending_changes: Vec::new(),
            drain,
        };
        // Every profile is on the board before anyone can ask.
        core.apply_config(cfg, &[], false);
        core.flush();
        core
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let guard = self.drain.clone();
        tokio::spawn(async move {
            work.await;
            drop(guard);
        });
    }

    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        loop {
            self.run_due();
            self.flush();
            let sleep = self.timers.next().map(|at| self.clock.sleep_until(at));
            tokio::select! {
                msg = rx.recv() => match msg {
                    None | Some(Msg::Stop) => break,
                    Some(m) => {
                        // Timers first, so an answer reflects everything due by now.
                        self.run_due();
                        self.handle(m);
                    }
                },
                _ = async { sleep.expect("guarded").await }, if sleep.is_some() => {}
            }
        }
        for e in self.entries.values_mut() {
            for w in e.waiters.drain(..) {
                let _ = w.send(Err(stopping()));
            }
            if let Some((_, cancel)) = &e.login {
                cancel.cancel();
            }
        }
        for (_, reply) in self.pending_changes.drain(..) {
            if let Some(r) = reply {
                let _ = r.send(Err(stopping()));
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Miss {
                name,
                min_valid,
                reply,
            } => self.miss(name, min_valid, reply),
            Msg::Refresh { name, reply } => {
                let Some(e) = self.entries.get_mut(&name) else {
                    let _ = reply.send(Err(Error::ProfileNotFound(name)));
                    return;
                };
                e.waiters.push(reply);
                e.blocked = false; // a person asked: try
                if e.kind == Kind::Static {
                    e.cred = None;
                }
                self.start_renewal(&name);
            }
            Msg::Status { reply } => {
                let _ = reply.send(self.statuses());
            }
            Msg::Subscribe { reply } => {
                // Flush first: the snapshot and the events after it must not overlap.
                self.flush();
                let _ = reply.send((self.statuses(), self.events.subscribe()));
            }
            Msg::Changed { name, reply } => {
                self.pending_changes.push((name, reply));
                self.read_config();
            }
            Msg::ConfigLoaded { result, requests } => {
                self.config_loading = false;
                match result {
                    Ok(cfg) => {
                        let scoped: Vec<String> =
                            requests.iter().filter_map(|(n, _)| n.clone()).collect();
                        self.apply_config(cfg, &scoped, true);
                        for (_, reply) in requests {
                            if let Some(r) = reply {
                                let _ = r.send(Ok(()));
                            }
                        }
                    }
                    Err(err) => {
                        // Keep serving the last good snapshot; say why to whoever asked.
                        let info = ErrorInfo::from(&err);
                        for (_, reply) in requests {
                            if let Some(r) = reply {
                                let _ = r.send(Err(info.clone().into()));
                            }
                        }
                    }
                }
                if !self.pending_changes.is_empty() {
                    self.read_config();
                }
            }
            Msg::Login {
                name,
                opts,
                ui,
                cancel,
                reply,
            } => self.login(name, opts, ui, cancel, reply),
            Msg::CancelLogin { name } => {
                if let Some((_, c)) = self.entries.get(&name).and_then(|e| e.login.as_ref()) {
                    c.cancel();
                }
            }
            Msg::Stop => {}
            Msg::Loaded { name, seq, result } => {
                self.load_in_flight = false;
                self.loaded(&name, seq, result);
                self.pump_loads();
            }
            Msg::Renewed { name, seq, result } => self.renewed(&name, seq, result),
            Msg::LoginFinished {
                name,
                seq,
                result,
                reply,
            } => self.login_finished(&name, seq, result, reply),
        }
    }

    // ---- requests --------------------------------------------------------------------

    fn miss(&mut self, name: String, min_valid: i64, reply: Reply<Arc<Served>>) {
        let now = self.clock.now();
        let refusal = self.refusal(&name, now);
        let Some(e) = self.entries.get_mut(&name) else {
            let _ = reply.send(Err(Error::ProfileNotFound(name)));
            return;
        };
        e.slot.mark_used();
        if e.loading.is_some() {
            e.waiters.push(reply);
            if !self.urgent.contains(&name) {
                self.urgent.push_back(name);
            }
            self.pump_loads();
            return;
        }
        if let Some(c) = e.cred.as_ref().filter(|c| c.valid_for(now, min_valid)) {
            let _ = reply.send(Ok(c.clone()));
            return;
        }
        if let Some(refusal) = refusal {
            // Don't hammer an endpoint that just failed (a wrong password could lock the
            // account): the old token while it lasts, else the reason.
            let _ = reply.send(match e.cred.as_ref().filter(|c| c.unexpired(now)) {
                Some(c) => Ok(c.clone()),
                None => Err(refusal.into()),
            });
            return;
        }
        e.waiters.push(reply);
        self.start_renewal(&name);
    }

    /// Should requests be answered without a renewal right now? The answer if so.
    fn refusal(&self, name: &str, now: OffsetDateTime) -> Option<ErrorInfo> {
        let e = self.entries.get(name)?;
        if e.busy() {
            return None;
        }
        let backing_off = e.state == State::Error && e.next_refresh_at.is_some_and(|r| r > now);
        if e.blocked || backing_off {
            return Some(
                e.last_error.clone().unwrap_or_else(|| {
                    ErrorInfo::new(crate::ErrorKind::Internal, "renewal failed")
                }),
            );
        }
        if e.state == State::LoginRequired && e.kind == Kind::Interactive {
            return Some(ErrorInfo::from(&Error::LoginRequired {
                profile: name.to_string(),
                reason: e
                    .last_error
                    .as_ref()
                    .map_or_else(|| "not logged in".into(), |x| x.message.clone()),
            }));
        }
        None
    }

    // ---- renewals --------------------------------------------------------------------

    /// Starts one renewal (or, for static profiles, one render) unless one is running.
    fn start_renewal(&mut self, name: &str) {
        let seq = self.next_seq();
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        if e.renewing.is_some() {
            return;
        }
        e.renewing = Some(seq);
        self.dirty.insert(name.to_string());
        if e.kind != Kind::Static {
            e.state = State::Refreshing;
            let _ = self.events.send(AgentEvent::RenewalStarted {
                name: name.to_string(),
            });
        }
        let newer_than = e.cred.as_ref().and_then(|c| c.credential.obtained_at);
        let kind = e.kind;
        let (kp, cfg, tx) = (self.kp.clone(), self.cfg.clone(), self.handle.tx.clone());
        let name = name.to_string();
        self.spawn(async move {
            // The work runs in a task of its own so that even a panic in it becomes an
            // answer (otherwise the renewal would never end and waiters would hang).
            let work = tokio::spawn({
                let name = name.clone();
                async move {
                    match kind {
                        Kind::Static => kp.credential_valid_for_in(&cfg, &name, 0).await,
                        _ => kp.renew_in(&cfg, &name, newer_than).await,
                    }
                }
            });
            let result = work
                .await
                .unwrap_or_else(|e| Err(Error::Internal(format!("the renewal failed ({e})"))));
            let _ = tx.send(Msg::Renewed { name, seq, result });
        });
    }

    fn renewed(&mut self, name: &str, seq: u64, result: Result<Credential>) {
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        if e.renewing != Some(seq) {
            return; // superseded (a login, or the profile changed): newer work owns it
        }
        e.renewing = None;
        self.dirty.insert(name.to_string());
        let result = result.and_then(|cred| {
            if cred
                .fingerprint
                .as_ref()
                .is_some_and(|f| *f != e.fingerprint)
            {
                // Obtained with settings the profile no longer has: never served.
                return Err(Error::Internal(
                    "a renewal finished with outdated settings".into(),
                ));
            }
            Served::new(cred)
        });
        match result {
            Ok(served) => self.adopt(name, Arc::new(served), true),
            Err(err) => self.failed(name, err),
        }
    }

    /// A new credential (from a renewal, a login or the keychain) becomes the one served.
    fn adopt(&mut self, name: &str, served: Arc<Served>, renewed: bool) {
        let t = self.clock.now();
        let base = time::Duration::try_from(self.config.backoff_base).unwrap_or_default();
        let jitter = self.jitter.sample();
        let lead = self.lead.unsigned_abs();
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        let c = &served.credential;
        e.notified.clear();
        e.failures = 0;
        e.last_error = None;
        e.blocked = false;
        e.state = State::Valid;
        // A fresh token starts unused; waiters being answered now are its first use.
        e.slot.take_used();
        if !e.waiters.is_empty() {
            e.slot.mark_used();
        }
        if renewed && e.kind != Kind::Static {
            e.last_refresh_at = Some(t);
        }
        // Never sooner than the backoff base: a token that arrives already expired (clock
        // skew, expires_in 0) must not make us renew in a tight loop.
        e.next_refresh_at = match (c.obtained_at, c.expires_at, c.refreshable) {
            (Some(o), Some(x), true) if e.kind != Kind::Static => {
                Some(refresh_at(o, x, lead, jitter).max(if renewed { t + base } else { t }))
            }
            _ => None,
        };
        // Published before any waiter hears of it, so the waiter's next read finds it.
        e.slot.publish(Some(served.clone()), None);
        for w in e.waiters.drain(..) {
            let _ = w.send(Ok(served.clone()));
        }
        e.cred = Some(served);
        self.dirty.insert(name.to_string());
        if renewed {
            let profile = self.status(name);
            let _ = self.events.send(AgentEvent::RenewalSucceeded { profile });
        }
    }

    fn failed(&mut self, name: &str, err: Error) {
        let t = self.clock.now();
        let (base, cap) = (self.config.backoff_base, self.config.backoff_cap);
        let jitter = self.jitter.sample();
        let notify_after = self.config.notify_after_failures;
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        let info = ErrorInfo::from(&err);
        let old = e.cred.clone().filter(|c| c.unexpired(t));
        // Keep serving the old token until it really expires.
        for w in e.waiters.drain(..) {
            let _ = w.send(match &old {
                Some(c) => Ok(c.clone()),
                None => Err(info.clone().into()),
            });
        }
        e.last_error = Some(info.clone());
        self.dirty.insert(name.to_string());
        let msg = info.message.clone();
        if matches!(err, Error::LoginRequired { .. }) {
            e.cred = old;
            self.login_required(name, msg);
        } else if err.needs_person() {
            e.next_refresh_at = None;
            e.blocked = true;
            if e.kind == Kind::Static {
                if matches!(err, Error::TokenExpired { .. }) {
                    e.state = State::Expired;
                } else {
                    e.state = State::Error;
                }
            } else {
                e.state = if old.is_some() {
                    State::Expiring
                } else {
                    State::Error
                };
                if old.is_some() {
                    self.notify(name, Event::Expiring, msg);
                }
            }
        } else {
            e.failures += 1;
            e.state = State::Error;
            e.next_refresh_at = Some(t + backoff(e.failures, base, cap, jitter));
            if e.failures >= notify_after {
                self.notify(name, Event::RenewalFailing, msg);
            }
        }
        let profile = self.status(name);
        let _ = self.events.send(AgentEvent::RenewalFailed {
            profile,
            error: info,
        });
    }

    fn login_required(&mut self, name: &str, reason: String) {
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        e.state = State::LoginRequired;
        e.next_refresh_at = None;
        if e.last_error.is_none() {
            e.last_error = Some(ErrorInfo::from(&Error::LoginRequired {
                profile: name.to_string(),
                reason: reason.clone(),
            }));
        }
        self.dirty.insert(name.to_string());
        self.notify(name, Event::LoginRequired, reason);
    }

    /// Puts the config's `[agent]` settings in force, unless the command line fixed them.
    /// A new lead time reschedules every token's renewal and warnings at once.
    fn apply_settings(&mut self) {
        let s = &self.cfg.agent;
        self.notifications = self.config.notifications.unwrap_or(s.notifications);
        let lead = self
            .config
            .lead
            .unwrap_or(std::time::Duration::from_secs(s.lead));
        let lead = time::Duration::try_from(lead).unwrap_or(time::Duration::ZERO);
        if lead == self.lead {
            return;
        }
        self.lead = lead;
        let now = self.clock.now();
        for (name, e) in &mut self.entries {
            if e.next_refresh_at.is_some() && e.failures == 0 {
                if let Some(c) = &e.cred {
                    let c = &c.credential;
                    if let (Some(o), Some(x)) = (c.obtained_at, c.expires_at) {
                        let at = refresh_at(o, x, lead.unsigned_abs(), self.jitter.sample());
                        e.next_refresh_at = Some(at.max(now));
                    }
                }
            }
            // re-armed by the next flush (warnings follow `due(lead)`)
            self.dirty.insert(name.clone());
        }
    }

    // ---- timers ----------------------------------------------------------------------

    /// Runs what is due: renewals, tokens about to expire or expired.
    fn run_due(&mut self) {
        let now = self.clock.now();
        for name in self.timers.pop_due(now) {
            self.dirty.insert(name.clone());
            self.tick(&name, now);
        }
    }

    fn tick(&mut self, name: &str, t: OffsetDateTime) {
        let lead = self.lead;
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        if e.busy() {
            return;
        }
        if e.next_refresh_at.is_some_and(|r| r <= t) {
            e.next_refresh_at = None;
            // A sliding token nobody used since it was fetched is left to lapse: the next
            // request fetches a new one (no needless token calls when idle).
            let sliding = e.cred.as_ref().is_some_and(|c| c.credential.sliding);
            if sliding && e.failures == 0 && !e.slot.take_used() {
                return;
            }
            self.start_renewal(name);
            return;
        }
        let Some(exp) = e.expires_at() else { return };
        let automatic = e.automatic();
        let (kind, state) = (e.kind, e.state);
        if t >= exp && matches!(state, State::Valid | State::Expiring) {
            e.state = State::Expired;
            if automatic {
                // e.g. an idle sliding token: the next request fetches a new one
            } else if kind == Kind::Interactive {
                self.login_required(name, "the token expired and cannot be refreshed".into());
            } else {
                self.notify(name, Event::Expired, String::new());
            }
        } else if !automatic && state == State::Valid && t >= exp - lead {
            e.state = State::Expiring;
            self.notify(name, Event::Expiring, String::new());
        }
    }

    /// Publishes dirty entries to the board, re-arms their timers and tells subscribers
    /// about state changes.
    fn flush(&mut self) {
        let now = self.clock.now();
        for name in std::mem::take(&mut self.dirty) {
            let refusal = self.refusal(&name, now);
            let Some(e) = self.entries.get_mut(&name) else {
                self.timers.set(&name, None);
                continue;
            };
            e.slot.publish(e.cred.clone(), refusal);
            self.timers.set(&name, e.due(self.lead));
            if e.state != e.announced {
                let from = std::mem::replace(&mut e.announced, e.state);
                let profile = self.status(&name);
                let _ = self.events.send(AgentEvent::State { profile, from });
            }
        }
    }

    // ---- stored tokens ---------------------------------------------------------------

    /// Queues a read of `name`'s stored token; requests for it wait meanwhile.
    fn queue_load(&mut self, name: &str, urgent: bool) {
        let seq = self.next_seq();
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        e.loading = Some(seq);
        self.dirty.insert(name.to_string());
        if urgent {
            self.urgent.push_back(name.to_string());
        } else {
            self.background.push_back(name.to_string());
        }
        self.pump_loads();
    }

    /// Starts the next queued read unless one is in flight: one keychain read at a time
    /// (gentle with the keychain daemon), requested profiles first. (Handing the owner the
    /// next read before the last one's answer came back measured no faster.)
    fn pump_loads(&mut self) {
        if self.load_in_flight {
            return;
        }
        while let Some(name) = self
            .urgent
            .pop_front()
            .or_else(|| self.background.pop_front())
        {
            let Some(seq) = self.entries.get(&name).and_then(|e| e.loading) else {
                continue; // read already (it was queued twice), or gone
            };
            self.load_in_flight = true;
            let (kp, cfg, tx) = (self.kp.clone(), self.cfg.clone(), self.handle.tx.clone());
            self.spawn(async move {
                let work = tokio::spawn({
                    let name = name.clone();
                    async move { kp.stored_credential_in(&cfg, &name).await }
                });
                let result = work.await.unwrap_or_else(|e| {
                    Err(Error::Internal(format!(
                        "reading the stored token failed ({e})"
                    )))
                });
                let _ = tx.send(Msg::Loaded { name, seq, result });
            });
            return;
        }
    }

    fn loaded(&mut self, name: &str, seq: u64, result: Result<Option<Credential>>) {
        let t = self.clock.now();
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        if e.loading != Some(seq) {
            return; // (a newer read of it is queued)
        }
        e.loading = None;
        self.dirty.insert(name.to_string());
        let served = match result {
            Ok(Some(c)) if c.expires_at.is_none_or(|x| x > t) => match Served::new(c) {
                Ok(s) => Some(Arc::new(s)),
                Err(err) => return self.failed(name, err),
            },
            Ok(Some(c)) if c.refreshable => {
                // An expired access token with a refresh token: refresh it.
                e.cred = Served::new(c).ok().map(Arc::new);
                self.start_renewal(name);
                return;
            }
            Ok(_) => None,
            Err(err) => return self.failed(name, err),
        };
        match served {
            Some(s) => {
                let same = e.cred.as_ref().is_some_and(|c| {
                    c.credential.obtained_at == s.credential.obtained_at
                        && c.credential.headers == s.credential.headers
                });
                // A renewal that finished while this read was queued has the newer token.
                let older = e.cred.as_ref().is_some_and(|c| {
                    c.credential.obtained_at > s.credential.obtained_at
                        && c.credential.fingerprint == s.credential.fingerprint
                });
                if older {
                    let current = e.cred.clone().expect("checked");
                    for w in e.waiters.drain(..) {
                        let _ = w.send(Ok(current.clone()));
                    }
                } else if same && e.state == State::Valid {
                    // nothing new: keep the schedule
                    for w in e.waiters.drain(..) {
                        let _ = w.send(Ok(s.clone()));
                    }
                } else {
                    self.adopt(name, s, false);
                }
            }
            None if e.kind == Kind::Interactive => {
                e.cred = None;
                let waiters = std::mem::take(&mut e.waiters);
                let reason = "not logged in, or the session expired".to_string();
                self.login_required(name, reason.clone());
                for w in waiters {
                    let _ = w.send(Err(Error::LoginRequired {
                        profile: name.to_string(),
                        reason: reason.clone(),
                    }));
                }
            }
            // No usable token stored: get one now, so it is ready before anyone asks.
            None => {
                e.cred = None;
                self.start_renewal(name);
            }
        }
    }

    // ---- changes ---------------------------------------------------------------------

    /// Reads the config off the async threads, unless a read is already in flight (the
    /// changes that arrived meanwhile get the next read: the file may have changed after
    /// that read began).
    fn read_config(&mut self) {
        if self.config_loading || self.pending_changes.is_empty() {
            return;
        }
        self.config_loading = true;
        let requests = std::mem::take(&mut self.pending_changes);
        let (kp, tx) = (self.kp.clone(), self.handle.tx.clone());
        self.spawn(async move {
            let result = tokio::task::spawn_blocking(move || kp.load())
                .await
                .unwrap_or_else(|e| {
                    Err(Error::Internal(format!("reading the config failed ({e})")))
                });
            let _ = tx.send(Msg::ConfigLoaded { result, requests });
        });
    }

    /// Adopts a new config: added, removed and changed profiles are updated one by one
    /// (nothing else is touched); `rescan` names whose keychain items may have changed
    /// are read again while what they serve stays served.
    fn apply_config(&mut self, cfg: Config, rescan: &[String], later: bool) {
        let old = std::mem::replace(&mut self.cfg, Arc::new(cfg));
        let new = self.cfg.clone();
        self.apply_settings();
        let mut board_changed = false;
        let mut changed_fingerprints = Vec::new();
        // Added or changed here: already being (re)read, once is enough.
        let mut touched = BTreeSet::new();
        let names: BTreeSet<&String> = old.profiles.keys().chain(new.profiles.keys()).collect();
        for name in names {
            match (old.profiles.get(name), new.profiles.get(name)) {
                (Some(_), None) => {
                    self.remove_entry(name);
                    board_changed = true;
                }
                (None, Some(p)) => {
                    board_changed |= self.add_entry(name, p, later);
                    touched.insert(name.clone());
                }
                (Some(a), Some(b)) if a != b => {
                    if a.token_fingerprint() != b.token_fingerprint() {
                        changed_fingerprints.push(name.clone());
                    }
                    board_changed |= self.change_entry(name, b);
                    touched.insert(name.clone());
                }
                _ => {}
            }
        }
        // A child's token was obtained with its parent's credential.
        let children: Vec<String> = self
            .entries
            .iter()
            .filter(|(n, e)| {
                !touched.contains(*n)
                    && e.parent
                        .as_ref()
                        .is_some_and(|p| changed_fingerprints.contains(p))
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in children {
            self.refetch(&name);
            touched.insert(name);
        }
        for name in rescan.iter().filter(|n| !touched.contains(*n)) {
            self.rescan(name);
        }
        // The helper's routes: a child's follows its parent's base URL, so all of them.
        if old.profiles != new.profiles || !later {
            for (name, e) in &self.entries {
                e.slot.set_route(Route::of(&new, name));
            }
        }
        if board_changed {
            self.handle.board.set_slots(
                self.entries
                    .iter()
                    .map(|(n, e)| (n.clone(), e.slot.clone())),
            );
        }
    }

    fn add_entry(&mut self, name: &str, profile: &Profile, later: bool) -> bool {
        let Some(entry) = Entry::new(profile) else {
            return false;
        };
        let kind = entry.kind;
        self.entries.insert(name.to_string(), entry);
        self.dirty.insert(name.to_string());
        if kind != Kind::Static {
            self.queue_load(name, later);
        }
        if later {
            let profile = self.status(name);
            let _ = self.events.send(AgentEvent::Added { profile });
        }
        true
    }

    fn remove_entry(&mut self, name: &str) {
        if let Some(mut e) = self.entries.remove(name) {
            for w in e.waiters.drain(..) {
                let _ = w.send(Err(Error::ProfileNotFound(name.to_string())));
            }
            if let Some((_, c)) = &e.login {
                c.cancel();
            }
            self.timers.set(name, None);
            let _ = self.events.send(AgentEvent::Removed {
                name: name.to_string(),
            });
        }
    }

    /// A profile whose settings changed. Same fingerprint (e.g. `notify`, extra headers):
    /// keep serving while its stored token is read again. Another fingerprint: a new state
    /// machine; what it served is dropped at once. Returns whether the board must change.
    fn change_entry(&mut self, name: &str, profile: &Profile) -> bool {
        let Some(mut fresh) = Entry::new(profile) else {
            self.remove_entry(name);
            return true;
        };
        let Some(old) = self.entries.get_mut(name) else {
            return self.add_entry(name, profile, true);
        };
        if old.fingerprint == fresh.fingerprint && old.kind == fresh.kind {
            old.notify = fresh.notify;
            old.static_expiry = fresh.static_expiry;
            if old.kind == Kind::Static {
                old.cred = None; // re-rendered on the next request
            }
        } else {
            fresh.slot = old.slot.clone();
            fresh.waiters = std::mem::take(&mut old.waiters);
            fresh.login = old.login.take();
            fresh.announced = old.announced;
            *old = fresh;
        }
        self.dirty.insert(name.to_string());
        self.rescan(name);
        let profile = self.status(name);
        let _ = self.events.send(AgentEvent::Changed { profile });
        false
    }

    /// Drops what `name` serves and fetches a new token, whatever is stored (its parent
    /// changed: a stored token was obtained with the old parent's credential).
    fn refetch(&mut self, name: &str) {
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        e.cred = None;
        e.loading = None;
        e.renewing = None;
        e.blocked = false;
        self.dirty.insert(name.to_string());
        self.start_renewal(name);
        let profile = self.status(name);
        let _ = self.events.send(AgentEvent::Changed { profile });
    }

    /// Reads `name`'s stored token again (secrets set, a login or logout elsewhere),
    /// serving what it serves meanwhile; waiters get the result.
    fn rescan(&mut self, name: &str) {
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        e.blocked = false; // something changed: worth trying again
        if e.kind == Kind::Static {
            e.cred = None;
            if !e.waiters.is_empty() {
                self.start_renewal(name);
            }
            return;
        }
        self.queue_load(name, true);
    }

    // ---- logins ----------------------------------------------------------------------

    fn login(
        &mut self,
        name: String,
        opts: LoginOptions,
        ui: Arc<dyn LoginUi>,
        cancel: Cancel,
        reply: Option<Reply<Credential>>,
    ) {
        let seq = self.next_seq();
        let Some(e) = self.entries.get_mut(&name) else {
            let err = Error::ProfileNotFound(name);
            ui.show(&LoginStep::Failed {
                error: (&err).into(),
            });
            if let Some(r) = reply {
                let _ = r.send(Err(err));
            }
            return;
        };
        if e.login.is_some() {
            let err = Error::LoginInProgress { profile: name };
            ui.show(&LoginStep::Failed {
                error: (&err).into(),
            });
            if let Some(r) = reply {
                let _ = r.send(Err(err));
            }
            return;
        }
        e.login = Some((seq, cancel.clone()));
        self.dirty.insert(name.clone());
        let tee = TeeUi {
            name: name.clone(),
            inner: ui,
            events: self.events.clone(),
        };
        let (kp, tx) = (self.kp.clone(), self.handle.tx.clone());
        self.spawn(async move {
            let result = kp.login(&name, &opts, &tee, &cancel).await;
            let _ = tx.send(Msg::LoginFinished {
                name,
                seq,
                result,
                reply,
            });
        });
    }

    fn login_finished(
        &mut self,
        name: &str,
        seq: u64,
        result: Result<Credential>,
        reply: Option<Reply<Credential>>,
    ) {
        if let Some(e) = self.entries.get_mut(name) {
            if e.login.as_ref().is_some_and(|(s, _)| *s == seq) {
                e.login = None;
                self.dirty.insert(name.to_string());
            }
        }
        match &result {
            Ok(cred) => {
                let adopt = self.entries.get(name).map(|e| {
                    cred.fingerprint
                        .as_ref()
                        .is_none_or(|f| *f == e.fingerprint)
                });
                if adopt == Some(true) {
                    if let Ok(s) = Served::new(cred.clone()) {
                        if let Some(e) = self.entries.get_mut(name) {
                            // The login supersedes any renewal or read still running.
                            e.renewing = None;
                            e.loading = None;
                        }
                        self.adopt(name, Arc::new(s), true);
                    }
                }
            }
            Err(Error::LoginCancelled { .. } | Error::LoginInProgress { .. }) => {}
            Err(err) => {
                if let Some(e) = self.entries.get_mut(name) {
                    e.last_error = Some(err.into());
                    self.dirty.insert(name.to_string());
                }
            }
        }
        if let Some(r) = reply {
            let _ = r.send(result);
        }
    }

    // ---- notifications ---------------------------------------------------------------

    fn notify(&mut self, name: &str, event: Event, cause: String) {
        let t = self.clock.now();
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        if !self.notifications || !e.notify || e.notified.contains(&event) {
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
            Event::LoginCode | Event::LoginFailed => return,
        };
        let on_login: Option<crate::notify::OnLogin> = (event == Event::LoginRequired).then(|| {
            let handle = self.handle.clone();
            let ui: Arc<dyn LoginUi> = Arc::new(DesktopLoginUi {
                profile: name.to_string(),
                notifier: self.notifier.clone(),
            });
            let name = name.to_string();
            Box::new(move || handle.start_login(&name, LoginOptions::default(), ui))
                as crate::notify::OnLogin
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

    // ---- status ----------------------------------------------------------------------

    fn status(&self, name: &str) -> ProfileStatus {
        let e = &self.entries[name];
        ProfileStatus {
            name: name.to_string(),
            preset: e.preset.name.clone(),
            scheme: e.preset.scheme_name().to_string(),
            state: e.state,
            expires_at: e.expires_at(),
            next_refresh_at: e.next_refresh_at,
            last_refresh_at: e.last_refresh_at,
            failures: e.failures,
            last_error: e.last_error.as_ref().map(|x| x.message.clone()),
            last_error_kind: e.last_error.as_ref().map(|x| x.kind),
            login_in_progress: e.login.is_some(),
        }
    }

    fn statuses(&self) -> Vec<ProfileStatus> {
        self.entries.keys().map(|n| self.status(n)).collect()
    }
}
