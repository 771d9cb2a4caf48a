//! A tabletop exercise run live by the engine's own driver: the plan journaled as a simulated
//! run, driven in real time accelerated by a facilitator-controlled [`TabletopClock`], every
//! action replaced by a [`SimulatedAdapter`] that takes the simulator's sampled time and fails
//! as the scenario says — nothing outside is touched. Approvals are real: the participants sign
//! them, as in a real run.

use crate::Prepared;
use drover_engine::clock::{Clock, Sleep, SystemClock};
use drover_schema::{ActionSchema, ValueType};
use drover_schema::{Adapter, AdapterError, Inputs, Outputs, StepContext};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};

/// How often a sleeper on the tabletop clock looks again (a pause or a new speed applies within
/// this much real time).
const TICK_MS: u64 = 50;

#[derive(Debug, Clone, Copy)]
struct Pace {
    /// Real ms at the last change.
    real: u64,
    /// Virtual ms at the last change.
    virtual_ms: u64,
    /// Virtual ms per real ms (0: paused).
    rate: f64,
}

/// Virtual time for a live tabletop: it starts at the real time of the start and runs `speed`
/// times faster than real time, until the facilitator pauses it or changes its speed. Clones
/// share one time.
#[derive(Debug, Clone)]
pub struct TabletopClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    real: Arc<dyn Clock>,
    pace: Mutex<Pace>,
    speed: Mutex<f64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "ms on a clock, far below 2^52"
)]
fn scale(ms: u64, rate: f64) -> u64 {
    (ms as f64 * rate).round().max(0.0) as u64
}

impl Inner {
    fn now(&self) -> (u64, f64) {
        let p = *lock(&self.pace);
        (
            p.virtual_ms + scale(self.real.now_ms().saturating_sub(p.real), p.rate),
            p.rate,
        )
    }
}

/// The fastest and slowest a tabletop runs.
pub const SPEEDS: std::ops::RangeInclusive<f64> = 0.1..=10_000.0;

impl TabletopClock {
    /// A clock at real now, running `speed` times faster than `real`.
    #[must_use]
    pub fn new(real: Arc<dyn Clock>, speed: f64) -> Self {
        let now = real.now_ms();
        let speed = speed.clamp(*SPEEDS.start(), *SPEEDS.end());
        Self {
            inner: Arc::new(Inner {
                real,
                pace: Mutex::new(Pace {
                    real: now,
                    virtual_ms: now,
                    rate: speed,
                }),
                speed: Mutex::new(speed),
            }),
        }
    }

    /// A clock on the wall clock.
    #[must_use]
    pub fn system(speed: f64) -> Self {
        Self::new(Arc::new(SystemClock), speed)
    }

    fn rebase(&self, rate: f64) {
        let real = self.inner.real.now_ms();
        let mut p = lock(&self.inner.pace);
        let virtual_ms = p.virtual_ms + scale(real.saturating_sub(p.real), p.rate);
        *p = Pace {
            real,
            virtual_ms,
            rate,
        };
    }

    /// Stops virtual time (steps in progress wait; nothing new happens).
    pub fn pause(&self) {
        self.rebase(0.0);
    }

    /// Runs virtual time again at the current speed.
    pub fn resume(&self) {
        let s = *lock(&self.inner.speed);
        self.rebase(s);
    }

    /// Sets the speed (virtual seconds per real second, within [`SPEEDS`]); applies at once
    /// unless paused.
    pub fn set_speed(&self, speed: f64) {
        let speed = speed.clamp(*SPEEDS.start(), *SPEEDS.end());
        *lock(&self.inner.speed) = speed;
        if !self.paused() {
            self.rebase(speed);
        }
    }

    /// Whether virtual time stands still.
    #[must_use]
    pub fn paused(&self) -> bool {
        lock(&self.inner.pace).rate == 0.0
    }

    /// The speed it runs at when not paused.
    #[must_use]
    pub fn speed(&self) -> f64 {
        *lock(&self.inner.speed)
    }
}

