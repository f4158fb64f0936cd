//! The helper's access log: one entry per request, forwarded or refused, in a bounded ring
//! (the last [`RING`] entries) and fed to subscribers (`keyport helper log --follow`, the
//! app's helper panel). An entry holds no secret and no query string: key *names*, the
//! profile, the method, the path, the status, how long the answer took to start, the bytes
//! sent back and, for a refusal, its kind and reason. Left out on purpose: files (a user who
//! wants one redirects `keyport helper log --follow --json`).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// Entries kept for `keyport helper log`.
pub const RING: usize = 1000;
/// Longest path kept in an entry.
const MAX_PATH: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "AccessEntry"))]
pub struct Entry {
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub at: OffsetDateTime,
    /// The helper key's name (none on the unix socket).
    pub key: Option<String>,
    pub profile: Option<String>,
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub status: u16,
    /// Until the answer's head was sent.
    pub ms: f64,
    /// Body bytes sent back.
    pub bytes: u64,
    /// Keyport's refusal (`X-Keyport-Error`), if it refused.
    pub refusal: Option<String>,
    pub reason: Option<String>,
}

impl Entry {
    /// An entry for a request whose target was `target` (the query is cut off, and control
    /// characters made inert).
    pub fn new(at: OffsetDateTime, method: &str, target: &str) -> Entry {
        let path = target.split('?').next().unwrap_or_default();
        let mut path = crate::error::inert(path);
        if path.len() > MAX_PATH {
            let mut cut = MAX_PATH;
            while !path.is_char_boundary(cut) {
                cut -= 1;
            }
            path.truncate(cut);
            path.push('…');
        }
        Entry {
            at,
            key: None,
            profile: None,
            method: crate::error::inert(method),
            path,
            status: 0,
            ms: 0.0,
            bytes: 0,
            refusal: None,
            reason: None,
        }
    }
}

pub struct AccessLog {
    ring: Mutex<VecDeque<Entry>>,
    tx: broadcast::Sender<Entry>,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            ring: Mutex::new(VecDeque::with_capacity(RING)),
            tx: broadcast::channel(1024).0,
        }
    }
}

impl AccessLog {
    pub fn push(&self, e: Entry) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(e.clone());
        }
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(e);
    }

    /// The entries kept, oldest first, and every entry from then on.
    pub fn subscribe(&self) -> (Vec<Entry>, broadcast::Receiver<Entry>) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        (ring.iter().cloned().collect(), self.tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_have_no_query_and_the_ring_is_bounded() {
        let log = AccessLog::default();
        let t = OffsetDateTime::UNIX_EPOCH;
        let e = Entry::new(t, "GET", "/imp/v3/x?api_key=secret");
        assert_eq!(e.path, "/imp/v3/x");
        let long = format!("/imp/{}", "é".repeat(400));
        assert!(Entry::new(t, "GET", &long).path.len() <= MAX_PATH + 3);
        assert_eq!(Entry::new(t, "GET", "/a\x1b[31m").path, "/a");
        let (_, mut rx) = log.subscribe();
        for i in 0..RING + 5 {
            let mut e = e.clone();
            e.status = i as u16;
            log.push(e);
        }
        let (kept, _) = log.subscribe();
        assert_eq!(kept.len(), RING);
        assert_eq!(kept[0].status, 5, "the oldest went first");
        assert_eq!(
            rx.try_recv().unwrap().status,
            0,
            "subscribers get each entry"
        );
    }
}
