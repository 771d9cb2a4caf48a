//! The built-in local actions: `wait`, `shell`, `notify`, `http.check`, `dns.wait_resolves`, and
//! `backup.rehydrate` / `backup.verify` on the backup library. (`approval` is handled by the
//! engine's scheduler itself.)
//!
//! Resolved inputs arrive as JSON: strings, numbers, booleans, lists, maps; durations as whole
//! milliseconds; secrets already substituted (never log inputs whole).

use crate::backup::{self, NoProgress};
use drover_schema::{
    ActionSchema, Adapter, AdapterError, Inputs, Observation, Outputs, StepContext,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where `notify` messages with `channel = stdout` go (the CLI prints them).
pub type NotifySink = Arc<dyn Fn(&str) + Send + Sync>;

/// The local actions.
pub struct LocalAdapter {
    notify: NotifySink,
    http: reqwest::Client,
    services: Services,
}

/// A background command a run started: the leader of its own process group.
struct Service {
    step: String,
    pgid: i32,
    child: tokio::process::Child,
    keep: bool,
    clock: drover_schema::SharedClock,
}

/// The background services each run started, by run id.
type Services = Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<Service>>>>;

/// How long a stopped service's group gets between SIGTERM and SIGKILL.
const STOP_GRACE_MS: u64 = 2_000;

impl std::fmt::Debug for LocalAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalAdapter")
    }
}

impl LocalAdapter {
    /// Local actions printing `notify` messages through `notify`.
    #[must_use]
    pub fn new(notify: NotifySink) -> Self {
        Self {
            notify,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            services: Services::default(),
        }
    }
}

/// Copies a background service's output into its log a line at a time, every line through the
/// run's redactor; ends when the service closes the stream.
async fn redacted_log(
    stream: impl tokio::io::AsyncRead + Unpin,
    file: std::sync::Arc<std::sync::Mutex<std::fs::File>>,
    redact: drover_schema::Redact,
) {
    use std::io::Write as _;
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(stream).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        let text = redact.apply(&String::from_utf8_lossy(&line));
        if let Ok(mut f) = file.lock() {
            let _ = writeln!(f, "{text}");
        }
    }
}

/// Sends `sig` to a process group; a group that is gone already is not an error.
fn signal_group(pgid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// Kills a foreground command's process group when the attempt is dropped before it finished.
struct KillGroupOnDrop(Option<i32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            signal_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

/// Whether any process of the group is still alive.
fn group_alive(pgid: i32) -> bool {
    rustix::process::Pid::from_raw(pgid)
        .is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok())
}

/// Stops a service's whole process group: SIGTERM, then SIGKILL after a grace period.
async fn stop_service(mut svc: Service) {
    use rustix::process::Signal;
    signal_group(svc.pgid, Signal::TERM);
    let waited = tokio::select! {
        r = svc.child.wait() => r.is_ok(),
        () = svc.clock.sleep(STOP_GRACE_MS) => false,
    };
    // The leader may be gone while others of its group linger: give them the same grace.
    let mut left = STOP_GRACE_MS / 100;
    while waited && left > 0 && group_alive(svc.pgid) {
        svc.clock.sleep(100).await;
        left -= 1;
    }
    if group_alive(svc.pgid) {
        tracing::warn!(step = %svc.step, pgid = svc.pgid, "service ignored SIGTERM; killing its group");
        signal_group(svc.pgid, Signal::KILL);
    }
    let _ = svc.child.wait().await;
}

/// Where a run's background services are recorded, so that the process that ends the run stops
/// them even when an earlier process started them and died (SIGKILL, a crash):
/// `STATE/runs/RUN/services/STEP.json`.
fn services_dir(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(run_id).join("services")
}

/// A recorded service: its process group, and when its leader started (the start time in clock
/// ticks since boot, from /proc), so that a reused process id is never mistaken for it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ServiceRecord {
    step: String,
    pgid: i32,
    started: Option<u64>,
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), if it exists.
fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn record_service(state_dir: &Path, run_id: &str, step: &str, pgid: i32) {
    let dir = services_dir(state_dir, run_id);
    let rec = ServiceRecord {
        step: step.to_owned(),
        pgid,
        started: process_start(pgid),
    };
    let name = format!("{}.json", step.replace(['/', '[', ']'], "_"));
    if let Ok(json) = serde_json::to_vec(&rec)
        && std::fs::create_dir_all(&dir).is_ok()
    {
        let _ = std::fs::write(dir.join(name), json);
    }
}

