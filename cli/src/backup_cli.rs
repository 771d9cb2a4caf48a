//! The `drover backup` and `drover key` verbs: argument handling and printing around
//! `drover_adapters::backup`.

use crate::ops_audit::{Audited, Done};
use crate::{BackupCommand, CheckFormat, OperatorArgs};
use drover_adapters::backup::{
    self, BackupError, BackupReport, CreateOptions, KeyProvider, Location, Progress,
    key_provider_from_uri, location_from_uri,
};
use std::io::IsTerminal;
use std::process::ExitCode;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A progress bar with throughput, drawn only when stderr is a terminal.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(what: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {msg} {bytes} ({binary_bytes_per_sec}) {elapsed}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        Self(Some(bar))
    }
}

impl Progress for Bar {
    fn advance(&self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            errln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn key(uri: &str) -> Result<Box<dyn KeyProvider>, ExitCode> {
    key_provider_from_uri(uri).map_err(|e| {
        errln!("error: {e}");
        ExitCode::FAILURE
    })
}

fn location(uri: &str) -> Result<Box<dyn Location>, ExitCode> {
    location_from_uri(uri).map_err(|e| {
        errln!("error: {e}");
        ExitCode::FAILURE
    })
}

/// The write-once lock `--lock MODE --retain DURATION` ask for, from now.
fn write_lock(
    mode: Option<&str>,
    retain: Option<&str>,
) -> Result<Option<backup::WriteLock>, ExitCode> {
    let (Some(mode), Some(retain)) = (mode, retain) else {
        return Ok(None);
    };
    let Some(mode) = backup::LockMode::parse(mode) else {
        errln!("error: --lock is compliance or governance, not {mode}");
        return Err(ExitCode::from(2));
    };
    backup::WriteLock::new(mode, retain, OffsetDateTime::now_utc())
        .map(Some)
        .map_err(|e| {
            errln!("error: --retain: {e}");
            ExitCode::from(2)
        })
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn print_report(verb: &str, r: &BackupReport, format: CheckFormat) {
    // Verification reads the lock back from the store; other verbs do not look.
    if matches!(format, CheckFormat::Text) && (verb == "verified" || r.retention.is_some()) {
        print_lock(r);
    }
    match format {
        CheckFormat::Json => outln!("{}", serde_json::to_string_pretty(r).unwrap_or_default()),
        CheckFormat::Text => outln!(
            "{verb} {}: backup {}, data set {}, recovery point {}, {} in {} chunk(s), plaintext sha256 {}, key {} ({})",
            r.location,
            r.backup_id,
            r.dataset,
            r.recovery_point,
            human_bytes(r.bytes),
            r.chunks,
            r.sha256,
            r.key_id,
            match r.level {
                backup::VerifyLevel::Full => "fully verified",
                backup::VerifyLevel::Structure => "structure and ciphertext hash verified",
            }
        ),
    }
}

fn print_copy(r: &backup::CopyReport, format: CheckFormat) {
    match format {
        CheckFormat::Json => outln!("{}", serde_json::to_string_pretty(r).unwrap_or_default()),
        CheckFormat::Text => {
            let d = &r.destination;
            if r.already_there {
                outln!(
                    "{} already holds backup {} (read back: structure and ciphertext sha256 {} verified); nothing copied",
                    d.location,
                    d.backup_id,
                    d.ciphertext_sha256
                );
            } else {
                outln!(
                    "copied {} to {}: backup {}, data set {}, recovery point {}, {} copied; the copy read back: structure and ciphertext sha256 {} verified",
                    r.source.location,
                    d.location,
                    d.backup_id,
                    d.dataset,
                    d.recovery_point,
                    human_bytes(r.bytes),
                    d.ciphertext_sha256
                );
            }
            print_lock(d);
        }
    }
}

/// The write-once lock of a backup in an object store, as the store reports it: its mode and
/// retain-until, or `none` (never left unsaid: a missing line would read as "not checked").
fn print_lock(r: &BackupReport) {
    match &r.retention {
        Some(lock) => outln!(
            "{}: under S3 Object Lock, {} mode, retained until {}",
            r.location,
            lock.mode,
            lock.retain_until
        ),
        None if r.location.contains("://") => {
            outln!(
                "{}: lock none (no write-once retention on the object)",
                r.location
            );
        }
        None => {}
    }
}

/// The audit outcome of a backup operation that produced `r`.
fn done<'a>(outcome: &'a str, r: &'a BackupReport) -> Done<'a> {
    Done {
        outcome,
        backup_id: Some(&r.backup_id),
        key_id: Some(&r.key_id),
        detail: Some(format!(
            "data set {}, recovery point {}, plaintext SHA-256 {} ({})",
            r.dataset,
            r.recovery_point,
            r.sha256,
            match r.level {
                backup::VerifyLevel::Full => "fully verified",
                backup::VerifyLevel::Structure => "structure and ciphertext hash verified",
            }
        )),
    }
}

fn fail(what: &str, e: &BackupError) -> ExitCode {
    errln!("error: {what}: {e}");
    ExitCode::FAILURE
}

/// Runs a `drover backup` verb.
pub fn backup_command(cmd: BackupCommand) -> ExitCode {
    match run(cmd) {
        Ok(code) | Err(code) => code,
    }
}

fn run(cmd: BackupCommand) -> Result<ExitCode, ExitCode> {
    let rt = runtime()?;
    Ok(match cmd {
        BackupCommand::Create {
            input,
            output,
            key: key_uri,
            dataset,
            recovery_point,
            chunk_size,
            lock,
            retain,
            format,
            by,
        } => {
            let lock = write_lock(lock.as_deref(), retain.as_deref())?;
            let key = key(&key_uri)?;
            let out = location(&output)?;
            let now = OffsetDateTime::now_utc();
            let recovery_point = match recovery_point
                .as_deref()
                .map(|t| OffsetDateTime::parse(t, &Rfc3339))
            {
                None => None,
                Some(Ok(t)) => Some(t),
                Some(Err(e)) => {
                    errln!(
                        "error: --recovery-point is not an RFC 3339 time ({e}); example: 2026-11-23T03:00:00Z"
                    );
                    return Err(ExitCode::from(2));
                }
            };
            let dataset = dataset.unwrap_or_else(|| {
                std::path::Path::new(&input)
                    .file_name()
                    .map_or_else(|| "stdin".to_owned(), |n| n.to_string_lossy().into_owned())
            });
            let mut opts = CreateOptions::new(dataset, now);
            opts.recovery_point = recovery_point;
            opts.chunk_size = chunk_size;
            opts.lock = lock;
            let mut reader: Box<dyn std::io::Read + Send> = if input == "-" {
                Box::new(std::io::stdin())
            } else {
                match std::fs::File::open(&input) {
                    Ok(f) => Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
                    Err(e) => {
                        errln!("error: cannot open {input}: {e}");
                        return Err(ExitCode::FAILURE);
                    }
                }
            };
            let mut audit = Audited::open(
                &by,
                "backup.create",
                &output,
                &[
                    ("input", &input),
                    ("output", &output),
                    ("key", &key_uri),
                    ("dataset", &opts.dataset),
                ],
            )?;
            audit.write("started", None, Some(&key_uri), None)?;
            let bar = Bar::new("encrypting");
            match rt.block_on(backup::create(
                reader.as_mut(),
                out.as_ref(),
                key.as_ref(),
                &opts,
                &bar,
            )) {
                Ok(r) => {
                    print_report("created", &r, format);
                    audit.finish(Ok(done("ok", &r)), ExitCode::SUCCESS)
                }
                Err(e) => {
                    let code = fail(&format!("creating {output}"), &e);
                    audit.finish(Err(e.to_string()), code)
                }
            }
        }
        BackupCommand::Verify {
            backup: path,
            key: key_uri,
            expect_sha256,
            sample,
            seed,
            format,
            by,
        } => {
            let key = key_uri.as_deref().map(key).transpose()?;
            let mut audit = Audited::open(
                &by,
                "backup.verify",
                &path,
                &[
                    ("backup", &path),
                    ("key", key_uri.as_deref().unwrap_or("")),
                    ("expect_sha256", expect_sha256.as_deref().unwrap_or("")),
                ],
            )?;
            audit.write("started", None, key_uri.as_deref(), None)?;
            // A directory, or a remote prefix (ending in `/`): the backups under it, sampled.
            let remote = path.starts_with("s3://") || path.starts_with("azblob://");
            if std::path::Path::new(&path).is_dir() || (remote && path.ends_with('/')) {
                let code = sampled(&rt, &path, key.as_deref(), sample, seed, format);
                let result = if code == ExitCode::SUCCESS {
                    Ok(Done {
                        outcome: "verified",
                        backup_id: None,
                        key_id: key_uri.as_deref(),
                        detail: Some(format!("a sample of the backups under {path}")),
                    })
                } else {
                    Err(format!(
                        "a sample of the backups under {path} did not verify"
                    ))
                };
                return Ok(audit.finish(result, code));
            }
            let loc = location(&path)?;
            let bar = Bar::new("verifying");
            match rt.block_on(backup::verify(
                loc.as_ref(),
                key.as_deref(),
                expect_sha256.as_deref(),
                &bar,
            )) {
                Ok(r) => {
                    print_report("verified", &r, format);
                    audit.finish(Ok(done("verified", &r)), ExitCode::SUCCESS)
                }
                Err(e) => {
                    let code = fail(&format!("verifying {path}"), &e);
                    audit.finish(Err(e.to_string()), code)
                }
            }
        }
        BackupCommand::Restore {
            backup: path,
            dest,
            key: key_uri,
            expect_sha256,
            force,
            format,
            by,
        } => {
            let key = key(&key_uri)?;
            let loc = location(&path)?;
            let mut audit = Audited::open(
                &by,
                "backup.restore",
                &path,
                &[
                    ("backup", &path),
                    ("dest", &dest),
                    ("key", &key_uri),
                    ("expect_sha256", expect_sha256.as_deref().unwrap_or("")),
                ],
            )?;
            audit.write("started", None, Some(&key_uri), Some(&format!("to {dest}")))?;
            let bar = Bar::new("restoring");
            match rt.block_on(backup::restore(
                loc.as_ref(),
                std::path::Path::new(&dest),
                key.as_ref(),
                expect_sha256.as_deref(),
                force,
                &bar,
            )) {
                Ok(r) => {
                    print_report(&format!("restored to {dest} from"), &r, format);
                    let mut d = done("ok", &r);
                    d.detail = Some(format!(
                        "restored to {dest}; {}",
                        d.detail.unwrap_or_default()
                    ));
                    audit.finish(Ok(d), ExitCode::SUCCESS)
                }
                Err(e) => {
                    let code = fail(
                        &format!("restoring {path} (nothing was written to {dest})"),
                        &e,
                    );
                    audit.finish(Err(e.to_string()), code)
                }
            }
        }
        BackupCommand::Rewrap {
            backup: path,
            from: from_uri,
            to: to_uri,
            format,
            by,
        } => {
            let from = key(&from_uri)?;
            let to = key(&to_uri)?;
            let loc = location(&path)?;
            let mut audit = Audited::open(
                &by,
                "backup.rewrap",
                &path,
                &[("backup", &path), ("from", &from_uri), ("to", &to_uri)],
            )?;
            audit.write(
                "started",
                None,
                Some(&to_uri),
                Some(&format!("from {from_uri}")),
            )?;
            match rt.block_on(backup::rewrap(loc.as_ref(), from.as_ref(), to.as_ref())) {
                Ok(r) => {
                    match format {
                        CheckFormat::Json => outln!(
                            "{}",
                            serde_json::json!({
                                "location": r.location,
                                "key_id": r.key_id,
                                "ciphertext_sha256": r.ciphertext_sha256,
                            })
                        ),
                        CheckFormat::Text => outln!(
                            "rewrapped {}: data key now wrapped by {}; data chunks unchanged (ciphertext sha256 {})",
                            r.location,
                            r.key_id,
                            r.ciphertext_sha256
                        ),
                    }
                    let d = Done {
                        outcome: "ok",
                        backup_id: None,
                        key_id: Some(&r.key_id),
                        detail: Some(format!(
                            "data key rewrapped; ciphertext SHA-256 {} unchanged",
                            r.ciphertext_sha256
                        )),
                    };
                    audit.finish(Ok(d), ExitCode::SUCCESS)
                }
                Err(e) => {
                    let code = fail(&format!("rewrapping {path} (the backup is unchanged)"), &e);
                    audit.finish(Err(e.to_string()), code)
                }
            }
        }
        BackupCommand::Copy {
            source,
            destination,
            lock,
            retain,
            format,
            by,
        } => {
            let lock = write_lock(lock.as_deref(), retain.as_deref())?;
            let src = location(&source)?;
            let dst = location(&destination)?;
            let mut audit = Audited::open(
                &by,
                "backup.copy",
                &source,
                &[("source", &source), ("destination", &destination)],
            )?;
            audit.write("started", None, None, Some(&format!("to {destination}")))?;
            let bar = Bar::new("copying");
            match backup::copy(src.as_ref(), dst.as_ref(), lock.as_ref(), &bar) {
                Ok(r) => {
                    print_copy(&r, format);
                    let d = Done {
                        outcome: if r.already_there {
                            "already_there"
                        } else {
                            "ok"
                        },
                        backup_id: Some(&r.source.backup_id),
                        key_id: Some(&r.source.key_id),
                        detail: Some(format!(
                            "{} to {destination}; ciphertext SHA-256 {} read back from the copy",
                            if r.already_there {
                                "already copied"
                            } else {
                                "copied"
                            },
                            r.destination.ciphertext_sha256
                        )),
                    };
                    audit.finish(Ok(d), ExitCode::SUCCESS)
                }
                Err(e) => {
                    let code = fail(&format!("copying {source} to {destination}"), &e);
                    audit.finish(Err(e.to_string()), code)
                }
            }
        }
        BackupCommand::Inspect {
            backup: path,
            format,
        } => {
            let loc = location(&path)?;
            match backup::inspect(loc.as_ref()) {
                Ok(i) => {
                    match format {
                        CheckFormat::Json => {
                            outln!("{}", serde_json::to_string_pretty(&i).unwrap_or_default())
                        }
                        CheckFormat::Text => {
                            let h = &i.header;
                            outln!("backup          {}", h.backup_id);
                            outln!("format          {}", h.format);
                            outln!("data set        {}", h.dataset);
                            outln!("recovery point  {}", h.recovery_point);
                            outln!("created         {}", h.created_at);
                            outln!(
                                "cipher          {} (chunks of {}, key derivation {})",
                                h.cipher,
                                human_bytes(u64::from(h.chunk_size)),
                                h.kdf
                            );
                            outln!("key             {} ({})", i.key_id, i.key_provider);
                            outln!(
                                "plaintext       {} ({} bytes), sha256 {}",
                                human_bytes(i.manifest.plaintext_bytes),
                                i.manifest.plaintext_bytes,
                                i.manifest.plaintext_sha256
                            );
                            outln!(
                                "ciphertext      {} chunk(s), sha256 {} (verified)",
                                i.manifest.chunks,
                                i.manifest.ciphertext_sha256
                            );
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("inspecting {path}"), &e),
            }
        }
    })
}

fn sampled(
    rt: &tokio::runtime::Runtime,
    dir: &str,
    key: Option<&dyn KeyProvider>,
    sample: Option<usize>,
    seed: Option<u64>,
    format: CheckFormat,
) -> ExitCode {
    let Some(key) = key else {
        errln!("error: verifying a directory needs --key (the sample is fully decrypted)");
        return ExitCode::from(2);
    };
    let loc = match location_from_uri(dir) {
        Ok(l) => l,
        Err(e) => return fail(&format!("opening {dir}"), &e),
    };
    let seed = seed.unwrap_or_else(|| {
        let mut b = [0u8; 8];
        rand_seed(&mut b);
        u64::from_le_bytes(b)
    });
    let n = sample.unwrap_or(usize::MAX);
    let report = match rt.block_on(backup::verify_sample(loc.as_ref(), n, seed, key)) {
        Ok(r) => r,
        Err(e) => return fail(&format!("listing {dir}"), &e),
    };
    match format {
        CheckFormat::Json => outln!(
            "{}",
            serde_json::json!({ "seed": report.seed, "errors": report.errors(), "backups": report.backups })
        ),
        CheckFormat::Text => {
            for b in &report.backups {
                let how = if b.sampled { "full" } else { "hash" };
                match &b.error {
                    None => outln!("ok      {how:<4}  {}", b.location),
                    Some(e) => outln!("FAILED  {how:<4}  {}: {e}", b.location),
                }
            }
            outln!(
                "{} backup(s): {} fully verified, {} hash-checked; unresolved verification errors: {} (seed {})",
                report.backups.len(),
                report.sampled(),
                report.backups.len() - report.sampled(),
                report.errors(),
                report.seed
            );
        }
    }
    if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn rand_seed(b: &mut [u8; 8]) {
    let t = OffsetDateTime::now_utc().unix_timestamp_nanos();
    b.copy_from_slice(&(t as u64).to_le_bytes());
}

/// Runs `drover key generate`: a key-encryption key, or with `signing` an evidence signing key.
pub fn key_generate(
    uri: &str,
    if_missing: bool,
    signing: bool,
    json: bool,
    by: &OperatorArgs,
) -> ExitCode {
    let Some(path) = uri.strip_prefix("file:").filter(|p| !p.is_empty()) else {
        errln!(
            "error: `drover key generate` makes file keys: file:PATH (KMS keys are created in the KMS)"
        );
        return ExitCode::from(2);
    };
    let kind = if signing { "signing" } else { "key-encryption" };
    let mut audit = match Audited::open(by, "key.generate", uri, &[("key", uri), ("kind", kind)]) {
        Ok(a) => a,
        Err(c) => return c,
    };
    if let Err(c) = audit.write("started", None, None, Some(&format!("a {kind} key"))) {
        return c;
    }
    if signing {
        let code = crate::run_cli::signing_key_generate(uri, json);
        let result = if code == ExitCode::SUCCESS {
            Ok(Done {
                outcome: "ok",
                backup_id: None,
                key_id: None,
                detail: Some(format!(
                    "an evidence signing key; its public key is {}.pub",
                    path
                )),
            })
        } else {
            Err("the signing key was not made".to_owned())
        };
        return audit.finish(result, code);
    }
    match backup::generate_file_key(std::path::Path::new(path), if_missing) {
        Ok(id) => {
            if json {
                outln!("{}", serde_json::json!({ "key": uri, "key_id": id }));
            } else {
                outln!("key {uri} ready: {id}");
            }
            let d = Done {
                outcome: "ok",
                backup_id: None,
                key_id: Some(&id),
                detail: Some(format!("a {kind} key")),
            };
            audit.finish(Ok(d), ExitCode::SUCCESS)
        }
        Err(e) => {
            errln!("error: {e}");
            audit.finish(Err(e.to_string()), ExitCode::FAILURE)
        }
    }
}
