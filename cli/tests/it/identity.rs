//! Operator identity through the binary, with real OpenSSH keys, `ssh-keygen -Y sign` and a
//! real `ssh-agent`: with a roster, nobody is who they type; four eyes counts roster operators.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn drover(dir: &Path, args: &[&str]) -> Output {
    drover_env(dir, args, &[])
}

fn drover_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drover"));
    c.args(args).current_dir(dir).env_remove("SSH_AUTH_SOCK");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("drover runs")
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}_key"));
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            &format!("{name}@laptop"),
            "-f",
        ])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let public = std::fs::read_to_string(dir.join(format!("{name}_key.pub"))).expect("pub");
    (path, public.trim().to_owned())
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if f() {
            return;
        }
        #[allow(clippy::disallowed_methods, reason = "polling a real process")]
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn waiting(dir: &Path, run: &str) -> bool {
    let out = drover(dir, &["status", run, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["steps"].as_array().is_some_and(|s| {
        s.iter()
            .any(|s| s["id"] == "gate" && s["state"] == "awaiting_approval")
    })
}

const RUNBOOK: &str = r#"runbook "signed cutover" {
  rto       = 1h
  rpo       = 1h
  modes     = [failover]
  operators = "operators.toml"
}

step gate {
  action = approval
  with {
    prompt = "cut over?"
    roles  = ["incident-commander"]
  }
}

step cut {
  action = shell
  after  = [gate]
  with {
    command = "echo cut"
  }
}

milestone done {
  after     = [cut]
  stops_rto = true
}
"#;

/// A roster entry: an incident commander with these public keys (and `extra` lines).
fn commander(name: &str, keys: &[&str], extra: &str) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "[operators.{name}]\nroles = [\"incident-commander\"]\nkeys = [{}]\n{extra}\n",
        keys.join(", ")
    )
}

/// Writes the roster and the cutover runbook into `dir`.
fn setup(dir: &Path, roster: &str, runbook: &str) {
    std::fs::write(dir.join("operators.toml"), roster).expect("roster");
    std::fs::write(dir.join("cutover.drover"), runbook).expect("runbook");
}

fn spawn_run(dir: &Path, run: &str, key: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["run", "cutover.drover", "--run-id", run, "--key"])
        .arg(key)
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drover run")
}

fn refused(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(needle),
        "expected `{needle}` in: {}",
        text(&out.stderr)
    );
}