/// Stops the services recorded for `run_id` that are still the processes that were recorded (an
/// earlier process of the run started them), and forgets every record.
async fn stop_recorded_services(state_dir: &Path, run_id: &str, clock: &dyn drover_schema::Clock) {
    use rustix::process::Signal;
    let dir = services_dir(state_dir, run_id);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut live = Vec::new();
    for e in entries.flatten() {
        let rec: Option<ServiceRecord> = std::fs::read(e.path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let _ = std::fs::remove_file(e.path());
        let Some(rec) = rec else { continue };
        // The leader must be the very process recorded; a group whose leader is gone but whose
        // members linger is stopped too when the leader's start was not recorded.
        let same = match (rec.started, process_start(rec.pgid)) {
            (Some(a), Some(b)) => a == b,
            (_, None) => rec.started.is_none(),
            (None, Some(_)) => false,
        };
        if same && group_alive(rec.pgid) {
            tracing::info!(step = %rec.step, pgid = rec.pgid, "stopping a service an earlier process of this run started");
            signal_group(rec.pgid, Signal::TERM);
            live.push(rec);
        }
    }
    let mut left = STOP_GRACE_MS / 100;
    while left > 0 && live.iter().any(|r| group_alive(r.pgid)) {
        clock.sleep(100).await;
        left -= 1;
    }
    for r in live.iter().filter(|r| group_alive(r.pgid)) {
        tracing::warn!(step = %r.step, pgid = r.pgid, "service ignored SIGTERM; killing its group");
        signal_group(r.pgid, Signal::KILL);
    }
    let _ = std::fs::remove_dir(&dir);
}

/// The last non-empty lines of a log file (at most `n`, at most 2 KiB).
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(2048);
    let text = String::from_utf8_lossy(&text[start..]);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

const ACTIONS: &[&str] = &[
    "wait",
    "shell",
    "notify",
    "http.check",
    "dns.wait_resolves",
    "backup.rehydrate",
    "backup.copy",
    "backup.verify",
    "backup.verify_sample",
];

fn str_in<'a>(inputs: &'a Inputs, name: &str) -> Option<&'a str> {
    inputs.get(name).and_then(Value::as_str)
}

fn req<'a>(inputs: &'a Inputs, name: &str) -> Result<&'a str, AdapterError> {
    str_in(inputs, name).ok_or_else(|| {
        AdapterError::permanent(format!("input `{name}` is missing or not a string"))
    })
}

fn ms_in(inputs: &Inputs, name: &str, default: u64) -> u64 {
    inputs.get(name).and_then(Value::as_u64).unwrap_or(default)
}

fn report_outputs(r: &backup::BackupReport) -> Outputs {
    let mut o = Outputs::new();
    o.insert("dataset".into(), json!(r.dataset));
    o.insert("recovery_point".into(), json!(r.recovery_point));
    o.insert("sha256".into(), json!(r.sha256));
    o.insert("bytes".into(), json!(r.bytes));
    o.insert("key_id".into(), json!(r.key_id));
    o.insert("backup_id".into(), json!(r.backup_id));
    o
}

/// A backup's location and the key that opens it.
type OpenBackup = (Box<dyn backup::Location>, Box<dyn backup::KeyProvider>);

/// Opens the backup location and key a step names.
fn open_backup(source: &str, key: &str) -> Result<OpenBackup, AdapterError> {
    let loc = backup::location_from_uri(source).map_err(|e| backup_err(&e))?;
    let key =
        backup::key_provider_from_uri(key).map_err(|e| AdapterError::permanent(e.to_string()))?;
    Ok((loc, key))
}

/// Keyed verification of a backup (blocking: call from a blocking thread).
fn verify_blocking(
    handle: &tokio::runtime::Handle,
    loc: &dyn backup::Location,
    key: &dyn backup::KeyProvider,
    expect: Option<&str>,
) -> Result<backup::BackupReport, AdapterError> {
    handle
        .block_on(backup::verify(loc, Some(key), expect, &NoProgress))
        .map_err(|e| backup_err(&e))
}

