//! `drover schedule list`: every schedule, its next fire times in its zone and UTC, and why a
//! time will be skipped; `drover posture drills`: the compliance calendar — from runbook files
//! here, or from a server's runbook directory.

use drover_engine::clock::{Clock, SystemClock};
use drover_ops::Workspace;
use drover_ops::posture::{DrillPosture, drill_posture, render_html, render_markdown};
use drover_ops::schedules::{
    ScheduleView, ScheduledRunbook, Unschedulable, runbooks_in, schedule_views, scheduled_runbook,
};
use std::path::Path;
use std::process::ExitCode;

/// The runbooks with schedules or a policy at `paths` (files or directories), and those that do
/// not compile.
fn load(paths: &[String]) -> Result<(Vec<ScheduledRunbook>, Vec<Unschedulable>), ExitCode> {
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
                    return Err(ExitCode::from(2));
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
    Ok((rbs, bad))
}

/// Lists the schedules of the runbooks at `paths` (files or directories), with what `state`'s
/// journal knows of them.
pub fn list_local(paths: &[String], state: &str, count: usize, json: bool) -> ExitCode {
    let (rbs, bad) = match load(paths) {
        Ok(x) => x,
        Err(code) => return code,
    };
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

/// How `drover posture drills` prints.
#[derive(Clone, Copy)]
pub enum PostureOut {
    /// Markdown.
    Md,
    /// HTML with the calendar.
    Html,
    /// JSON.
    Json,
}

/// The posture of the runbooks at `paths` from `state`'s runs.
pub fn posture_local(
    paths: &[String],
    state: &str,
    format: PostureOut,
    out: Option<&str>,
) -> ExitCode {
    let (rbs, bad) = match load(paths) {
        Ok(x) => x,
        Err(code) => return code,
    };
    for b in &bad {
        errln!("not assessed: {}: {}", b.file, b.error);
    }
    let now = SystemClock.now_ms();
    let shown = state.to_owned();
    let report = move |run: &str| format!("drover report {run} --state {shown}");
    match drill_posture(&rbs, &Workspace::new(state), now, &report) {
        Ok(p) => emit(&p, now, format, out),
        Err(e) => {
            errln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The posture a server reports for its runbook directory.
pub fn posture_remote(server: &str, format: PostureOut, out: Option<&str>) -> ExitCode {
    let url = crate::remote::base(server);
    let v = match crate::remote::get(&url, "/api/v1/posture/drills") {
        Ok(v) => v,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let posture: Vec<DrillPosture> = match serde_json::from_value(v["runbooks"].clone()) {
        Ok(p) => p,
        Err(e) => {
            errln!("error: the server's answer does not read: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = v["now_ms"].as_u64().unwrap_or_else(|| SystemClock.now_ms());
    emit(&posture, now, format, out)
}

fn emit(posture: &[DrillPosture], now: u64, format: PostureOut, out: Option<&str>) -> ExitCode {
    let text = match format {
        PostureOut::Md => render_markdown(posture, now),
        PostureOut::Html => render_html(posture, now),
        PostureOut::Json => format!(
            "{}\n",
            serde_json::json!({ "now_ms": now, "runbooks": posture, "overdue": posture.iter().filter(|p| p.overdue).count() })
        ),
    };
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, text) {
                errln!("error: {path}: {e}");
                return ExitCode::from(2);
            }
        }
        None => out!("{text}"),
    }
    if posture.iter().any(|p| p.overdue) {
        for p in posture.iter().filter(|p| p.overdue) {
            errln!("overdue: {} ({})", p.runbook, p.file);
        }
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
