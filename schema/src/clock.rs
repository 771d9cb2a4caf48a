//! Time. Everything that reads or waits on time — the driver, retries and backoff, approval
//! polling, the adapters' polls and throttling waits — goes through one [`Clock`], so tests and
//! the simulator control it: a [`ManualClock`] moves only when told to, and its sleepers wake
//! when it does, so a test runs hours of backoff with no real sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A future that completes when a [`Clock`]'s sleep is over.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of time, in milliseconds since the Unix epoch, and a way to wait on it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now_ms(&self) -> u64;

    /// Completes once `ms` milliseconds have passed on this clock.
    fn sleep(&self, ms: u64) -> Sleep;
}

/// The operating system's wall clock (sleeping on tokio's timer).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one place the wall clock is read.
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    #[allow(clippy::disallowed_methods)] // The one place real time is waited on.
    fn sleep(&self, ms: u64) -> Sleep {
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms)))
    }
}

/// A clock that moves only when told to (tests, simulation). Sleepers wake when it is moved
/// past their deadline.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
    moved: Arc<tokio::sync::Notify>,
    sleepers: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at `start_ms`.
    #[must_use]
    pub fn new(start_ms: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start_ms)),
            ..Self::default()
        }
    }

    /// Moves time forward.
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
        self.moved.notify_waiters();
    }

    /// Sets the time.
    pub fn set(&self, ms: u64) {
        self.now.store(ms, Ordering::SeqCst);
        self.moved.notify_waiters();
    }

    /// How many sleeps are waiting on this clock now.
    #[must_use]
    pub fn sleepers(&self) -> u64 {
        self.sleepers.load(Ordering::SeqCst)
    }
}

/// Counts a sleeper while it waits.
struct Sleeper(Arc<AtomicU64>);

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep(&self, ms: u64) -> Sleep {
        let deadline = self.now_ms().saturating_add(ms);
        let now = Arc::clone(&self.now);
        let moved = Arc::clone(&self.moved);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let guard = Sleeper(Arc::clone(&self.sleepers));
        Box::pin(async move {
            let _guard = guard;
            loop {
                let notified = moved.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if now.load(Ordering::SeqCst) >= deadline {
                    return;
                }
                notified.await;
            }
        })
    }
}

/// The clock a step runs on, as the step context carries it (the system clock unless a test
/// or the simulator says otherwise).
#[derive(Debug, Clone)]
pub struct SharedClock(pub Arc<dyn Clock>);

impl Default for SharedClock {
    fn default() -> Self {
        Self(Arc::new(SystemClock))
    }
}

impl std::ops::Deref for SharedClock {
    type Target = dyn Clock;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleep_ends_only_when_the_clock_passes_its_deadline() {
        let clock = ManualClock::new(1_000);
        let c = clock.clone();
        let sleeper = tokio::spawn(async move {
            c.sleep(500).await;
            c.now_ms()
        });
        tokio::task::yield_now().await;
        clock.advance(499);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(1);
        assert_eq!(sleeper.await.expect("joins"), 1_500);
        assert_eq!(clock.sleepers(), 0);
    }

    #[tokio::test]
    async fn a_zero_sleep_is_immediate() {
        ManualClock::new(0).sleep(0).await;
    }
}
