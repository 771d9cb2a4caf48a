//! Schedules: when a runbook runs by itself.
//!
//! A [`ScheduleSpec`] is what a runbook's `schedule NAME { ... }` block compiles to; a
//! [`Schedule`] is its checked, evaluable form: five-field cron (parsed by `croner`) read on the
//! wall clock of an IANA time zone (`jiff`, with the IANA database bundled, so every host gives the
//! same answer), or a fixed interval; blackout dates; a deterministic jitter.
//!
//! # The daylight-saving rule
//! Cron fields are matched against the zone's wall clock. A wall time that does not exist (the
//! hour skipped when clocks go forward) fires once, at the first instant after the gap; several
//! such times collapse into that one fire. A wall time that happens twice (the hour repeated when
//! clocks go back) fires once, at its earlier occurrence. So a daily job is neither doubled nor
//! lost on either transition day. Interval schedules (`every`) count real time and ignore the
//! wall clock.
//!
//! [`Ticker`] turns schedules into decisions as a clock advances — fire, skip for a blackout,
//! missed while nobody was watching (counted per schedule), catch up — with no I/O, so the
//! server and a virtual-clock test run the same rules.

mod blackout;
mod ticker;

pub use blackout::{Blackout, BlackoutError};
pub use ticker::{Decision, GRACE_MS, Missed, Ticker};

use chrono::{NaiveDate, NaiveDateTime};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use drover_schema::Mode;
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What starts a schedule's runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// A five-field cron expression (minute hour day-of-month month day-of-week).
    Cron {
        /// As written.
        expr: String,
    },
    /// Every so many milliseconds, counted from the Unix epoch in UTC.
    Every {
        /// The interval.
        ms: u64,
    },
}

/// What a fire does when the schedule's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Do not start; record the fire as skipped (overlap).
    #[default]
    Skip,
    /// Start once the running one has ended.
    Queue,
    /// Interrupt the running one, then start.
    CancelRunning,
}

impl Overlap {
    /// Every policy, as written.
    pub const NAMES: [&'static str; 3] = ["skip", "queue", "cancel_running"];

    /// The policy as written in a runbook.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::CancelRunning => "cancel_running",
        }
    }

    /// The policy written `s`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Overlap> {
        match s {
            "skip" => Some(Overlap::Skip),
            "queue" => Some(Overlap::Queue),
            "cancel_running" => Some(Overlap::CancelRunning),
            _ => None,
        }
    }
}

/// A compiled `schedule NAME { ... }` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Its name, unique in the runbook.
    pub name: String,
    /// The mode its runs start in.
    pub mode: Mode,
    /// When it fires.
    pub trigger: Trigger,
    /// The IANA time zone its cron is read in.
    pub timezone: String,
    /// Days it never fires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blackout: Vec<Blackout>,
    /// What a fire does while the previous run is still going.
    #[serde(default)]
    pub overlap: Overlap,
    /// After downtime: the newest missed fire starts one late run if it is at most this old (ms);
    /// 0: missed fires are only recorded.
    #[serde(default)]
    pub catch_up_ms: u64,
    /// Each fire is delayed by a deterministic amount below this (ms), spreading load.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Parameter values for the runs it starts (as `--var NAME=VALUE`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

/// Why a schedule cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression.
    #[error("invalid cron expression `{expr}`: {why}")]
    Cron {
        /// As written.
        expr: String,
        /// What is wrong.
        why: String,
    },
    /// The cron expression never matches a real date.
    #[error("the cron expression `{expr}` never fires (no such date)")]
    NeverFires {
        /// As written.
        expr: String,
    },
    /// The time zone.
    #[error("unknown time zone `{0}` (an IANA name such as `America/Chicago` or `UTC`)")]
    TimeZone(String),
    /// An interval of zero.
    #[error("`every` must be longer than zero")]
    ZeroInterval,
    /// A blackout entry.
    #[error(transparent)]
    Blackout(#[from] BlackoutError),
}

/// Why a wall time was moved by the daylight-saving rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DstShift {
    /// The wall time was skipped by the clocks going forward: fired at the first instant after.
    Gap,
    /// The wall time happened twice: fired at the earlier one only.
    Fold,
}

