//! The agent's timers: at most one due time per profile, ordered, so the agent sleeps until
//! the earliest and, when it wakes, touches only the profiles that are due. Setting,
//! moving or clearing a profile's time is O(log n); nothing rescans every profile.

use std::collections::{BTreeSet, HashMap};

use time::OffsetDateTime;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    queue: BTreeSet<(OffsetDateTime, String)>,
    at: HashMap<String, OffsetDateTime>,
}

impl Timers {
    /// Sets (or with `None` clears) `name`'s due time.
    pub fn set(&mut self, name: &str, due: Option<OffsetDateTime>) {
        if self.at.get(name).copied() == due {
            return;
        }
        if let Some(old) = self.at.remove(name) {
            self.queue.remove(&(old, name.to_string()));
        }
        if let Some(t) = due {
            self.at.insert(name.to_string(), t);
            self.queue.insert((t, name.to_string()));
        }
    }

    pub fn next(&self) -> Option<OffsetDateTime> {
        self.queue.first().map(|(t, _)| *t)
    }

    /// Removes and returns the profiles due at `now`, earliest first.
    pub fn pop_due(&mut self, now: OffsetDateTime) -> Vec<String> {
        let mut due = Vec::new();
        while let Some((t, _)) = self.queue.first() {
            if *t > now {
                break;
            }
            let (_, name) = self.queue.pop_first().expect("not empty");
            self.at.remove(&name);
            due.push(name);
        }
        due
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn earliest_first_moves_and_clears() {
        let t0 = datetime!(2026-01-01 0:00 UTC);
        let m = time::Duration::minutes;
        let mut t = Timers::default();
        t.set("a", Some(t0 + m(10)));
        t.set("b", Some(t0 + m(5)));
        t.set("c", Some(t0 + m(20)));
        assert_eq!(t.next(), Some(t0 + m(5)));
        t.set("b", Some(t0 + m(30))); // moved
        t.set("c", None); // cleared
        assert_eq!(t.len(), 2);
        assert!(t.pop_due(t0 + m(9)).is_empty());
        assert_eq!(t.pop_due(t0 + m(40)), ["a", "b"]);
        assert_eq!(t.next(), None);
    }
}
