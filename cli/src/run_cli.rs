//! `drover run | resume | approve | status | audit verify`: argument handling and printing around
//! `drover_engine`.
//!
//! Exit codes: 0 the run succeeded and met its targets; 1 it failed (or was refused); 2 usage;
//! 3 it succeeded but missed its RTO or RPO target; 4 it was interrupted (resume it).

use drover_adapters::local::LocalAdapter;
use drover_dsl::{Mode, Plan, format_duration};
use drover_engine::audit;
use drover_engine::clock::{Clock, SystemClock};
use drover_engine::driver::{Adapters, Driver, DriverError, Observer, RunSpec};
use drover_engine::journal::{Journal, SqliteJournal};
use drover_engine::run_record::{Objective, RunRecord, parse_rfc3339};
use drover_engine::scheduler::RunOutcome;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `drover run`.
pub struct RunArgs {
    pub plan: Plan,
    /// The runbook's source files (kept with the run).
    pub sources: Vec<drover_engine::journal::SourceText>,
    pub mode: Mode,
    pub state: PathBuf,
    pub operator: Option<String>,
    pub declared_at: Option<String>,
    pub run_id: Option<String>,
    pub dry_run: bool,
}

/// Prints progress lines with the time since the run started; on a terminal, also a live status
/// line: steps done, running and waiting for approval, and the RTO clock against the target.
struct Lines {
    clock: Arc<dyn Clock>,
    start: u64,
    bar: Option<indicatif::ProgressBar>,
}

impl Lines {
    fn new(clock: Arc<dyn Clock>, start: u64) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stdout().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
                b.set_style(style);
            }
            b.enable_steady_tick(std::time::Duration::from_millis(250));
            b
        });
        Self { clock, start, bar }
    }
}

impl Observer for Lines {
    fn line(&self, text: &str) {
        let s = self.clock.now_ms().saturating_sub(self.start) / 1000;
        let line = format!("[{:02}:{:02}] {text}", s / 60, s % 60);
        match &self.bar {
            Some(b) => b.println(line),
            None => println!("{line}"),
        }
    }

    fn wants_status(&self) -> bool {
        self.bar.is_some()
    }

    fn status(&self, st: &drover_engine::driver::LiveStatus) {
        if let Some(b) = &self.bar {
            let clock = if st.rto_reached {
                "RTO clock stopped".to_owned()
            } else {
                let over = if st.since_declared_ms > st.rto_target_ms {
                    " OVER TARGET"
                } else {
                    ""
                };
                format!(
                    "RTO clock {} of {}{over}",
                    format_duration(st.since_declared_ms / 1000 * 1000),
                    format_duration(st.rto_target_ms)
                )
            };
            b.set_message(format!(
                "{}/{} done, {} running, {} awaiting approval, {} failed | {clock}",
                st.done, st.total, st.running, st.awaiting_approval, st.failed
            ));
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The OS user: `$USER`, `$LOGNAME`, or the name of this process's uid in /etc/passwd.
fn os_user() -> String {
    if let Ok(u) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        return u;
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().next().map(str::to_owned))
        });
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    uid.and_then(|uid| {
        passwd
            .lines()
            .find(|l| l.split(':').nth(2) == Some(uid.as_str()))
            .and_then(|l| l.split(':').next().map(str::to_owned))
    })
    .unwrap_or_else(|| "unknown".into())
}

