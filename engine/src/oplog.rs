//! The audit log of operations outside runs: `drover backup create | verify | restore | rewrap`
//! and `drover key generate`. Each operation appends records to a log in the state directory
//! ([`BACKUPS_LOG`]) — who, what, which backup, under which key, the outcome — hash-chained like
//! a run's log, its head kept in the `logs` table, and checkpointed to an anchor outside the host
//! when one is given. With an operator roster, the operator is established by a statement they
//! sign for the operation ([`statement`]), kept in the record so that anyone can re-verify it
//! offline ([`check_signatures`]).

use crate::anchor::{Anchor, Checkpoint};
use crate::audit::{AuditFault, AuditRecord};
use crate::journal::{Journal, JournalError};
use crate::signed::SignedStatement;
use drover_identity::{Decision, Roster, Statement};
use sha2::{Digest, Sha256};

/// The log of backup and key operations done outside runs.
pub const BACKUPS_LOG: &str = "@backups";

/// One operation, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'a> {
    /// What: `backup.create`, `backup.verify`, `backup.restore`, `backup.rewrap`, `key.generate`.
    pub action: &'a str,
    /// Who: the roster operator who signed, or the name given (`--as`, default the OS user).
    pub operator: &'a str,
    /// What it was about: the backup's location, the key's URI, the restore's destination.
    pub subject: Option<&'a str>,
    /// The backup.
    pub backup_id: Option<&'a str>,
    /// The key.
    pub key_id: Option<&'a str>,
    /// `started`, `ok`, `verified`, `failed`, `refused`.
    pub outcome: &'a str,
    /// What went wrong, or what was checked (secrets are redacted by the journal).
    pub detail: Option<&'a str>,
    /// The statement the operator signed for it, with a roster.
    pub signed: Option<&'a SignedStatement>,
}

/// Why the log could not be written or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum OplogError {
    /// The journal.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The anchor or the instance key.
    #[error("{0}")]
    Anchor(String),
    /// The chain.
    #[error(transparent)]
    Chain(#[from] AuditFault),
}

/// Where checkpoints of the log go, and the key that signs them.
pub struct Anchoring {
    /// The anchor.
    pub anchor: Anchor,
    /// The instance's key (`STATE/instance.key`).
    pub key: ed25519_dalek::SigningKey,
}

/// Appends `op` to `log` at `now`; with `anchoring`, a signed checkpoint of the new head goes
/// to the anchor. Returns the record's position.
///
/// # Errors
/// The journal or the anchor cannot be written.
pub fn record(
    journal: &mut dyn Journal,
    log: &str,
    op: &Operation<'_>,
    now_ms: u64,
    anchoring: Option<&Anchoring>,
) -> Result<u64, OplogError> {
    let rec = AuditRecord {
        seq: 0,
        ts: crate::run_record::rfc3339(now_ms),
        run_id: log.to_owned(),
        operator: op.operator.to_owned(),
        step: op.subject.map(str::to_owned),
        action: op.action.to_owned(),
        backup_id: op.backup_id.map(str::to_owned),
        key_id: op.key_id.map(str::to_owned),
        outcome: op.outcome.to_owned(),
        error: op.detail.map(str::to_owned),
        prev: String::new(),
        signed: op.signed.cloned(),
    };
    let (head, count) = journal.append_log(log, &[rec])?;
    if let Some(a) = anchoring {
        let c = Checkpoint::sign(
            log,
            count,
            &head,
            crate::run_record::rfc3339(now_ms),
            &a.key,
        );
        a.anchor.append(&c).map_err(OplogError::Anchor)?;
    }
    Ok(count)
}

/// Verifies `log`'s chain against its stored head, and with `anchor` against every checkpoint
/// anchored there. Returns the number of records and of checkpoints checked.
///
/// # Errors
/// The first record or checkpoint that does not hold.
pub fn verify(
    journal: &dyn Journal,
    log: &str,
    anchor: Option<&Anchor>,
) -> Result<(u64, Option<usize>), OplogError> {
    let rows = journal.audit(log)?;
    let (head, count) = journal.log_head(log)?;
    let n = crate::audit::verify(log, &rows, &head, count)?;
    let anchored = match anchor {
        None => None,
        Some(a) => Some(
            a.read(log)
                .and_then(|cps| crate::anchor::check(log, &rows, &cps))
                .map_err(|e| {
                    OplogError::Chain(AuditFault {
                        seq: 0,
                        reason: format!("against the anchor {}: {e}", a.location()),
                    })
                })?,
        ),
    };
    Ok((n, anchored))
}

