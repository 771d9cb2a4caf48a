//! A simulated year of schedules on a virtual clock: a dozen schedules in Chicago and Berlin,
//! across both daylight-saving transitions of each zone, with blackouts and a three-day outage of
//! the scheduler. Every expected instant below was worked out by hand (and checked against
//! Python's `zoneinfo`, which shares no code with jiff or croner).

use drover_schedule::{
    Blackout, Decision, Overlap, Schedule, ScheduleError, ScheduleSpec, Ticker, Trigger,
};
use drover_schema::Mode;
use jiff::Timestamp;
use std::collections::BTreeMap;

fn spec(name: &str, trigger: Trigger, tz: &str) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        mode: Mode::Drill,
        trigger,
        timezone: tz.into(),
        blackout: Vec::new(),
        overlap: Overlap::Skip,
        catch_up_ms: 0,
        jitter_ms: 0,
        vars: BTreeMap::new(),
    }
}

fn cron(name: &str, expr: &str, tz: &str) -> ScheduleSpec {
    spec(name, Trigger::Cron { expr: expr.into() }, tz)
}

fn ts(s: &str) -> Result<Timestamp, jiff::Error> {
    s.parse()
}

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

/// What happened, one line per decision: `name kind instant [extra]`.
fn year() -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let chi = "America/Chicago";
    let ber = "Europe/Berlin";
    let mut quarterly = cron("quarterly", "0 9 1 1,4,7,10 *", chi);
    quarterly.blackout = vec![
        Blackout::parse("2026-12-20..2027-01-04")?,
        Blackout::parse("weekends")?,
    ];
    let mut monthly = cron("monthly", "0 9 1 * *", chi);
    monthly.blackout = vec![Blackout::parse("weekends")?];
    let mut monday = cron("ber_monday", "0 6 * * 1", ber);
    monday.blackout = vec![Blackout::parse("2026-12-20..2027-01-04")?];
    let mut catchup = cron("catchup_daily", "0 12 * * *", chi);
    catchup.catch_up_ms = 7 * DAY;
    let mut jittered = cron("jittered", "0 3 * * *", chi);
    jittered.jitter_ms = 10 * 60_000;
    let specs = vec![
        quarterly,
        monthly,
        cron("chi_gap", "30 2 * * *", chi),
        cron("chi_fold", "30 1 * * *", chi),
        cron("ber_daily", "30 2 * * *", ber),
        monday,
        spec("every6h", Trigger::Every { ms: 6 * HOUR }, "UTC"),
        catchup,
        cron("nocatch_daily", "0 12 * * *", ber),
        cron("hourly_chi", "0 * * * *", chi),
        cron("quarter_hour_ber", "*/15 * * * *", ber),
        jittered,
    ];
    let start = ts("2026-01-01T00:00:00Z")?;
    let end = ts("2027-01-01T00:00:00Z")?;
    let (down, up) = (ts("2026-06-10T00:00:00Z")?, ts("2026-06-13T00:00:00Z")?);
    let mut ticker = Ticker::new();
    for s in specs {
        ticker.add(Schedule::new(s)?, start);
    }
    let mut log = Vec::new();
    while let Some(wake) = ticker.next_wake() {
        if wake > end {
            break;
        }
        // While the scheduler is down the clock runs on unseen; it looks again when it is back.
        let now = if wake >= down && wake < up { up } else { wake };
        for (i, d) in ticker.tick(now) {
            let name = ticker.entries()[i].0.name().to_owned();
            log.push(match d {
                Decision::Fire { slot, late_ms } => {
                    let fired = ticker.entries()[i].0.fire_at(&slot);
                    assert!(fired <= now && late_ms <= drover_schedule::GRACE_MS);
                    let dst = slot.dst.map_or(String::new(), |d| format!(" {d:?}"));
                    format!("{name} fire {}{dst}", slot.at)
                }
                Decision::Blackout { slot, blackout } => {
                    format!("{name} blackout {} {blackout}", slot.at)
                }
                Decision::Missed(m) => {
                    format!("{name} missed {}..{} ({})", m.first.at, m.last.at, m.count)
                }
                Decision::CatchUp { slot, late_ms } => {
                    format!("{name} catch_up {} late {}h", slot.at, late_ms / HOUR)
                }
            });
        }
    }
    Ok(log)
}

