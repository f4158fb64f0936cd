//! Unit tests of the agent's state machine with the injected clock, the in-memory store and
//! an HTTP fake on loopback: renewal timing, single-flight, backoff, sliding use,
//! fingerprints, clock jumps, stop and settings changes with a renewal in flight, logins.
//! Nothing here sleeps to synchronize: tests move the fake clock, then wait for the event
//! that must follow (with a generous timeout that only bounds a failure).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::*;
use crate::clock::FakeClock;
use crate::config::ConfigStore;
use crate::notify::Notice;
use crate::secret::Secret;
use crate::store::{ItemKey, KeychainError, MemoryStore, SecretBundle, SecretStore};
use crate::token::TokenState;

// ---- an HTTP fake of the token endpoints ------------------------------------------------

#[derive(Default)]
struct FakeState {
    /// (path, body, Authorization) of every request, in order.
    requests: Vec<(String, String, String)>,
    /// While set, requests wait before they are answered.
    held: bool,
    /// Answer with this status (and a vendor error body) instead of a token.
    status: Option<u16>,
    lifetime: u64,
    n: u64,
}

struct Fake {
    url: String,
    state: Arc<(Mutex<FakeState>, Condvar)>,
    server: Arc<tiny_http::Server>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.release();
        self.server.unblock();
    }
}

impl Fake {
    fn start(lifetime: u64) -> Fake {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let state = Arc::new((
            Mutex::new(FakeState {
                lifetime,
                ..Default::default()
            }),
            Condvar::new(),
        ));
        let (s, st) = (server.clone(), state.clone());
        std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let st = st.clone();
                // A thread per request: a held request must not hold up the others.
                std::thread::spawn(move || answer(&st, req));
            }
        });
        Fake {
            url: format!("http://127.0.0.1:{port}"),
            state,
            server,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        let out = f(&mut self.state.0.lock().unwrap_or_else(|e| e.into_inner()));
        self.state.1.notify_all();
        out
    }

    fn count(&self) -> usize {
        self.with(|s| s.requests.len())
    }

    fn bodies(&self) -> Vec<String> {
        self.with(|s| s.requests.iter().map(|(_, b, _)| b.clone()).collect())
    }

    /// The Authorization headers sent to paths ending in `suffix`.
    fn auth_to(&self, suffix: &str) -> Vec<String> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|(p, _, _)| p.ends_with(suffix))
                .map(|(_, _, a)| a.clone())
                .collect()
        })
    }

    fn hold(&self) {
        self.with(|s| s.held = true);
    }

    fn release(&self) {
        self.with(|s| s.held = false);
    }

    fn fail_with(&self, status: Option<u16>) {
        self.with(|s| s.status = status);
    }

    /// Waits until `n` requests arrived (they may still be held).
    async fn wait_requests(&self, n: usize) {
        let state = self.state.clone();
        let arrived = tokio::task::spawn_blocking(move || {
            let (m, cv) = &*state;
            let (_g, timeout) = cv
                .wait_timeout_while(m.lock().unwrap(), WAIT, |s| s.requests.len() < n)
                .unwrap();
            !timeout.timed_out()
        });
        assert!(arrived.await.unwrap(), "no request {n} reached the fake");
    }
}

fn answer(st: &(Mutex<FakeState>, Condvar), mut req: tiny_http::Request) {
    let mut body = String::new();
    let _ = req.as_reader().read_to_string(&mut body);
    let path = req.url().to_string();
    let auth = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.to_string())
        .unwrap_or_default();
    let (m, cv) = st;
    let mut s = m.lock().unwrap();
    s.requests.push((path.clone(), body.clone(), auth));
    cv.notify_all();
    s = cv.wait_while(s, |s| s.held).unwrap();
    s.n += 1;
    let (n, life) = (s.n, s.lifetime);
    let (status, text) = match s.status {
        Some(401) => (
            401,
            r#"{"message": "These credentials do not match our records."}"#.to_string(),
        ),
        Some(code) => (code, r#"{"message": "Server Error"}"#.to_string()),
        None if path.ends_with("/oauth/token") => (
            200,
            format!(
                r#"{{"access_token": "at-{n}", "refresh_token": "rt-{n}", "token_type": "Bearer", "expires_in": {life}}}"#
            ),
        ),
        None => {
            // The token says who asked for it (Patchworks' body has the username).
            let who = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["username"].as_str().map(str::to_string))
                .unwrap_or_else(|| "x".into());
            (
                200,
                format!(r#"{{"token": "tok-{n}-{who}", "expires_in": {life}}}"#),
            )
        }
    };
    drop(s);
    let header =
        tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap();
    let _ = req.respond(
        tiny_http::Response::from_string(text)
            .with_status_code(status)
            .with_header(header),
    );
}

