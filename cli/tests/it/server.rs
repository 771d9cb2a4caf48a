//! `drover server` as a process: SSH-key login, a run started by a signed statement over the API,
//! the server killed with SIGKILL mid-run and started again: the run resumes, and no step the
//! journal holds as done runs again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub(crate) fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}_key"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    (path, public.trim().to_owned())
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub(crate) fn pause(ms: u64) {
    #[allow(clippy::disallowed_methods, reason = "polling a real process")]
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start(dir: &Path, port: u16) -> Server {
    start_printing_to(dir, port, Stdio::null())
}

/// Starts the server with its standard output going to `out`; returns once it answers.
fn start_printing_to(dir: &Path, port: u16, out: impl Into<Stdio>) -> Server {
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args([
                "server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--operators",
                "operators.toml",
                "--runbooks",
                "runbooks",
            ])
            .current_dir(dir)
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("drover server"),
    );
    let http = reqwest::blocking::Client::new();
    for _ in 0..400 {
        if http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return server;
        }
        pause(25);
    }
    let _ = server.0.kill();
    panic!("the server did not come up");
}

/// Logs in to the server at `base` with the SSH key `key`; returns the bearer token.
pub(crate) fn login(base: &str, key: &Path) -> String {
    let http = reqwest::blocking::Client::new();
    let c: serde_json::Value = http
        .post(format!("{base}/api/v1/login/challenge"))
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("challenge");
    let challenge = c["challenge"].as_str().expect("text");
    let sig =
        drover_identity::sign::with_key_file_in(drover_identity::LOGIN_NAMESPACE, key, challenge)
            .expect("sign");
    let login: serde_json::Value = http
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({ "challenge": challenge, "signature": sig }))
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("login");
    login["token"].as_str().expect("token").to_owned()
}

/// Starts `runbook` through the server's API, signed with `key`; returns the run id.
pub(crate) fn start_run(base: &str, token: &str, key: &Path, runbook: &str) -> String {
    let http = reqwest::blocking::Client::new();
    let prep: serde_json::Value = http
        .post(format!("{base}/api/v1/runs/prepare"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "runbook": runbook }))
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("prepare");
    let run = prep["run_id"].as_str().expect("run").to_owned();
    let statement = prep["statement"].as_str().expect("statement");
    let signature = drover_identity::sign::with_key_file(key, statement).expect("sign");
    let started = http
        .post(format!("{base}/api/v1/runs"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "runbook": runbook,
            "run_id": run,
            "statement": statement,
            "signature": signature,
        }))
        .send()
        .expect("start");
    assert_eq!(started.status(), 202, "{:?}", started.text());
    run
}

const RUNBOOK: &str = r#"runbook "two steps" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

step first {
  action = shell
  with {
    command = "echo ran >> first.log"
  }
}

step slow {
  action = shell
  after  = [first]
  with {
    command = "sleep 2; echo ran >> slow.log"
  }
}

milestone done {
  after     = [slow]
  stops_rto = true
}
"#;