fn backup_err(e: &backup::BackupError) -> AdapterError {
    match e {
        backup::BackupError::Io { .. } => AdapterError::transient(e.to_string()),
        backup::BackupError::Key(backup::KeyError::Transient(_)) => {
            AdapterError::transient(e.to_string())
        }
        _ => AdapterError::permanent(e.to_string()),
    }
}

/// SHA-256 of a file, streamed.
fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

impl LocalAdapter {
    async fn shell(&self, inputs: &Inputs, ctx: &StepContext) -> Result<Outputs, AdapterError> {
        let command = req(inputs, "command")?;
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c").arg(command);
        if let Some(cwd) = str_in(inputs, "cwd") {
            cmd.current_dir(cwd);
        }
        // The running drover's directory first on PATH, so runbooks can call `drover` itself.
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![dir];
            dirs.extend(std::env::split_paths(&path));
            if let Ok(joined) = std::env::join_paths(dirs) {
                cmd.env("PATH", joined);
            }
        }
        cmd.env("DROVER_RUN_ID", &ctx.run_id)
            .env("DROVER_STEP", &ctx.step_id)
            .env("DROVER_MODE", ctx.mode.as_str());
        if let Some(Value::Object(env)) = inputs.get("env") {
            for (k, v) in env {
                if let Some(v) = v.as_str() {
                    cmd.env(k, v);
                }
            }
        }
        if inputs.get("background").and_then(Value::as_bool) == Some(true) {
            return self.start_service(cmd, inputs, ctx).await;
        }
        // A group of its own: when the attempt is abandoned (timeout, a forced interrupt) the
        // command and everything it started are killed together, not only the shell.
        cmd.kill_on_drop(true)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| AdapterError::permanent(format!("cannot start /bin/sh: {e}")))?;
        let mut guard = KillGroupOnDrop(child.id().and_then(|p| i32::try_from(p).ok()));
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| AdapterError::transient(format!("waiting for /bin/sh: {e}")))?;
        guard.0 = None;
        let code = out.status.code().unwrap_or(-1);
        let clip = |b: &[u8]| {
            let s = String::from_utf8_lossy(b);
            let start = s.len().saturating_sub(16 * 1024);
            let start = (start..s.len())
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(s.len());
            s[start..].to_owned()
        };
        let stdout = clip(&out.stdout);
        let stderr = clip(&out.stderr);
        let expect = inputs
            .get("expect_exit")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if i64::from(code) != expect {
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(AdapterError::transient(format!(
                "command exited with {code} (expected {expect}): {last}"
            )));
        }
        let mut o = Outputs::new();
        o.insert("exit_code".into(), json!(code));
        o.insert("stdout".into(), json!(stdout));
        o.insert("stderr".into(), json!(stderr));
        o.insert("pid".into(), json!(0));
        Ok(o)
    }

    /// Starts a background command as the leader of a process group of its own, and makes sure
    /// it stays up for its start-up grace period (a service that cannot bind its port fails the
    /// step, with its exit code and the tail of its log).
    async fn start_service(
        &self,
        mut cmd: tokio::process::Command,
        inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<Outputs, AdapterError> {
        let logs = ctx.state_dir.join("logs");
        std::fs::create_dir_all(&logs)
            .map_err(|e| AdapterError::permanent(format!("creating {}: {e}", logs.display())))?;
        let log = logs.join(format!(
            "{}.{}.log",
            ctx.run_id,
            ctx.step_id.replace(['/', '[', ']'], "_")
        ));
        let file = std::fs::File::create(&log)
            .map_err(|e| AdapterError::permanent(format!("creating {}: {e}", log.display())))?;
        let keep = inputs.get("keep_running").and_then(Value::as_bool) == Some(true);
        cmd.stdin(std::process::Stdio::null()).process_group(0);
        let mut pipe_to = None;
        if keep {
            // A service meant to outlive the run writes its log itself: a pipe through this
            // process would break when the run ends.
            let err = file
                .try_clone()
                .map_err(|e| AdapterError::permanent(e.to_string()))?;
            cmd.stdout(file).stderr(err);
        } else {
            // Its output passes through the run's redactor, line by line, into the log.
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            pipe_to = Some(std::sync::Arc::new(std::sync::Mutex::new(file)));
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| AdapterError::permanent(format!("cannot start /bin/sh: {e}")))?;
        let mut copiers = Vec::new();
        if let Some(file) = pipe_to {
            if let Some(out) = child.stdout.take() {
                copiers.push(tokio::spawn(redacted_log(
                    out,
                    file.clone(),
                    ctx.redact.clone(),
                )));
            }
            if let Some(err) = child.stderr.take() {
                copiers.push(tokio::spawn(redacted_log(err, file, ctx.redact.clone())));
            }
        }
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let grace = ms_in(inputs, "startup_grace", 1_000);
        let exited = tokio::select! {
            r = child.wait() => Some(r),
            () = ctx.clock.sleep(grace) => None,
        };
        if let Some(status) = exited {
            // Whatever it started in its group goes too.
            signal_group(pid, rustix::process::Signal::KILL);
            // Its last words reach the log before the tail is read (bounded: a stream held
            // open by something outside the group is not waited for).
            let all = async {
                for c in copiers {
                    let _ = c.await;
                }
            };
            tokio::select! {
                () = all => {}
                () = ctx.clock.sleep(1_000) => {}
            }
            let code = status
                .ok()
                .and_then(|s| s.code())
                .map_or_else(|| "a signal".to_owned(), |c| c.to_string());
            return Err(AdapterError::transient(format!(
                "the background command exited with {code} during its start-up grace period of {}: {} (log {})",
                drover_schema::format_ms(grace),
                log_tail(&log, 3),
                log.display()
            )));
        }
        if !keep {
            record_service(&ctx.state_dir, &ctx.run_id, &ctx.step_id, pid);
        }
        if let Ok(mut all) = self.services.lock() {
            all.entry(ctx.run_id.clone()).or_default().push(Service {
                step: ctx.step_id.clone(),
                pgid: pid,
                child,
                keep,
                clock: ctx.clock.clone(),
            });
        }
        let mut o = Outputs::new();
        o.insert("pid".into(), json!(pid));
        o.insert("pgid".into(), json!(pid));
        o.insert("exit_code".into(), json!(0));
        o.insert("stdout".into(), json!(""));
        o.insert(
            "stderr".into(),
            json!(format!("output in {}", log.display())),
        );
        Ok(o)
    }

    async fn http_check(
        &self,
        inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<Outputs, AdapterError> {
        let url = req(inputs, "url")?;
        let expect = inputs
            .get("expect_status")
            .and_then(Value::as_u64)
            .unwrap_or(200);
        let contains = str_in(inputs, "contains");
        let want_sha = str_in(inputs, "expect_sha256").map(str::to_ascii_lowercase);
        let interval = ms_in(inputs, "interval", 2_000).max(100);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = ctx.clock.now_ms();
            let why = match self.http.get(url).send().await {
                Err(e) => describe_reqwest(&e),
                Ok(resp) => {
                    let status = u64::from(resp.status().as_u16());
                    let body = resp.bytes().await.unwrap_or_default();
                    let text = String::from_utf8_lossy(&body);
                    let sha = want_sha.as_ref().map(|_| {
                        use sha2::Digest;
                        hex::encode(sha2::Sha256::digest(&body))
                    });
                    if status != expect {
                        format!("answered {status}, not {expect}: {}", excerpt(&text))
                    } else if let Some(c) = contains.filter(|c| !text.contains(c)) {
                        format!("answered {status} without {c:?}: {}", excerpt(&text))
                    } else if let (Some(want), Some(got)) = (&want_sha, &sha)
                        && want != got
                    {
                        format!(
                            "answered {status}, body SHA-256 {got}, not {want}: not this run's data"
                        )
                    } else {
                        let mut o = Outputs::new();
                        o.insert("status".into(), json!(status));
                        o.insert(
                            "latency_ms".into(),
                            json!(ctx.clock.now_ms().saturating_sub(started)),
                        );
                        return Ok(o);
                    }
                }
            };
            poll_or_give_up(ctx, "http.check", url, attempt, interval, &why).await?;
        }
    }

    async fn dns_wait(&self, inputs: &Inputs, ctx: &StepContext) -> Result<Outputs, AdapterError> {
        let name = req(inputs, "name")?;
        let expect: Vec<String> = inputs
            .get("expect")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let interval = ms_in(inputs, "interval", 5_000).max(100);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let why = match tokio::net::lookup_host((name, 0)).await {
                Ok(addrs) => {
                    let mut got: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                    got.sort();
                    got.dedup();
                    let missing: Vec<&String> =
                        expect.iter().filter(|e| !got.contains(e)).collect();
                    if missing.is_empty() {
                        let mut o = Outputs::new();
                        o.insert("addresses".into(), json!(got));
                        return Ok(o);
                    }
                    format!(
                        "resolves to [{}], missing [{}]",
                        got.join(", "),
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
                Err(e) => format!("does not resolve: {e}"),
            };
            poll_or_give_up(ctx, "dns.wait_resolves", name, attempt, interval, &why).await?;
        }
    }

    async fn notify(&self, inputs: &Inputs, ctx: &StepContext) -> Result<Outputs, AdapterError> {
        let message = req(inputs, "message")?;
        match str_in(inputs, "channel").unwrap_or("stdout") {
            "webhook" => {
                let url = req(inputs, "url")?;
                let mut rq = self
                    .http
                    .post(url)
                    .json(&json!({ "text": message, "run_id": ctx.run_id, "step": ctx.step_id }));
                if let Some(t) = str_in(inputs, "token") {
                    rq = rq.bearer_auth(t);
                }
                let resp = rq.send().await.map_err(|e| {
                    AdapterError::transient(format!("webhook: {}", e.without_url()))
                })?;
                if !resp.status().is_success() {
                    let s = resp.status();
                    return Err(if s.is_server_error() || s.as_u16() == 429 {
                        AdapterError::transient(format!("webhook answered {s}"))
                    } else {
                        AdapterError::permanent(format!("webhook answered {s}"))
                    });
                }
            }
            _ => (self.notify)(message),
        }
        Ok(Outputs::new())
    }

    async fn rehydrate(
        &self,
        inputs: &Inputs,
        verify_existing: bool,
    ) -> Result<Outputs, AdapterError> {
        let source = req(inputs, "source")?.to_owned();
        let key = req(inputs, "key")?.to_owned();
        let dest = PathBuf::from(req(inputs, "dest")?);
        let expect = str_in(inputs, "expect_sha256").map(str::to_owned);
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || -> Result<Outputs, AdapterError> {
            let (loc, key) = open_backup(&source, &key)?;
            // Idempotent: a destination that already holds exactly this backup's plaintext is done.
            if verify_existing && dest.exists() {
                let i = backup::inspect(loc.as_ref()).map_err(|e| backup_err(&e))?;
                if file_sha256(&dest).ok().as_deref() == Some(i.manifest.plaintext_sha256.as_str())
                {
                    let r =
                        verify_blocking(&handle, loc.as_ref(), key.as_ref(), expect.as_deref())?;
                    let mut o = report_outputs(&r);
                    o.insert("path".into(), json!(dest.display().to_string()));
                    return Ok(o);
                }
            }
            let r = handle
                .block_on(backup::restore(
                    loc.as_ref(),
                    &dest,
                    key.as_ref(),
                    expect.as_deref(),
                    true,
                    &NoProgress,
                ))
                .map_err(|e| backup_err(&e))?;
            let mut o = report_outputs(&r);
            o.insert("path".into(), json!(dest.display().to_string()));
            Ok(o)
        })
        .await
        .map_err(|e| AdapterError::transient(format!("restore task: {e}")))?
    }

    async fn verify(&self, inputs: &Inputs) -> Result<Outputs, AdapterError> {
        let source = req(inputs, "source")?.to_owned();
        let key = req(inputs, "key")?.to_owned();
        let expect = str_in(inputs, "expect_sha256").map(str::to_owned);
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || -> Result<Outputs, AdapterError> {
            let (loc, key) = open_backup(&source, &key)?;
            let r = verify_blocking(&handle, loc.as_ref(), key.as_ref(), expect.as_deref())?;
            Ok(report_outputs(&r))
        })
        .await
        .map_err(|e| AdapterError::transient(format!("verify task: {e}")))?
    }
}

