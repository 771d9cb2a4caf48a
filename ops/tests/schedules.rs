//! The scheduler's exactly-once protocol against a real journal: the process is "killed" (its
//! scheduler dropped) after each journal write between "schedule decided" and "run started",
//! and a new scheduler over the same state directory neither loses nor doubles the run.

use drover_engine::clock::{Clock, SystemClock};
use drover_engine::driver::{Adapters, Observer};
use drover_ops::Workspace;
use drover_ops::schedules::{Scheduler, runbooks_in, schedule_views};
use std::path::Path;
use std::sync::Arc;

const HOUR: u64 = 3_600_000;
/// 2026-06-01T00:00:00Z.
const T0: u64 = 1_780_272_000_000;

const RUNBOOK: &str = r#"
runbook "Hourly check" {
  rto   = 10m
  rpo   = 1h
  modes = [drill]
}

schedule hourly {
  every    = 1h
  catch_up = 3h
}

step note {
  action = wait
  with { duration = 1ms }
}

milestone done {
  after     = [note]
  stops_rto = true
}
"#;

struct Quiet;
impl Observer for Quiet {
    fn line(&self, _text: &str) {}
}

fn adapters() -> Adapters {
    let sink: drover_adapters::local::NotifySink = Arc::new(|_: &str| {});
    drover_adapters::builtin_adapters(sink)
        .into_iter()
        .fold(Adapters::default(), Adapters::with)
}

fn setup(d: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(d.join("runbooks"))?;
    std::fs::write(d.join("runbooks/hourly.drover"), RUNBOOK)?;
    Ok(())
}

fn scheduler(d: &Path, now: u64) -> Result<Scheduler, Box<dyn std::error::Error>> {
    let (rbs, bad) = runbooks_in(&d.join("runbooks"))?;
    assert!(bad.is_empty(), "{bad:?}");
    Ok(Scheduler::new(Workspace::new(d.join("state")), rbs, now)?)
}

fn runs(d: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut ids: Vec<String> = Workspace::new(d.join("state"))
        .runs()?
        .into_iter()
        .map(|r| format!("{} {}", r.run_id, r.initiator))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The steps between decision and start; `crash_after` of them happen before the "kill".
async fn fire_and_crash(d: &Path, crash_after: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut s = scheduler(d, T0)?;
    let pending = s.decide(T0 + HOUR)?; // boundary 1: the decision is journaled
    assert_eq!(pending.len(), 1, "{pending:?}");
    if crash_after == 1 {
        return Ok(());
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let driver = s
        .launch(&pending[0], clock, adapters(), Arc::new(Quiet))
        .await?
        .ok_or("a fresh fire must start a run")?; // boundary 2: the run exists
    if crash_after == 2 {
        drop(driver);
        return Ok(());
    }
    s.mark_started(&pending[0], T0 + HOUR)?; // boundary 3: the fire is marked
    driver.drive(true).await?;
    Ok(())
}

#[tokio::test]
async fn a_crash_at_every_boundary_between_decision_and_start_neither_loses_nor_doubles_a_run()
-> Result<(), Box<dyn std::error::Error>> {
    for crash_after in 1..=3 {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        setup(d)?;
        fire_and_crash(d, crash_after).await?;
        // The restarted server: same state directory, a little later.
        let mut s = scheduler(d, T0 + HOUR + 5_000)?;
        let pending = s.decide(T0 + HOUR + 5_000)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        for p in &pending {
            if let Some(driver) = s
                .launch(p, clock.clone(), adapters(), Arc::new(Quiet))
                .await?
            {
                s.mark_started(p, T0 + HOUR + 5_000)?;
                driver.drive(true).await?;
            } else {
                s.mark_started(p, T0 + HOUR + 5_000)?;
            }
        }
        let after = runs(d)?;
        assert_eq!(after.len(), 1, "crash after write {crash_after}: {after:?}");
        assert!(after[0].ends_with(" schedule:hourly"), "{after:?}");
        // Nothing is left to start, and a third start changes nothing.
        let s = scheduler(d, T0 + HOUR + 10_000)?;
        assert!(s.pending()?.is_empty(), "crash after write {crash_after}");
        assert_eq!(runs(d)?, after);
        // The audit log holds the decision and the start, chained.
        let ws = Workspace::new(d.join("state"));
        let j = ws.journal_read()?;
        let fires = j.fires()?;
        let fired: Vec<_> = fires.iter().filter(|f| f.decision == "fire").collect();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].state, "started");
    }
    Ok(())
}

