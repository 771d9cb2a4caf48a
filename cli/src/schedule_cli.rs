//! `drover schedule list`: every schedule, its next fire times in its zone and UTC, and why a
//! time will be skipped — from runbook files here, or from a server's runbook directory.

use drover_engine::clock::{Clock, SystemClock};
use drover_ops::Workspace;
use drover_ops::schedules::{
    ScheduleView, Unschedulable, runbooks_in, schedule_views, scheduled_runbook,
};
use std::path::Path;
use std::process::ExitCode;

/// Lists the schedules of the runbooks at `paths` (files or directories), with what `state`'s
/// journal knows of them.
pub fn list_local(paths: &[String], state: &str, count: usize, json: bool) -> ExitCode {
    let mut rbs = Vec::new();
    let mut bad = Vec::new();
    for p in paths {
        let path = Path::new(p);
        if path.is_dir() {
            match runbooks_in(path) {
                Ok((good, b)) => {
                    rbs.extend(good);
                    bad.extend(b);
                }
                Err(e) => {
                    errln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        } else {
            match scheduled_runbook(path) {
                Ok(Some(rb)) => rbs.push(rb),
                Ok(None) => {}
                Err(e) => bad.push(Unschedulable {
                    file: p.clone(),
                    error: e.to_string(),
                }),
            }
        }
    }
    let ws = Workspace::new(state);
    let views = match schedule_views(&rbs, Some(&ws), SystemClock.now_ms(), count) {
        Ok(v) => v,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    print(&views, &bad, json)
}

/// Lists the schedules of a server's runbook directory.
pub fn list_remote(server: &str, count: usize, json: bool) -> ExitCode {
    let url = crate::remote::base(server);
    let v = match crate::remote::get(&url, &format!("/api/v1/schedules?count={count}")) {
        Ok(v) => v,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let views: Vec<ScheduleView> =
        serde_json::from_value(v["schedules"].clone()).unwrap_or_default();
    let bad: Vec<Unschedulable> =
        serde_json::from_value(v["unschedulable"].clone()).unwrap_or_default();
    print(&views, &bad, json)
}

fn print(views: &[ScheduleView], bad: &[Unschedulable], json: bool) -> ExitCode {
    if json {
        outln!(
            "{}",
            serde_json::json!({ "schedules": views, "unschedulable": bad })
        );
    } else {
        if views.is_empty() {
            outln!("no schedules");
        }
        for v in views {
            outln!("{} — {} ({})", v.schedule, v.runbook, v.file);
            let mut how = format!(
                "  {} mode, {} in {}, overlap {}",
                v.mode, v.trigger, v.timezone, v.overlap
            );
            if v.catch_up_ms > 0 {
                how.push_str(&format!(
                    ", catch_up {}",
                    drover_dsl::format_duration(v.catch_up_ms)
                ));
            }
            if v.jitter_ms > 0 {
                how.push_str(&format!(
                    ", jitter {}",
                    drover_dsl::format_duration(v.jitter_ms)
                ));
            }
            outln!("{how}");
            if !v.blackout.is_empty() {
                outln!("  blackout: {}", v.blackout.join(", "));
            }
            if let Some(r) = &v.running {
                outln!("  running now: {r}");
            }
            if v.missed > 0 {
                outln!("  missed so far: {}", v.missed);
            }
            if let Some(l) = &v.last {
                outln!(
                    "  last decision: {} {} ({}){}",
                    l.decision,
                    drover_engine::run_record::rfc3339(u64::try_from(l.slot_ms).unwrap_or(0)),
                    l.state,
                    l.run_id
                        .as_ref()
                        .map_or(String::new(), |r| format!(", run {r}"))
                );
            }
            for f in &v.next {
                let mut line = format!("  {:<24} {}", f.local, f.utc);
                match &f.skipped {
                    Some(why) => line.push_str(&format!("  skipped: {why}")),
                    None if f.fires_at != f.utc => {
                        line.push_str(&format!("  fires {}", f.fires_at))
                    }
                    None => {}
                }
                if let Some(d) = &f.dst {
                    line.push_str(&format!("  ({d})"));
                }
                outln!("{line}");
            }
        }
        for b in bad {
            errln!("not scheduled: {}: {}", b.file, b.error);
        }
    }
    if bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