fn copy_outputs(r: &backup::CopyReport) -> Outputs {
    let d = &r.destination;
    let mut o = Outputs::new();
    o.insert("backup_id".into(), json!(d.backup_id));
    o.insert("dataset".into(), json!(d.dataset));
    o.insert("recovery_point".into(), json!(d.recovery_point));
    o.insert("ciphertext_sha256".into(), json!(d.ciphertext_sha256));
    o.insert("bytes".into(), json!(r.bytes));
    o.insert("location".into(), json!(d.location));
    o
}

/// `backup.copy`: the ciphertext as it is, checked, atomic, read back (a destination already
/// holding the backup is done: run again, it does nothing).
async fn copy_step(inputs: &Inputs, ctx: &StepContext) -> Result<Outputs, AdapterError> {
    let source = req(inputs, "source")?.to_owned();
    let destination = req(inputs, "destination")?.to_owned();
    let lock = copy_lock(inputs, ctx.clock.now_ms())?;
    tokio::task::spawn_blocking(move || {
        let src = backup::location_from_uri(&source).map_err(|e| backup_err(&e))?;
        let dst = backup::location_from_uri(&destination).map_err(|e| backup_err(&e))?;
        backup::copy(src.as_ref(), dst.as_ref(), lock.as_ref(), &NoProgress)
            .map(|r| copy_outputs(&r))
            .map_err(|e| backup_err(&e))
    })
    .await
    .map_err(|e| AdapterError::transient(format!("copy task: {e}")))?
}