#[tokio::test]
async fn downtime_is_recorded_by_schedule_with_its_count_and_one_late_run_catches_up()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    setup(d)?;
    drop(scheduler(d, T0)?); // registered at T0, then the server goes down
    // Back 5 h 10 min later: slots at +1 h … +5 h were missed (5); the newest is within the
    // 3 h catch-up window, so one late run starts for it.
    let now = T0 + 5 * HOUR + 600_000;
    let mut s = scheduler(d, now)?;
    let pending = s.decide(now)?;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].decision, "catch_up");
    assert_eq!(pending[0].slot_ms, i64::try_from(T0 + 5 * HOUR)?);
    let ws = Workspace::new(d.join("state"));
    let fires = ws.journal_read()?.fires()?;
    let missed: Vec<_> = fires.iter().filter(|f| f.decision == "missed").collect();
    assert_eq!(missed.len(), 1);
    assert_eq!(
        (missed[0].schedule.as_str(), missed[0].count),
        ("hourly", 5)
    );
    // Deciding again at the same instant decides nothing new.
    assert_eq!(
        s.decide(now)?.len(),
        1,
        "the catch-up is still pending, not doubled"
    );
    let views = schedule_views(s.runbooks(), Some(&ws), now, 3)?;
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].missed, 5);
    assert_eq!(views[0].next.len(), 3);
    Ok(())
}

const OVERLAPPING: &str = r#"
runbook "Hourly overlap" {
  rto   = 10m
  rpo   = 1h
  modes = [drill]
}

schedule hourly {
  every   = 1h
  overlap = POLICY
}

step note {
  action = wait
  with { duration = 1ms }
}

milestone done {
  after     = [note]
  stops_rto = true
}
"#;

#[tokio::test]
async fn a_fire_while_the_previous_run_is_going_is_skipped_or_queued_as_the_schedule_says()
-> Result<(), Box<dyn std::error::Error>> {
    for policy in ["skip", "queue"] {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("runbooks"))?;
        std::fs::write(
            d.join("runbooks/hourly.drover"),
            OVERLAPPING.replace("POLICY", policy),
        )?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut s = scheduler(d, T0)?;
        let first = s.decide(T0 + HOUR)?;
        assert_eq!(first.len(), 1);
        // Started, not yet driven to its end: still going when the next hour comes.
        let driver = s
            .launch(&first[0], clock.clone(), adapters(), Arc::new(Quiet))
            .await?
            .ok_or("a fresh fire starts a run")?;
        s.mark_started(&first[0], T0 + HOUR)?;
        let second = s.decide(T0 + 2 * HOUR)?;
        let ws = Workspace::new(d.join("state"));
        let fires = ws.journal_read()?.fires()?;
        match policy {
            "skip" => {
                assert!(second.is_empty(), "{second:?}");
                let skipped: Vec<_> = fires.iter().filter(|f| f.decision == "overlap").collect();
                assert_eq!(skipped.len(), 1);
                assert_eq!(skipped[0].state, "skipped");
                assert!(
                    skipped[0]
                        .detail
                        .as_deref()
                        .is_some_and(|t| t.contains(driver.run_id()))
                );
                driver.drive(true).await?;
            }
            _ => {
                assert_eq!(second.len(), 1);
                assert!(second[0].queued, "waits for the run going: {second:?}");
                driver.drive(true).await?;
                // The previous run over: the queued fire starts.
                let now = s.pending()?;
                assert_eq!(now.len(), 1);
                assert!(!now[0].queued);
                let d2 = s
                    .launch(&now[0], clock.clone(), adapters(), Arc::new(Quiet))
                    .await?
                    .ok_or("the queued fire starts a run")?;
                s.mark_started(&now[0], T0 + 2 * HOUR + 1)?;
                d2.drive(true).await?;
                assert_eq!(runs(d)?.len(), 2);
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn missed_fires_raise_an_alert_that_the_next_started_fire_resolves()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    setup(d)?;
    drop(scheduler(d, T0)?);
    // Down for 10 h: 10 fires missed; the newest is within the 3 h catch-up, so one late run.
    let back = T0 + 10 * HOUR + 60_000 * 5;
    let mut s = scheduler(d, back)?;
    let pending = s.decide(back)?;
    let ws = Workspace::new(d.join("state"));
    let alerts = drover_ops::alerts::conditions(&ws, &[], back, HOUR)?;
    let missed: Vec<_> = alerts
        .iter()
        .filter(|a| a.kind == drover_alerts::AlertKind::ScheduleMissed)
        .collect();
    assert_eq!(missed.len(), 1, "{alerts:?}");
    assert!(
        missed[0].summary.contains("`hourly`") && missed[0].summary.contains("missed 10 fire(s)"),
        "{}",
        missed[0].summary
    );
    assert_eq!(
        missed[0].details.get("missed").map(String::as_str),
        Some("10")
    );
    // The catch-up run starts: the condition clears.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let driver = s
        .launch(&pending[0], clock, adapters(), Arc::new(Quiet))
        .await?
        .ok_or("starts")?;
    s.mark_started(&pending[0], back)?;
    driver.drive(true).await?;
    let alerts = drover_ops::alerts::conditions(&ws, &[], back + 1_000, HOUR)?;
    assert!(
        alerts
            .iter()
            .all(|a| a.kind != drover_alerts::AlertKind::ScheduleMissed),
        "{alerts:?}"
    );
    Ok(())
}
