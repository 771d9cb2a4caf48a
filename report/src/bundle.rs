//! The evidence bundle of a run: the runbook's sources and compiled plan, the run record and
//! every journaled transition, the audit log with its chain head, and the report in HTML,
//! Markdown and JSON, under a manifest of SHA-256 hashes signed with Ed25519 (drover-evidence).
//! [`verify_bundle`] checks it offline: the signature and every file, then the audit chain
//! inside it against its head, and the sources against the hash the plan was compiled from.

use crate::{Format, Report, ReportError, gather, render};
use drover_engine::journal::Journal;
use drover_evidence::{EvidenceError, Manifest};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Why a bundle could not be made or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading the run failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The bundle's files or signature.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// The signed files are intact, but what they say does not hold together.
    #[error("{0}")]
    Inconsistent(String),
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// A source file's name inside the bundle: under `runbook/`, with no absolute or `..` parts.
fn source_name(name: &str) -> String {
    let parts: Vec<&str> = name
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .map(|p| if p == ".." { "_" } else { p })
        .collect();
    format!("runbook/{}", parts.join("/"))
}

/// Builds the signed bundle (tar bytes) of a run, and the report it holds.
///
/// # Errors
/// Journal or template errors.
pub fn export(
    journal: &dyn Journal,
    run_id: &str,
    key: &SigningKey,
) -> Result<(Vec<u8>, Report), BundleError> {
    let report = gather(journal, run_id)?;
    let row = journal.run(run_id).map_err(ReportError::from)?;
    let (_, record) =
        drover_engine::driver::status(journal, run_id).map_err(|e| ReportError::Stored {
            run_id: run_id.to_owned(),
            what: e.to_string(),
        })?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let sources = journal.sources(run_id).map_err(ReportError::from)?;
    let mut index = Vec::new();
    for s in &sources {
        index.push((s.name.clone(), source_name(&s.name)));
        files.push((source_name(&s.name), s.text.as_bytes().to_vec()));
    }
    if !sources.is_empty() {
        files.push(("sources.json".into(), json(&index)));
    }
    files.push(("plan.json".into(), row.plan.as_bytes().to_vec()));
    // Who decided: the roster the run verified against and every signed statement, so anyone
    // can check each signature offline.
    let plan: Option<drover_dsl::Plan> = serde_json::from_str(&row.plan).ok();
    if let Some(roster) = plan.as_ref().and_then(|p| p.runbook.roster.as_ref()) {
        files.push((
            "identity/roster.toml".into(),
            roster.text.as_bytes().to_vec(),
        ));
        let statements: Vec<serde_json::Value> = journal
            .signed_statements(run_id)
            .map_err(ReportError::from)?
            .into_iter()
            .map(|(step, operator, s)| {
                serde_json::json!({
                    "step": step,
                    "operator": operator,
                    "statement": s.statement,
                    "signature": s.signature,
                })
            })
            .collect();
        files.push(("identity/statements.json".into(), json(&statements)));
    }
    files.push(("run.json".into(), json(&record)));
    let mut events = Vec::new();
    for t in journal.transitions(run_id).map_err(ReportError::from)? {
        events.extend(
            json(&serde_json::json!({ "at": t.at, "event": t.event, "actions": t.actions }))
                .into_iter()
                .filter(|b| *b != b'\n'),
        );
        events.push(b'\n');
    }
    files.push(("events.jsonl".into(), events));
    let run_audit = journal.audit(run_id).map_err(ReportError::from)?;
    files.push(("audit.jsonl".into(), audit_lines(&run_audit)));
    files.push((
        "audit-head.json".into(),
        json(&serde_json::json!({ "run_id": run_id, "head": row.audit_head, "count": row.audit_count })),
    ));
    // The checkpoints anchored outside the host, when the run wrote any and the anchor can be
    // read from here: the bundle's audit chain must agree with every one.
    let mut anchor_note = String::new();
    if let Some(loc) = journal.anchor(run_id).map_err(ReportError::from)? {
        match drover_engine::anchor::Anchor::parse(&loc).and_then(|a| a.read(run_id)) {
            Ok(cps) => {
                let mut lines = Vec::new();
                for c in &cps {
                    lines.extend(serde_json::to_vec(c).unwrap_or_default());
                    lines.push(b'\n');
                }
                files.push(("anchor/checkpoints.jsonl".into(), lines));
                anchor_note = format!(
                    "The run anchored checkpoints of its audit chain at {loc}: anchor/checkpoints.jsonl.\n"
                );
            }
            Err(e) => {
                anchor_note = format!(
                    "The run anchored checkpoints at {loc}, which could not be read when this bundle was made ({e}): check them there with drover audit verify RUN --anchor {loc}.\n"
                );
            }
        }
    }
    // The backups the run used, with the log of backup operations outside runs (how and by whom
    // each was made, verified, rewrapped): the whole log, so its chain verifies in the bundle.
    let used = backups_named(&run_audit);
    if !used.is_empty() {
        let log = drover_engine::oplog::BACKUPS_LOG;
        let rows = journal.audit(log).map_err(ReportError::from)?;
        let (head, count) = journal.log_head(log).map_err(ReportError::from)?;
        let about: Vec<u64> = rows
            .iter()
            .filter(|(_, rec, _)| {
                serde_json::from_str::<drover_engine::audit::AuditRecord>(rec)
                    .ok()
                    .and_then(|r| r.backup_id)
                    .is_some_and(|b| used.contains(&b))
            })
            .map(|(seq, _, _)| *seq)
            .collect();
        files.push(("backups/audit.jsonl".into(), audit_lines(&rows)));
        files.push((
            "backups/audit-head.json".into(),
            json(&serde_json::json!({ "log": log, "head": head, "count": count })),
        ));
        files.push((
            "backups/used.json".into(),
            json(&serde_json::json!({ "backup_ids": used, "records": about })),
        ));
    }
    files.push((
        "report.html".into(),
        render(&report, Format::Html, None)?.into_bytes(),
    ));
    files.push((
        "report.md".into(),
        render(&report, Format::Markdown, None)?.into_bytes(),
    ));
    files.push((
        "report.json".into(),
        render(&report, Format::Json, None)?.into_bytes(),
    ));
    files.push((
        "README.txt".into(),
        format!(
            "Evidence of {} run {} of \"{}\" (sources SHA-256 {}).\n\
             Verify offline: drover evidence verify BUNDLE.tar --public-key SIGNER.pub\n\
             or: openssl pkeyutl -verify -pubin -inkey SIGNER.pub -rawin -in MANIFEST.json -sigfile MANIFEST.sig\n\
             then compare each file's SHA-256 with MANIFEST.json.\n{}{anchor_note}",
            report.mode,
            run_id,
            report.runbook,
            report.source_sha256,
            if sources.is_empty() { "The runbook's sources were not kept with this run (it predates Drover keeping them).\n" } else { "" }
        )
        .into_bytes(),
    ));
    let subject = BTreeMap::from([
        ("run_id".to_owned(), run_id.to_owned()),
        ("runbook".to_owned(), report.runbook.clone()),
        ("mode".to_owned(), report.mode.clone()),
        ("source_sha256".to_owned(), report.source_sha256.clone()),
        ("outcome".to_owned(), report.outcome.clone()),
    ]);
    Ok((drover_evidence::seal(&files, subject, key)?, report))
}