// ---- a store that counts, a notifier that records ---------------------------------------

#[derive(Default)]
struct CountingStore {
    inner: MemoryStore,
    gets: AtomicUsize,
    /// The next this many writes fail (a locked keychain, a D-Bus hiccup).
    failing_writes: AtomicUsize,
}

impl SecretStore for CountingStore {
    fn get(&self, key: &ItemKey) -> Result<Option<Secret>, KeychainError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key)
    }
    fn set(&self, key: &ItemKey, value: &Secret) -> Result<(), KeychainError> {
        let fail = self
            .failing_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(KeychainError::Locked {
                service: key.service,
                account: key.account.clone(),
            });
        }
        self.inner.set(key, value)
    }
    fn delete(&self, key: &ItemKey) -> Result<bool, KeychainError> {
        self.inner.delete(key)
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Notice>>);

impl Notifier for Recorder {
    fn send(&self, notice: Notice, _on_login: Option<crate::notify::OnLogin>) {
        self.0.lock().unwrap().push(notice);
    }
}

impl Recorder {
    fn summaries(&self, profile: &str) -> Vec<String> {
        let n = self.0.lock().unwrap();
        n.iter()
            .filter(|n| n.profile == profile)
            .map(|n| n.summary.clone())
            .collect()
    }
}

// ---- the set-up ---------------------------------------------------------------------------

struct Setup {
    _dir: tempfile::TempDir,
    kp: Arc<Keyport>,
    store: Arc<CountingStore>,
    clock: Arc<FakeClock>,
    fake: Fake,
    notices: Arc<Recorder>,
    t0: OffsetDateTime,
}

/// A profile name no other test (or test run) uses: lock files are per name.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn setup(lifetime: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CountingStore::default());
    let t0 = OffsetDateTime::now_utc();
    let clock = FakeClock::new(t0);
    let kp = Keyport::new(ConfigStore::new(dir.path()), store.clone()).with_clock(clock.clone());
    Setup {
        _dir: dir,
        kp: Arc::new(kp),
        store,
        clock,
        fake: Fake::start(lifetime),
        notices: Arc::default(),
        t0,
    }
}

fn secs(s: i64) -> time::Duration {
    time::Duration::seconds(s)
}

impl Setup {
    fn add(&self, name: &str, preset: &str, settings: &[(&str, &str)], secrets: &[(&str, &str)]) {
        let sets: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let given: BTreeSet<String> = secrets.iter().map(|(k, _)| k.to_string()).collect();
        let draft = self.kp.draft(name, preset, &sets, &given).unwrap();
        let mut b = SecretBundle::default();
        for (k, v) in secrets {
            b.insert(*k, Secret::new(*v));
        }
        self.kp.add(name, draft, b).unwrap();
    }

    /// A Patchworks login profile (user `u`) against the fake.
    fn patchworks(&self) -> String {
        let name = unique("pw");
        self.add(
            &name,
            "patchworks-login",
            &[("base_url", &self.fake.url), ("username", "u")],
            &[("password", "pw")],
        );
        name
    }

    /// A pasted bearer token (`bearer`) that expires `secs_left` after the start.
    fn pasted(&self, secs_left: i64) -> String {
        let name = unique("pasted");
        let exp = (self.t0 + secs(secs_left))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        self.add(&name, "bearer", &[("expires_at", &exp)], &[("token", "t")]);
        name
    }

    fn config() -> AgentConfig {
        AgentConfig {
            lead: Some(Duration::from_secs(10)),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
            ..Default::default()
        }
    }

    fn start(&self) -> Agent {
        Agent::start(self.kp.clone(), Self::config(), self.notices.clone()).unwrap()
    }

    fn fingerprint(&self, name: &str) -> String {
        self.kp
            .load()
            .unwrap()
            .get(name)
            .unwrap()
            .token_fingerprint()
    }