/// SHA-256 (hex) of an operation's arguments, in order: what exactly the operator signs for.
#[must_use]
pub fn arguments_digest(args: &[(&str, &str)]) -> String {
    let mut h = Sha256::new();
    for (k, v) in args {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The statement an operator signs to do `action` with these arguments, against the roster
/// whose SHA-256 is `roster_sha256`.
#[must_use]
pub fn statement(
    log: &str,
    action: &str,
    roster_sha256: &str,
    args: &[(&str, &str)],
    now_ms: u64,
) -> Statement {
    Statement {
        kind: Decision::Operation,
        run_id: log.to_owned(),
        step: action.to_owned(),
        plan_sha256: roster_sha256.to_owned(),
        inputs_sha256: arguments_digest(args),
        comment: String::new(),
        time: crate::run_record::rfc3339(now_ms),
        nonce: drover_identity::statement::nonce(),
        totp: None,
    }
}

/// Who signed `signed` as a statement for `action` in `log` against `roster`: the roster
/// operator.
///
/// # Errors
/// The signature does not verify against a roster key, or the statement is for another log,
/// another action or another roster.
pub fn signer(
    roster: &Roster,
    log: &str,
    action: &str,
    signed: &SignedStatement,
) -> Result<drover_identity::Signer, String> {
    let signer = drover_identity::verify(roster, &signed.statement, &signed.signature)
        .map_err(|e| e.to_string())?;
    let st = Statement::parse(&signed.statement).map_err(|e| e.to_string())?;
    if st.kind != Decision::Operation || st.run_id != log || st.step != action {
        return Err(format!(
            "the statement is for `{} {}` in {}, not `{action}` in {log}",
            st.kind.as_str(),
            st.step,
            st.run_id
        ));
    }
    if st.plan_sha256 != roster.sha256 {
        return Err("the statement was signed against another roster".into());
    }
    Ok(signer)
}

/// Re-verifies every signed record of `log` against `roster`: the signature, the action, and
/// that the record names the signer. Returns how many signed records there are.
///
/// # Errors
/// The first record whose signature does not hold, named by its position.
pub fn check_signatures(
    rows: &[(u64, String, String)],
    log: &str,
    roster: &Roster,
) -> Result<usize, String> {
    let mut n = 0;
    for (seq, json, _) in rows {
        let rec: AuditRecord =
            serde_json::from_str(json).map_err(|e| format!("record {seq} does not parse: {e}"))?;
        let Some(signed) = &rec.signed else {
            continue;
        };
        let s = signer(roster, log, &rec.action, signed)
            .map_err(|e| format!("record {seq} (`{}`): {e}", rec.action))?;
        if s.operator != rec.operator {
            return Err(format!(
                "record {seq} (`{}`) names {} but was signed by {}",
                rec.action, rec.operator, s.operator
            ));
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::SqliteJournal;

    fn op<'a>(action: &'a str, outcome: &'a str) -> Operation<'a> {
        Operation {
            action,
            operator: "alice",
            subject: Some("./b1"),
            backup_id: Some("b1"),
            key_id: Some("file:sha256:ab"),
            outcome,
            detail: None,
            signed: None,
        }
    }

    #[test]
    fn operations_chain_verify_and_checkpoint_to_the_anchor() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut j = SqliteJournal::open(&dir.path().join("state")).expect("journal");
        let anchoring = Anchoring {
            anchor: Anchor::Dir(dir.path().join("anchor")),
            key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        };
        assert_eq!(
            verify(&j, BACKUPS_LOG, None).expect("empty log").0,
            0,
            "a log never written verifies as empty"
        );
        for (k, outcome) in ["started", "ok", "started", "failed"].iter().enumerate() {
            let seq = record(
                &mut j,
                BACKUPS_LOG,
                &op("backup.create", outcome),
                1_000 + k as u64,
                Some(&anchoring),
            )
            .expect("record");
            assert_eq!(seq, k as u64 + 1);
        }
        let (n, anchored) = verify(&j, BACKUPS_LOG, Some(&anchoring.anchor)).expect("verifies");
        assert_eq!((n, anchored), (4, Some(4)));
        // Runs do not see the log, and the log is not a run.
        assert!(j.run(BACKUPS_LOG).is_err());
    }
}