/// Audit rows as JSON lines: `{"seq", "record", "hash"}`.
fn audit_lines(rows: &[(u64, String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, rec, hash) in rows {
        let line = serde_json::json!({ "seq": seq, "record": rec, "hash": hash });
        out.extend(serde_json::to_vec(&line).unwrap_or_default());
        out.push(b'\n');
    }
    out
}

/// Reads audit rows back from JSON lines.
fn audit_rows(name: &str, raw: &[u8]) -> Result<Vec<(u64, String, String)>, BundleError> {
    let mut rows = Vec::new();
    for line in raw.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| BundleError::Inconsistent(format!("{name}: {e}")))?;
        rows.push((
            v["seq"].as_u64().unwrap_or(0),
            v["record"].as_str().unwrap_or_default().to_owned(),
            v["hash"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    Ok(rows)
}

/// The backup ids a run's audit records name, sorted.
fn backups_named(rows: &[(u64, String, String)]) -> Vec<String> {
    let mut ids: Vec<String> = rows
        .iter()
        .filter_map(|(_, rec, _)| {
            serde_json::from_str::<drover_engine::audit::AuditRecord>(rec)
                .ok()
                .and_then(|r| r.backup_id)
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Verifies the backup-operation log a bundle carries (when the run used backups): its chain
/// against its head. Returns how many of its records are about the backups the run used.
fn verify_backup_log(
    files: &BTreeMap<String, Vec<u8>>,
    run_rows: &[(u64, String, String)],
) -> Result<Option<usize>, BundleError> {
    let Some(raw) = files.get("backups/audit.jsonl") else {
        return Ok(None);
    };
    let missing = |n: &str| BundleError::Inconsistent(format!("{n} is not in the bundle"));
    let head: serde_json::Value = serde_json::from_slice(
        files
            .get("backups/audit-head.json")
            .ok_or_else(|| missing("backups/audit-head.json"))?,
    )
    .map_err(|e| BundleError::Inconsistent(format!("backups/audit-head.json: {e}")))?;
    let rows = audit_rows("backups/audit.jsonl", raw)?;
    drover_engine::audit::verify(
        drover_engine::oplog::BACKUPS_LOG,
        &rows,
        head["head"].as_str().unwrap_or_default(),
        head["count"].as_u64().unwrap_or(0),
    )
    .map_err(|f| {
        BundleError::Inconsistent(format!("the backup-operation log in the bundle: {f}"))
    })?;
    let used = backups_named(run_rows);
    Ok(Some(
        rows.iter()
            .filter(|(_, rec, _)| {
                serde_json::from_str::<drover_engine::audit::AuditRecord>(rec)
                    .ok()
                    .and_then(|r| r.backup_id)
                    .is_some_and(|b| used.contains(&b))
            })
            .count(),
    ))
}

/// What a verified bundle holds.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signed manifest.
    pub manifest: Manifest,
    /// Audit records checked.
    pub audit_records: u64,
    /// Whether the runbook's sources were in the bundle (and matched the plan's hash).
    pub sources: bool,
    /// Signed statements (the start, approvals) verified against the run's roster.
    pub signatures: usize,
    /// With a run that used backups: the records of the backup-operation log about them (the
    /// whole log's chain verified).
    pub backup_records: Option<usize>,
    /// Anchored checkpoints in the bundle that the audit chain agrees with.
    pub checkpoints: Option<usize>,
}

/// Re-verifies every signed statement in the bundle against the roster the plan carries: the
/// start (its signer is the run's initiator) and each approval (signed by the operator it
/// names, for this run, this step, this plan and these inputs).
fn verify_statements(
    files: &BTreeMap<String, Vec<u8>>,
    plan: &drover_dsl::Plan,
    run_id: &str,
) -> Result<usize, BundleError> {
    let Some(raw) = files.get("identity/statements.json") else {
        if plan.runbook.roster.is_some() {
            return Err(BundleError::Inconsistent(
                "the run's runbook has an operator roster, but the bundle holds no signed statements".into(),
            ));
        }
        return Ok(0);
    };
    #[derive(serde::Deserialize)]
    struct Line {
        step: Option<String>,
        operator: Option<String>,
        statement: String,
        signature: String,
    }
    let lines: Vec<Line> = serde_json::from_slice(raw)
        .map_err(|e| BundleError::Inconsistent(format!("identity/statements.json: {e}")))?;
    for l in &lines {
        let signed = drover_engine::signed::SignedStatement {
            statement: l.statement.clone(),
            signature: l.signature.clone(),
        };
        // A step's statement is checked as the decision it states (approve, deny, break-glass);
        // one stating anything else is checked as an approval, and fails.
        let stated = drover_identity::Statement::parse(&l.statement)
            .map(|s| s.kind)
            .ok()
            .filter(|k| *k != drover_identity::Decision::Start)
            .unwrap_or(drover_identity::Decision::Approve);
        let (what, step, kind) = match &l.step {
            None => (
                "the start of the run".to_owned(),
                "",
                drover_identity::Decision::Start,
            ),
            Some(s) => (
                format!(
                    "the {} of `{s}` by {}",
                    match stated {
                        drover_identity::Decision::Deny => "denial",
                        drover_identity::Decision::BreakGlass => "break-glass approval",
                        _ => "approval",
                    },
                    l.operator.as_deref().unwrap_or("?")
                ),
                s.as_str(),
                stated,
            ),
        };
        let (signer, _) = drover_engine::signed::check(plan, run_id, step, kind, &signed)
            .map_err(|e| BundleError::Inconsistent(format!("{what} does not verify: {e}")))?;
        if let Some(op) = &l.operator
            && *op != signer.operator
        {
            return Err(BundleError::Inconsistent(format!(
                "{what} does not verify: it was signed by {}",
                signer.operator
            )));
        }
    }
    Ok(lines.len())
}

/// Verifies a bundle offline: signature and files, then the audit chain against its head, then
/// the sources against the hash the plan was compiled from.
///
/// # Errors
/// The first thing wrong.
pub fn verify_bundle(bundle: &[u8], public: &VerifyingKey) -> Result<Verified, BundleError> {
    let files = drover_evidence::read(bundle)?;
    let manifest = drover_evidence::verify_files(&files, public)?;
    let get = |name: &str| {
        files
            .get(name)
            .ok_or_else(|| BundleError::Inconsistent(format!("{name} is not in the bundle")))
    };
    let head: serde_json::Value = serde_json::from_slice(get("audit-head.json")?)
        .map_err(|e| BundleError::Inconsistent(format!("audit-head.json: {e}")))?;
    let run_id = head["run_id"].as_str().unwrap_or_default();
    let rows = audit_rows("audit.jsonl", get("audit.jsonl")?)?;
    let n = drover_engine::audit::verify(
        run_id,
        &rows,
        head["head"].as_str().unwrap_or_default(),
        head["count"].as_u64().unwrap_or(0),
    )
    .map_err(|f| BundleError::Inconsistent(format!("the audit log in the bundle: {f}")))?;
    let plan: drover_dsl::Plan = serde_json::from_slice(get("plan.json")?)
        .map_err(|e| BundleError::Inconsistent(format!("plan.json: {e}")))?;
    let sources: Vec<(&String, &Vec<u8>)> = files
        .iter()
        .filter(|(k, _)| k.starts_with("runbook/"))
        .collect();
    if !sources.is_empty() {
        // The plan's hash is over the sources in load order by their original names, which
        // `sources.json` keeps (bundle names are sanitised).
        let index: Vec<(String, String)> = serde_json::from_slice(get("sources.json")?)
            .map_err(|e| BundleError::Inconsistent(format!("sources.json: {e}")))?;
        let mut h = Sha256::new();
        for (name, file) in &index {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(get(file)?);
            h.update([0]);
        }
        let got = hex::encode(h.finalize());
        if got != plan.runbook.source_sha256 {
            return Err(BundleError::Inconsistent(format!(
                "the runbook sources in the bundle hash to {got}, but the plan was compiled from {}",
                plan.runbook.source_sha256
            )));
        }
    }
    let signatures = verify_statements(&files, &plan, run_id)?;
    let backup_records = verify_backup_log(&files, &rows)?;
    let checkpoints = match files.get("anchor/checkpoints.jsonl") {
        None => None,
        Some(raw) => {
            let mut cps = Vec::new();
            for line in raw.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                cps.push(
                    serde_json::from_slice::<drover_engine::anchor::Checkpoint>(line).map_err(
                        |e| BundleError::Inconsistent(format!("anchor/checkpoints.jsonl: {e}")),
                    )?,
                );
            }
            Some(
                drover_engine::anchor::check(run_id, &rows, &cps).map_err(|e| {
                    BundleError::Inconsistent(format!(
                        "the audit log in the bundle against its anchored checkpoints: {e}"
                    ))
                })?,
            )
        }
    };
    Ok(Verified {
        manifest,
        audit_records: n,
        sources: !sources.is_empty(),
        signatures,
        backup_records,
        checkpoints,
    })
}
