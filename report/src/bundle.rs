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
    let mut audit = Vec::new();
    for (seq, rec, hash) in journal.audit(run_id).map_err(ReportError::from)? {
        let line = serde_json::json!({ "seq": seq, "record": rec, "hash": hash });
        audit.extend(serde_json::to_vec(&line).unwrap_or_default());
        audit.push(b'\n');
    }
    files.push(("audit.jsonl".into(), audit));
    files.push((
        "audit-head.json".into(),
        json(&serde_json::json!({ "run_id": run_id, "head": row.audit_head, "count": row.audit_count })),
    ));
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
             then compare each file's SHA-256 with MANIFEST.json.\n{}",
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
    let mut rows = Vec::new();
    for line in get("audit.jsonl")?
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let v: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| BundleError::Inconsistent(format!("audit.jsonl: {e}")))?;
        rows.push((
            v["seq"].as_u64().unwrap_or(0),
            v["record"].as_str().unwrap_or_default().to_owned(),
            v["hash"].as_str().unwrap_or_default().to_owned(),
        ));
    }
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
    Ok(Verified {
        manifest,
        audit_records: n,
        sources: !sources.is_empty(),
        signatures,
    })
}
