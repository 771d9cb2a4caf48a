//! The compliance calendar: per runbook with a `policy` or a schedule, its last successful and
//! last failed drill (or verification), the next scheduled one, and whether it is overdue.

use crate::schedules::ScheduledRunbook;
use crate::{OpsError, Workspace};
use drover_engine::journal::{RunRow, RunStatus};
use drover_engine::run_record::{RunRecord, rfc3339};
use drover_engine::scheduler::RunOutcome;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A day, in milliseconds.
pub const DAY_MS: u64 = 86_400_000;

/// A finished run, as the calendar shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBrief {
    /// The run.
    pub run_id: String,
    /// Its mode.
    pub mode: String,
    /// How it ended.
    pub outcome: String,
    /// Who or what started it (`schedule:NAME` for a scheduled run).
    pub initiator: String,
    /// When it started (RFC 3339) and in ms.
    pub started: String,
    /// When it started (ms).
    pub started_ms: u64,
    /// Achieved RTO (ms), if measured.
    pub rto_ms: Option<u64>,
    /// The RTO target (ms).
    pub rto_target_ms: u64,
    /// Whether the RTO target was met.
    pub rto_met: Option<bool>,
    /// Achieved RPO (ms), if measured.
    pub rpo_ms: Option<u64>,
    /// The RPO target (ms).
    pub rpo_target_ms: u64,
    /// Whether the RPO target was met.
    pub rpo_met: Option<bool>,
    /// How to get its report.
    pub report: String,
}

/// What the policy asks of a runbook: a drill or a verification every so often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// A successful drill-mode run (`drill_every`).
    Drill,
    /// A successful run of a verification runbook (`verify_every`).
    Verification,
}

/// One runbook's standing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillPosture {
    /// The runbook's file.
    pub file: String,
    /// Its name.
    pub runbook: String,
    /// What counts as evidence for it (none without a policy).
    pub evidence: Option<Evidence>,
    /// How often (ms), from the policy.
    pub every_ms: Option<u64>,
    /// The last successful run that counts.
    pub last_success: Option<RunBrief>,
    /// The last failed one.
    pub last_failure: Option<RunBrief>,
    /// The next scheduled run (RFC 3339) and its schedule.
    pub next_scheduled: Option<String>,
    /// The schedule of `next_scheduled`.
    pub next_schedule: Option<String>,
    /// Whole days until it is overdue (negative: overdue for that long); `None` without a
    /// policy, or never drilled.
    pub days_until_overdue: Option<i64>,
    /// Whether it is overdue (a policy, and no success within its period).
    pub overdue: bool,
    /// Every finished run that counts, newest first (for the calendar).
    pub history: Vec<RunBrief>,
    /// The scheduled fire times of the next twelve months (RFC 3339).
    pub upcoming: Vec<String>,
}

fn brief(row: &RunRow, report: &dyn Fn(&str) -> String) -> Option<RunBrief> {
    let rec: RunRecord = serde_json::from_str(row.record.as_deref()?).ok()?;
    let outcome = match row.status {
        RunStatus::Finished(o) => o,
        _ => return None,
    };
    Some(RunBrief {
        run_id: row.run_id.clone(),
        mode: row.mode.as_str().to_owned(),
        outcome: outcome.as_str().to_owned(),
        initiator: row.initiator.clone(),
        started: rfc3339(row.created_at),
        started_ms: row.created_at,
        rto_ms: rec.rto.achieved_ms,
        rto_target_ms: rec.rto.target_ms,
        rto_met: rec.rto.met,
        rpo_ms: rec.rpo.achieved_ms,
        rpo_target_ms: rec.rpo.target_ms,
        rpo_met: rec.rpo.met,
        report: report(&row.run_id),
    })
}