/// One time a schedule is due, before jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The instant.
    pub at: Timestamp,
    /// The wall time the cron matched (for a moved fire, the time as written, not as fired).
    pub wall: DateTime,
    /// Set when the daylight-saving rule moved or chose this instant.
    pub dst: Option<DstShift>,
}

impl Slot {
    /// The slot's instant in milliseconds since the Unix epoch: its key in the journal.
    #[must_use]
    pub fn ms(&self) -> i64 {
        self.at.as_millisecond()
    }
}

/// A checked schedule, ready to answer when it fires.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: ScheduleSpec,
    cron: Option<Cron>,
    tz: TimeZone,
}

/// The instant the scan for the shortest interval starts (fixed, so a compile never depends on
/// today's date).
const INTERVAL_SCAN_FROM_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
/// How far the scan for the shortest interval looks.
const INTERVAL_SCAN_SLOTS: usize = 2_000;

/// Parses a five-field cron expression.
///
/// # Errors
/// Not five fields, or a field out of range.
pub fn parse_cron(expr: &str) -> Result<Cron, ScheduleError> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(ScheduleError::Cron {
            expr: expr.to_owned(),
            why: format!(
                "{fields} field{} where five are expected: minute hour day-of-month month day-of-week",
                if fields == 1 { "" } else { "s" }
            ),
        });
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| ScheduleError::Cron {
            expr: expr.to_owned(),
            why: e.to_string(),
        })
}

/// The IANA time zone `name`.
///
/// # Errors
/// No such zone in the bundled database.
pub fn time_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_owned()))
}

impl Schedule {
    /// Checks `spec`: the cron parses and fires, the zone exists, the blackouts parse.
    ///
    /// # Errors
    /// What is wrong first.
    pub fn new(spec: ScheduleSpec) -> Result<Schedule, ScheduleError> {
        let tz = time_zone(&spec.timezone)?;
        let cron = match &spec.trigger {
            Trigger::Cron { expr } => Some(parse_cron(expr)?),
            Trigger::Every { ms: 0 } => return Err(ScheduleError::ZeroInterval),
            Trigger::Every { .. } => None,
        };
        for b in &spec.blackout {
            b.check()?;
        }
        let s = Schedule { spec, cron, tz };
        let from =
            Timestamp::from_millisecond(INTERVAL_SCAN_FROM_MS).unwrap_or(Timestamp::UNIX_EPOCH);
        if let Trigger::Cron { expr } = &s.spec.trigger
            && s.slots_after(from).next().is_none()
        {
            return Err(ScheduleError::NeverFires { expr: expr.clone() });
        }
        Ok(s)
    }