    fn stored(&self, name: &str) -> Option<TokenState> {
        TokenState::load(&self.store.inner, name).unwrap()
    }

    fn gets(&self) -> usize {
        self.store.gets.load(Ordering::SeqCst)
    }
}

const WAIT: Duration = Duration::from_secs(20);

/// The next event that satisfies `pred` (a failure after [`WAIT`]).
async fn wait_for(
    sub: &mut Subscription,
    what: &str,
    pred: impl Fn(&AgentEvent) -> bool,
) -> AgentEvent {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(e) = sub.next().await {
            if pred(&e) {
                return Some(e);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the agent stopped before {what}"),
        Err(_) => panic!("no {what} within {WAIT:?}"),
    }
}

/// Waits until every one of `preds` matched some event, in any order.
async fn wait_all(sub: &mut Subscription, what: &str, preds: &[&dyn Fn(&AgentEvent) -> bool]) {
    let mut seen = vec![false; preds.len()];
    let done = tokio::time::timeout(WAIT, async {
        while let Some(e) = sub.next().await {
            for (i, p) in preds.iter().enumerate() {
                seen[i] |= p(&e);
            }
            if seen.iter().all(|s| *s) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(done, Ok(true), "not all of {what} happened: {seen:?}");
}

fn renewed(name: &str) -> impl Fn(&AgentEvent) -> bool + '_ {
    move |e| matches!(e, AgentEvent::RenewalSucceeded { profile } if profile.name == name)
}

fn token(s: &Served) -> String {
    s.headers[0].1.to_str().unwrap().to_string()
}

fn status_of(all: &[ProfileStatus], name: &str) -> ProfileStatus {
    all.iter().find(|p| p.name == name).unwrap().clone()
}

// ---- timing -------------------------------------------------------------------------------

#[tokio::test]
async fn renews_at_about_two_thirds_of_the_lifetime_by_the_clock() {
    let s = setup(60);
    let name = s.patchworks();
    let agent = s.start();
    let h = agent.handle();
    let mut sub = h.subscribe().await.unwrap();
    // No stored token: fetched at start, before anyone asks.
    wait_for(&mut sub, "the first token", renewed(&name)).await;
    assert_eq!(s.fake.count(), 1);
    let st = status_of(&h.status().await.unwrap(), &name);
    let next = st.next_refresh_at.unwrap();
    // 2/3 of 60 s, minus a jitter of up to 10% of the lifetime (6 s)
    assert!(next >= s.t0 + secs(34) && next <= s.t0 + secs(40), "{st:?}");

    // Just before it is due: nothing happens.
    s.clock.advance(next - s.t0 - secs(1));
    let st = status_of(&h.status().await.unwrap(), &name);
    assert_eq!(st.state, State::Valid);
    assert_eq!(s.fake.count(), 1, "not due yet");

    s.clock.advance(secs(2));
    wait_for(&mut sub, "the renewal at 2/3", renewed(&name)).await;
    assert_eq!(s.fake.count(), 2);
    let c = h.credential(&name, 30).await.unwrap();
    assert_eq!(token(&c), "Bearer tok-2-u");
    agent.stop().await;
}

#[tokio::test]
async fn after_a_clock_jump_what_became_due_runs_at_once() {
    let s = setup(3600);
    let name = s.patchworks();
    let pasted = s.pasted(600);
    let agent = s.start();
    let h = agent.handle();
    let mut sub = h.subscribe().await.unwrap();
    wait_for(&mut sub, "the first token", renewed(&name)).await;
    // The machine sleeps for two hours: the wall clock jumps past the renewal (due at
    // ~40 min) and past the pasted token's expiry.
    s.clock.set(s.t0 + secs(7200));
    let expired = |e: &AgentEvent| matches!(e, AgentEvent::State { profile, .. } if profile.name == pasted && profile.state == State::Expired);
    wait_all(
        &mut sub,
        "the renewal and the expiry after the jump",
        &[&renewed(&name), &expired],
    )
    .await;
    assert_eq!(s.fake.count(), 2);
    assert_eq!(
        s.notices.summaries(&pasted),
        [format!("Keyport: {pasted} expired")]
    );
    agent.stop().await;
}

#[tokio::test]
async fn the_configs_agent_settings_are_followed_as_they_change() {
    let s = setup(3600);
    let name = s.patchworks();
    let pasted = s.pasted(600);
    // Nothing fixed by a command line: the config's [agent] settings decide.
    s.kp.save_settings(
        crate::config::AgentSettings {
            notifications: false,
            lead: 120,
        },
        Default::default(),
    )
    .unwrap();
    let config = AgentConfig {
        lead: None,
        notifications: None,
        ..Setup::config()
    };
    let agent = Agent::start(s.kp.clone(), config, s.notices.clone()).unwrap();
    let h = agent.handle();
    let mut sub = h.subscribe().await.unwrap();
    wait_for(&mut sub, "the first token", renewed(&name)).await;
    // A lead of 120 s leaves the renewal at about 2/3 of the hour.
    let next = status_of(&h.status().await.unwrap(), &name)
        .next_refresh_at
        .unwrap();
    assert!(
        next >= s.t0 + secs(2040) && next <= s.t0 + secs(2400),
        "{next}"
    );
    assert_eq!(
        status_of(&h.status().await.unwrap(), &pasted).state,
        State::Valid
    );

    // A lead of 3000 s: the renewal moves to half the lifetime (the earliest the rule
    // allows), and the pasted token (10 min left) is expiring at once; notifications are
    // off, so nobody is told.
    s.kp.save_settings(
        crate::config::AgentSettings {
            notifications: false,
            lead: 3000,
        },
        Default::default(),
    )
    .unwrap();
    h.changed(None).await.unwrap();
    let expiring = |e: &AgentEvent| matches!(e, AgentEvent::State { profile, .. } if profile.name == pasted && profile.state == State::Expiring);
    wait_for(&mut sub, "the pasted token expiring", expiring).await;
    let next = status_of(&h.status().await.unwrap(), &name)
        .next_refresh_at
        .unwrap();
    assert_eq!(next, s.t0 + secs(1800));
    assert!(
        s.notices.summaries(&pasted).is_empty(),
        "notifications are off"
    );

    // Notifications on again: the expiry is told.
    s.kp.save_settings(
        crate::config::AgentSettings {
            notifications: true,
            lead: 3000,
        },
        Default::default(),
    )
    .unwrap();
    h.changed(None).await.unwrap();
    s.clock.set(s.t0 + secs(601));
    let expired = |e: &AgentEvent| matches!(e, AgentEvent::State { profile, .. } if profile.name == pasted && profile.state == State::Expired);
    wait_for(&mut sub, "the pasted token expired", expired).await;
    assert_eq!(
        s.notices.summaries(&pasted),
        [format!("Keyport: {pasted} expired")]
    );
    assert_eq!(s.fake.count(), 1, "no renewal was due yet");
    agent.stop().await;
}

// ---- single-flight, backoff, refusals -----------------------------------------------------

#[tokio::test]
async fn many_waiters_share_one_renewal() {
    let s = setup(600);
    let name = s.patchworks();
    s.fake.hold();
    let agent = s.start();
    let h = agent.handle();
    s.fake.wait_requests(1).await; // the start-up fetch, held
    let waiters: Vec<_> = (0..50)
        .map(|_| {
            let (h, n) = (h.clone(), name.clone());
            tokio::spawn(async move { h.credential(&n, 30).await })
        })
        .collect();
    s.fake.release();
    let mut tokens = BTreeSet::new();
    for w in waiters {
        tokens.insert(token(&w.await.unwrap().unwrap()));
    }
    assert_eq!(tokens, BTreeSet::from(["Bearer tok-1-u".to_string()]));
    assert_eq!(s.fake.count(), 1, "one token request for 50 callers");
    agent.stop().await;
}

#[tokio::test]
async fn a_failing_endpoint_backs_off_and_the_old_token_is_served() {
    let s = setup(60);
    let name = s.patchworks();
    let agent = s.start();
    let h = agent.handle();
    let mut sub = h.subscribe().await.unwrap();
    wait_for(&mut sub, "the first token", renewed(&name)).await;
    s.fake.fail_with(Some(500));
    s.clock.advance(secs(41));
    let failed = |e: &AgentEvent| matches!(e, AgentEvent::RenewalFailed { profile, .. } if profile.name == name);
    let AgentEvent::RenewalFailed { profile, error } =
        wait_for(&mut sub, "a failed renewal", failed).await
    else {
        unreachable!()
    };
    assert_eq!(error.kind, crate::ErrorKind::Unavailable);
    assert!(
        error.message.contains("answered 500: Server Error"),
        "{error:?}"
    );
    assert_eq!((profile.state, profile.failures), (State::Error, 1));
    let retry = profile.next_refresh_at.unwrap();
    let now = s.clock.now();
    assert!(
        retry >= now + secs(1) && retry <= now + secs(2),
        "backoff: {profile:?}"
    );
    // While backing off: the old token (19 s left) is served, from memory, even to a
    // caller that asks for 30 s; the endpoint is left alone.
    let before = s.fake.count();
    for _ in 0..20 {
        assert_eq!(
            token(&h.credential(&name, 30).await.unwrap()),
            "Bearer tok-1-u"
        );
    }
    assert_eq!(s.fake.count(), before);
    // The retry fails again: a longer backoff.
    s.clock.advance(secs(2));
    let AgentEvent::RenewalFailed { profile, .. } =
        wait_for(&mut sub, "the second failure", failed).await
    else {
        unreachable!()
    };
    assert_eq!(profile.failures, 2);
    // The endpoint recovers.
    s.fake.fail_with(None);
    s.clock.advance(secs(4));
    let AgentEvent::RenewalSucceeded { profile } =
        wait_for(&mut sub, "recovery", renewed(&name)).await
    else {
        unreachable!()
    };
    assert_eq!((profile.state, profile.failures), (State::Valid, 0));
    assert_ne!(
        token(&h.credential(&name, 30).await.unwrap()),
        "Bearer tok-1-u"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_refused_password_is_not_retried_until_it_changes() {
    let s = setup(600);
    let name = s.patchworks();
    s.fake.fail_with(Some(401));
    let agent = s.start();
    let h = agent.handle();
    let mut sub = h.subscribe().await.unwrap();
    wait_for(
        &mut sub,
        "the refused login",
        |e| matches!(e, AgentEvent::RenewalFailed { profile, .. } if profile.name == name),
    )
    .await;
    for _ in 0..10 {
        let e = h.credential(&name, 30).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Rejected);
        assert!(e.to_string().contains("do not match our records"), "{e}");
    }
    assert!(
        matches!(h.peek(&name, 30), Lookup::Refused(_)),
        "answered from the board"
    );
    assert_eq!(s.fake.count(), 1, "a 401 is not retried");
    // A new password: tried again at once.
    s.fake.fail_with(None);
    s.kp.set_secret(&name, "password", Secret::new("pw2"))
        .unwrap();
    h.changed(Some(&name)).await.unwrap();
    assert_eq!(
        token(&h.credential(&name, 30).await.unwrap()),
        "Bearer tok-2-u"
    );
    agent.stop().await;
}

// ---- sliding tokens ----------------------------------------------------------------------

#[tokio::test]
async fn a_sliding_token_is_renewed_only_while_it_is_used() {
    let s = setup(0);
    let name = unique("imp");
    s.add(
        &name,
        "improvado",
        &[
            ("base_url", &format!("{}/api/v3", s.fake.url)),
            ("username", "me@example.com"),
            ("workspace_id", "42"),
            ("token_lifetime", "60"),
        ],
        &[("password", "pw")],
    );
    let agent = s.start();
    let h = agent.handle();
    let mut sub = h.subscribe().await.unwrap();
    wait_for(&mut sub, "the first token", renewed(&name)).await;
    // Nobody reads it: at 2/3 nothing happens, at expiry it just lapses.
    s.clock.advance(secs(41));
    assert!(status_of(&h.status().await.unwrap(), &name)
        .next_refresh_at
        .is_none());
    s.clock.advance(secs(20));
    let st = status_of(&h.status().await.unwrap(), &name);
    assert_eq!(st.state, State::Expired);
    assert_eq!(s.fake.count(), 1, "no token calls while idle");
    // A request fetches a new one; reading it keeps it renewed.
    assert_eq!(
        token(&h.credential(&name, 30).await.unwrap()),
        "Bearer tok-2-x"
    );
    wait_for(&mut sub, "the fetch on demand", renewed(&name)).await;
    s.clock.advance(secs(20));
    let _ = h.credential(&name, 30).await.unwrap(); // a use, from the board
    s.clock.advance(secs(21));
    wait_for(&mut sub, "the renewal of a used token", renewed(&name)).await;
    assert_eq!(s.fake.count(), 3);
    agent.stop().await;
}

// ---- fingerprints and changes -------------------------------------------------------------

#[tokio::test]
async fn a_stored_token_from_other_settings_is_never_served() {
    let s = setup(600);
    let name = s.patchworks();
    let stale = TokenState {
        access_token: Secret::new("stale"),
        refresh_token: None,
        expires_at: Some(s.t0 + secs(3600)),
        obtained_at: s.t0,
        scopes: vec![],
        sliding: false,
        widget_url: None,
        fingerprint: Some("obtained-with-other-settings".into()),
    };
    stale.save(&s.store.inner, &name).unwrap();
    // standalone
    let c = s.kp.credential_valid_for(&name, 30).await.unwrap();
    assert_eq!(c.main_value().expose(), "Bearer tok-1-u");
    assert_eq!(
        s.stored(&name).unwrap().fingerprint.as_deref(),
        Some(s.fingerprint(&name).as_str()),
        "saved with its own fingerprint"
    );
    // the agent
    stale.save(&s.store.inner, &name).unwrap();
    let agent = s.start();
    let c = agent.handle().credential(&name, 30).await.unwrap();
    assert_eq!(token(&c), "Bearer tok-2-u");
    agent.stop().await;
}

#[tokio::test]
async fn a_renewal_in_flight_during_a_settings_change_is_never_served() {
    let s = setup(60);
    let name = s.patchworks();
    let agent = s.start();
    let h = agent.handle();
    let mut sub = h.subscribe().await.unwrap();
    wait_for(&mut sub, "the first token", renewed(&name)).await;
    s.fake.hold();
    s.clock.advance(secs(41));
    s.fake.wait_requests(2).await; // the renewal, with the old user name, is held
                                   // Another process changes the user name and tells the agent.
    s.kp.config_store()
        .update(|c| {
            let p = c.profiles.get_mut(&name).unwrap();
            p.settings.insert("username".into(), "other".into());
            Ok(())
        })
        .unwrap();
    h.changed(Some(&name)).await.unwrap();
    assert!(
        !matches!(h.peek(&name, 0), Lookup::Valid(_)),
        "the old user's token is dropped at once"
    );
    s.fake.release();
    let c = h.credential(&name, 30).await.unwrap();
    assert_eq!(
        token(&c),
        "Bearer tok-3-other",
        "fetched with the new settings"
    );
    let bodies = s.fake.bodies();
    assert!(
        bodies[1].contains("\"u\"") && bodies[2].contains("other"),
        "{bodies:?}"
    );
    let stored = s.stored(&name).unwrap();
    assert_eq!(stored.access_token.expose(), "tok-3-other");
    assert_eq!(stored.fingerprint.unwrap(), s.fingerprint(&name));
    agent.stop().await;
}

#[tokio::test]
async fn changes_reach_subscribers_and_unknown_names_never_reach_the_keychain() {
    let s = setup(600);
    let first = s.patchworks();
    let agent = s.start();
    let h = agent.handle();
    let mut sub = h.subscribe().await.unwrap();
    wait_for(&mut sub, "the first token", renewed(&first)).await;
    // warm: from memory, nothing else
    let (gets, calls) = (s.gets(), s.fake.count());
    for i in 0..2000 {
        let e = h.credential(&format!("no-such-{i}"), 30).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotFound);
        assert_eq!(
            token(&h.credential(&first, 30).await.unwrap()),
            "Bearer tok-1-u"
        );
    }
    assert_eq!(
        (s.gets(), s.fake.count()),
        (gets, calls),
        "no keychain read, no token call"
    );

    let second = s.patchworks();
    h.changed(Some(&second)).await.unwrap();
    wait_for(
        &mut sub,
        "the new profile",
        |e| matches!(e, AgentEvent::Added { profile } if profile.name == second),
    )
    .await;
    wait_for(&mut sub, "its state", |e| {
        matches!(e, AgentEvent::State { profile, from: State::Refreshing } if profile.name == second && profile.state == State::Valid)
    })
    .await;
    s.kp.set(&second, "notify", "false").unwrap();
    h.changed(Some(&second)).await.unwrap();
    wait_for(
        &mut sub,
        "the change",
        |e| matches!(e, AgentEvent::Changed { profile } if profile.name == second),
    )
    .await;
    s.kp.remove(&second).unwrap();
    h.changed(Some(&second)).await.unwrap();
    wait_for(
        &mut sub,
        "the removal",
        |e| matches!(e, AgentEvent::Removed { name } if *name == second),
    )
    .await;
    assert!(matches!(h.peek(&second, 0), Lookup::NotFound));
    assert!(
        matches!(h.peek(&first, 0), Lookup::Valid(_)),
        "the others keep serving"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_changed_parent_makes_its_child_fetch_anew_whatever_is_stored() {
    let s = setup(600);
    let (parent, child) = (unique("parent"), unique("child"));
    let body = |who: &str| format!(r#"{{"username": "{who}"}}"#);
    s.add(
        &parent,
        "login-endpoint",
        &[
            ("url", &format!("{}/login", s.fake.url)),
            ("body", &body("parent-a")),
            ("expires_in_pointer", "/expires_in"),
        ],
        &[],
    );
    s.add(
        &child,
        "token-exchange",
        &[
            ("parent", &parent),
            ("url", &format!("{}/exchange", s.fake.url)),
            ("body", &body("child")),
            ("expires_in_pointer", "/expires_in"),
        ],
        &[],
    );
    let agent = s.start();
    let h = agent.handle();
    let first = token(&h.credential(&child, 30).await.unwrap());
    assert!(first.ends_with("-child"), "{first}");
    assert_eq!(s.fake.auth_to("/exchange").len(), 1);
    // A hand edit of the parent (another account), then SIGHUP: the child's stored token
    // was obtained with the old parent's token and must not be served.
    s.kp.config_store()
        .update(|c| {
            let p = c.profiles.get_mut(&parent).unwrap();
            p.settings.insert("body".into(), body("parent-b"));
            Ok(())
        })
        .unwrap();
    h.changed(None).await.unwrap();
    let again = token(&h.credential(&child, 30).await.unwrap());
    assert_ne!(again, first);
    let auths = s.fake.auth_to("/exchange");
    assert_eq!(auths.len(), 2, "{auths:?}");
    assert!(
        auths[1].ends_with("-parent-b"),
        "exchanged with the new parent: {auths:?}"
    );
    agent.stop().await;
}

// ---- stop -----------------------------------------------------------------------------------

#[tokio::test]
async fn stop_waits_for_a_refresh_in_flight_so_the_rotated_token_is_saved() {
    let s = setup(60);
    let name = unique("oauth");
    s.add(
        &name,
        "oauth2-auth-code",
        &[
            ("authorize_url", &format!("{}/oauth/authorize", s.fake.url)),
            ("token_url", &format!("{}/oauth/token", s.fake.url)),
            ("client_id", "app"),
        ],
        &[],
    );
    TokenState {
        access_token: Secret::new("at-0"),
        refresh_token: Some(Secret::new("rt-0")),
        expires_at: Some(s.t0 + secs(60)),
        obtained_at: s.t0,
        scopes: vec![],
        sliding: false,
        widget_url: None,
        fingerprint: Some(s.fingerprint(&name)),
    }
    .save(&s.store.inner, &name)
    .unwrap();
    let agent = s.start();
    let h = agent.handle();
    assert_eq!(
        token(&h.credential(&name, 30).await.unwrap()),
        "Bearer at-0"
    );
    s.fake.hold();
    s.clock.advance(secs(41));
    s.fake.wait_requests(1).await; // the refresh with rt-0 is at the provider
    assert!(s.fake.bodies()[0].contains("refresh_token=rt-0"));
    let stop = tokio::spawn(agent.stop());
    // The agent no longer answers, but stop() waits for the refresh.
    tokio::time::timeout(WAIT, async {
        while h.status().await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert!(!stop.is_finished());
    s.fake.release(); // the provider rotates: rt-0 is dead, rt-1 the only valid one
    tokio::time::timeout(WAIT, stop).await.unwrap().unwrap();
    let saved = s.stored(&name).unwrap();
    assert_eq!(saved.refresh_token.unwrap().expose(), "rt-1");
    assert_eq!(saved.access_token.expose(), "at-1");
}

#[tokio::test]
async fn a_rotated_refresh_token_survives_a_failed_save() {
    let s = setup(60);
    let name = unique("rotating");
    s.add(
        &name,
        "oauth2-auth-code",
        &[
            ("authorize_url", &format!("{}/oauth/authorize", s.fake.url)),
            ("token_url", &format!("{}/oauth/token", s.fake.url)),
            ("client_id", "app"),
        ],
        &[],
    );
    TokenState {
        access_token: Secret::new("at-0"),
        refresh_token: Some(Secret::new("rt-0")),
        expires_at: Some(s.t0 + secs(60)),
        obtained_at: s.t0,
        scopes: vec![],
        sliding: false,
        widget_url: None,
        fingerprint: Some(s.fingerprint(&name)),
    }
    .save(&s.store.inner, &name)
    .unwrap();
    s.clock.advance(secs(45));
    // The provider rotates rt-0 -> rt-1, and the keychain refuses the write.
    s.store.failing_writes.store(1, Ordering::SeqCst);
    let c = s.kp.credential_valid_for(&name, 30).await.unwrap();
    assert_eq!(
        c.main_value().expose(),
        "Bearer at-1",
        "the new token is served"
    );
    assert_eq!(
        s.stored(&name).unwrap().refresh_token.unwrap().expose(),
        "rt-0",
        "not saved"
    );
    assert_eq!(s.kp.unsaved().names(), vec![name.clone()], "kept in memory");
    // The next use saves it, and the next refresh uses rt-1: the session goes on.
    s.clock.advance(secs(45));
    let c = s.kp.credential_valid_for(&name, 30).await.unwrap();
    assert_eq!(c.main_value().expose(), "Bearer at-2");
    let bodies = s.fake.bodies();
    assert!(bodies[0].contains("refresh_token=rt-0"), "{bodies:?}");
    assert!(bodies[1].contains("refresh_token=rt-1"), "{bodies:?}");
    assert_eq!(
        s.stored(&name).unwrap().refresh_token.unwrap().expose(),
        "rt-2"
    );
    assert!(s.kp.unsaved().names().is_empty());
}

// ---- logins ---------------------------------------------------------------------------------

/// A login UI that passes each step to the test.
struct StepUi(tokio::sync::mpsc::UnboundedSender<LoginStep>);

impl LoginUi for StepUi {
    fn show(&self, step: &LoginStep) {
        let _ = self.0.send(step.clone());
    }
}

#[tokio::test]
async fn a_login_is_single_flight_shows_its_url_and_can_be_cancelled() {
    let s = setup(60);
    let name = unique("login");
    s.add(
        &name,
        "oauth2-auth-code",
        &[
            ("authorize_url", "http://127.0.0.1:9/authorize"),
            ("token_url", &format!("{}/oauth/token", s.fake.url)),
            ("client_id", "app"),
        ],
        &[],
    );
    let agent = s.start();
    let h = agent.handle();
    let (tx, mut steps) = tokio::sync::mpsc::unbounded_channel();
    let cancel = Cancel::new();
    let opts = LoginOptions {
        force: true,
        timeout: Duration::from_secs(300),
    };
    let first = tokio::spawn({
        let (h, n, c, o) = (h.clone(), name.clone(), cancel.clone(), opts.clone());
        async move { h.login(&n, o, Arc::new(StepUi(tx)), c).await }
    });
    let url = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(LoginStep::OpenUrl { url, open }) = steps.recv().await {
                assert!(open.starts_with("http://127.0.0.1:") && !open.contains("state="));
                return url;
            }
        }
    })
    .await
    .unwrap();
    assert!(url.starts_with("http://127.0.0.1:9/authorize?"), "{url}");
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(status_of(&h.status().await.unwrap(), &name).login_in_progress);
    // a second start, in the agent or anywhere else, is refused clearly
    let (tx2, _steps2) = tokio::sync::mpsc::unbounded_channel();
    let e = h
        .login(
            &name,
            opts.clone(),
            Arc::new(StepUi(tx2.clone())),
            Cancel::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::LoginInProgress, "{e}");
    let e =
        s.kp.login(&name, &opts, &StepUi(tx2), &Cancel::new())
            .await
            .unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::LoginInProgress, "{e}");
    cancel.cancel();
    let e = tokio::time::timeout(WAIT, first)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Cancelled, "{e}");
    assert!(!status_of(&h.status().await.unwrap(), &name).login_in_progress);
    assert!(s.stored(&name).is_none(), "nothing was saved");
    agent.stop().await;
}
