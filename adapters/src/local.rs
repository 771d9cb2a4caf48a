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
}

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
        }
    }
}

const ACTIONS: &[&str] = &[
    "wait",
    "shell",
    "notify",
    "http.check",
    "dns.wait_resolves",
    "backup.rehydrate",
    "backup.verify",
];

fn str_in<'a>(inputs: &'a Inputs, name: &str) -> Option<&'a str> {
    inputs.get(name).and_then(Value::as_str)
}

fn req<'a>(inputs: &'a Inputs, name: &str) -> Result<&'a str, AdapterError> {
    str_in(inputs, name).ok_or_else(|| {
        AdapterError::Permanent(format!("input `{name}` is missing or not a string"))
    })
}

fn ms_in(inputs: &Inputs, name: &str, default: u64) -> u64 {
    inputs.get(name).and_then(Value::as_u64).unwrap_or(default)
}

/// Sleeps for real: the live driver's steps wait on wall time (tests use short waits or paused time).
async fn pause(ms: u64) {
    #[allow(clippy::disallowed_methods)]
    tokio::time::sleep(Duration::from_millis(ms)).await;
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
        backup::key_provider_from_uri(key).map_err(|e| AdapterError::Permanent(e.to_string()))?;
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
        backup::BackupError::Io { .. } => AdapterError::Transient(e.to_string()),
        backup::BackupError::Key(backup::KeyError::Transient(_)) => {
            AdapterError::Transient(e.to_string())
        }
        _ => AdapterError::Permanent(e.to_string()),
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
            .env("DROVER_MODE", &ctx.mode);
        if let Some(Value::Object(env)) = inputs.get("env") {
            for (k, v) in env {
                if let Some(v) = v.as_str() {
                    cmd.env(k, v);
                }
            }
        }
        if inputs.get("background").and_then(Value::as_bool) == Some(true) {
            let logs = ctx.state_dir.join("logs");
            std::fs::create_dir_all(&logs).map_err(|e| {
                AdapterError::Permanent(format!("creating {}: {e}", logs.display()))
            })?;
            let log = logs.join(format!(
                "{}.{}.log",
                ctx.run_id,
                ctx.step_id.replace(['/', '[', ']'], "_")
            ));
            let file = std::fs::File::create(&log)
                .map_err(|e| AdapterError::Permanent(format!("creating {}: {e}", log.display())))?;
            let err = file
                .try_clone()
                .map_err(|e| AdapterError::Permanent(e.to_string()))?;
            cmd.stdin(std::process::Stdio::null())
                .stdout(file)
                .stderr(err);
            let child = cmd
                .spawn()
                .map_err(|e| AdapterError::Permanent(format!("cannot start /bin/sh: {e}")))?;
            let mut o = Outputs::new();
            o.insert("pid".into(), json!(child.id().unwrap_or(0)));
            o.insert("exit_code".into(), json!(0));
            o.insert("stdout".into(), json!(""));
            o.insert(
                "stderr".into(),
                json!(format!("output in {}", log.display())),
            );
            return Ok(o);
        }
        cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
        let out = cmd
            .output()
            .await
            .map_err(|e| AdapterError::Permanent(format!("cannot start /bin/sh: {e}")))?;
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
            return Err(AdapterError::Transient(format!(
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

    async fn http_check(&self, inputs: &Inputs) -> Result<Outputs, AdapterError> {
        let url = req(inputs, "url")?;
        let expect = inputs
            .get("expect_status")
            .and_then(Value::as_u64)
            .unwrap_or(200);
        let contains = str_in(inputs, "contains");
        let interval = ms_in(inputs, "interval", 2_000).max(100);
        // Polls until healthy; the step's timeout (enforced by the scheduler) bounds it.
        loop {
            // Latency is reported, never used for a decision.
            #[allow(clippy::disallowed_methods)]
            let started = std::time::Instant::now();
            if let Ok(resp) = self.http.get(url).send().await {
                {
                    let status = u64::from(resp.status().as_u16());
                    let body = resp.text().await.unwrap_or_default();
                    if status == expect && contains.is_none_or(|c| body.contains(c)) {
                        let mut o = Outputs::new();
                        o.insert("status".into(), json!(status));
                        o.insert(
                            "latency_ms".into(),
                            json!(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
                        );
                        return Ok(o);
                    }
                }
            }
            pause(interval).await;
        }
    }

    async fn dns_wait(&self, inputs: &Inputs) -> Result<Outputs, AdapterError> {
        let name = req(inputs, "name")?;
        if str_in(inputs, "resolver").is_some() {
            return Err(AdapterError::Permanent(
                "a custom `resolver` is not supported yet; the system resolver is used".into(),
            ));
        }
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
        loop {
            if let Ok(addrs) = tokio::net::lookup_host((name, 0)).await {
                let got: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                if expect.iter().all(|e| got.contains(e)) {
                    let mut o = Outputs::new();
                    o.insert("addresses".into(), json!(got));
                    return Ok(o);
                }
            }
            pause(interval).await;
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
                    AdapterError::Transient(format!("webhook: {}", e.without_url()))
                })?;
                if !resp.status().is_success() {
                    let s = resp.status();
                    return Err(if s.is_server_error() || s.as_u16() == 429 {
                        AdapterError::Transient(format!("webhook answered {s}"))
                    } else {
                        AdapterError::Permanent(format!("webhook answered {s}"))
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
        .map_err(|e| AdapterError::Transient(format!("restore task: {e}")))?
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
        .map_err(|e| AdapterError::Transient(format!("verify task: {e}")))?
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
            "backup.verify" => &["source", "key"],
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
            "backup.rehydrate" | "backup.verify" => {
                let key = backup::key_provider_from_uri(req(inputs, "key")?)
                    .map_err(|e| AdapterError::Permanent(e.to_string()))?;
                key.preflight()
                    .await
                    .map_err(|e| AdapterError::Permanent(e.to_string()))?;
                let source = req(inputs, "source")?;
                if !source.starts_with("s3://") && !Path::new(source).exists() {
                    return Err(AdapterError::Permanent(format!(
                        "backup {source} does not exist"
                    )));
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
                pause(ms_in(inputs, "duration", 0)).await;
                Ok(Outputs::new())
            }
            "shell" => self.shell(inputs, ctx).await,
            "notify" => self.notify(inputs, ctx).await,
            "http.check" => self.http_check(inputs).await,
            "dns.wait_resolves" => self.dns_wait(inputs).await,
            "backup.rehydrate" => self.rehydrate(inputs, true).await,
            "backup.verify" => self.verify(inputs).await,
            other => Err(AdapterError::Permanent(format!(
                "the local adapter has no action `{other}`"
            ))),
        }
    }

    async fn observe(
        &self,
        action: &str,
        inputs: &Inputs,
        _ctx: &StepContext,
    ) -> Result<Observation, AdapterError> {
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
        .map_err(|e| AdapterError::Transient(e.to_string()))??;
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
}