fn of<'a>(log: &'a [String], name: &str) -> Vec<&'a str> {
    let prefix = format!("{name} ");
    log.iter()
        .filter(|l| l.starts_with(&prefix))
        .map(String::as_str)
        .collect()
}

fn count(log: &[String], name: &str, kind: &str) -> usize {
    let prefix = format!("{name} {kind} ");
    log.iter().filter(|l| l.starts_with(&prefix)).count()
}

/// Lines of `name` whose instant starts with one of `days` (YYYY-MM-DD, UTC).
fn on<'a>(log: &'a [String], name: &str, days: &[&str]) -> Vec<&'a str> {
    of(log, name)
        .into_iter()
        .filter(|l| {
            days.iter()
                .any(|d| l.split(' ').nth(2).is_some_and(|t| t.starts_with(d)))
        })
        .collect()
}

#[test]
fn a_year_of_a_dozen_schedules_fires_exactly_as_worked_out_by_hand()
-> Result<(), Box<dyn std::error::Error>> {
    let log = year()?;

    // The quarterly drill: 09:00 in Chicago (CST in January, CDT after March).
    assert_eq!(
        of(&log, "quarterly"),
        [
            "quarterly fire 2026-01-01T15:00:00Z",
            "quarterly fire 2026-04-01T14:00:00Z",
            "quarterly fire 2026-07-01T14:00:00Z",
            "quarterly fire 2026-10-01T14:00:00Z",
        ]
    );
    // The first of every month at 09:00 Chicago, never on a weekend: 1 Feb, 1 Mar and 1 Nov
    // 2026 are Sundays, 1 Aug a Saturday.
    assert_eq!(
        of(&log, "monthly"),
        [
            "monthly fire 2026-01-01T15:00:00Z",
            "monthly blackout 2026-02-01T15:00:00Z weekends",
            "monthly blackout 2026-03-01T15:00:00Z weekends",
            "monthly fire 2026-04-01T14:00:00Z",
            "monthly fire 2026-05-01T14:00:00Z",
            "monthly fire 2026-06-01T14:00:00Z",
            "monthly fire 2026-07-01T14:00:00Z",
            "monthly blackout 2026-08-01T14:00:00Z weekends",
            "monthly fire 2026-09-01T14:00:00Z",
            "monthly fire 2026-10-01T14:00:00Z",
            "monthly blackout 2026-11-01T15:00:00Z weekends",
            "monthly fire 2026-12-01T15:00:00Z",
        ]
    );

    // Chicago springs forward on 8 March 2026 at 02:00: 02:30 does not exist that day and fires
    // once, at 03:00 CDT (08:00Z).
    assert_eq!(
        on(&log, "chi_gap", &["2026-03-07", "2026-03-08", "2026-03-09"]),
        [
            "chi_gap fire 2026-03-07T08:30:00Z",
            "chi_gap fire 2026-03-08T08:00:00Z Gap",
            "chi_gap fire 2026-03-09T07:30:00Z",
        ]
    );
    // Chicago falls back on 1 November 2026: 01:30 happens twice and fires once, at the first
    // (CDT, 06:30Z).
    assert_eq!(
        on(
            &log,
            "chi_fold",
            &["2026-10-31", "2026-11-01", "2026-11-02"]
        ),
        [
            "chi_fold fire 2026-10-31T06:30:00Z",
            "chi_fold fire 2026-11-01T06:30:00Z Fold",
            "chi_fold fire 2026-11-02T07:30:00Z",
        ]
    );
    // Berlin: forward on 29 March (02:30 fires at 03:00 CEST = 01:00Z), back on 25 October
    // (02:30 twice; fired at the CEST one, 00:30Z).
    assert_eq!(
        on(
            &log,
            "ber_daily",
            &["2026-03-28", "2026-03-29", "2026-03-30"]
        ),
        [
            "ber_daily fire 2026-03-28T01:30:00Z",
            "ber_daily fire 2026-03-29T01:00:00Z Gap",
            "ber_daily fire 2026-03-30T00:30:00Z",
        ]
    );
    assert_eq!(
        on(
            &log,
            "ber_daily",
            &["2026-10-24", "2026-10-25", "2026-10-26"]
        ),
        [
            "ber_daily fire 2026-10-24T00:30:00Z",
            "ber_daily fire 2026-10-25T00:30:00Z Fold",
            "ber_daily fire 2026-10-26T01:30:00Z",
        ]
    );

    // The three-day outage (10–13 June, UTC): each schedule's missed fires recorded by name and
    // counted; only `catchup_daily` (catch_up = 7d) starts one late run, for its newest miss.
    assert_eq!(
        on(
            &log,
            "catchup_daily",
            &[
                "2026-06-09",
                "2026-06-10",
                "2026-06-11",
                "2026-06-12",
                "2026-06-13"
            ]
        ),
        [
            "catchup_daily fire 2026-06-09T17:00:00Z",
            "catchup_daily missed 2026-06-10T17:00:00Z..2026-06-12T17:00:00Z (3)",
            "catchup_daily catch_up 2026-06-12T17:00:00Z late 7h",
            "catchup_daily fire 2026-06-13T17:00:00Z",
        ]
    );
    assert_eq!(
        on(
            &log,
            "nocatch_daily",
            &[
                "2026-06-09",
                "2026-06-10",
                "2026-06-11",
                "2026-06-12",
                "2026-06-13"
            ]
        ),
        [
            "nocatch_daily fire 2026-06-09T10:00:00Z",
            "nocatch_daily missed 2026-06-10T10:00:00Z..2026-06-12T10:00:00Z (3)",
            "nocatch_daily fire 2026-06-13T10:00:00Z",
        ]
    );
    assert_eq!(
        on(
            &log,
            "every6h",
            &[
                "2026-06-09T18",
                "2026-06-10",
                "2026-06-12",
                "2026-06-13T00",
                "2026-06-13T06"
            ]
        ),
        [
            "every6h fire 2026-06-09T18:00:00Z",
            "every6h missed 2026-06-10T00:00:00Z..2026-06-12T18:00:00Z (12)",
            "every6h fire 2026-06-13T00:00:00Z",
            "every6h fire 2026-06-13T06:00:00Z",
        ]
    );
    assert!(
        of(&log, "hourly_chi")
            .contains(&"hourly_chi missed 2026-06-10T00:00:00Z..2026-06-12T23:00:00Z (72)")
    );
    assert!(
        of(&log, "quarter_hour_ber")
            .contains(&"quarter_hour_ber missed 2026-06-10T00:00:00Z..2026-06-12T23:45:00Z (288)")
    );

    // Mondays 06:00 Berlin: 52 in 2026, 21 and 28 December blacked out by the freeze.
    assert_eq!(count(&log, "ber_monday", "fire"), 50);
    assert_eq!(
        on(&log, "ber_monday", &["2026-12"]),
        [
            "ber_monday fire 2026-12-07T05:00:00Z",
            "ber_monday fire 2026-12-14T05:00:00Z",
            "ber_monday blackout 2026-12-21T05:00:00Z 2026-12-20..2027-01-04",
            "ber_monday blackout 2026-12-28T05:00:00Z 2026-12-20..2027-01-04",
        ]
    );

    // Whole-year totals. Daily: 365 slots, 3 missed. Every 6 h: 1460 slots, 12 missed. Hourly
    // in Chicago: 8760 real hours, the repeated 01:00 of 1 November not fired twice (8759),
    // 72 missed. Quarter-hourly in Berlin: 35040 real quarters, the four repeated ones of
    // 25 October not fired twice (35036), 288 missed.
    for name in [
        "chi_gap",
        "chi_fold",
        "ber_daily",
        "catchup_daily",
        "nocatch_daily",
        "jittered",
    ] {
        assert_eq!(count(&log, name, "fire"), 362, "{name}");
    }
    assert_eq!(count(&log, "every6h", "fire"), 1448);
    assert_eq!(count(&log, "hourly_chi", "fire"), 8687);
    assert_eq!(count(&log, "quarter_hour_ber", "fire"), 34748);
    // A day of hours on each transition: 23 when the clock skips 02:00, 24 (not 25) when 01:00
    // repeats.
    let hours_on = |from: &str, to: &str| {
        of(&log, "hourly_chi")
            .iter()
            .filter(|l| {
                let t = l.split(' ').nth(2).unwrap_or("");
                l.contains(" fire ") && t >= from && t < to
            })
            .count()
    };
    assert_eq!(hours_on("2026-03-08T06:00:00Z", "2026-03-09T05:00:00Z"), 23);
    assert_eq!(hours_on("2026-11-01T05:00:00Z", "2026-11-02T06:00:00Z"), 24);
    Ok(())
}

