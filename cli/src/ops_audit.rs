//! The audit records of backup and key operations outside runs: who is established (a signed
//! statement with a roster, the name given or the OS user without), the journal and the anchor
//! are opened before anything is done, then a record is written when the operation starts and
//! when it ends. The rules live in `drover_engine::oplog`.

use crate::OperatorArgs;
use drover_engine::clock::{Clock, SystemClock};
use drover_engine::oplog::{self, Anchoring, BACKUPS_LOG, Operation};
use drover_engine::signed::SignedStatement;
use std::path::Path;
use std::process::ExitCode;

/// One operation being audited.
pub(crate) struct Audited {
    journal: Box<dyn drover_engine::journal::Journal>,
    operator: String,
    signed: Option<SignedStatement>,
    anchoring: Option<Anchoring>,
    action: &'static str,
    subject: String,
}

impl Audited {
    /// Establishes who does `action` on `subject` (its arguments `args` are what a roster
    /// operator signs), and opens the log and the anchor. A refused signature is recorded.
    pub(crate) fn open(
        by: &OperatorArgs,
        action: &'static str,
        subject: &str,
        args: &[(&str, &str)],
    ) -> Result<Self, ExitCode> {
        let anchor = match by.audit_anchor.as_deref() {
            None => None,
            Some(a) => Some(drover_engine::anchor::Anchor::parse(a).map_err(|e| {
                errln!("error: --audit-anchor: {e}");
                ExitCode::from(2)
            })?),
        };
        if let Some(a) = &anchor {
            a.check().map_err(|e| {
                errln!("error: {e}");
                ExitCode::FAILURE
            })?;
        }
        if let (Some(name), Some(_)) = (&by.operator, &by.operators) {
            errln!(
                "error: with an operator roster, who does this is established by a signature, not typed (`--as {name}`); give --operator-key PATH or load your key into ssh-agent"
            );
            return Err(ExitCode::from(2));
        }
        let state = Path::new(&by.state);
        let mut journal = crate::run_cli::journal(state)?;
        let anchoring = match anchor {
            None => None,
            Some(anchor) => Some(Anchoring {
                anchor,
                key: drover_engine::anchor::instance_key(state).map_err(|e| {
                    errln!("error: {e}");
                    ExitCode::FAILURE
                })?,
            }),
        };
        let now = SystemClock.now_ms();
        let (operator, signed) = match &by.operators {
            None => (
                by.operator
                    .clone()
                    .unwrap_or_else(drover_engine::operator::os_user),
                None,
            ),
            Some(path) => {
                let (roster, _) =
                    drover_identity::Roster::load(Path::new(path)).map_err(|issues| {
                        errln!(
                            "error: the operator roster {path} is not valid: {}",
                            issues.first().map_or("", |i| i.message.as_str())
                        );
                        ExitCode::FAILURE
                    })?;
                let st = oplog::statement(BACKUPS_LOG, action, &roster.sha256, args, now);
                let key = by.operator_key.as_deref().map(Path::new);
                let signed = crate::run_cli::sign_with(Some(&roster), &st, key).map_err(|e| {
                    errln!("error: cannot sign the {action} statement: {e}");
                    ExitCode::FAILURE
                })?;
                match oplog::signer(&roster, BACKUPS_LOG, action, &signed) {
                    Ok(s) => (s.operator, Some(signed)),
                    Err(reason) => {
                        let refused = Operation {
                            action,
                            operator: "unverified",
                            subject: Some(subject),
                            backup_id: None,
                            key_id: None,
                            outcome: "refused",
                            detail: Some(&reason),
                            signed: None,
                        };
                        if let Err(e) = oplog::record(
                            &mut *journal,
                            BACKUPS_LOG,
                            &refused,
                            now,
                            anchoring.as_ref(),
                        ) {
                            errln!("error: cannot write the audit log: {e}");
                        }
                        errln!("refused: {reason} (the refusal is in the audit log)");
                        return Err(ExitCode::FAILURE);
                    }
                }
            }
        };
        Ok(Self {
            journal,
            operator,
            signed,
            anchoring,
            action,
            subject: subject.to_owned(),
        })
    }

    /// Writes a record of the operation: `started` (carrying the signed statement), or how it
    /// ended.
    pub(crate) fn write(
        &mut self,
        outcome: &str,
        backup_id: Option<&str>,
        key_id: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), ExitCode> {
        let op = Operation {
            action: self.action,
            operator: &self.operator,
            subject: Some(&self.subject),
            backup_id,
            key_id,
            outcome,
            detail,
            signed: if outcome == "started" {
                self.signed.as_ref()
            } else {
                None
            },
        };
        oplog::record(
            &mut *self.journal,
            BACKUPS_LOG,
            &op,
            SystemClock.now_ms(),
            self.anchoring.as_ref(),
        )
        .map(|_| ())
        .map_err(|e| {
            errln!(
                "error: cannot write the audit record of {} ({outcome}): {e}",
                self.action
            );
            ExitCode::FAILURE
        })
    }

    /// Records the end of the operation: what it produced, or `failed` with the error. An
    /// operation that succeeded but could not be recorded exits non-zero.
    pub(crate) fn finish(&mut self, result: Result<Done<'_>, String>, code: ExitCode) -> ExitCode {
        let written = match &result {
            Ok(d) => self.write(d.outcome, d.backup_id, d.key_id, d.detail.as_deref()),
            Err(e) => self.write("failed", None, None, Some(e)),
        };
        match written {
            Ok(()) => code,
            Err(c) => c,
        }
    }
}

/// How an operation ended well.
pub(crate) struct Done<'a> {
    /// `ok`, `verified`.
    pub(crate) outcome: &'a str,
    /// The backup.
    pub(crate) backup_id: Option<&'a str>,
    /// The key.
    pub(crate) key_id: Option<&'a str>,
    /// What was checked.
    pub(crate) detail: Option<String>,
}
