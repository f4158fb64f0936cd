//! The agent's timing rules, as pure functions of the time they are given (so unit tests
//! use an injected clock, not sleeps).
//!
//! - Renew at about 2/3 of a token's lifetime, minus up to 10% jitter so many profiles
//!   don't renew together, and never later than `lead` before expiry; a token too short for
//!   that lead is renewed at half its life rather than continuously (Vault Agent's rule of
//!   thumb, bounded).
//! - After a failed renewal, retry with exponential backoff, capped, with jitter.
//! - Notifications: at most `per_minute` overall.

use std::collections::VecDeque;
use std::time::Duration;

use time::OffsetDateTime;

/// When to renew a token obtained at `obtained` that expires at `expires`.
/// `jitter` is in `[0, 1)`.
pub fn refresh_at(
    obtained: OffsetDateTime,
    expires: OffsetDateTime,
    lead: Duration,
    jitter: f64,
) -> OffsetDateTime {
    let life = expires - obtained;
    if life <= time::Duration::ZERO {
        return obtained;
    }
    let at = obtained + life * (2.0 / 3.0 - 0.1 * jitter.clamp(0.0, 1.0));
    let latest = (expires - lead).max(obtained + life / 2);
    at.min(latest)
}

/// The wait before retry number `failures` (1 = after the first failure).
pub fn backoff(failures: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    exp.min(cap).mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A cheap pseudo-random source for jitter (xorshift); not for secrets.
#[derive(Debug)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        Jitter(seed | 1)
    }

    /// A value in `[0, 1)`.
    pub fn sample(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new()
    }
}

/// At most `per_minute` notifications in any 60 s.
#[derive(Debug)]
pub struct RateLimit {
    per_minute: usize,
    sent: VecDeque<OffsetDateTime>,
}

impl RateLimit {
    pub fn new(per_minute: usize) -> Self {
        RateLimit {
            per_minute,
            sent: VecDeque::new(),
        }
    }

    pub fn allow(&mut self, now: OffsetDateTime) -> bool {
        while self
            .sent
            .front()
            .is_some_and(|t| now - *t >= time::Duration::MINUTE)
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.per_minute {
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    #[test]
    fn renews_at_two_thirds_with_jitter_and_lead() {
        let exp = T0 + time::Duration::minutes(30);
        let lead = Duration::from_secs(60);
        assert_eq!(
            refresh_at(T0, exp, lead, 0.0),
            T0 + time::Duration::minutes(20)
        );
        // jitter moves it earlier, by at most 10% of the lifetime
        let j = refresh_at(T0, exp, lead, 0.999);
        assert!(j < T0 + time::Duration::minutes(20) && j >= T0 + time::Duration::minutes(17));
        // a lead longer than 1/3 of the life wins...
        let long_lead = Duration::from_secs(15 * 60);
        assert_eq!(
            refresh_at(T0, exp, long_lead, 0.0),
            T0 + time::Duration::minutes(15)
        );
        // ...but never below half the life (a 3 s token with a 60 s lead)
        let short = T0 + time::Duration::seconds(3);
        assert_eq!(
            refresh_at(T0, short, lead, 0.0),
            T0 + time::Duration::milliseconds(1500)
        );
        // already expired: now
        assert_eq!(refresh_at(T0, T0, lead, 0.5), T0);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let (b, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(
            backoff(1, b, cap, 1.0 - f64::EPSILON).as_secs_f64().round(),
            1.0
        );
        assert_eq!(
            backoff(3, b, cap, 1.0 - f64::EPSILON).as_secs_f64().round(),
            4.0
        );
        assert_eq!(
            backoff(30, b, cap, 1.0 - f64::EPSILON)
                .as_secs_f64()
                .round(),
            60.0
        );
        assert_eq!(
            backoff(3, b, cap, 0.0),
            Duration::from_secs(2),
            "jitter halves at most"
        );
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let mut j = Jitter::new();
        let v: Vec<f64> = (0..1000).map(|_| j.sample()).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(v.iter().any(|x| *x < 0.1) && v.iter().any(|x| *x > 0.9));
    }

    #[test]
    fn rate_limit_over_a_sliding_minute() {
        let mut r = RateLimit::new(3);
        assert!(r.allow(T0) && r.allow(T0) && r.allow(T0 + time::Duration::seconds(10)));
        assert!(!r.allow(T0 + time::Duration::seconds(30)));
        assert!(
            r.allow(T0 + time::Duration::seconds(61)),
            "the first two left the window"
        );
    }
}