#[test]
fn four_eyes_counts_roster_operators_and_only_real_signatures_approve() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, alice_pub) = keygen(d, "alice");
    let (alice2, alice2_pub) = keygen(d, "alice2");
    let (bob, bob_pub) = keygen(d, "bob");
    let (mallory, _) = keygen(d, "mallory");
    setup(
        d,
        &(commander("alice", &[&alice_pub, &alice2_pub], "") + &commander("bob", &[&bob_pub], "")),
        RUNBOOK,
    );

    // With a roster, nobody starts a run by typing a name.
    let typed = drover(d, &["run", "cutover.drover", "--as", "alice"]);
    assert_eq!(typed.status.code(), Some(2), "{}", text(&typed.stderr));

    let child = spawn_run(d, "r1", &alice);
    wait_until("the gate", || waiting(d, "r1"));
    let st = text(&drover(d, &["status", "r1", "--format", "json"]).stdout);
    assert!(
        st.contains("\"initiator\": \"alice\""),
        "the signer started it: {st}"
    );

    // Typing another name is refused; alice's keys, under any name, are alice.
    refused(
        &drover(
            d,
            &[
                "approve",
                "r1",
                "gate",
                "--as",
                "bob",
                "--role",
                "incident-commander",
            ],
        ),
        "not a typed name",
    );
    let own = drover(
        d,
        &[
            "approve",
            "r1",
            "gate",
            "--key",
            alice.to_str().expect("utf-8"),
        ],
    );
    refused(&own, "four eyes");
    let other_key = drover(
        d,
        &[
            "approve",
            "r1",
            "gate",
            "--key",
            alice2.to_str().expect("utf-8"),
        ],
    );
    refused(&other_key, "four eyes");
    // A key outside the roster.
    refused(
        &drover(
            d,
            &[
                "approve",
                "r1",
                "gate",
                "--key",
                mallory.to_str().expect("utf-8"),
            ],
        ),
        "not in the operator roster",
    );

    // bob signs with OpenSSH itself; a changed byte first, then the real thing.
    let printed = drover(d, &["approve", "r1", "gate", "--print-statement"]);
    assert_eq!(printed.status.code(), Some(0));
    let statement = text(&printed.stdout);
    assert!(statement.contains("run: r1\nstep: gate\n"), "{statement}");
    std::fs::write(d.join("s.txt"), &statement).expect("write");
    let signed = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "drover", "-f"])
        .arg(&bob)
        .arg(d.join("s.txt"))
        .output()
        .expect("ssh-keygen -Y sign");
    assert!(signed.status.success(), "{}", text(&signed.stderr));
    std::fs::write(
        d.join("s.txt"),
        statement.replace("step: gate", "step: gatf"),
    )
    .expect("tamper");
    refused(
        &drover(d, &["approve", "r1", "gate", "--signature", "s.txt.sig"]),
        "does not match",
    );
    std::fs::write(d.join("s.txt"), &statement).expect("restore");
    let ok = drover(d, &["approve", "r1", "gate", "--signature", "s.txt.sig"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("by bob (signature verified)"));

    let out = child.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // The same signature replayed to another run is refused.
    let child = spawn_run(d, "r2", &alice);
    wait_until("the second gate", || waiting(d, "r2"));
    refused(
        &drover(d, &["approve", "r2", "gate", "--signature", "s.txt.sig"]),
        "is for run `r1`, not `r2`",
    );
    // Every refusal is in the audit log.
    let audit = text(&drover(d, &["audit", "show", "r1"]).stdout);
    for why in [
        "not a typed name",
        "four eyes",
        "not in the operator roster",
        "does not match",
    ] {
        assert!(audit.contains(why), "audited: {why}\n{audit}");
    }
    assert!(text(&drover(d, &["audit", "show", "r2"]).stdout).contains("is for run `r1`"));
    let ok = drover(
        d,
        &[
            "approve",
            "r2",
            "gate",
            "--key",
            bob.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let out = child.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // The report shows who approved by which key.
    let html = text(&drover(d, &["report", "r1", "--format", "html"]).stdout);
    assert!(
        html.contains("<td>bob</td>")
            && html.contains("key SHA256:")
            && html.contains("(ssh-ed25519)"),
        "{html}"
    );
    assert!(!html.contains("unauthenticated"), "{html}");

    // The evidence bundle carries the roster and every signed statement, re-verified offline.
    let made = drover(d, &["key", "generate", "--signing", "file:sign.key"]);
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let exported = drover(
        d,
        &[
            "evidence",
            "export",
            "r1",
            "b.tar",
            "--signing-key",
            "file:sign.key",
        ],
    );
    assert_eq!(
        exported.status.code(),
        Some(0),
        "{}",
        text(&exported.stderr)
    );
    let verify = |name: &str| {
        drover(
            d,
            &["evidence", "verify", name, "--public-key", "sign.key.pub"],
        )
    };
    let ok = verify("b.tar");
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).contains("2 signed statement(s) verified"),
        "{}",
        text(&ok.stdout)
    );
    // Someone with the bundle key swaps bob's approval signature for another valid one and
    // re-seals the bundle: the manifest verifies, the approval does not.
    let mut files =
        drover_evidence::read(&std::fs::read(d.join("b.tar")).expect("bundle")).expect("read");
    let manifest: serde_json::Value =
        serde_json::from_slice(&files["MANIFEST.json"]).expect("manifest");
    let mut statements: Vec<serde_json::Value> =
        serde_json::from_slice(&files["identity/statements.json"]).expect("statements");
    let start_sig = statements[0]["signature"].clone();
    statements[1]["signature"] = start_sig;
    files.insert(
        "identity/statements.json".into(),
        serde_json::to_vec(&statements).expect("json"),
    );
    let order: Vec<String> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["name"].as_str().expect("name").to_owned())
        .collect();
    let subject: std::collections::BTreeMap<String, String> =
        serde_json::from_value(manifest["subject"].clone()).expect("subject");
    let key = drover_evidence::read_signing_key(&d.join("sign.key")).expect("key");
    let resealed = drover_evidence::seal(
        &order
            .iter()
            .map(|n| (n.clone(), files[n].clone()))
            .collect::<Vec<_>>(),
        subject,
        &key,
    )
    .expect("seal");
    std::fs::write(d.join("forged.tar"), resealed).expect("write");
    let bad = verify("forged.tar");
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stdout));
    assert!(
        text(&bad.stderr).contains("the approval of `gate` by bob does not verify"),
        "{}",
        text(&bad.stderr)
    );
}

