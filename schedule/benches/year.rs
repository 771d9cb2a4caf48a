//! What the daylight-saving rule, blackouts and decisions cost: a year of twelve schedules
//! (hourly to quarterly, in Chicago and Berlin) decided by the `Ticker` on a virtual clock, next
//! to croner alone walking the same cron expressions over the same year on a naive clock (no
//! zone, no decisions) — measured in the same run.
//! Run: `cargo bench -p drover-schedule --bench year` (optionally `-- REPEATS`).

use chrono::NaiveDate;
use drover_schedule::{Blackout, Overlap, Schedule, ScheduleSpec, Ticker, Trigger};
use drover_schema::Mode;
use jiff::Timestamp;
use std::collections::BTreeMap;

const CRONS: [(&str, &str); 12] = [
    ("0 9 1 1,4,7,10 *", "America/Chicago"),
    ("0 9 1 * *", "America/Chicago"),
    ("30 2 * * *", "America/Chicago"),
    ("30 1 * * *", "America/Chicago"),
    ("30 2 * * *", "Europe/Berlin"),
    ("0 6 * * 1", "Europe/Berlin"),
    ("0 */6 * * *", "UTC"),
    ("0 12 * * *", "America/Chicago"),
    ("0 12 * * *", "Europe/Berlin"),
    ("0 * * * *", "America/Chicago"),
    ("*/15 * * * *", "Europe/Berlin"),
    ("0 3 * * *", "America/Chicago"),
];

fn ticker() -> Ticker {
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("start");
    let mut t = Ticker::new();
    for (i, (cron, tz)) in CRONS.iter().enumerate() {
        let spec = ScheduleSpec {
            name: format!("s{i}"),
            mode: Mode::Drill,
            trigger: Trigger::Cron {
                expr: (*cron).into(),
            },
            timezone: (*tz).into(),
            blackout: vec![Blackout::parse("2026-12-20..2027-01-04").expect("blackout")],
            overlap: Overlap::Skip,
            catch_up_ms: 0,
            jitter_ms: if i == 11 { 600_000 } else { 0 },
            vars: BTreeMap::new(),
        };
        t.add(Schedule::new(spec).expect("schedule"), start);
    }
    t
}

/// Every decision of the year through the Ticker; returns how many.
fn decided() -> usize {
    let end: Timestamp = "2027-01-01T00:00:00Z".parse().expect("end");
    let mut t = ticker();
    let mut n = 0;
    while let Some(wake) = t.next_wake() {
        if wake > end {
            break;
        }
        n += t.tick(wake).len();
    }
    n
}

/// croner alone over the same year, naive time; returns how many matches.
fn naive() -> usize {
    let start = NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("start");
    let end = NaiveDate::from_ymd_opt(2027, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("end");
    let mut n = 0;
    for (cron, _) in CRONS {
        let c = drover_schedule::parse_cron(cron).expect("cron");
        let mut at = start;
        while let Ok(next) = c.find_next_occurrence(&at, false) {
            if next > end {
                break;
            }
            n += 1;
            at = next;
        }
    }
    n
}

#[allow(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
fn main() {
    let repeats: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(5);
    let mut base = f64::MAX;
    let mut ours = f64::MAX;
    let (mut nb, mut no) = (0, 0);
    for _ in 0..repeats {
        let t0 = std::time::Instant::now();
        nb = naive();
        base = base.min(t0.elapsed().as_secs_f64());
        let t0 = std::time::Instant::now();
        no = decided();
        ours = ours.min(t0.elapsed().as_secs_f64());
    }
    println!(
        "croner alone, naive clock: {nb} matches in {:.1} ms",
        base * 1e3
    );
    println!(
        "Ticker, zones + decisions: {no} decisions in {:.1} ms",
        ours * 1e3
    );
    println!(
        "ratio (Ticker / croner alone): {:.2}x; {:.2} µs per decision",
        ours / base,
        ours * 1e6 / no.max(1) as f64
    );
}