/// The posture of `runbooks` at `now_ms` from `ws`'s journal; `report` says where a run's
/// report is (a command, or a server's URL).
///
/// # Errors
/// The journal cannot be read.
pub fn drill_posture(
    runbooks: &[ScheduledRunbook],
    ws: &Workspace,
    now_ms: u64,
    report: &dyn Fn(&str) -> String,
) -> Result<Vec<DrillPosture>, OpsError> {
    let rows = if ws.has_journal() {
        ws.runs()?
    } else {
        Vec::new()
    };
    let now = Timestamp::from_millisecond(i64::try_from(now_ms).unwrap_or(i64::MAX))
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let year_on = now_ms.saturating_add(365 * DAY_MS);
    let mut out = Vec::new();
    for rb in runbooks {
        let policy = rb.plan.policy.unwrap_or_default();
        let (evidence, every_ms) = match (policy.drill_every_ms, policy.verify_every_ms) {
            (Some(d), _) => (Some(Evidence::Drill), Some(d)),
            (None, Some(v)) => (Some(Evidence::Verification), Some(v)),
            (None, None) => (None, None),
        };
        let counts = |r: &RunRow| {
            r.runbook == rb.plan.runbook.name
                && !r.simulated()
                && (evidence != Some(Evidence::Drill) || r.mode == drover_dsl::Mode::Drill)
        };
        let history: Vec<RunBrief> = rows
            .iter()
            .filter(|r| counts(r))
            .filter_map(|r| brief(r, report))
            .collect();
        let ok = |b: &&RunBrief| b.outcome == RunOutcome::Succeeded.as_str();
        let last_success = history
            .iter()
            .filter(ok)
            .max_by_key(|b| b.started_ms)
            .cloned();
        let last_failure = history
            .iter()
            .filter(|b| !ok(b) && b.outcome != RunOutcome::Interrupted.as_str())
            .max_by_key(|b| b.started_ms)
            .cloned();
        let mut upcoming: Vec<(u64, String)> = Vec::new();
        for s in &rb.schedules {
            for slot in s.slots_after(now).take(2_000) {
                let at = u64::try_from(slot.ms()).unwrap_or(u64::MAX);
                if at > year_on {
                    break;
                }
                if s.blackout_of(&slot).is_none() {
                    upcoming.push((at, s.name().to_owned()));
                }
            }
        }
        upcoming.sort();
        let (days_until_overdue, overdue) = match (every_ms, &last_success) {
            (None, _) => (None, false),
            (Some(_), None) => (None, true),
            (Some(every), Some(b)) => {
                let due = b.started_ms.saturating_add(every);
                let left = i128::from(due) - i128::from(now_ms);
                let days = i64::try_from(left.div_euclid(i128::from(DAY_MS))).unwrap_or(0);
                (Some(days), left < 0)
            }
        };
        out.push(DrillPosture {
            file: rb.file.clone(),
            runbook: rb.plan.runbook.name.clone(),
            evidence,
            every_ms,
            last_success,
            last_failure,
            next_scheduled: upcoming.first().map(|(t, _)| rfc3339(*t)),
            next_schedule: upcoming.first().map(|(_, n)| n.clone()),
            days_until_overdue,
            overdue,
            history: {
                let mut h = history;
                h.sort_by_key(|b| std::cmp::Reverse(b.started_ms));
                h
            },
            upcoming: upcoming.into_iter().map(|(t, _)| rfc3339(t)).collect(),
        });
    }
    Ok(out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn day(rfc: &str) -> &str {
    rfc.get(..10).unwrap_or(rfc)
}

fn objective(achieved: Option<u64>, target: u64, met: Option<bool>) -> String {
    match achieved {
        Some(a) => format!(
            "{} / {}{}",
            drover_dsl::format_duration(a),
            drover_dsl::format_duration(target),
            match met {
                Some(true) => " met",
                Some(false) => " MISSED",
                None => "",
            }
        ),
        None => format!("— / {}", drover_dsl::format_duration(target)),
    }
}

fn policy_text(p: &DrillPosture) -> String {
    match (p.evidence, p.every_ms) {
        (Some(Evidence::Drill), Some(e)) => {
            format!("drill every {}", drover_dsl::format_duration(e))
        }
        (Some(Evidence::Verification), Some(e)) => {
            format!("verify every {}", drover_dsl::format_duration(e))
        }
        _ => "no policy".to_owned(),
    }
}

fn standing(p: &DrillPosture) -> String {
    match (p.overdue, p.days_until_overdue) {
        (true, Some(d)) => format!("OVERDUE by {} day(s)", -d),
        (true, None) => "OVERDUE (never done)".to_owned(),
        (false, Some(d)) => format!("due in {d} day(s)"),
        (false, None) => "—".to_owned(),
    }
}

/// The posture as a Markdown table.
#[must_use]
pub fn render_markdown(posture: &[DrillPosture], now_ms: u64) -> String {
    let mut s = format!(
        "# Drill posture, {}\n\n| runbook | policy | last success | RTO (achieved / target) | RPO | last failure | next scheduled | standing |\n|---|---|---|---|---|---|---|---|\n",
        rfc3339(now_ms)
    );
    for p in posture {
        let ls = p.last_success.as_ref();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.runbook.replace('|', "\\|"),
            policy_text(p),
            ls.map_or("never".to_owned(), |b| format!(
                "{} ({})",
                day(&b.started),
                b.run_id
            )),
            ls.map_or("—".to_owned(), |b| objective(
                b.rto_ms,
                b.rto_target_ms,
                b.rto_met
            )),
            ls.map_or("—".to_owned(), |b| objective(
                b.rpo_ms,
                b.rpo_target_ms,
                b.rpo_met
            )),
            p.last_failure.as_ref().map_or("—".to_owned(), |b| format!(
                "{} ({}, {})",
                day(&b.started),
                b.run_id,
                b.outcome
            )),
            p.next_scheduled
                .as_deref()
                .map_or("—".to_owned(), |n| format!(
                    "{} ({})",
                    n,
                    p.next_schedule.as_deref().unwrap_or("")
                )),
            standing(p)
        ));
    }
    let overdue = posture.iter().filter(|p| p.overdue).count();
    s.push_str(&format!(
        "\n{overdue} of {} runbook(s) overdue.\n",
        posture.len()
    ));
    s
}