/// A real `ssh-agent`, stopped when dropped.
struct Agent {
    pid: String,
    sock: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

#[test]
fn ssh_agent_signs_the_start_and_the_approval_without_a_key_file_argument() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (_, alice_pub) = keygen(d, "alice");
    let (bob, bob_pub) = keygen(d, "bob");
    setup(
        d,
        &(commander("alice", &[&alice_pub], "") + &commander("bob", &[&bob_pub], "")),
        RUNBOOK,
    );
    let sock = d.join("agent.sock");
    let out = Command::new("ssh-agent")
        .arg("-a")
        .arg(&sock)
        .output()
        .expect("ssh-agent");
    let pid = text(&out.stdout)
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("pid")
        .to_owned();
    let agent = Agent { pid, sock };
    let added = Command::new("ssh-add")
        .arg("-q")
        .arg(d.join("alice_key"))
        .env("SSH_AUTH_SOCK", &agent.sock)
        .output()
        .expect("ssh-add");
    assert!(added.status.success());
    let child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["run", "cutover.drover", "--run-id", "a1"])
        .current_dir(d)
        .env("SSH_AUTH_SOCK", &agent.sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drover run");
    wait_until("the gate", || waiting(d, "a1"));
    // alice's agent signs for alice: four eyes refuses it.
    let own = drover_env(
        d,
        &["approve", "a1", "gate"],
        &[("SSH_AUTH_SOCK", &agent.sock)],
    );
    refused(&own, "four eyes");
    let ok = drover(
        d,
        &[
            "approve",
            "a1",
            "gate",
            "--key",
            bob.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let out = child.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Without an agent or a key, the start is refused before anything runs.
    let none = drover(d, &["run", "cutover.drover", "--run-id", "a2"]);
    assert_eq!(none.status.code(), Some(1), "{}", text(&none.stderr));
    assert!(
        text(&none.stderr).contains("SSH_AUTH_SOCK"),
        "{}",
        text(&none.stderr)
    );
    drop(agent);
}

fn approve_with(dir: &Path, run: &str, key: &Path, totp: Option<&str>, secret: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drover"));
    c.args(["approve", run, "gate", "--key"])
        .arg(key)
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .env("BOB_TOTP", secret);
    if let Some(code) = totp {
        c.args(["--totp", code]);
    }
    c.output().expect("drover approve")
}

#[test]
fn a_step_up_approval_needs_a_current_unused_totp_code() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, alice_pub) = keygen(d, "alice");
    let (bob, bob_pub) = keygen(d, "bob");
    // The RFC 6238 test secret, as an authenticator app shows it.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    setup(
        d,
        &(commander("alice", &[&alice_pub], "")
            + &commander("bob", &[&bob_pub], "totp = \"env(BOB_TOTP)\"\n")),
        &RUNBOOK.replace(
            "roles  = [\"incident-commander\"]",
            "roles  = [\"incident-commander\"]\n    mfa    = true",
        ),
    );
    let key = drover_identity::totp::decode_base32(secret).expect("base32");
    #[allow(
        clippy::disallowed_methods,
        reason = "a TOTP code is for the wall clock"
    )]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let step = now / 30;
    let current = drover_identity::totp::code_at(&key, step);
    let expired = drover_identity::totp::code_at(&key, step - 3);

    let child = spawn_run(d, "t1", &alice);
    wait_until("the gate", || waiting(d, "t1"));
    refused(
        &approve_with(d, "t1", &bob, None, secret),
        "needs a current TOTP code",
    );
    refused(
        &approve_with(d, "t1", &bob, Some("000000"), secret),
        "wrong or expired",
    );
    refused(
        &approve_with(d, "t1", &bob, Some(&expired), secret),
        "wrong or expired",
    );
    let ok = approve_with(d, "t1", &bob, Some(&current), secret);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let out = child.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // The same code again, in another run: refused (a code is good once).
    let child = spawn_run(d, "t2", &alice);
    wait_until("the gate", || waiting(d, "t2"));
    refused(
        &approve_with(d, "t2", &bob, Some(&current), secret),
        "used before",
    );
    let audit = text(&drover(d, &["audit", "show", "t1"]).stdout);
    assert!(audit.contains("wrong or expired"), "{audit}");
    assert!(
        !audit.contains(secret) && !audit.contains(&current),
        "no secret, no code in the log"
    );
    let mut c = child;
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn a_signed_denial_fails_the_gate_and_is_kept_as_evidence() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, alice_pub) = keygen(d, "alice");
    let (bob, bob_pub) = keygen(d, "bob");
    setup(
        d,
        &(commander("alice", &[&alice_pub], "") + &commander("bob", &[&bob_pub], "")),
        RUNBOOK,
    );
    let child = spawn_run(d, "d1", &alice);
    wait_until("the gate", || waiting(d, "d1"));
    let bob_key = bob.to_str().expect("utf-8");
    let no_reason = drover(d, &["approve", "d1", "gate", "--key", bob_key, "--deny"]);
    assert_eq!(no_reason.status.code(), Some(2), "a denial needs a reason");
    let denied = drover(
        d,
        &[
            "approve",
            "d1",
            "gate",
            "--key",
            bob_key,
            "--deny",
            "--reason",
            "primary is healthy again",
        ],
    );
    assert_eq!(denied.status.code(), Some(0), "{}", text(&denied.stderr));
    let out = child.wait_with_output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the run stops: {}",
        text(&out.stdout)
    );
    let st = text(&drover(d, &["status", "d1"]).stdout);
    assert!(
        st.contains("denied by bob: primary is healthy again"),
        "{st}"
    );
    assert!(
        !st.contains("done           cut"),
        "the gated step never ran: {st}"
    );
    let audit = text(&drover(d, &["audit", "show", "d1"]).stdout);
    assert!(audit.contains("\"outcome\":\"denied\""), "{audit}");
    let made = drover(d, &["key", "generate", "--signing", "file:sign.key"]);
    assert_eq!(made.status.code(), Some(0));
    let exported = drover(
        d,
        &[
            "evidence",
            "export",
            "d1",
            "b.tar",
            "--signing-key",
            "file:sign.key",
        ],
    );
    assert_eq!(
        exported.status.code(),
        Some(0),
        "{}",
        text(&exported.stderr)
    );
    let ok = drover(
        d,
        &[
            "evidence",
            "verify",
            "b.tar",
            "--public-key",
            "sign.key.pub",
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).contains("2 signed statement(s) verified"),
        "{}",
        text(&ok.stdout)
    );
}

