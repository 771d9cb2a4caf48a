//! Against the real OpenSSH tools: keys made by `ssh-keygen`, statements signed by
//! `ssh-keygen -Y sign`, by a real `ssh-agent`, and by Drover; all verified by Drover, and
//! Drover's signatures verified by `ssh-keygen -Y verify`.

use drover_identity::{Decision, Roster, Statement, VerifyError, agent::Agent, sign, verify};
use std::path::{Path, PathBuf};
use std::process::Command;

fn keygen(dir: &Path, name: &str, kind: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            kind,
            "-N",
            "",
            "-C",
            &format!("{name}@test"),
            "-f",
        ])
        .arg(&path)
        .output()
        .expect("ssh-keygen runs (Debian's openssh-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
    (path, public.trim().to_owned())
}

fn roster(dir: &Path, entries: &[(&str, &str, &str)]) -> Roster {
    let mut text = String::new();
    for (name, role, key) in entries {
        text.push_str(&format!(
            "[operators.{name}]\nroles = [\"{role}\"]\nkeys = [\"{key}\"]\n\n"
        ));
    }
    Roster::parse(&text, dir).unwrap_or_else(|e| panic!("{e:?}"))
}

fn statement(run: &str, step: &str) -> String {
    Statement {
        kind: Decision::Approve,
        run_id: run.into(),
        step: step.into(),
        plan_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        inputs_sha256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".into(),
        comment: String::new(),
        time: "2026-12-03T02:04:00Z".into(),
        nonce: drover_identity::statement::nonce(),
        totp: None,
    }
    .to_text()
    .expect("text")
}

fn keygen_sign(key: &Path, text: &str, dir: &Path) -> String {
    let msg = dir.join("statement.txt");
    std::fs::write(&msg, text).expect("write");
    // ssh-keygen leaves an existing signature file alone.
    let _ = std::fs::remove_file(msg.with_extension("txt.sig"));
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "drover", "-f"])
        .arg(key)
        .arg(&msg)
        .output()
        .expect("ssh-keygen -Y sign");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(msg.with_extension("txt.sig")).expect("sig")
}

#[test]
fn ssh_keygen_signatures_verify_and_name_the_roster_operator() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (bob_key, bob_pub) = keygen(d, "bob", "ed25519");
    let (carol_key, carol_pub) = keygen(d, "carol", "ecdsa");
    let (mallory_key, _) = keygen(d, "mallory", "ed25519");
    let r = roster(
        d,
        &[
            ("bob", "dba", &bob_pub),
            ("carol", "incident-commander", &carol_pub),
        ],
    );
    let text = statement("r1", "approve_cutover");

    let signer = verify(&r, &text, &keygen_sign(&bob_key, &text, d)).expect("bob verifies");
    assert_eq!(signer.operator, "bob");
    assert_eq!(signer.roles, ["dba"]);
    assert!(signer.fingerprint.starts_with("SHA256:"), "{signer:?}");
    let signer = verify(&r, &text, &keygen_sign(&carol_key, &text, d)).expect("carol verifies");
    assert_eq!(signer.operator, "carol");
    assert_eq!(signer.algorithm, "ecdsa-sha2-nistp256");

    // A key not in the roster, a changed byte, another statement, another namespace.
    let e = verify(&r, &text, &keygen_sign(&mallory_key, &text, d)).expect_err("unknown key");
    assert!(matches!(e, VerifyError::UnknownKey(_)), "{e}");
    let bob_sig = keygen_sign(&bob_key, &text, d);
    let tampered = text.replace("step: approve_cutover", "step: approve_cutovr");
    assert!(matches!(
        verify(&r, &tampered, &bob_sig),
        Err(VerifyError::Mismatch { .. })
    ));
    let other = statement("r2", "approve_cutover");
    assert!(
        verify(&r, &other, &bob_sig).is_err(),
        "a signature for run r1 is not one for r2"
    );
    let msg = d.join("git.txt");
    std::fs::write(&msg, &text).expect("write");
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "git", "-f"])
        .arg(&bob_key)
        .arg(&msg)
        .output()
        .expect("sign");
    assert!(out.status.success());
    let git_sig = std::fs::read_to_string(d.join("git.txt.sig")).expect("sig");
    assert!(matches!(
        verify(&r, &text, &git_sig),
        Err(VerifyError::Namespace(n)) if n == "git"
    ));
    // Any byte of the signature changed.
    let mut bytes = bob_sig.clone().into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    assert!(verify(&r, &text, &String::from_utf8_lossy(&bytes)).is_err());
}

