//! The audit log: append-only, hash-chained. Each record holds the SHA-256 of the previous one;
//! the hash of the last record and the count are kept in the run's row, outside the log, so that
//! truncating the tail is detected too. Records never hold secrets or plaintext.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash the first record points back to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record: who did what, when, to which backup under which key, with what outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the run's log (1-based; set when appended).
    pub seq: u64,
    /// When (RFC 3339, UTC).
    pub ts: String,
    /// The run.
    pub run_id: String,
    /// Who: the operator who started the run, or who approved.
    pub operator: String,
    /// The step or milestone, if any; for an operation outside a run, what it was about (the
    /// backup's location, the key's URI).
    pub step: Option<String>,
    /// What: `run.start`, `run.finish`, an action name, `approval`, `compensate`, `milestone`.
    pub action: String,
    /// The backup involved, if any.
    pub backup_id: Option<String>,
    /// The key involved, if any.
    pub key_id: Option<String>,
    /// `ok`, `failed`, `refused`, `skipped`, `reached`, or the run's outcome.
    pub outcome: String,
    /// The error, if any (secrets redacted before it gets here).
    pub error: Option<String>,
    /// Hash of the previous record (set when appended).
    pub prev: String,
    /// For an operation outside a run done by a roster operator: the statement they signed for
    /// it, re-verifiable offline against the roster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<crate::signed::SignedStatement>,
}

/// `SHA-256(prev ‖ "\n" ‖ record JSON)`, hex.
#[must_use]
pub fn chain_hash(prev: &str, record_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(record_json.as_bytes());
    hex::encode(h.finalize())
}

/// What `verify` found wrong, naming the first bad record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq}: {reason}")]
pub struct AuditFault {
    /// The first bad record's position (the stored count + 1 for a truncated tail).
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// Verifies a run's audit log: stored rows `(seq, record JSON, hash)` in order, against the head
/// and count kept in the run's row. Returns the number of records checked.
///
/// # Errors
/// The first edited, deleted, inserted or reordered record, or a truncated tail.
pub fn verify(
    run_id: &str,
    rows: &[(u64, String, String)],
    head: &str,
    count: u64,
) -> Result<u64, AuditFault> {
    let mut prev = GENESIS.to_owned();
    for (k, (seq, json, hash)) in rows.iter().enumerate() {
        let expected_seq = k as u64 + 1;
        let fault = |reason: String| AuditFault {
            seq: expected_seq,
            reason,
        };
        if *seq != expected_seq {
            return Err(fault(format!(
                "found record {seq} where record {expected_seq} should be (a record was deleted, inserted or moved)"
            )));
        }
        let rec: AuditRecord =
            serde_json::from_str(json).map_err(|e| fault(format!("does not parse: {e}")))?;
        if rec.seq != expected_seq {
            return Err(fault(format!(
                "its content says it is record {}: records were swapped or renumbered",
                rec.seq
            )));
        }
        if rec.run_id != run_id {
            return Err(fault(format!("belongs to run {}", rec.run_id)));
        }
        if rec.prev != prev {
            return Err(fault("does not chain to the previous record (a record before it was changed, deleted or inserted)".into()));
        }
        let computed = chain_hash(&prev, json);
        if computed != *hash {
            return Err(fault(
                "its content does not match its hash: it was edited".into(),
            ));
        }
        prev = computed;
    }
    let n = rows.len() as u64;
    if n != count || prev != head {
        return Err(AuditFault {
            seq: n + 1,
            reason: format!(
                "the log holds {n} records ending in {}, but the run's record says {count} ending in {head}: the log was truncated or rewritten",
                &prev[..12]
            ),
        });
    }
    Ok(n)
}