/// The first day (ms) of the month `offset` months after the month of `ms` (UTC), and its
/// label `YYYY-MM`.
fn month(ms: u64, offset: i32) -> (u64, String) {
    let d = Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let total = i32::from(d.year()) * 12 + i32::from(d.month()) - 1 + offset;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let first = jiff::civil::Date::new(
        i16::try_from(y).unwrap_or(1970),
        i8::try_from(m).unwrap_or(1),
        1,
    )
    .ok()
    .and_then(|d| jiff::tz::Offset::UTC.to_timestamp(d.at(0, 0, 0, 0)).ok())
    .map_or(0, |t| u64::try_from(t.as_millisecond()).unwrap_or(0));
    (first, format!("{y:04}-{m:02}"))
}

/// The posture as a self-contained HTML page: the table, and a calendar of the past and next
/// twelve months per runbook (successful, failed and scheduled runs; the month it falls
/// overdue).
#[must_use]
pub fn render_html(posture: &[DrillPosture], now_ms: u64) -> String {
    let months: Vec<(u64, u64, String)> = (-12..12)
        .map(|k| {
            let (start, label) = month(now_ms, k);
            let (end, _) = month(now_ms, k + 1);
            (start, end, label)
        })
        .collect();
    let overdue = posture.iter().filter(|p| p.overdue).count();
    let mut h = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Drill posture</title><style>\
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#1b1f24}h1{font-size:1.4rem}\
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #c8ccd0;padding:.3rem .5rem;text-align:left;vertical-align:top}\
th{background:#eef1f4}.overdue{color:#fff;background:#b3261e;font-weight:600;padding:.1rem .4rem;border-radius:3px}\
.ok{color:#0b6b2b}.bad{color:#b3261e}.cal td{width:2.6rem;height:2.2rem;font-size:12px;text-align:center;padding:.1rem}\
.cal td.now{outline:2px solid #1b1f24}.cal td.late{background:#fbe3e1}\
.s{color:#fff;background:#0b6b2b;border-radius:3px;padding:0 .2rem}.f{color:#fff;background:#b3261e;border-radius:3px;padding:0 .2rem}\
.n{color:#0b4f9c;border:1px solid #0b4f9c;border-radius:3px;padding:0 .2rem}.legend span{margin-right:1rem}\
</style></head><body>",
    );
    h.push_str(&format!(
        "<h1>Drill posture</h1><p>At {} — {} of {} runbook(s) overdue.</p>",
        esc(&rfc3339(now_ms)),
        overdue,
        posture.len()
    ));
    h.push_str("<table><thead><tr><th>Runbook</th><th>Policy</th><th>Last success</th><th>RTO (achieved / target)</th><th>RPO (achieved / target)</th><th>Last failure</th><th>Next scheduled</th><th>Standing</th></tr></thead><tbody>");
    for p in posture {
        let ls = p.last_success.as_ref();
        h.push_str(&format!(
            "<tr><td>{}<br><small>{}</small></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.runbook),
            esc(&p.file),
            esc(&policy_text(p)),
            ls.map_or("never".to_owned(), |b| format!(
                "<span class=\"ok\">{}</span> <a href=\"{}\">{}</a>",
                esc(day(&b.started)),
                esc(&b.report),
                esc(&b.run_id)
            )),
            ls.map_or("—".to_owned(), |b| esc(&objective(b.rto_ms, b.rto_target_ms, b.rto_met))),
            ls.map_or("—".to_owned(), |b| esc(&objective(b.rpo_ms, b.rpo_target_ms, b.rpo_met))),
            p.last_failure.as_ref().map_or("—".to_owned(), |b| format!(
                "<span class=\"bad\">{}</span> <a href=\"{}\">{}</a> {}",
                esc(day(&b.started)),
                esc(&b.report),
                esc(&b.run_id),
                esc(&b.outcome)
            )),
            p.next_scheduled.as_deref().map_or("—".to_owned(), |n| format!(
                "{} ({})",
                esc(n),
                esc(p.next_schedule.as_deref().unwrap_or(""))
            )),
            if p.overdue {
                format!("<span class=\"overdue\">{}</span>", esc(&standing(p)))
            } else {
                esc(&standing(p))
            }
        ));
    }
    h.push_str("</tbody></table>");
    h.push_str("<h2>Calendar: the past and next twelve months</h2><p class=\"legend\"><span><span class=\"s\">✓</span> successful</span><span><span class=\"f\">✗</span> failed</span><span><span class=\"n\">◷</span> scheduled</span><span style=\"background:#fbe3e1\">&nbsp;overdue&nbsp;</span></p>");
    h.push_str("<table class=\"cal\"><thead><tr><th>Runbook</th>");
    for (_, _, label) in &months {
        h.push_str(&format!("<th>{}</th>", esc(label)));
    }
    h.push_str("</tr></thead><tbody>");
    for p in posture {
        h.push_str(&format!("<tr><th>{}</th>", esc(&p.runbook)));
        // Overdue from the day the last success expires (or always, never done).
        let late_from = match (p.every_ms, &p.last_success) {
            (Some(e), Some(b)) => Some(b.started_ms.saturating_add(e)),
            (Some(_), None) => Some(0),
            _ => None,
        };
        for (start, end, label) in &months {
            let ok = p
                .history
                .iter()
                .filter(|b| {
                    b.started_ms >= *start && b.started_ms < *end && b.outcome == "succeeded"
                })
                .count();
            let failed = p
                .history
                .iter()
                .filter(|b| {
                    b.started_ms >= *start && b.started_ms < *end && b.outcome != "succeeded"
                })
                .count();
            let planned = p
                .upcoming
                .iter()
                .filter(|u| u.starts_with(label.as_str()))
                .count();
            let mut class = Vec::new();
            if now_ms >= *start && now_ms < *end {
                class.push("now");
            }
            if late_from.is_some_and(|l| l < *end) && *start <= now_ms {
                class.push("late");
            }
            let mut cell = String::new();
            if ok > 0 {
                cell.push_str(&format!(
                    "<span class=\"s\" title=\"{ok} successful\">✓{}</span>",
                    if ok > 1 {
                        ok.to_string()
                    } else {
                        String::new()
                    }
                ));
            }
            if failed > 0 {
                cell.push_str(&format!(
                    "<span class=\"f\" title=\"{failed} failed\">✗{}</span>",
                    if failed > 1 {
                        failed.to_string()
                    } else {
                        String::new()
                    }
                ));
            }
            if planned > 0 {
                cell.push_str(&format!(
                    "<span class=\"n\" title=\"{planned} scheduled\">◷{}</span>",
                    if planned > 1 {
                        planned.to_string()
                    } else {
                        String::new()
                    }
                ));
            }
            h.push_str(&format!(
                "<td class=\"{}\" title=\"{}\">{}</td>",
                class.join(" "),
                esc(label),
                cell
            ));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></body></html>\n");
    h
}

impl Workspace {
    /// The verifications the journal holds, as `backup.verify` records whose subject is what was
    /// verified: the backup operations log (`@backups`: `drover backup verify`), and every run's
    /// `backup.verify_sample` steps (the prefix from the step's outputs, or from its error's
    /// resource when it failed). None when there is no journal yet. Backup posture reads them.
    ///
    /// # Errors
    /// The journal cannot be read, or a record does not parse.
    pub fn backup_verifications(&self) -> Result<Vec<drover_engine::audit::AuditRecord>, OpsError> {
        use drover_engine::audit::AuditRecord;
        use drover_engine::scheduler::Event;
        if self.postgres.is_none() && !self.state.exists() {
            return Ok(Vec::new());
        }
        let journal = self.journal()?;
        let read = |log: &str| -> Result<Vec<AuditRecord>, OpsError> {
            journal
                .audit(log)?
                .iter()
                .map(|(seq, text, _)| {
                    serde_json::from_str(text).map_err(|e| {
                        OpsError::Failed(format!("audit record {seq} of {log} does not read: {e}"))
                    })
                })
                .collect()
        };
        let mut out = read(drover_engine::oplog::BACKUPS_LOG)?;
        for run in journal.runs()? {
            let steps: Vec<AuditRecord> = read(&run.run_id)?
                .into_iter()
                .filter(|r| {
                    r.action == "backup.verify_sample"
                        && matches!(r.outcome.as_str(), "ok" | "failed")
                })
                .collect();
            if steps.is_empty() {
                continue;
            }
            // What each step verified, from its last attempt.
            let mut source = std::collections::BTreeMap::new();
            for (_, e) in journal.events(&run.run_id)? {
                match e {
                    Event::StepSucceeded { step, outputs, .. } => {
                        if let Some(s) = outputs.get("source").and_then(|v| v.as_str()) {
                            source.insert(step, s.to_owned());
                        }
                    }
                    Event::StepFailed {
                        step,
                        context: Some(c),
                        ..
                    } => {
                        if let Some(r) = c.resource {
                            source.insert(step, r);
                        }
                    }
                    _ => {}
                }
            }
            for mut r in steps {
                let Some(s) = r.step.as_ref().and_then(|id| source.get(id)).cloned() else {
                    continue;
                };
                r.step = Some(s);
                r.action = "backup.verify".into();
                r.outcome = if r.outcome == "ok" {
                    "verified"
                } else {
                    "failed"
                }
                .into();
                out.push(r);
            }
        }
        Ok(out)
    }
}