#[test]
fn drovers_own_signatures_verify_with_ssh_keygen() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (key, public) = keygen(d, "alice", "ed25519");
    let text = statement("r1", "");
    let sig = sign::with_key_file(&key, &text).expect("sign");
    let r = roster(d, &[("alice", "incident-commander", &public)]);
    assert_eq!(verify(&r, &text, &sig).expect("verifies").operator, "alice");
    std::fs::write(d.join("allowed"), format!("alice {public}\n")).expect("write");
    std::fs::write(d.join("sig"), &sig).expect("write");
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-n", "drover", "-I", "alice", "-f"])
        .arg(d.join("allowed"))
        .arg("-s")
        .arg(d.join("sig"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ssh-keygen -Y verify");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "OpenSSH verifies Drover's signature");
}

#[test]
fn a_passphrase_protected_key_file_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("locked");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let e = sign::with_key_file(&path, "x").expect_err("encrypted");
    assert!(e.to_string().contains("ssh-add"), "{e}");
    assert!(!e.to_string().contains("correct horse"));
}

/// A real `ssh-agent`, stopped when dropped.
struct AgentProcess {
    pid: String,
    sock: PathBuf,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

fn start_agent(dir: &Path) -> AgentProcess {
    let sock = dir.join("agent.sock");
    let out = Command::new("ssh-agent")
        .arg("-a")
        .arg(&sock)
        .output()
        .expect("ssh-agent runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = text
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("pid")
        .to_owned();
    AgentProcess { pid, sock }
}

#[test]
fn a_real_ssh_agent_signs_with_the_roster_key_it_holds() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let agent = start_agent(d);
    let (other, _) = keygen(d, "other", "ed25519");
    let (bob_key, bob_pub) = keygen(d, "bob", "ed25519");
    let (rsa_key, rsa_pub) = keygen(d, "rsa", "rsa");
    for k in [&other, &bob_key, &rsa_key] {
        let st = Command::new("ssh-add")
            .arg("-q")
            .arg(k)
            .env("SSH_AUTH_SOCK", &agent.sock)
            .output()
            .expect("ssh-add");
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    let r = roster(d, &[("bob", "dba", &bob_pub), ("rob", "dba", &rsa_pub)]);
    let text = statement("r1", "gate");
    let mut a = Agent::connect(&agent.sock).expect("connect");
    assert_eq!(a.keys().expect("keys").len(), 3);
    let sig = a
        .sign_with_first(&text, |k| r.operator_with_key(k).is_some())
        .expect("sign");
    assert_eq!(verify(&r, &text, &sig).expect("verifies").operator, "bob");
    // RSA keys sign with SHA-2 through the agent.
    let rsa = ssh_key::PublicKey::from_openssh(&rsa_pub).expect("rsa");
    let sig = a.sign(rsa.key_data(), &text).expect("rsa sign");
    assert_eq!(verify(&r, &text, &sig).expect("verifies").operator, "rob");
}

#[test]
fn roster_problems_are_named_with_their_place() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (_, bob_pub) = keygen(d, "bob", "ed25519");
    let text = format!(
        "[operators.bob]\nroles = [\"dba\"]\nkeys = [\"{bob_pub}\"]\n\n[operators.eve]\nroles = [\"dba\"]\nkeys = [\"{bob_pub}\", \"ssh-ed25519 not-base64!\"]\ntotp = \"JBSWY3DPEHPK3PXP\"\n\n[operators.nokey]\nroles = []\n"
    );
    let issues = Roster::parse(&text, d).expect_err("problems");
    let all: Vec<String> = issues
        .iter()
        .map(|i| {
            let (l, c) = i.line_col(&text);
            format!("{l}:{c} {}", i.message)
        })
        .collect();
    assert!(
        all.iter()
            .any(|m| m.starts_with("7:") && m.contains("listed under `bob` and `eve`")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|m| m.contains("key 2 of operator `eve` is not an OpenSSH public key")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|m| m.starts_with("8:") && m.contains("must be a reference")),
        "{all:?}"
    );
    assert!(
        all.iter().any(|m| m.contains("`nokey` has no key")),
        "{all:?}"
    );
    assert!(
        !all.iter().any(|m| m.contains("JBSWY3DPEHPK3PXP")),
        "the inline secret is not repeated"
    );
}
