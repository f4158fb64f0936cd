//! Wall-clock time behind a port, so the agent's scheduler and the token engines can be
//! tested with a clock the test moves (and jumps) instead of with sleeps.
//!
//! Token lifetimes are wall-clock facts (`expires_at` is a date), so the agent sleeps until
//! a wall-clock moment, not for a duration: a monotonic sleep stops while a laptop is
//! suspended and would fire late after resume. [`SystemClock`] on Linux sleeps on a
//! `CLOCK_REALTIME` timerfd with an absolute expiry, which the kernel fires right after
//! resume when the moment passed meanwhile, and which also wakes when the clock is set
//! (`TFD_TIMER_CANCEL_ON_SET`); callers re-check [`Clock::now`] after every wake. Elsewhere
//! it sleeps monotonically in steps of at most [`MAX_STEP`], so a resumed machine catches
//! up within that step. [`FakeClock`] is for unit tests. Left out on purpose: time zones
//! (everything is UTC) and high-resolution timing (benchmarks use `Instant`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use time::OffsetDateTime;

/// A future that completes when the wall clock reaches some moment (or earlier: spurious
/// wake-ups are allowed, callers re-check `now`).
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
    /// Completes no later than just after the wall clock reaches `at`, also across a
    /// suspend or a clock change; may complete early.
    fn sleep_until(&self, at: OffsetDateTime) -> Sleep;
}

/// Without a realtime timer, the longest monotonic sleep before looking at the wall clock
/// again.
pub const MAX_STEP: std::time::Duration = std::time::Duration::from_secs(300);

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn sleep_until(&self, at: OffsetDateTime) -> Sleep {
        Box::pin(async move {
            #[cfg(target_os = "linux")]
            if realtime::sleep_until(at).await.is_ok() {
                return;
            }
            // No realtime timer (not Linux, or the timerfd failed): step monotonically.
            let wait = (at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
            let wait = std::time::Duration::try_from(wait).unwrap_or_default();
            tokio::time::sleep(wait.min(MAX_STEP)).await;
        })
    }
}

#[cfg(target_os = "linux")]
mod realtime {
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };
    use time::OffsetDateTime;
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// Sleeps on a `CLOCK_REALTIME` timerfd armed for the absolute moment `at`.
    pub async fn sleep_until(at: OffsetDateTime) -> std::io::Result<()> {
        let ns = at.unix_timestamp_nanos();
        if at <= OffsetDateTime::now_utc() || ns <= 0 {
            return Ok(()); // (an all-zero expiry would disarm the timer)
        }
        let fd = timerfd_create(
            TimerfdClockId::Realtime,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
                tv_nsec: (ns % 1_000_000_000) as _,
            },
        };
        timerfd_settime(
            &fd,
            TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
            &spec,
        )?;
        // Deprecated because a borrowed fd could be closed while registered; this one is
        // an OwnedFd that the AsyncFd owns (closed only after it deregisters), which is
        // sound. The replacement is `unsafe`, which this crate forbids.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, Interest::READABLE)?;
        loop {
            let mut ready = fd.readable().await?;
            let mut expirations = [0u8; 8];
            match rustix::io::read(ready.get_inner(), &mut expirations) {
                Ok(_) => return Ok(()),
                // The clock was set: wake up so the caller looks at it again.
                Err(rustix::io::Errno::CANCELED) => return Ok(()),
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A clock that moves only when the test says so. Sleepers wake when it reaches their
/// moment, whether by [`FakeClock::advance`] or by a jump with [`FakeClock::set`].
#[derive(Debug)]
pub struct FakeClock {
    now: tokio::sync::watch::Sender<OffsetDateTime>,
}

impl FakeClock {
    pub fn new(start: OffsetDateTime) -> Arc<Self> {
        Arc::new(FakeClock {
            now: tokio::sync::watch::Sender::new(start),
        })
    }

    pub fn advance(&self, by: time::Duration) {
        self.now.send_modify(|t| *t += by);
    }

    /// Sets the clock (forward: what a resume from suspend looks like).
    pub fn set(&self, to: OffsetDateTime) {
        self.now.send_replace(to);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: OffsetDateTime) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            while *rx.borrow_and_update() < at {
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use time::macros::datetime;

    #[tokio::test]
    async fn fake_clock_wakes_sleepers_when_it_reaches_their_moment() {
        let c = FakeClock::new(datetime!(2026-01-01 0:00 UTC));
        let sleeper = tokio::spawn(c.sleep_until(datetime!(2026-01-01 1:00 UTC)));
        c.advance(time::Duration::minutes(30));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "half way: still asleep");
        c.set(datetime!(2026-01-02 0:00 UTC)); // a jump past the moment
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken by the jump")
            .unwrap();
    }

    #[tokio::test]
    async fn system_clock_sleeps_until_a_wall_clock_moment() {
        let start = std::time::Instant::now();
        let at = SystemClock.now() + time::Duration::milliseconds(150);
        SystemClock.sleep_until(at).await;
        assert!(SystemClock.now() >= at, "not woken early by the timer");
        assert!(start.elapsed() < Duration::from_secs(5));
        // a moment in the past returns at once
        tokio::time::timeout(
            Duration::from_secs(5),
            SystemClock.sleep_until(datetime!(2020-01-01 0:00 UTC)),
        )
        .await
        .unwrap();
    }
}
