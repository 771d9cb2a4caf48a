//! Signed decisions: the statements operators sign to start a run and to approve or deny its
//! steps, checked against the operator roster the run's plan carries (`operators = "…"`).
//!
//! What is signed names the run, the step, the plan (the SHA-256 of the runbook's sources, the
//! roster included) and a digest of exactly what is approved — the approval step's inputs and
//! those of every step it gates directly — so a signature cannot be replayed to another run,
//! another step, or a changed plan.

use drover_dsl::{Plan, PlanNode};
use drover_identity::{Decision, Roster, Signer, Statement};
use petgraph::Direction;
use sha2::{Digest, Sha256};

/// An approval or a denial as it reaches the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approver {
    /// A name typed with `--as` (runbooks without a roster only; such approvals are marked
    /// unauthenticated).
    Typed {
        /// The typed name.
        operator: String,
        /// The typed roles.
        roles: Vec<String>,
    },
    /// A statement and its SSHSIG signature.
    Signed(SignedStatement),
}

/// A statement with its signature, as stored and as bundled for offline verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedStatement {
    /// The exact text signed.
    pub statement: String,
    /// The armored SSHSIG.
    pub signature: String,
}

/// The roster a plan carries, parsed.
///
/// # Errors
/// The stored roster no longer parses (it did when the plan was compiled).
pub fn roster(plan: &Plan) -> Option<Result<Roster, String>> {
    plan.runbook.roster.as_ref().map(|r| {
        Roster::parse(
            &r.text,
            std::path::Path::new(&r.path)
                .parent()
                .unwrap_or(std::path::Path::new("")),
        )
        .map_err(|issues| {
            format!(
                "the run's operator roster does not parse: {}",
                issues.first().map_or("", |i| i.message.as_str())
            )
        })
    })
}

/// What deciding `step` decides, as shown to the person deciding: its own action and inputs and
/// those of every step it gates directly. `None` for the start of a run or an unknown step.
#[must_use]
pub fn subject_doc(plan: &Plan, step: &str) -> Option<serde_json::Value> {
    if step.is_empty() {
        return None;
    }
    let g = &plan.graph;
    let i = g.node_indices().find(|&i| g[i].id() == step)?;
    let mut gated = std::collections::BTreeMap::new();
    for s in g.neighbors_directed(i, Direction::Outgoing) {
        if let PlanNode::Step(s) = &g[s] {
            gated.insert(
                s.id.clone(),
                serde_json::json!({"action": s.action, "inputs": s.inputs}),
            );
        }
    }
    let own = g[i]
        .as_step()
        .map(|s| serde_json::json!({"action": s.action, "inputs": s.inputs}));
    Some(serde_json::json!({"step": step, "own": own, "gates": gated}))
}

/// SHA-256 (hex) of what deciding `step` decides ([`subject_doc`], as canonical JSON). Empty
/// for the start of a run.
#[must_use]
pub fn subject(plan: &Plan, step: &str) -> String {
    subject_doc(plan, step).map_or_else(String::new, |doc| {
        hex::encode(Sha256::digest(doc.to_string().as_bytes()))
    })
}

/// The statement an operator signs to decide `step` (empty: to start the run).
#[must_use]
pub fn statement(
    plan: &Plan,
    run_id: &str,
    step: &str,
    kind: Decision,
    comment: &str,
    totp: Option<String>,
    now_ms: u64,
) -> Statement {
    Statement {
        kind,
        run_id: run_id.to_owned(),
        step: step.to_owned(),
        plan_sha256: plan.runbook.source_sha256.clone(),
        inputs_sha256: subject(plan, step),
        comment: comment.replace(['\n', '\r'], " "),
        time: crate::run_record::rfc3339(now_ms),
        nonce: drover_identity::statement::nonce(),
        totp,
    }
}