impl Clock for TabletopClock {
    fn now_ms(&self) -> u64 {
        self.inner.now().0
    }

    fn sleep(&self, ms: u64) -> Sleep {
        let inner = Arc::clone(&self.inner);
        let until = inner.now().0.saturating_add(ms);
        Box::pin(async move {
            loop {
                let (now, rate) = inner.now();
                if now >= until {
                    return;
                }
                let wait = if rate > 0.0 {
                    scale(until - now, 1.0 / rate).clamp(1, TICK_MS)
                } else {
                    TICK_MS
                };
                inner.real.sleep(wait).await;
            }
        })
    }
}

/// Every action of a tabletop: takes the time the simulator samples for the step (on the
/// tabletop clock) and fails as the scenario says; touches nothing. Its outputs are placeholders
/// of the declared types.
pub struct SimulatedAdapter {
    prep: Arc<Prepared>,
    schemas: Vec<ActionSchema>,
    /// Virtual ms of the declaration: scenario times count from it.
    origin: u64,
    rng: Mutex<ChaCha8Rng>,
}

impl std::fmt::Debug for SimulatedAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedAdapter")
            .field("actions", &self.schemas.len())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl SimulatedAdapter {
    /// Simulates `schemas`' actions for `prep`'s plan, scenario times counted from `origin`.
    #[must_use]
    pub fn new(prep: Arc<Prepared>, schemas: Vec<ActionSchema>, origin: u64, seed: u64) -> Self {
        Self {
            prep,
            schemas,
            origin,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }
}

fn placeholder(t: &ValueType, step: &str, name: &str) -> serde_json::Value {
    match t {
        ValueType::Int => serde_json::json!(0),
        ValueType::Bool => serde_json::json!(false),
        ValueType::Duration => serde_json::json!("0s"),
        ValueType::Enum(words) => serde_json::json!(words.first().cloned().unwrap_or_default()),
        ValueType::List(_) => serde_json::json!([]),
        ValueType::Map(_) => serde_json::json!({}),
        _ => serde_json::json!(format!("simulated:{step}.{name}")),
    }
}

#[async_trait::async_trait]
impl Adapter for SimulatedAdapter {
    fn schemas(&self) -> Vec<ActionSchema> {
        self.schemas.clone()
    }

    fn validate_step(&self, _action: &str, _inputs: &Inputs) -> Result<(), AdapterError> {
        Ok(())
    }

    async fn execute(
        &self,
        action: &str,
        _inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<Outputs, AdapterError> {
        let now = ctx.clock.now_ms().saturating_sub(self.origin);
        let sampled = {
            let mut rng = lock(&self.rng);
            self.prep.simulate_attempt(&ctx.step_id, now, &mut rng)
        };
        let (after, result) = sampled.unwrap_or((0, Ok(())));
        ctx.clock.sleep(after).await;
        if let Err((error, transient)) = result {
            return Err(if transient {
                AdapterError::transient(format!("simulated: {error}"))
            } else {
                AdapterError::permanent(format!("simulated: {error}"))
            });
        }
        Ok(self
            .schemas
            .iter()
            .find(|s| s.name == action)
            .map(|s| {
                s.outputs
                    .iter()
                    .map(|o| (o.name.clone(), placeholder(&o.ty, &ctx.step_id, &o.name)))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_engine::clock::ManualClock;

    #[test]
    fn the_tabletop_clock_runs_at_its_speed_and_stands_still_when_paused() {
        let real = ManualClock::new(1_000_000);
        let c = TabletopClock::new(Arc::new(real.clone()), 60.0);
        real.advance(1_000);
        assert_eq!(c.now_ms(), 1_000_000 + 60_000);
        c.pause();
        real.advance(5_000);
        assert_eq!(c.now_ms(), 1_060_000);
        assert!(c.paused());
        c.set_speed(10.0);
        assert!(c.paused(), "a new speed does not end a pause");
        c.resume();
        real.advance(1_000);
        assert_eq!(c.now_ms(), 1_070_000);
    }
}