#[test]
fn a_roster_changed_during_the_run_is_refused_for_that_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, alice_pub) = keygen(d, "alice");
    let (bob, bob_pub) = keygen(d, "bob");
    let (mallory, mallory_pub) = keygen(d, "mallory");
    let roster = commander("alice", &[&alice_pub], "") + &commander("bob", &[&bob_pub], "");
    setup(d, &roster, RUNBOOK);
    let child = spawn_run(d, "m1", &alice);
    wait_until("the gate", || waiting(d, "m1"));
    // mallory adds herself to the roster during the incident.
    std::fs::write(
        d.join("operators.toml"),
        roster.clone() + &commander("mallory", &[&mallory_pub], ""),
    )
    .expect("edit");
    let m = drover(
        d,
        &[
            "approve",
            "m1",
            "gate",
            "--key",
            mallory.to_str().expect("utf-8"),
        ],
    );
    refused(&m, "changed since run m1 started");
    let b = drover(
        d,
        &[
            "approve",
            "m1",
            "gate",
            "--key",
            bob.to_str().expect("utf-8"),
        ],
    );
    refused(&b, "changed since run m1 started");
    let audit = text(&drover(d, &["audit", "show", "m1"]).stdout);
    assert!(audit.contains("changed since run m1 started"), "{audit}");
    // Put back, bob's approval goes through; mallory's key was never in this run's roster.
    std::fs::write(d.join("operators.toml"), &roster).expect("restore");
    refused(
        &drover(
            d,
            &[
                "approve",
                "m1",
                "gate",
                "--key",
                mallory.to_str().expect("utf-8"),
            ],
        ),
        "not in the operator roster",
    );
    let b = drover(
        d,
        &[
            "approve",
            "m1",
            "gate",
            "--key",
            bob.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(b.status.code(), Some(0), "{}", text(&b.stderr));
    let out = child.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_roster_given_with_operators_governs_a_runbook_that_names_none() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, alice_pub) = keygen(d, "alice");
    let (bob, bob_pub) = keygen(d, "bob");
    let roster = commander("alice", &[&alice_pub], "") + &commander("bob", &[&bob_pub], "");
    let bare = RUNBOOK.replace("  operators = \"operators.toml\"\n", "");
    std::fs::create_dir(d.join("team")).expect("mkdir");
    std::fs::write(d.join("team/roster.toml"), &roster).expect("roster");
    std::fs::write(d.join("cutover.drover"), &bare).expect("runbook");

    // The roles of the approval steps are checked against the roster given.
    let wrong = roster.replace("incident-commander", "dba");
    std::fs::write(d.join("team/wrong.toml"), wrong).expect("roster");
    let c = drover(
        d,
        &["check", "cutover.drover", "--operators", "team/wrong.toml"],
    );
    assert_eq!(c.status.code(), Some(1), "{}", text(&c.stderr));
    assert!(text(&c.stderr).contains("DR0035"), "{}", text(&c.stderr));

    // With a roster, a typed name does not start a run.
    let typed = drover(
        d,
        &[
            "run",
            "cutover.drover",
            "--operators",
            "team/roster.toml",
            "--as",
            "alice",
        ],
    );
    assert_eq!(typed.status.code(), Some(2), "{}", text(&typed.stderr));

    let child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "run",
            "cutover.drover",
            "--operators",
            "team/roster.toml",
            "--run-id",
            "o1",
            "--key",
        ])
        .arg(&alice)
        .current_dir(d)
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drover run");
    wait_until("the gate", || waiting(d, "o1"));
    // The run's roster is the one given: alice cannot approve her own start, a typed name is
    // refused, bob's signature approves.
    refused(
        &drover(
            d,
            &[
                "approve",
                "o1",
                "gate",
                "--key",
                alice.to_str().expect("utf-8"),
            ],
        ),
        "alice",
    );
    let typed = drover(d, &["approve", "o1", "gate", "--as", "bob"]);
    assert_ne!(typed.status.code(), Some(0), "{}", text(&typed.stderr));
    let b = drover(
        d,
        &[
            "approve",
            "o1",
            "gate",
            "--key",
            bob.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(b.status.code(), Some(0), "{}", text(&b.stderr));
    let out = child.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

const BREAK_GLASS_RUNBOOK: &str = r#"runbook "signed cutover" {
  rto       = 1h
  rpo       = 1h
  modes     = [failover]
  operators = "operators.toml"
}

step gate {
  action = approval
  with {
    prompt      = "cut over?"
    approvers   = 2
    roles       = ["incident-commander"]
    break_glass = true
  }
}

step page_privacy_officer {
  action = notify
  tags   = [break_glass]
  with {
    message = "BREAK-GLASS used on the EHR cutover"
  }
}

step cut {
  action = shell
  after  = [gate]
  with {
    command = "echo cut"
  }
}

milestone done {
  after     = [cut]
  stops_rto = true
}
"#;

#[test]
fn a_break_glass_operator_approves_alone_with_a_distinct_record_and_the_tagged_notify_fires() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, alice_pub) = keygen(d, "alice");
    let (bob, bob_pub) = keygen(d, "bob");
    let (carol, carol_pub) = keygen(d, "carol");
    let roster = commander("alice", &[&alice_pub], "")
        + &commander("bob", &[&bob_pub], "break_glass = true")
        + &commander("carol", &[&carol_pub], "");
    setup(d, &roster, BREAK_GLASS_RUNBOOK);
    let child = spawn_run(d, "g1", &alice);
    wait_until("the gate", || waiting(d, "g1"));
    let key = |p: &Path| p.to_str().expect("utf-8").to_owned();

    // The statement says what is decided: a break-glass, with its reason.
    let printed = drover(
        d,
        &[
            "approve",
            "g1",
            "gate",
            "--break-glass",
            "--reason",
            "nobody else reachable",
            "--print-statement",
        ],
    );
    let printed = text(&printed.stdout);
    assert!(printed.contains("kind: break-glass"), "{printed}");
    assert!(printed.contains("nobody else reachable"), "{printed}");

    // Not marked break_glass in the roster: refused, audited.
    refused(
        &drover(
            d,
            &[
                "approve",
                "g1",
                "gate",
                "--break-glass",
                "--reason",
                "in a hurry",
                "--key",
                &key(&carol),
            ],
        ),
        "not marked `break_glass = true`",
    );
    // A break-glass needs a reason.
    let no_reason = drover(
        d,
        &[
            "approve",
            "g1",
            "gate",
            "--break-glass",
            "--key",
            &key(&bob),
        ],
    );
    assert_eq!(
        no_reason.status.code(),
        Some(2),
        "{}",
        text(&no_reason.stderr)
    );

    let b = drover(
        d,
        &[
            "approve",
            "g1",
            "gate",
            "--break-glass",
            "--reason",
            "nobody else reachable",
            "--key",
            &key(&bob),
        ],
    );
    assert_eq!(b.status.code(), Some(0), "{}", text(&b.stderr));
    let out = child.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        said.contains("BREAK-GLASS used on the EHR cutover"),
        "{said}"
    );

    let audit = text(&drover(d, &["audit", "show", "g1"]).stdout);
    let line = audit
        .lines()
        .find(|l| l.contains("approval.break_glass"))
        .unwrap_or_else(|| panic!("no break-glass record: {audit}"));
    assert!(line.contains("bob"), "{line}");
    assert!(line.contains("nobody else reachable"), "{line}");
    assert!(
        audit.contains("carol") && audit.contains("refused"),
        "the refusal is audited: {audit}"
    );
    let verify = drover(d, &["audit", "verify", "g1"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));

    // The evidence bundle carries the break-glass statement and verifies it offline.
    let kg = drover(d, &["key", "generate", "--signing", "file:ev.key"]);
    assert_eq!(kg.status.code(), Some(0), "{}", text(&kg.stderr));
    let ex = drover(
        d,
        &[
            "evidence",
            "export",
            "g1",
            "g1.zip",
            "--signing-key",
            "file:ev.key",
        ],
    );
    assert_eq!(ex.status.code(), Some(0), "{}", text(&ex.stderr));
    let v = drover(
        d,
        &["evidence", "verify", "g1.zip", "--public-key", "ev.key.pub"],
    );
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}{}",
        text(&v.stdout),
        text(&v.stderr)
    );
}