#[test]
fn a_run_started_through_the_server_survives_a_sigkill_of_the_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, public) = keygen(d, "alice");
    std::fs::write(
        d.join("operators.toml"),
        format!("[operators.alice]\nroles = [\"incident-commander\"]\nkeys = [\"{public}\"]\n"),
    )
    .expect("roster");
    std::fs::create_dir(d.join("runbooks")).expect("dir");
    std::fs::write(d.join("runbooks/two.drover"), RUNBOOK).expect("runbook");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start(d, port);
    let http = reqwest::blocking::Client::new();

    let token = login(&base, &alice);
    // A second session, logged out before the kill: revoked, it stays revoked after the restart.
    let gone = login(&base, &alice);
    let out = http
        .delete(format!("{base}/api/v1/session"))
        .bearer_auth(&gone)
        .send()
        .expect("logout");
    assert!(out.status().is_success());

    let run = start_run(&base, &token, &alice, "two.drover");

    // Once `first` is journaled as done and `slow` is under way: SIGKILL.
    let state = |token: &str| -> serde_json::Value {
        http.get(format!("{base}/api/v1/runs/{run}"))
            .bearer_auth(token)
            .send()
            .and_then(reqwest::blocking::Response::json)
            .unwrap_or_default()
    };
    let step_state = |v: &serde_json::Value, id: &str| -> String {
        v["record"]["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["id"] == id))
            .and_then(|x| x["state"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    let mut ready = false;
    for _ in 0..400 {
        let v = state(&token);
        if step_state(&v, "first") == "succeeded" && step_state(&v, "slow") == "running" {
            ready = true;
            break;
        }
        pause(10);
    }
    assert!(ready, "first done and slow running");
    server.0.kill().expect("SIGKILL");
    server.0.wait().expect("reaped");
    drop(server);

    // Started again, the server resumes the run; sessions survive (only their token hashes are
    // kept), revocations too.
    let _server = start(d, port);
    let status = |t: &str| {
        http.get(format!("{base}/api/v1/runs/{run}"))
            .bearer_auth(t)
            .send()
            .expect("status")
            .status()
    };
    assert_eq!(status(&token), 200);
    assert_eq!(status(&gone), 401);
    // Kept as their hashes in the journal, never as tokens.
    for f in std::fs::read_dir(d.join(".drover")).expect("state") {
        let kept = std::fs::read(f.expect("entry").path()).unwrap_or_default();
        for t in [&token, &gone] {
            assert!(
                !kept.windows(t.len()).any(|w| w == t.as_bytes()),
                "a token was stored"
            );
        }
    }
    let mut done = false;
    for _ in 0..800 {
        let out = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["status", &run, "--format", "json"])
            .current_dir(d)
            .output()
            .expect("status");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["outcome"] == "succeeded" {
            done = true;
            break;
        }
        pause(25);
    }
    assert!(done, "the run finished after the restart");
    let first = std::fs::read_to_string(d.join("first.log")).expect("first ran");
    assert_eq!(
        first.lines().count(),
        1,
        "a journaled-complete step ran again"
    );
}

#[test]
fn the_systemd_unit_verifies_where_systemd_analyze_exists() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/drover-server.service"),
    )
    .expect("deploy/drover-server.service");
    for hardening in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "User=drover",
        "StateDirectory=drover",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(hardening), "the unit lacks {hardening}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        return; // not on this machine: the text checks above still ran
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("drover-server.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/drover", env!("CARGO_BIN_EXE_drover")),
    )
    .expect("unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const GATED: &str = r#"runbook "gated" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

step gate {
  action = approval
  with {
    prompt = "go?"
    roles  = ["incident-commander"]
  }
}

step work {
  action = shell
  after  = [gate]
  with {
    command = "echo work"
  }
}

milestone done {
  after     = [work]
  stops_rto = true
}
"#;

#[test]
fn two_cli_operators_with_their_own_keys_share_one_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, alice_pub) = keygen(d, "alice");
    let (bob, bob_pub) = keygen(d, "bob");
    std::fs::write(
        d.join("operators.toml"),
        format!(
            "[operators.alice]\nroles = [\"incident-commander\"]\nkeys = [\"{alice_pub}\"]\n[operators.bob]\nroles = [\"incident-commander\"]\nkeys = [\"{bob_pub}\"]\n"
        ),
    )
    .expect("roster");
    std::fs::create_dir(d.join("runbooks")).expect("dir");
    std::fs::write(d.join("runbooks/gated.drover"), GATED).expect("runbook");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = start(d, port);
    // Each operator on their own "laptop": their own config directory, their own key.
    let laptop = |who: &str| {
        let home = d.join(format!("{who}-laptop"));
        std::fs::create_dir_all(&home).expect("laptop");
        home
    };
    let cli = |who: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .current_dir(laptop(who))
            .env("DROVER_CONFIG_DIR", laptop(who).join("config"))
            .env("DROVER_SERVER", &url)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .expect("drover")
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    // Without a login, nothing.
    let o = cli("alice", &["status", "latest"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not logged in"), "{}", text(&o));
    for (who, key) in [("alice", &alice), ("bob", &bob)] {
        let o = cli(who, &["login", "--key", key.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains(&format!("as {who}")), "{}", text(&o));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(laptop(who).join("config/sessions.json"))
                .expect("token file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
    let o = cli(
        "alice",
        &[
            "run",
            "gated.drover",
            "--key",
            alice.to_str().expect("utf-8"),
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let started: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let run = started["run_id"].as_str().expect("run").to_owned();
    let mut waiting = false;
    for _ in 0..400 {
        let o = cli("bob", &["status", &run, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if v["steps"].as_array().is_some_and(|s| {
            s.iter()
                .any(|x| x["id"] == "gate" && x["state"] == "awaiting_approval")
        }) {
            waiting = true;
            break;
        }
        pause(25);
    }
    assert!(waiting, "the gate waits");
    // The starter's own approval is refused; bob's, signed with his key on his laptop, counts.
    let own = cli(
        "alice",
        &[
            "approve",
            &run,
            "gate",
            "--key",
            alice.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(own.status.code(), Some(1), "{}", text(&own));
    assert!(text(&own).contains("four eyes"), "{}", text(&own));
    let ok = cli(
        "bob",
        &[
            "approve",
            &run,
            "gate",
            "--key",
            bob.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(text(&ok).contains("by bob"), "{}", text(&ok));
    let mut done = false;
    for _ in 0..400 {
        let o = cli("alice", &["status", &run, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if v["outcome"] == "succeeded" {
            done = true;
            break;
        }
        pause(25);
    }
    assert!(done, "the run finished");
}

const SLOW: &str = r#"runbook "slow" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

step first {
  action = shell
  with {
    command = "echo ran >> first.log"
  }
}

step slow {
  action = shell
  after  = [first]
  with {
    command = "sleep 2; echo ran >> slow.log"
  }
}

step last {
  action = shell
  after  = [slow]
  with {
    command = "echo ran >> last.log"
  }
}

milestone done {
  after     = [last]
  stops_rto = true
}
"#;

#[test]
fn over_https_with_a_pinned_certificate_a_run_is_interrupted_resumed_reported_and_exported() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, public) = keygen(d, "alice");
    std::fs::write(
        d.join("operators.toml"),
        format!("[operators.alice]\nroles = [\"incident-commander\"]\nkeys = [\"{public}\"]\n"),
    )
    .expect("roster");
    std::fs::create_dir(d.join("runbooks")).expect("dir");
    std::fs::write(d.join("runbooks/slow.drover"), SLOW).expect("runbook");
    let port = free_port();
    let out = std::fs::File::create(d.join("server.out")).expect("out");
    let _server = start_printing_to(d, port, out);
    let printed = std::fs::read_to_string(d.join("server.out")).expect("server output");
    let fingerprint = printed
        .split_whitespace()
        .skip_while(|w| *w != "fingerprint")
        .nth(1)
        .expect("the server prints its certificate's fingerprint")
        .to_owned();
    assert_eq!(fingerprint.len(), 95, "{printed}");
    let url = format!("https://127.0.0.1:{port}");
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .current_dir(d)
            .env("DROVER_CONFIG_DIR", d.join("config"))
            .env("DROVER_SERVER", &url)
            .env_remove("DROVER_SERVER_FINGERPRINT")
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .expect("drover")
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let key = alice.to_str().expect("utf-8");
    // A self-signed certificate is not trusted without its fingerprint, nor with another one.
    let o = cli(&["login", "--key", key]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--fingerprint"), "{}", text(&o));
    let other = format!("00{}", &fingerprint[2..]);
    let o = cli(&["login", "--key", key, "--fingerprint", &other]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not the pinned one"), "{}", text(&o));
    let o = cli(&["login", "--key", key, "--fingerprint", &fingerprint]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let o = cli(&["run", "slow.drover", "--key", key, "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let started: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let run = started["run_id"].as_str().expect("run").to_owned();
    let status = || -> serde_json::Value {
        serde_json::from_slice(&cli(&["status", &run, "--format", "json"]).stdout)
            .unwrap_or_default()
    };
    let step = |v: &serde_json::Value, id: &str| -> String {
        v["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["id"] == id))
            .and_then(|x| x["state"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    let mut running = false;
    for _ in 0..400 {
        if step(&status(), "slow") == "running" {
            running = true;
            break;
        }
        pause(10);
    }
    assert!(running, "slow is running");
    let o = cli(&["interrupt", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut stopped = false;
    for _ in 0..400 {
        let v = status();
        if v["outcome"] == "interrupted" {
            assert_eq!(step(&v, "slow"), "succeeded", "the running step finished");
            assert_eq!(step(&v, "last"), "pending", "no new step started");
            stopped = true;
            break;
        }
        pause(25);
    }
    assert!(stopped, "the run stopped");
    // Interrupting what is over is refused.
    let o = cli(&["interrupt", &run]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("conflict"), "{}", text(&o));

    let o = cli(&["resume", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("by alice"), "{}", text(&o));
    let mut done = false;
    for _ in 0..400 {
        if status()["outcome"] == "succeeded" {
            done = true;
            break;
        }
        pause(25);
    }
    assert!(done, "the resumed run finished");
    for log in ["first.log", "slow.log", "last.log"] {
        let ran = std::fs::read_to_string(d.join(log)).expect(log);
        assert_eq!(ran.lines().count(), 1, "{log}: each step ran once");
    }

    let o = cli(&["report", "latest", "--format", "md"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains(&run), "{}", text(&o));
    let o = cli(&["evidence", "export", "latest", "bundle.tar"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains(&run), "{}", text(&o));
    let o = cli(&[
        "evidence",
        "verify",
        "bundle.tar",
        "--public-key",
        ".drover/keys/evidence.key.pub",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("signature valid"), "{}", text(&o));
}
