//! The agent's read side: every profile's current credential, readable by any number of
//! threads at memory speed, without a message to the agent's task and without a lock.
//!
//! The [`Board`] maps profile names to slots; a slot holds the credential being served
//! ([`Served`], header values already prepared for an HTTP request) and, when the agent
//! decided that requests must not wait for a renewal (a refused password, a backoff, a
//! login that only a person can do), the answer to give instead. Both are `ArcSwap`s: a
//! reader loads them without locking or writing anything shared (arc-swap's per-thread
//! debt slots), the agent's task swaps new values in. The name map is itself swapped whole,
//! only when profiles are added or removed. Reading a sliding token (Improvado) marks the
//! slot used, which is what keeps the agent renewing it.
//! Left out on purpose: deciding anything. The agent's task (`core.rs`) is the only writer,
//! and a reader that finds nothing usable asks it ([`Lookup::Miss`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use reqwest::header::{HeaderName, HeaderValue};
use time::OffsetDateTime;

use crate::engine::effective_min_valid;
use crate::error::{Error, ErrorInfo, Result};
use crate::helper::upstream::Route;
use crate::scheme::Credential;

/// A credential as the agent serves it: the credential, and its headers as ready-made,
/// sensitive-marked HTTP header values (a proxy copies them into a request as they are).
pub struct Served {
    pub credential: Credential,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `--min-valid` is capped at half the lifetime (see [`effective_min_valid`]).
    max_min_valid: i64,
    /// An upstream answered 401 to it and a renewal was asked for (once per credential, so
    /// an API that always says 401 cannot make the helper hammer the token endpoint).
    challenged: AtomicBool,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credential's secrets print redacted; header values are not printed at all.
        f.debug_struct("Served")
            .field("credential", &self.credential)
            .field("headers", &self.headers.len())
            .finish()
    }
}

impl Served {
    /// Prepares a credential for serving. Fails when a header name or value is not valid
    /// HTTP (a control character in a token, say): such a credential is never handed out.
    pub fn new(credential: Credential) -> Result<Self> {
        let mut headers = Vec::with_capacity(credential.headers.len());
        for (name, value) in &credential.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::invalid(name.clone(), "not a valid HTTP header name"))?;
            let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                Error::invalid(
                    name.clone(),
                    "the credential contains a character an HTTP header cannot carry (a line break or control character)",
                )
            })?;
            v.set_sensitive(true);
            headers.push((n, v));
        }
        let max_min_valid =
            effective_min_valid(i64::MAX, credential.obtained_at, credential.expires_at);
        Ok(Served {
            credential,
            headers,
            max_min_valid,
            challenged: AtomicBool::new(false),
        })
    }

    /// Valid for `min_valid` more seconds (capped at half the token's lifetime)?
    #[inline]
    pub fn valid_for(&self, now: OffsetDateTime, min_valid: i64) -> bool {
        match self.credential.expires_at {
            None => true,
            Some(x) => x - now >= time::Duration::seconds(min_valid.min(self.max_min_valid)),
        }
    }

    /// True the first time only: an upstream refused this credential, renew it.
    pub fn challenge(&self) -> bool {
        !self.challenged.swap(true, Ordering::Relaxed)
    }

    #[inline]
    pub fn unexpired(&self, now: OffsetDateTime) -> bool {
        self.credential.expires_at.is_none_or(|x| x > now)
    }
}

/// One profile's published state.
#[derive(Default)]
pub(crate) struct Slot {
    served: ArcSwapOption<Served>,
    /// Set while requests must be answered without waiting for a renewal.
    refusal: ArcSwapOption<ErrorInfo>,
    /// A reader handed out a sliding token since the agent last looked.
    used: AtomicBool,
    /// Where the loopback helper forwards this profile's requests.
    route: ArcSwapOption<Route>,
}

impl Slot {
    /// Publishes what readers get. Only the agent's task calls this.
    pub fn publish(&self, served: Option<Arc<Served>>, refusal: Option<ErrorInfo>) {
        self.served.store(served);
        self.refusal.store(refusal.map(Arc::new));
    }

    /// Publishes the helper's route (when the config changed).
    pub fn set_route(&self, route: Route) {
        self.route.store(Some(Arc::new(route)));
    }

    #[cfg(test)]
    pub fn served(&self) -> Option<Arc<Served>> {
        self.served.load_full()
    }

    pub fn mark_used(&self) {
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }

    /// Was it used since the last call? Clears the mark.
    pub fn take_used(&self) -> bool {
        self.used.swap(false, Ordering::Relaxed)
    }
}