/// The write-once lock a `backup.copy` step asks for (`lock` and `retain`), from `now_ms`.
fn copy_lock(inputs: &Inputs, now_ms: u64) -> Result<Option<backup::WriteLock>, AdapterError> {
    let (mode, retain) = (str_in(inputs, "lock"), str_in(inputs, "retain"));
    let (Some(mode), Some(retain)) = (mode, retain) else {
        if mode.is_some() || retain.is_some() {
            return Err(AdapterError::permanent(
                "`lock` and `retain` go together: lock = \"compliance\", retain = \"6y\"",
            ));
        }
        return Ok(None);
    };
    let mode = backup::LockMode::parse(mode).ok_or_else(|| {
        AdapterError::permanent(format!("lock is compliance or governance, not {mode}"))
    })?;
    let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .map_err(|e| AdapterError::permanent(e.to_string()))?;
    backup::WriteLock::new(mode, retain, now)
        .map(Some)
        .map_err(|e| backup_err(&e))
}

/// Whether a `backup.copy` already happened: the destination holds the source's backup, intact
/// (and locked as asked).
async fn observe_copy(inputs: &Inputs, ctx: &StepContext) -> Result<Observation, AdapterError> {
    let source = req(inputs, "source")?.to_owned();
    let destination = req(inputs, "destination")?.to_owned();
    let lock = copy_lock(inputs, ctx.clock.now_ms())?;
    tokio::task::spawn_blocking(move || {
        let dst = backup::location_from_uri(&destination).map_err(|e| backup_err(&e))?;
        if !dst.exists().map_err(|e| backup_err(&e))? {
            return Ok(Observation::NotDone);
        }
        let src = backup::location_from_uri(&source).map_err(|e| backup_err(&e))?;
        // An intact copy of this backup is done; anything else is left for the step to refuse.
        match backup::copy(src.as_ref(), dst.as_ref(), lock.as_ref(), &NoProgress) {
            Ok(r) if r.already_there => Ok(Observation::Done(copy_outputs(&r))),
            _ => Ok(Observation::NotDone),
        }
    })
    .await
    .map_err(|e| AdapterError::transient(e.to_string()))?
}