/// Checks `signed` as a decision `kind` about `step` of run `run_id`: the signature verifies
/// against a key in the plan's roster, and the statement names this run, this step, this plan and
/// exactly these inputs. Returns the signer and the statement.
///
/// # Errors
/// Why it is refused, in one sentence.
pub fn check(
    plan: &Plan,
    run_id: &str,
    step: &str,
    kind: Decision,
    signed: &SignedStatement,
) -> Result<(Signer, Statement), String> {
    let roster = match roster(plan) {
        None => {
            return Err(
                "the runbook has no operator roster (`operators = \"…\"`) to verify signatures against".into(),
            );
        }
        Some(r) => r?,
    };
    let signer = drover_identity::verify(&roster, &signed.statement, &signed.signature)
        .map_err(|e| e.to_string())?;
    let st = Statement::parse(&signed.statement).map_err(|e| e.to_string())?;
    let wrong = |what: &str, got: &str, want: &str| {
        Err(format!(
            "the statement signed by {} is for {what} `{got}`, not `{want}`: a signature is good for one decision only",
            signer.operator
        ))
    };
    if st.kind != kind {
        return wrong("the decision", st.kind.as_str(), kind.as_str());
    }
    if st.run_id != run_id {
        return wrong("run", &st.run_id, run_id);
    }
    if st.step != step {
        return wrong("step", &st.step, step);
    }
    if st.plan_sha256 != plan.runbook.source_sha256 {
        return Err(format!(
            "the statement signed by {} is for another version of the runbook (plan {}, this run's is {}): the plan changed",
            signer.operator,
            short(&st.plan_sha256),
            short(&plan.runbook.source_sha256)
        ));
    }
    let want = subject(plan, step);
    if st.inputs_sha256 != want {
        return Err(format!(
            "the statement signed by {} approves other inputs (digest {}, this step's are {})",
            signer.operator,
            short(&st.inputs_sha256),
            short(&want)
        ));
    }
    Ok((signer, st))
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// Who decides: the operator's name, their roles, and the signed statement (none when typed).
pub type Identified = (String, Vec<String>, Option<SignedStatement>);

/// Who decides, by the plan's rules: with a roster, the operator whose key signed `approver`'s
/// statement (with their roster roles); without one, the typed name and roles.
///
/// # Errors
/// `(who, why)`: a typed name where a signature is needed, a signature that does not verify or
/// names another run, step or plan, or a signature where no roster can verify it.
pub fn identify(
    plan: &Plan,
    run_id: &str,
    step: &str,
    kind: Decision,
    approver: &Approver,
) -> Result<Identified, (String, String)> {
    match (plan.runbook.roster.is_some(), approver) {
        (true, Approver::Typed { operator, .. }) => Err((
            operator.clone(),
            format!(
                "this runbook has an operator roster: an approval is a statement signed with the approver's SSH key, not a typed name (`{operator}`) — give --key PATH, load the key into ssh-agent, or sign the statement printed by --print-statement and pass --signature"
            ),
        )),
        (true, Approver::Signed(s)) => match check(plan, run_id, step, kind, s) {
            Ok((signer, _)) => Ok((signer.operator, signer.roles, Some(s.clone()))),
            Err(e) => Err((signer_hint(s), e)),
        },
        (false, Approver::Typed { operator, roles }) => {
            Ok((operator.clone(), roles.clone(), None))
        }
        (false, Approver::Signed(s)) => Err((
            signer_hint(s),
            "the runbook of this run names no operator roster (`operators = \"…\"`) to verify a signature against; approve with --as".into(),
        )),
    }
}

/// Why an approval row may not count, if it may not: with a roster, it must carry a statement
/// that verifies for this run and step, signed by the operator the row names.
#[must_use]
pub fn unverified_row(
    plan: &Plan,
    run_id: &str,
    row: &crate::journal::ApprovalRow,
) -> Option<String> {
    plan.runbook.roster.as_ref()?;
    let Some(s) = &row.signed else {
        return Some(
            "the approval carries no signature (written outside `drover approve`?)".into(),
        );
    };
    let kind = match (&row.denial, &row.break_glass) {
        (Some(_), _) => Decision::Deny,
        (None, Some(_)) => Decision::BreakGlass,
        (None, None) => Decision::Approve,
    };
    match check(plan, run_id, &row.step, kind, s) {
        Ok((signer, _))
            if kind == Decision::BreakGlass
                && !matches!(roster(plan), Some(Ok(r)) if r.operators.get(&signer.operator).is_some_and(|o| o.break_glass)) =>
        {
            Some(format!(
                "{} is not marked `break_glass = true` in the operator roster",
                signer.operator
            ))
        }
        Ok((signer, _)) if signer.operator == row.operator => None,
        Ok((signer, _)) => Some(format!(
            "the approval names {} but was signed by {}",
            row.operator, signer.operator
        )),
        Err(e) => Some(e),
    }
}

/// Who signed `s`, for messages: the roster operator whose key made the signature (whatever the
/// statement says), otherwise the key's fingerprint.
#[must_use]
pub fn signer_name(plan: &Plan, s: &SignedStatement) -> String {
    match roster(plan) {
        Some(Ok(r)) => drover_identity::verify(&r, &s.statement, &s.signature)
            .map_or_else(|_| signer_hint(s), |signer| signer.operator),
        _ => signer_hint(s),
    }
}

/// A name for the audit log of whoever sent a signature that was refused: the key's
/// fingerprint (the signer is not established).
fn signer_hint(s: &SignedStatement) -> String {
    drover_identity::fingerprint_of(&s.signature).map_or_else(
        || "unverified signature".to_owned(),
        |f| format!("unverified signature by key {f}"),
    )
}

/// Whether approving `step` needs a current TOTP code in the signed statement: the step's
/// `mfa` input when set; otherwise, with a roster, when the run is a failover and a destructive
/// step lies downstream of the approval.
#[must_use]
pub fn needs_mfa(plan: &Plan, step: &str, mode: drover_dsl::Mode) -> bool {
    let g = &plan.graph;
    let Some(i) = g.node_indices().find(|&i| g[i].id() == step) else {
        return false;
    };
    if let Some(drover_dsl::PlanValue::Bool(b)) = g[i].as_step().and_then(|s| s.inputs.get("mfa")) {
        return *b;
    }
    if plan.runbook.roster.is_none() || mode != drover_dsl::Mode::Failover {
        return false;
    }
    let mut bfs = petgraph::visit::Bfs::new(g, i);
    while let Some(n) = bfs.next(g) {
        if g[n]
            .as_step()
            .is_some_and(|s| s.effect == drover_schema::Effect::Destructive)
        {
            return true;
        }
    }
    false
}

/// Checks the step-up code in `statement`, signed by `operator`: it must be the operator's
/// current TOTP code (RFC 6238, 30 s steps, one step either side), from the secret the roster
/// points to. Returns the code's time step, which the caller marks used.
///
/// # Errors
/// Why it is refused; never the secret.
pub fn check_totp(
    plan: &Plan,
    operator: &str,
    statement: &Statement,
    now_ms: u64,
) -> Result<u64, String> {
    let roster = roster(plan).ok_or("the runbook has no operator roster")??;
    let Some(code) = statement.totp.as_deref() else {
        return Err(
            "this approval needs a current TOTP code (step-up): sign it with --totp CODE".into(),
        );
    };
    let op = roster
        .operators
        .get(operator)
        .ok_or_else(|| format!("{operator} is not in the roster"))?;
    let secret_ref = op.totp.as_ref().ok_or_else(|| {
        format!("this approval needs a TOTP code, and {operator} has no `totp` in the roster")
    })?;
    let secret = secret_ref
        .resolve(&roster.base)
        .map_err(|e| format!("the TOTP secret of {operator} cannot be read: {e}"))?;
    let key = drover_identity::totp::decode_base32(&secret)
        .ok_or_else(|| format!("the TOTP secret of {operator} is not base32"))?;
    drover_identity::totp::verify(&key, code.trim(), now_ms / 1000)
        .ok_or_else(|| "the TOTP code is wrong or expired".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

    fn plan(with_roster: bool) -> Plan {
        let header = if with_roster {
            "  operators = \"ops.toml\"\n"
        } else {
            ""
        };
        let src = format!(
            "runbook \"t\" {{\n  rto = 1h\n  rpo = 1h\n  modes = [failover]\n{header}}}\nstep gate {{\n  action = approval\n  with {{\n    prompt = \"go?\"\n  }}\n}}\nstep cut {{\n  action = wait\n  after = [gate]\n  with {{\n    duration = 1s\n  }}\n}}\nmilestone m {{\n  after = [cut]\n  stops_rto = true\n}}\n"
        );
        let loader = drover_dsl::MemoryLoader::new().with("t.drover", &src).with(
            "ops.toml",
            &format!("[operators.alice]\nroles = [\"ic\"]\nkeys = [\"{KEY}\"]\n"),
        );
        let catalogue = drover_adapters::builtin_catalogue();
        let opts = drover_dsl::CompileOptions {
            catalogue: &catalogue,
            vars: Vec::new(),
            operators: None,
        };
        let c = drover_dsl::compile("t.drover", &loader, &opts);
        c.plan.unwrap_or_else(|| panic!("{:#?}", c.diagnostics))
    }

    fn row(signed: Option<SignedStatement>) -> crate::journal::ApprovalRow {
        crate::journal::ApprovalRow {
            id: 1,
            step: "gate".into(),
            operator: "bob".into(),
            roles: vec!["ic".into()],
            at: 0,
            signed,
            denial: None,
            break_glass: None,
        }
    }

    #[test]
    fn with_a_roster_a_row_written_by_hand_does_not_count() {
        let p = plan(true);
        let why = unverified_row(&p, "r1", &row(None)).expect("refused");
        assert!(why.contains("no signature"), "{why}");
        let forged = SignedStatement {
            statement: statement(&p, "r1", "gate", Decision::Approve, "", None, 0)
                .to_text()
                .expect("text"),
            signature: "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n".into(),
        };
        assert!(unverified_row(&p, "r1", &row(Some(forged))).is_some());
        assert_eq!(unverified_row(&plan(false), "r1", &row(None)), None);
    }

    #[test]
    fn a_gate_upstream_of_a_destructive_step_asks_for_mfa_in_a_failover_by_default() {
        let src = |mfa: &str| {
            format!(
                "runbook \"t\" {{\n  rto = 1h\n  rpo = 1h\n  modes = [drill, failover]\n  operators = \"ops.toml\"\n}}\nstep gate {{\n  action = approval\n  with {{\n    prompt = \"go?\"\n{mfa}  }}\n}}\nstep wait_a_bit {{\n  action = wait\n  after = [gate]\n  with {{\n    duration = 1s\n  }}\n}}\nstep move {{\n  action = aws_ec2.associate_address\n  after = [wait_a_bit]\n  with {{\n    allocation_id = \"eipalloc-1\"\n    instance_id = \"i-1\"\n  }}\n}}\nmilestone m {{\n  after = [move]\n  stops_rto = true\n}}\n"
            )
        };
        let compile = |text: String| {
            let loader = drover_dsl::MemoryLoader::new()
                .with("t.drover", &text)
                .with(
                    "ops.toml",
                    &format!("[operators.alice]\nroles = [\"ic\"]\nkeys = [\"{KEY}\"]\n"),
                );
            let catalogue = drover_adapters::builtin_catalogue();
            let opts = drover_dsl::CompileOptions {
                catalogue: &catalogue,
                vars: Vec::new(),
                operators: None,
            };
            let c = drover_dsl::compile("t.drover", &loader, &opts);
            c.plan.unwrap_or_else(|| panic!("{:#?}", c.diagnostics))
        };
        let p = compile(src(""));
        assert!(
            needs_mfa(&p, "gate", drover_dsl::Mode::Failover),
            "a destructive step is downstream"
        );
        assert!(
            !needs_mfa(&p, "gate", drover_dsl::Mode::Drill),
            "not in a drill"
        );
        let off = compile(src("    mfa = false\n"));
        assert!(
            !needs_mfa(&off, "gate", drover_dsl::Mode::Failover),
            "turned off"
        );
        let on = compile(src("    mfa = true\n"));
        assert!(needs_mfa(&on, "gate", drover_dsl::Mode::Drill), "asked for");
        assert!(
            !needs_mfa(&plan(false), "gate", drover_dsl::Mode::Failover),
            "no roster"
        );
    }

    #[test]
    fn the_subject_changes_with_what_the_gate_lets_through() {
        let p = plan(true);
        let a = subject(&p, "gate");
        assert_eq!(a.len(), 64);
        let mut q = p.clone();
        for i in q.graph.node_indices() {
            if let PlanNode::Step(s) = &mut q.graph[i]
                && s.id == "cut"
            {
                s.inputs.insert(
                    "duration".into(),
                    drover_dsl::PlanValue::String("2s".into()),
                );
            }
        }
        assert_ne!(
            subject(&q, "gate"),
            a,
            "approving `gate` approves what `cut` does"
        );
        assert_eq!(subject(&p, ""), "");
    }
}