/// What a reader found.
#[derive(Debug)]
pub enum Found<'a> {
    /// A credential valid for what was asked.
    Valid(&'a Arc<Served>),
    /// Don't wait for a renewal: this is the answer (the agent decided so).
    Refused(&'a ErrorInfo),
    /// Nothing usable in memory: ask the agent (which renews, once, for every waiter).
    Miss,
    NotFound,
}

/// [`Found`] with owned values.
#[derive(Debug)]
pub enum Lookup {
    Valid(Arc<Served>),
    Refused(ErrorInfo),
    Miss,
    NotFound,
}

/// Names hashed with foldhash: every proxied request looks its profile up (the names come
/// from the config, so nobody can choose colliding ones to insert).
type Slots = HashMap<String, Arc<Slot>, foldhash::fast::RandomState>;

/// Every profile's slot, by name.
#[derive(Default)]
pub struct Board {
    slots: ArcSwap<Slots>,
}

impl Board {
    /// Looks `name` up and passes what it found to `f`, without taking a lock or touching
    /// a shared reference count (the hot path of a request handler).
    #[inline]
    pub fn read<R>(
        &self,
        name: &str,
        min_valid: i64,
        now: OffsetDateTime,
        f: impl FnOnce(Found<'_>) -> R,
    ) -> R {
        let slots = self.slots.load();
        let Some(slot) = slots.get(name) else {
            return f(Found::NotFound);
        };
        let served = slot.served.load();
        if let Some(s) = served.as_ref() {
            if s.valid_for(now, min_valid) {
                if s.credential.sliding {
                    slot.mark_used();
                }
                return f(Found::Valid(s));
            }
        }
        let refusal = slot.refusal.load();
        match (refusal.as_ref(), served.as_ref()) {
            // Not valid for as long as asked, but the freshest there is until the agent
            // may try again.
            (Some(_), Some(s)) if s.unexpired(now) => {
                if s.credential.sliding {
                    slot.mark_used();
                }
                f(Found::Valid(s))
            }
            (Some(r), _) => f(Found::Refused(r)),
            (None, _) => f(Found::Miss),
        }
    }

    /// [`Board::read`] with owned results (one reference count increment).
    pub fn lookup(&self, name: &str, min_valid: i64, now: OffsetDateTime) -> Lookup {
        self.read(name, min_valid, now, |f| match f {
            Found::Valid(s) => Lookup::Valid(s.clone()),
            Found::Refused(r) => Lookup::Refused(r.clone()),
            Found::Miss => Lookup::Miss,
            Found::NotFound => Lookup::NotFound,
        })
    }

    /// Where the helper forwards `name`'s requests; `None` for an unknown profile.
    pub fn route(&self, name: &str) -> Option<Arc<Route>> {
        let slots = self.slots.load();
        let slot = slots.get(name)?;
        Some(slot.route.load_full().unwrap_or_else(|| {
            Arc::new(Route::Unusable(format!(
                "profile '{name}' is still being read: try again"
            )))
        }))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.slots.load().contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.slots.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the name map (the agent's task, when profiles are added or removed).
    pub(crate) fn set_slots(&self, slots: impl IntoIterator<Item = (String, Arc<Slot>)>) {
        self.slots.store(Arc::new(slots.into_iter().collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    fn cred(token: &str, life_secs: i64, sliding: bool) -> Credential {
        Credential {
            scheme: "login".into(),
            headers: vec![(
                "Authorization".into(),
                Secret::new(format!("Bearer {token}")),
            )],
            expires_at: Some(T0 + time::Duration::seconds(life_secs)),
            refreshable: true,
            widget_url: None,
            obtained_at: Some(T0),
            sliding,
            fingerprint: None,
        }
    }

    fn board_with(name: &str) -> (Board, Arc<Slot>) {
        let b = Board::default();
        let slot = Arc::new(Slot::default());
        b.set_slots([(name.to_string(), slot.clone())]);
        (b, slot)
    }

    #[test]
    fn valid_refused_miss_and_not_found() {
        let (b, slot) = board_with("p");
        assert!(matches!(b.lookup("nope", 0, T0), Lookup::NotFound));
        assert!(matches!(b.lookup("p", 0, T0), Lookup::Miss), "nothing yet");
        let s = Arc::new(Served::new(cred("t1", 600, false)).unwrap());
        slot.publish(Some(s), None);
        let Lookup::Valid(got) = b.lookup("p", 30, T0) else {
            panic!("a valid token")
        };
        assert_eq!(got.headers[0].1.to_str().unwrap(), "Bearer t1");
        assert!(got.headers[0].1.is_sensitive());
        // 580 s left: not valid for 30 s more at T0 + 590 (capped at half the life: 300)
        assert!(matches!(
            b.lookup("p", 30, T0 + time::Duration::seconds(590)),
            Lookup::Miss
        ));
        assert!(
            matches!(
                b.lookup("p", 900, T0 + time::Duration::seconds(200)),
                Lookup::Valid(_)
            ),
            "min_valid is capped at half the lifetime"
        );
        // a refusal: the unexpired token is still served, an expired one is not
        let no = ErrorInfo::new(crate::error::ErrorKind::Rejected, "wrong password");
        slot.publish(slot.served(), Some(no.clone()));
        assert!(matches!(
            b.lookup("p", 30, T0 + time::Duration::seconds(590)),
            Lookup::Valid(_)
        ));
        assert!(matches!(
            b.lookup("p", 30, T0 + time::Duration::seconds(700)),
            Lookup::Refused(e) if e == no
        ));
    }

    #[test]
    fn reading_a_sliding_token_marks_it_used() {
        let (b, slot) = board_with("imp");
        slot.publish(
            Some(Arc::new(Served::new(cred("s", 1800, true)).unwrap())),
            None,
        );
        assert!(!slot.take_used());
        assert!(matches!(b.lookup("imp", 30, T0), Lookup::Valid(_)));
        assert!(slot.take_used(), "a hand-out is a use");
        assert!(!slot.take_used(), "the mark is cleared");
    }

    #[test]
    fn a_token_that_is_not_a_header_value_is_never_served() {
        let e = Served::new(cred("a\r\nX-Evil: 1", 60, false)).unwrap_err();
        assert!(e.to_string().contains("line break"), "{e}");
        assert!(!e.to_string().contains("Evil"), "{e}");
    }
}