impl LocalAdapter {
    /// `backup.verify_sample`: a random sample decrypted, the rest hash-checked; any error fails
    /// the step (the message names each failed backup).
    async fn verify_sample(&self, inputs: &Inputs) -> Result<Outputs, AdapterError> {
        let source = req(inputs, "source")?.to_owned();
        let key = req(inputs, "key")?.to_owned();
        let n = inputs
            .get("sample")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(3);
        let seed = match inputs.get("seed").and_then(Value::as_u64) {
            Some(s) => s,
            None => rand::random(),
        };
        let (dir, key) = open_backup(&source, &key)?;
        let report = backup::verify_sample(dir.as_ref(), n, seed, key.as_ref())
            .await
            .map_err(|e| backup_err(&e))?;
        if report.errors() > 0 {
            let failed: Vec<String> = report
                .backups
                .iter()
                .filter_map(|b| b.error.as_ref().map(|e| format!("{}: {e}", b.location)))
                .collect();
            // The resource is the prefix verified: backup posture reads it from the journal.
            return Err(AdapterError::permanent(format!(
                "{} of {} backup(s) failed verification (seed {seed}): {}",
                report.errors(),
                report.backups.len(),
                failed.join("; ")
            ))
            .on_resource(source));
        }
        if report.backups.is_empty() {
            return Err(AdapterError::permanent(format!(
                "no backups under {source}: nothing was verified"
            ))
            .on_resource(source));
        }
        let mut o = Outputs::new();
        o.insert("source".into(), json!(source));
        o.insert("backups".into(), json!(report.backups.len()));
        o.insert("sampled".into(), json!(report.sampled()));
        o.insert("errors".into(), json!(0));
        o.insert("seed".into(), json!(seed));
        Ok(o)
    }
}