#[test]
fn jitter_delays_each_fire_by_the_same_amount_below_the_bound()
-> Result<(), Box<dyn std::error::Error>> {
    let mut s = cron("jittered", "0 3 * * *", "America/Chicago");
    s.jitter_ms = 600_000;
    let a = Schedule::new(s.clone())?;
    let b = Schedule::new(s)?;
    let mut distinct = std::collections::BTreeSet::new();
    for slot in a.slots_after(ts("2026-01-01T00:00:00Z")?).take(60) {
        let j = a.jitter_of(&slot);
        assert!(j < 600_000);
        assert_eq!(j, b.jitter_of(&slot), "a restart computes the same delay");
        distinct.insert(j);
    }
    assert!(
        distinct.len() > 50,
        "spread, not one fixed delay: {distinct:?}"
    );
    Ok(())
}

#[test]
fn bad_schedules_are_refused_with_the_reason() {
    let bad = |s: ScheduleSpec| Schedule::new(s).err();
    assert!(matches!(
        bad(cron("x", "0 9 1 *", "UTC")),
        Some(ScheduleError::Cron { .. })
    ));
    assert!(matches!(
        bad(cron("x", "0 25 * * *", "UTC")),
        Some(ScheduleError::Cron { .. })
    ));
    assert!(matches!(
        bad(cron("x", "0 9 * * * *", "UTC")),
        Some(ScheduleError::Cron { .. })
    ));
    assert!(matches!(
        bad(cron("x", "0 9 30 2 *", "UTC")),
        Some(ScheduleError::NeverFires { .. })
    ));
    assert!(matches!(
        bad(cron("x", "0 9 * * *", "America/Chicag")),
        Some(ScheduleError::TimeZone(_))
    ));
    assert!(matches!(
        bad(spec("x", Trigger::Every { ms: 0 }, "UTC")),
        Some(ScheduleError::ZeroInterval)
    ));
    assert!(Blackout::parse("2027-01-04..2026-12-20").is_err());
    assert!(Blackout::parse("2026-02-30").is_err());
    assert!(Blackout::parse("holidays").is_err());
    let (a, b) = (
        Blackout::parse("2026-12-20..2027-01-04"),
        Blackout::parse("2027-01-01..2027-01-10"),
    );
    assert!(matches!((a, b), (Ok(a), Ok(b)) if a.overlaps(&b)));
}

#[test]
fn the_shortest_interval_is_known_for_the_jitter_check() -> Result<(), Box<dyn std::error::Error>> {
    let every_5 = Schedule::new(cron("x", "*/5 * * * *", "Europe/Berlin"))?;
    assert_eq!(every_5.shortest_interval_ms(), Some(300_000));
    let twice = Schedule::new(cron("x", "0 9,10 * * 1", "UTC"))?;
    assert_eq!(twice.shortest_interval_ms(), Some(HOUR));
    Ok(())
}
