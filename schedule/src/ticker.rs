//! Decisions as a clock advances: which slots fire, which are blacked out, which were missed.

use crate::{Schedule, Slot};
use jiff::Timestamp;

/// A fire found more than this late (ms) was missed: the scheduler was not running when it was
/// due. Within it, the fire is on time (a busy host, a slow tick).
pub const GRACE_MS: u64 = 60_000;

/// Most slots looked at in one decision (a minutely schedule down for two years).
const MAX_SLOTS: usize = 1_100_000;

/// Fires missed while the scheduler was down, for one schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    /// How many.
    pub count: u64,
    /// The first.
    pub first: Slot,
    /// The newest.
    pub last: Slot,
}

/// What a schedule does about one slot (or, for missed fires, a run of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start a run now.
    Fire {
        /// The slot.
        slot: Slot,
        /// How late after its fire time (jitter included) the decision is (ms).
        late_ms: u64,
    },
    /// Not fired: the day is blacked out.
    Blackout {
        /// The slot.
        slot: Slot,
        /// The blackout, as written.
        blackout: String,
    },
    /// Fires that passed while nobody was watching.
    Missed(Missed),
    /// One late run for the newest missed fire: it is within the schedule's `catch_up`.
    CatchUp {
        /// The missed slot it stands for.
        slot: Slot,
        /// How late (ms).
        late_ms: u64,
    },
}

impl Decision {
    /// The slot the decision is keyed by in the journal (for missed fires, the newest).
    #[must_use]
    pub fn slot(&self) -> &Slot {
        match self {
            Decision::Fire { slot, .. }
            | Decision::Blackout { slot, .. }
            | Decision::CatchUp { slot, .. } => slot,
            Decision::Missed(m) => &m.last,
        }
    }
}

impl Schedule {
    /// The decisions for the slots after `watermark` whose fire time has come by `now`, in
    /// order, and the new watermark (the newest slot decided; `watermark` if none).
    #[must_use]
    pub fn due(&self, watermark: Timestamp, now: Timestamp) -> (Vec<Decision>, Timestamp) {
        let mut out = Vec::new();
        let mut mark = watermark;
        let mut missed: Option<Missed> = None;
        for slot in self.slots_after(watermark).take(MAX_SLOTS) {
            let fire = self.fire_at(&slot);
            if fire > now {
                break;
            }
            mark = slot.at;
            if let Some(b) = self.blackout_of(&slot) {
                out.push(Decision::Blackout {
                    slot,
                    blackout: b.describe(),
                });
                continue;
            }
            let late = ms_between(fire, now);
            if late <= GRACE_MS {
                out.push(Decision::Fire {
                    slot,
                    late_ms: late,
                });
                continue;
            }
            missed = Some(match missed {
                None => Missed {
                    count: 1,
                    first: slot,
                    last: slot,
                },
                Some(m) => Missed {
                    count: m.count + 1,
                    last: slot,
                    ..m
                },
            });
        }
        if let Some(m) = missed {
            // Missed fires come before anything on time (they are all older).
            let late = ms_between(self.fire_at(&m.last), now);
            let mut head = vec![Decision::Missed(m)];
            if self.spec.catch_up_ms > 0 && late <= self.spec.catch_up_ms {
                head.push(Decision::CatchUp {
                    slot: m.last,
                    late_ms: late,
                });
            }
            // Keep time order: blackouts and fires older than the newest missed slot stay
            // first; only fires after it follow.
            let (before, after): (Vec<_>, Vec<_>) =
                out.into_iter().partition(|d| d.slot().at < m.last.at);
            out = before.into_iter().chain(head).chain(after).collect();
        }
        (out, mark)
    }

    /// When the first slot after `watermark` fires (jitter included).
    #[must_use]
    pub fn next_fire(&self, watermark: Timestamp) -> Option<Timestamp> {
        self.slots_after(watermark).next().map(|s| self.fire_at(&s))
    }
}

fn ms_between(earlier: Timestamp, later: Timestamp) -> u64 {
    u64::try_from(later.as_millisecond() - earlier.as_millisecond()).unwrap_or(0)
}

/// Several schedules and where each has got to: the loop both the server and a virtual-clock
/// test run.
#[derive(Debug, Clone, Default)]
pub struct Ticker {
    entries: Vec<(Schedule, Timestamp)>,
    /// Per schedule, when its next fire is due (cached; `None` once it never fires again).
    next: Vec<Option<Timestamp>>,
}

impl Ticker {
    /// No schedules yet.
    #[must_use]
    pub fn new() -> Ticker {
        Ticker::default()
    }

    /// Adds a schedule whose slots up to `watermark` are already decided.
    pub fn add(&mut self, schedule: Schedule, watermark: Timestamp) -> usize {
        self.next.push(schedule.next_fire(watermark));
        self.entries.push((schedule, watermark));
        self.entries.len() - 1
    }

    /// The schedules, with their watermarks.
    #[must_use]
    pub fn entries(&self) -> &[(Schedule, Timestamp)] {
        &self.entries
    }

    /// Every decision due by `now`, per schedule (by index), watermarks advanced.
    pub fn tick(&mut self, now: Timestamp) -> Vec<(usize, Decision)> {
        let mut out = Vec::new();
        for (i, (s, mark)) in self.entries.iter_mut().enumerate() {
            if self.next[i].is_none_or(|t| t > now) {
                continue;
            }
            let (ds, m) = s.due(*mark, now);
            *mark = m;
            self.next[i] = s.next_fire(m);
            out.extend(ds.into_iter().map(|d| (i, d)));
        }
        out
    }

    /// When the next fire of any schedule is due.
    #[must_use]
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.next.iter().flatten().min().copied()
    }
}