    /// The spec.
    #[must_use]
    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    /// The schedule's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its time zone.
    #[must_use]
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The slots strictly after `after`, in order.
    #[must_use]
    pub fn slots_after(&self, after: Timestamp) -> Slots<'_> {
        Slots {
            schedule: self,
            after,
            civil: None,
            done: false,
        }
    }

    /// The shortest time between two consecutive slots over a long stretch (2 000 slots from
    /// 2026-01-01), in milliseconds; `None` when it fires at most once there.
    #[must_use]
    pub fn shortest_interval_ms(&self) -> Option<u64> {
        if let Trigger::Every { ms } = self.spec.trigger {
            return Some(ms);
        }
        let from =
            Timestamp::from_millisecond(INTERVAL_SCAN_FROM_MS).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut prev: Option<i64> = None;
        let mut best: Option<u64> = None;
        for slot in self.slots_after(from).take(INTERVAL_SCAN_SLOTS) {
            if let Some(p) = prev {
                let gap = u64::try_from(slot.ms() - p).unwrap_or(0);
                best = Some(best.map_or(gap, |b| b.min(gap)));
            }
            prev = Some(slot.ms());
        }
        best
    }

    /// The blackout that keeps `slot` from firing, as written, if any (read on the local date of
    /// the instant it would fire).
    #[must_use]
    pub fn blackout_of(&self, slot: &Slot) -> Option<&Blackout> {
        let date = self.tz.to_datetime(slot.at).date();
        self.spec.blackout.iter().find(|b| b.covers(date))
    }

    /// How long `slot`'s fire is delayed: a hash of the schedule's name and the slot, below
    /// `jitter`, the same on every host and after every restart.
    #[must_use]
    pub fn jitter_of(&self, slot: &Slot) -> u64 {
        if self.spec.jitter_ms == 0 {
            return 0;
        }
        let mut h = Sha256::new();
        h.update(self.spec.name.as_bytes());
        h.update([0]);
        h.update(slot.ms().to_be_bytes());
        let d = h.finalize();
        let mut n = [0u8; 8];
        n.copy_from_slice(&d[..8]);
        u64::from_be_bytes(n) % self.spec.jitter_ms
    }

    /// When `slot` fires: its instant plus its jitter.
    #[must_use]
    pub fn fire_at(&self, slot: &Slot) -> Timestamp {
        let j = i64::try_from(self.jitter_of(slot)).unwrap_or(0);
        Timestamp::from_millisecond(slot.ms().saturating_add(j)).unwrap_or(slot.at)
    }

    /// The first instant of a wall time under this zone's rule: itself, the first instant after
    /// a gap, or the earlier of a fold.
    fn instant_of(&self, wall: DateTime) -> Option<(Timestamp, Option<DstShift>)> {
        let amb = self.tz.to_ambiguous_timestamp(wall);
        match amb.offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                offset.to_timestamp(wall).ok().map(|t| (t, None))
            }
            AmbiguousOffset::Fold { before, .. } => before
                .to_timestamp(wall)
                .ok()
                .map(|t| (t, Some(DstShift::Fold))),
            AmbiguousOffset::Gap { after, .. } => {
                // Read with the offset after the gap, the wall time lands before the
                // transition; the transition itself is the first instant after the gap.
                let probe = after.to_timestamp(wall).ok()?;
                let t = self.tz.following(probe).next()?.timestamp();
                Some((t, Some(DstShift::Gap)))
            }
        }
    }
}

/// The slots of a schedule after an instant ([`Schedule::slots_after`]).
#[derive(Debug)]
pub struct Slots<'s> {
    schedule: &'s Schedule,
    after: Timestamp,
    civil: Option<NaiveDateTime>,
    done: bool,
}

impl Iterator for Slots<'_> {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        if self.done {
            return None;
        }
        let s = self.schedule;
        let Some(cron) = &s.cron else {
            let Trigger::Every { ms } = s.spec.trigger else {
                return None;
            };
            let ms = i64::try_from(ms).ok()?;
            let k = self.after.as_millisecond().div_euclid(ms) + 1;
            let at = Timestamp::from_millisecond(k.checked_mul(ms)?).ok();
            let Some(at) = at else {
                self.done = true;
                return None;
            };
            self.after = at;
            return Some(Slot {
                at,
                wall: s.tz.to_datetime(at),
                dst: None,
            });
        };
        let mut civil = match self.civil {
            Some(c) => c,
            None => to_naive(s.tz.to_datetime(self.after))?,
        };
        // Each wall time at most once, instants strictly increasing: the gap's collapsed fires
        // and a fold's second pass are dropped here.
        for _ in 0..100_000 {
            let Ok(next) = cron.find_next_occurrence(&civil, false) else {
                self.done = true;
                return None;
            };
            civil = next;
            self.civil = Some(civil);
            let wall = from_naive(civil)?;
            let Some((at, dst)) = s.instant_of(wall) else {
                continue;
            };
            if at > self.after {
                self.after = at;
                return Some(Slot { at, wall, dst });
            }
        }
        self.done = true;
        None
    }
}

fn to_naive(d: DateTime) -> Option<NaiveDateTime> {
    let date = NaiveDate::from_ymd_opt(
        i32::from(d.year()),
        u32::try_from(d.month()).ok()?,
        u32::try_from(d.day()).ok()?,
    )?;
    date.and_hms_opt(
        u32::try_from(d.hour()).ok()?,
        u32::try_from(d.minute()).ok()?,
        u32::try_from(d.second()).ok()?,
    )
}

fn from_naive(n: NaiveDateTime) -> Option<DateTime> {
    use chrono::{Datelike, Timelike};
    DateTime::new(
        i16::try_from(n.year()).ok()?,
        i8::try_from(n.month()).ok()?,
        i8::try_from(n.day()).ok()?,
        i8::try_from(n.hour()).ok()?,
        i8::try_from(n.minute()).ok()?,
        0,
        0,
    )
    .ok()
}