#[async_trait::async_trait]
impl Adapter for LocalAdapter {
    fn schemas(&self) -> Vec<ActionSchema> {
        let cat = crate::builtin_catalogue();
        cat.actions()
            .iter()
            .filter(|a| ACTIONS.contains(&a.name.as_str()))
            .cloned()
            .collect()
    }

    fn validate(&self, action: &str, inputs: &Inputs) -> Result<(), AdapterError> {
        let need: &[&str] = match action {
            "shell" => &["command"],
            "notify" => &["message"],
            "http.check" => &["url"],
            "dns.wait_resolves" => &["name"],
            "backup.rehydrate" => &["source", "key", "dest"],
            "backup.copy" => &["source", "destination"],
            "backup.verify" | "backup.verify_sample" => &["source", "key"],
            _ => &[],
        };
        for n in need {
            req(inputs, n)?;
        }
        Ok(())
    }

    async fn preflight(
        &self,
        action: &str,
        inputs: &Inputs,
        _ctx: &StepContext,
    ) -> Result<(), AdapterError> {
        match action {
            "backup.rehydrate" | "backup.verify" | "backup.verify_sample" => {
                let uri = req(inputs, "key")?;
                // A local file that is not there yet may be made by an earlier step of the run:
                // the engine decides whether that can be so.
                if let Some(path) = uri.strip_prefix("file:")
                    && !Path::new(path).exists()
                {
                    return Err(AdapterError::permanent(format!(
                        "the key file {path} does not exist"
                    ))
                    .on_resource(path)
                    .with_code(drover_schema::MAY_BE_CREATED_EARLIER));
                }
                let key = backup::key_provider_from_uri(uri)
                    .map_err(|e| AdapterError::permanent(e.to_string()))?;
                key.preflight()
                    .await
                    .map_err(|e| AdapterError::permanent(e.to_string()))?;
                let source = req(inputs, "source")?.to_owned();
                if source.starts_with("s3://") || source.starts_with("azblob://") {
                    // The object is there and is a Drover backup (its header alone is read); for
                    // a sample, the prefix holds at least one.
                    let uri = source.clone();
                    let sample = action == "backup.verify_sample";
                    tokio::task::spawn_blocking(move || {
                        let missing = || {
                            AdapterError::permanent(format!("backup {uri} does not exist"))
                                .on_resource(uri.clone())
                                .with_code(drover_schema::MAY_BE_CREATED_EARLIER)
                        };
                        let loc = backup::location_from_uri(&uri).map_err(|e| backup_err(&e))?;
                        if sample {
                            let found = loc.list().map_err(|e| backup_err(&e))?;
                            return if found.is_empty() {
                                Err(missing())
                            } else {
                                Ok(())
                            };
                        }
                        loc.open()
                            .and_then(|mut r| backup::read_header(&mut r))
                            .map(|_| ())
                            .map_err(|e| match &e {
                                backup::BackupError::Io { source: io, .. }
                                    if io.kind() == std::io::ErrorKind::NotFound =>
                                {
                                    missing()
                                }
                                _ => backup_err(&e),
                            })
                    })
                    .await
                    .map_err(|e| AdapterError::transient(e.to_string()))??;
                } else if !Path::new(&source).exists() {
                    return Err(
                        AdapterError::permanent(format!("backup {source} does not exist"))
                            .on_resource(source)
                            .with_code(drover_schema::MAY_BE_CREATED_EARLIER),
                    );
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn execute(
        &self,
        action: &str,
        inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<Outputs, AdapterError> {
        self.validate(action, inputs)?;
        match action {
            "wait" => {
                ctx.clock.sleep(ms_in(inputs, "duration", 0)).await;
                Ok(Outputs::new())
            }
            "shell" => self.shell(inputs, ctx).await,
            "notify" => self.notify(inputs, ctx).await,
            "http.check" => self.http_check(inputs, ctx).await,
            "dns.wait_resolves" => self.dns_wait(inputs, ctx).await,
            "backup.rehydrate" => self.rehydrate(inputs, true).await,
            "backup.verify" => self.verify(inputs).await,
            "backup.copy" => copy_step(inputs, ctx).await,
            "backup.verify_sample" => self.verify_sample(inputs).await,
            other => Err(AdapterError::permanent(format!(
                "the local adapter has no action `{other}`"
            ))),
        }
    }

    async fn observe(
        &self,
        action: &str,
        inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<Observation, AdapterError> {
        if action == "backup.copy" {
            return observe_copy(inputs, ctx).await;
        }
        if action != "backup.rehydrate" {
            // Everything else is safe to run again.
            return Ok(Observation::NotDone);
        }
        let dest = PathBuf::from(req(inputs, "dest")?);
        if !dest.exists() {
            return Ok(Observation::NotDone);
        }
        let source = req(inputs, "source")?.to_owned();
        let i = tokio::task::spawn_blocking(move || {
            let loc = backup::location_from_uri(&source).map_err(|e| backup_err(&e))?;
            backup::inspect(loc.as_ref()).map_err(|e| backup_err(&e))
        })
        .await
        .map_err(|e| AdapterError::transient(e.to_string()))??;
        if file_sha256(&dest).ok().as_deref() != Some(i.manifest.plaintext_sha256.as_str()) {
            return Ok(Observation::NotDone);
        }
        let mut o = Outputs::new();
        o.insert("dataset".into(), json!(i.header.dataset));
        o.insert("recovery_point".into(), json!(i.header.recovery_point));
        o.insert("sha256".into(), json!(i.manifest.plaintext_sha256));
        o.insert("bytes".into(), json!(i.manifest.plaintext_bytes));
        o.insert("key_id".into(), json!(i.key_id));
        o.insert("backup_id".into(), json!(i.header.backup_id));
        o.insert("path".into(), json!(dest.display().to_string()));
        Ok(Observation::Done(o))
    }

    async fn end_run(&self, run_id: &str, state_dir: &Path) {
        let services = self
            .services
            .lock()
            .ok()
            .and_then(|mut all| all.remove(run_id))
            .unwrap_or_default();
        let mut stops = Vec::new();
        for svc in services {
            if svc.keep {
                tracing::info!(step = %svc.step, pgid = svc.pgid, "service kept running after the run (keep_running)");
                continue;
            }
            stops.push(stop_service(svc));
        }
        for s in stops {
            s.await;
        }
        // What an earlier process of this run started and could not stop (it was killed).
        stop_recorded_services(state_dir, run_id, &drover_schema::SystemClock).await;
    }
}

/// A short, single-line excerpt of a response body for an error or progress line.
fn excerpt(text: &str) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 120 {
        format!("{}…", one.chars().take(120).collect::<String>())
    } else if one.is_empty() {
        "(empty body)".into()
    } else {
        one
    }
}

/// One sentence for a failed HTTP request (never reqwest's debug dump).
fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(s) = root.source() {
        root = s;
    }
    if e.is_timeout() {
        "no answer within 30s".into()
    } else if e.is_connect() {
        format!("cannot connect: {root}")
    } else {
        format!("request failed: {root}")
    }
}

/// After a poll that was not yet what the step waits for: reports why, then sleeps until the
/// next poll — or, when the next poll would come after the attempt's deadline, gives up with an
/// error naming the timeout and the last answer.
async fn poll_or_give_up(
    ctx: &StepContext,
    action: &str,
    target: &str,
    attempt: u32,
    interval: u64,
    why: &str,
) -> Result<(), AdapterError> {
    if let Some(t) = ctx.timeout {
        // Give up while there is still time to say why: the engine abandons the attempt at its
        // deadline with a bare "timed out".
        let margin = (interval / 2).min(30_000);
        let now = ctx.clock.now_ms();
        if now.saturating_add(interval).saturating_add(margin) >= t.deadline_ms {
            return Err(AdapterError::transient(format!(
                "{action} {target}: not as expected after {attempt} attempt(s) within {}: last: {why}",
                t.describe(action)
            )));
        }
    }
    ctx.progress.report(&format!(
        "attempt {attempt}: {target} {why}; next poll in {}",
        drover_schema::format_ms(interval)
    ));
    ctx.clock.sleep(interval).await;
    Ok(())
}