fn adapters() -> Adapters {
    let sink: drover_adapters::local::NotifySink =
        Arc::new(|m: &str| println!("        notify: {m}"));
    let adapters = Adapters::default().with(Arc::new(LocalAdapter::new(sink)));
    #[cfg(feature = "aws")]
    let adapters = adapters
        .with(Arc::new(drover_adapters::aws_s3::AwsS3Adapter))
        .with(Arc::new(drover_adapters::aws_route53::AwsRoute53Adapter))
        .with(Arc::new(drover_adapters::aws_ec2::AwsEc2Adapter));
    #[cfg(feature = "azure")]
    let adapters = adapters.with(Arc::new(
        drover_adapters::azure_network::AzureNetworkAdapter::default(),
    ));
    adapters
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn journal(state: &std::path::Path) -> Result<SqliteJournal, ExitCode> {
    SqliteJournal::open(state).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

fn resolve_run(j: &dyn Journal, run_id: &str) -> Result<String, ExitCode> {
    if run_id != "latest" {
        return Ok(run_id.to_owned());
    }
    match j.latest_run() {
        Ok(Some(r)) => Ok(r),
        Ok(None) => {
            eprintln!("error: no runs in this state directory");
            Err(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Opens the journal and resolves `latest`.
fn open_run(state: &std::path::Path, run_id: &str) -> Result<(SqliteJournal, String), ExitCode> {
    let j = journal(state)?;
    let run_id = resolve_run(&j, run_id)?;
    Ok((j, run_id))
}

fn objective(name: &str, o: &Objective) -> String {
    match (o.achieved_ms, o.met) {
        (Some(a), Some(met)) => format!(
            "{name} {} against a target of {}: {}",
            format_duration(a / 1000 * 1000),
            format_duration(o.target_ms),
            if met { "MET" } else { "MISSED" }
        ),
        _ => format!(
            "{name} not measured ({}); target {}",
            o.basis,
            format_duration(o.target_ms)
        ),
    }
}

fn summary(r: &RunRecord) -> ExitCode {
    println!();
    println!(
        "run {} ({}, {} mode, started by {})",
        r.run_id, r.runbook, r.mode, r.initiator
    );
    println!(
        "outcome: {}",
        r.outcome
            .map_or_else(|| "running".to_owned(), |o| format!("{o:?}"))
    );
    println!("{}", objective("RTO", &r.rto));
    println!("{}", objective("RPO", &r.rpo));
    for b in &r.backups {
        println!(
            "{}: backup {} ({}), recovery point {}, key {}, sha256 {}",
            b.step, b.backup_id, b.dataset, b.recovery_point, b.key_id, b.sha256
        );
    }
    match r.outcome {
        Some(RunOutcome::Succeeded | RunOutcome::SucceededWithFailures) if r.missed_target() => {
            ExitCode::from(3)
        }
        Some(RunOutcome::Succeeded | RunOutcome::SucceededWithFailures) => ExitCode::SUCCESS,
        Some(RunOutcome::Interrupted) | None => ExitCode::from(4),
        Some(_) => ExitCode::FAILURE,
    }
}

fn write_record(state: &std::path::Path, r: &RunRecord) {
    let dir = state.join("runs");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(
            dir.join(format!("{}.json", r.run_id)),
            serde_json::to_string_pretty(r).unwrap_or_default(),
        );
    }
}

fn driver_error(e: &DriverError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// `drover run`.
pub fn run(a: RunArgs) -> ExitCode {
    if !a.plan.runbook.modes.contains(&a.mode) {
        eprintln!(
            "error: runbook `{}` does not support {} mode",
            a.plan.runbook.name,
            a.mode.as_str()
        );
        return ExitCode::from(2);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(c) => return c,
    };
    if a.dry_run {
        return dry_run(&rt, &a);
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now_ms();
    let declared_at = match a.declared_at.as_deref().map(parse_rfc3339) {
        None => now,
        Some(Some(t)) => t,
        Some(None) => {
            eprintln!(
                "error: --declared-at is not an RFC 3339 time (example: 2026-11-23T03:00:00Z)"
            );
            return ExitCode::from(2);
        }
    };
    let run_id = a.run_id.unwrap_or_else(|| {
        let t = drover_engine::run_record::rfc3339(now).replace([':', '-'], "");
        format!("r{}-{:04x}", &t[..t.len().min(15)], rand::random::<u16>())
    });
    let j = match journal(&a.state) {
        Ok(j) => j,
        Err(c) => return c,
    };
    let spec = RunSpec {
        run_id: run_id.clone(),
        mode: a.mode,
        initiator: a.operator.unwrap_or_else(os_user),
        state_dir: a.state.clone(),
        declared_at,
        sources: a.sources.clone(),
    };
    println!(
        "run {run_id}: {} in {} mode (state {})",
        a.plan.runbook.name,
        a.mode.as_str(),
        a.state.display()
    );
    let observer = Arc::new(Lines::new(Arc::clone(&clock), now));
    let plan = Arc::new(a.plan);
    let result = rt.block_on(async move {
        let d = Driver::start(spec, plan, Box::new(j), clock, adapters(), observer)?;
        d.drive(true).await
    });
    match result {
        Ok(r) => {
            write_record(&a.state, &r);
            summary(&r)
        }
        Err(e) => driver_error(&e),
    }
}

fn dry_run(rt: &tokio::runtime::Runtime, a: &RunArgs) -> ExitCode {
    let lines = rt.block_on(drover_engine::driver::dry_run(
        &a.plan,
        a.mode,
        &adapters(),
        &a.state,
    ));
    let mut failed = false;
    for l in &lines {
        failed |= l.problem.is_some();
        match &l.problem {
            None => println!("ok      {:<28} {:<30} {}", l.step, l.action, l.note),
            Some(p) => println!("FAILED  {:<28} {:<30} {p}", l.step, l.action),
        }
    }
    println!(
        "dry run: {} step(s) in {} mode; nothing was changed",
        lines.len(),
        a.mode.as_str()
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `drover resume`.
pub fn resume(run_id: &str, state: PathBuf, operator: Option<String>) -> ExitCode {
    let (j, run_id) = match open_run(&state, run_id) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(c) => return c,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let observer = Arc::new(Lines::new(Arc::clone(&clock), clock.now_ms()));
    let op = operator.unwrap_or_else(os_user);
    let st = state.clone();
    let result = rt.block_on(async move {
        let d = Driver::resume(&run_id, st, &op, Box::new(j), clock, adapters(), observer).await?;
        d.drive(false).await
    });
    match result {
        Ok(r) => {
            write_record(&state, &r);
            summary(&r)
        }
        Err(e) => driver_error(&e),
    }
}

/// `drover approve`: checks the approval against the run's scheduler state (the same rules the
/// running driver applies), then records it for the driver to pick up.
pub fn approve(
    run_id: &str,
    step: &str,
    operator: &str,
    roles: Vec<String>,
    state: PathBuf,
) -> ExitCode {
    let (mut j, run_id) = match open_run(&state, run_id) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match drover_engine::driver::check_approval(&j, &run_id, step, operator, &roles) {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => {
            eprintln!("refused: {operator} cannot approve `{step}` of run {run_id}: {reason}");
            return ExitCode::FAILURE;
        }
        Err(e) => return driver_error(&e),
    }
    let now = SystemClock.now_ms();
    match j.add_approval(&run_id, step, operator, &roles, now) {
        Ok(_) => {
            println!(
                "approval of `{step}` by {operator} recorded for run {run_id}; the run picks it up (or `drover resume {run_id}`)"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `drover status`.
pub fn status(run_id: &str, state: PathBuf, json: bool) -> ExitCode {
    let (j, run_id) = match open_run(&state, run_id) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match drover_engine::driver::status(&j, &run_id) {
        Ok((row, rec)) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&rec).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            println!(
                "run {} ({}), status {}",
                rec.run_id, rec.runbook, row.status
            );
            for s in &rec.steps {
                match &s.error {
                    Some(e) => println!("  {:<14} {}: {e}", s.state, s.id),
                    None => println!("  {:<14} {}", s.state, s.id),
                }
            }
            println!("{}", objective("RTO", &rec.rto));
            println!("{}", objective("RPO", &rec.rpo));
            ExitCode::SUCCESS
        }
        Err(e) => driver_error(&e),
    }
}

/// `drover audit verify`.
pub fn audit_verify(run_id: &str, state: PathBuf) -> ExitCode {
    let (j, run_id) = match open_run(&state, run_id) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let (row, rows) = match (j.run(&run_id), j.audit(&run_id)) {
        (Ok(r), Ok(a)) => (r, a),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match audit::verify(&run_id, &rows, &row.audit_head, row.audit_count) {
        Ok(n) => {
            println!(
                "audit log of run {run_id}: {n} records, hash chain intact, head {}",
                &row.audit_head[..16]
            );
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("audit log of run {run_id} FAILED verification: {f}");
            ExitCode::FAILURE
        }
    }
}

/// `drover audit show`.
pub fn audit_show(run_id: &str, state: PathBuf) -> ExitCode {
    let (j, run_id) = match open_run(&state, run_id) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match j.audit(&run_id) {
        Ok(rows) => {
            for (_, record, _) in rows {
                println!("{record}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `drover report`: renders a run's report to standard output or a file.
pub fn report(
    run_id: &str,
    state: PathBuf,
    format: drover_report::Format,
    templates: Option<&std::path::Path>,
    out: Option<&str>,
) -> ExitCode {
    let (j, run_id) = match open_run(&state, run_id) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let text = drover_report::gather(&j, &run_id)
        .and_then(|r| drover_report::render(&r, format, templates));
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    write_out(&text, out, &format!("report of run {run_id}"))
}

/// `drover report --history RUNBOOK`.
pub fn report_history(
    runbook: &str,
    state: PathBuf,
    format: drover_report::Format,
    out: Option<&str>,
) -> ExitCode {
    let j = match journal(&state) {
        Ok(j) => j,
        Err(c) => return c,
    };
    let text = drover_report::history(&j, runbook).and_then(|h| {
        if h.runs.is_empty() {
            eprintln!("note: no runs of \"{runbook}\" in {}", state.display());
        }
        drover_report::render_history(&h, format)
    });
    match text {
        Ok(t) => write_out(&t, out, &format!("history of \"{runbook}\"")),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_out(text: &str, out: Option<&str>, what: &str) -> ExitCode {
    match out {
        None => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                eprintln!("{what} written to {path}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write {path}: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn file_uri(uri: &str) -> Result<&std::path::Path, ExitCode> {
    uri.strip_prefix("file:")
        .filter(|p| !p.is_empty())
        .map(std::path::Path::new)
        .ok_or_else(|| {
            eprintln!("error: signing keys are files: file:PATH");
            ExitCode::from(2)
        })
}

/// `drover key generate --signing file:PATH`.
pub fn signing_key_generate(uri: &str) -> ExitCode {
    let path = match file_uri(uri) {
        Ok(p) => p,
        Err(c) => return c,
    };
    match drover_evidence::generate_signing_key(path) {
        Ok(public) => {
            println!(
                "signing key {} ready; public key {} (Ed25519 {})",
                path.display(),
                drover_evidence::public_path(path).display(),
                hex_prefix(public.as_bytes())
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hex_prefix(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}

/// `drover evidence export`.
pub fn evidence_export(
    run_id: &str,
    out: &str,
    signing_key: &str,
    state: PathBuf,
    upload: Option<(&str, u32)>,
) -> ExitCode {
    let path = match file_uri(signing_key) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let key = match drover_evidence::read_signing_key(path) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (j, run_id) = match open_run(&state, run_id) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let (bytes, report) = match drover_report::bundle::export(&j, &run_id, &key) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Written beside the destination, then renamed: a bundle is whole or absent.
    let tmp = format!("{out}.partial");
    if let Err(e) = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, out)) {
        let _ = std::fs::remove_file(&tmp);
        eprintln!("error: cannot write {out}: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "evidence of run {run_id} ({}, {}) written to {out}: {} bytes, signed by {}",
        report.runbook,
        report.outcome,
        bytes.len(),
        hex_prefix(key.verifying_key().as_bytes())
    );
    match upload {
        None => ExitCode::SUCCESS,
        Some((uri, days)) => upload_locked(uri, bytes, days),
    }
}

#[cfg(feature = "aws")]
fn upload_locked(uri: &str, bytes: Vec<u8>, days: u32) -> ExitCode {
    use drover_adapters::aws_s3::{S3Location, put_locked};
    let now = i64::try_from(SystemClock.now_ms() / 1000).unwrap_or(0);
    match S3Location::parse(uri).and_then(|l| put_locked(&l, bytes, days, now)) {
        Ok(o) => {
            println!(
                "uploaded to {uri} (version {}) under Object Lock, compliance mode, until {}",
                o.version_id,
                drover_engine::run_record::rfc3339(
                    u64::try_from(o.retain_until).unwrap_or(0) * 1000
                )
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: upload to {uri}: {e} (the bundle is written locally)");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "aws"))]
fn upload_locked(uri: &str, _bytes: Vec<u8>, _days: u32) -> ExitCode {
    eprintln!(
        "error: cannot upload to {uri}: this drover was built without the `aws` feature (the bundle is written locally)"
    );
    ExitCode::FAILURE
}

/// `drover evidence verify`.
pub fn evidence_verify(bundle: &str, public_key: &str) -> ExitCode {
    let public = match drover_evidence::read_public_key(std::path::Path::new(public_key)) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let bytes = match std::fs::read(bundle) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {bundle}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match drover_report::bundle::verify_bundle(&bytes, &public) {
        Ok(v) => {
            println!(
                "{bundle}: OK — signature valid, {} files intact, audit chain of {} records intact{}; run {} of \"{}\"",
                v.manifest.files.len(),
                v.audit_records,
                if v.sources {
                    ", runbook sources match the plan"
                } else {
                    " (no runbook sources in the bundle)"
                },
                v.manifest.subject.get("run_id").map_or("?", String::as_str),
                v.manifest
                    .subject
                    .get("runbook")
                    .map_or("?", String::as_str),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{bundle}: REFUSED — {e}");
            ExitCode::FAILURE
        }
    }
}
