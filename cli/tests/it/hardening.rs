//! The behaviours a new user and an auditor tried at the edges, through the real binary: the
//! quickstart again and again, nothing left running, a taken port, a closed stdout, secrets in
//! no stored or exported artefact, Ctrl-C once and twice, read-only verbs, bad state locations.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_drover")
}

fn drover(dir: &Path, args: &[&str]) -> Output {
    drover_env(dir, args, &[])
}

fn drover_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args).current_dir(dir).env("USER", "alice");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("drover runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` until it holds (real processes need real time; nothing asserts on durations).
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Processes whose command line mentions `needle` (from /proc).
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(format!("{}: {cmd}", name.to_string_lossy()));
            }
        }
    }
    out
}

fn quickstart_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("quickstart.drover");
    std::fs::copy(super::root().join("runbooks/quickstart.drover"), &file).expect("copy");
    let p = dir.path().to_path_buf();
    (dir, p)
}

fn status_json(dir: &Path, state: &str, run: &str) -> serde_json::Value {
    let out = drover(dir, &["status", run, "--state", state, "--format", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[test]
fn the_quickstart_succeeds_again_and_again_and_leaves_nothing_running() {
    let (_tmp, d) = quickstart_dir();
    let port = free_port();
    let var = format!("port={port}");
    let needle = format!("http.server {port}");
    // The README's command twice in the same directory, then once with another state directory.
    for state in [".drover", ".drover", "elsewhere"] {
        let out = drover(
            &d,
            &["run", "quickstart.drover", "--var", &var, "--state", state],
        );
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "state {state}: {stdout}\n{}",
            text(&out.stderr)
        );
        assert!(stdout.contains("outcome: Succeeded"), "{stdout}");
        assert!(!listening(port), "something still listens on {port}");
        assert!(
            processes_with(&needle).is_empty(),
            "{:?}",
            processes_with(&needle)
        );
        let rec = status_json(&d, state, "latest");
        let run = rec["run_id"].as_str().expect("run id").to_owned();
        // The run's files live in its own directory under its state directory.
        let restored = d
            .join(state)
            .join("runs")
            .join(&run)
            .join("restored/ehr.csv");
        assert!(restored.is_file(), "{}", restored.display());
    }
    // Nothing was written outside the state directories.
    let mut top: Vec<String> = std::fs::read_dir(&d)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, [".drover", "elsewhere", "quickstart.drover"]);
    let runs = drover(&d, &["runs", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).expect("runs json");
    assert_eq!(runs.as_array().map(Vec::len), Some(2));
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["mode"], "drill");
}

#[test]
fn the_quickstart_fails_when_another_server_holds_its_port() {
    let (_tmp, d) = quickstart_dir();
    // Another server on the port, serving a data set that looks just like the quickstart's: the
    // leaked server of an earlier run would.
    let other = d.join("other");
    std::fs::create_dir_all(&other).expect("dir");
    let data: String = (1..=5000).map(|i| format!("patient-{i}\n")).collect();
    std::fs::write(other.join("ehr.csv"), data).expect("write");
    let port = free_port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&other)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 starts");
    wait_until("the other server", || listening(port));
    let out = drover(
        &d,
        &["run", "quickstart.drover", "--var", &format!("port={port}")],
    );
    let _ = server.kill();
    let _ = server.wait();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("FAILED  start_service"), "{stdout}");
    assert!(
        stdout.contains("exited with 1 during its start-up grace period"),
        "{stdout}"
    );
    assert!(stdout.contains("Address already in use"), "{stdout}");
    assert!(!stdout.contains("MILESTONE"), "{stdout}");
    assert!(processes_with(&format!("http.server {port} --bind")).is_empty());
}

#[test]
fn a_closed_stdout_never_stops_a_run_nor_panics() {
    let (_tmp, d) = quickstart_dir();
    let port = free_port();
    let mut child = Command::new(bin())
        .args(["run", "quickstart.drover", "--var", &format!("port={port}")])
        .current_dir(&d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // `| head -1`: read one line, then close the pipe.
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a line");
    assert!(first.starts_with("run "), "{first}");
    let status = child.wait().expect("exits");
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert_ne!(status.code(), Some(101), "panicked: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "{err}");
    let rec = status_json(&d, ".drover", "latest");
    assert_eq!(rec["outcome"], "succeeded", "{rec}");
    // Printing verbs too.
    for args in [
        vec!["actions"],
        vec!["audit", "show"],
        vec!["status"],
        vec!["runs"],
    ] {
        let mut c = Command::new(bin())
            .args(&args)
            .current_dir(&d)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts");
        drop(c.stdout.take());
        let out = c.wait_with_output().expect("exits");
        assert_ne!(
            out.status.code(),
            Some(101),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains("panicked"), "{args:?}");
    }
}

const SECRET: &str = "pHi-t0ken-7f3a9c1e5b";

fn secret_runbook(port: u16) -> String {
    format!(
        r#"runbook "Secret hygiene" {{
  owner = "security@example.org"
  rto   = 10m
  rpo   = 1h
  modes = [drill]
}}

param token: secret = env("DROVER_TEST_SECRET")

step prints {{
  action = shell
  with {{
    command = "echo token=$TOKEN; echo err $TOKEN >&2; printf %s \"$TOKEN\" | base64; printf %s \"$TOKEN\" | od -An -tx1 | tr -d ' \\n'; echo"
    env     = {{ TOKEN = token }}
  }}
  compensate {{
    action = shell
    with {{
      command = "echo undo $TOKEN; echo undo failed for $TOKEN >&2; exit 4"
      env     = {{ TOKEN = token }}
    }}
  }}
}}

step service {{
  action = shell
  with {{
    command       = "echo serving with $TOKEN; echo warning $TOKEN >&2; exec sleep 60"
    env           = {{ TOKEN = token }}
    background    = true
    startup_grace = 300ms
  }}
}}

step probe {{
  action  = http.check
  after   = [prints]
  timeout = 3s
  with {{
    url           = "http://127.0.0.1:{port}/body.txt"
    expect_status = 204
    interval      = 200ms
  }}
  on_failure = continue
}}

step fails {{
  action     = shell
  after      = [prints]
  on_failure = rollback
  with {{
    command = "sleep 4; echo about to fail; echo bad credential $TOKEN >&2; exit 3"
    env     = {{ TOKEN = token }}
  }}
}}

milestone done {{
  after     = [fails, probe]
  stops_rto = true
}}
"#
    )
}

#[test]
fn a_secret_reaches_no_stored_or_exported_artefact() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    // A server whose answer body is the secret (a failing http.check quotes bodies).
    let www = d.join("www");
    std::fs::create_dir_all(&www).expect("dir");
    std::fs::write(www.join("body.txt"), format!("denied for {SECRET}\n")).expect("write");
    let port = free_port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 starts");
    wait_until("the server", || listening(port));
    std::fs::write(d.join("secret.drover"), secret_runbook(port)).expect("write");
    let env = [("DROVER_TEST_SECRET", SECRET)];
    let run = drover_env(d, &["run", "secret.drover"], &env);
    let _ = server.kill();
    let _ = server.wait();
    let run_out = format!("{}{}", text(&run.stdout), text(&run.stderr));
    assert_eq!(run.status.code(), Some(1), "{run_out}");
    // The run really went through every path: output, failure, compensation, http body.
    assert!(run_out.contains("bad credential <redacted>"), "{run_out}");
    assert!(run_out.contains("denied for <redacted>"), "{run_out}");
    assert!(run_out.contains("undo failed for <redacted>"), "{run_out}");
    let forms = [
        SECRET.to_owned(),
        hex::encode(SECRET),
        base64::engine::general_purpose::STANDARD.encode(SECRET),
    ];
    let check = |what: &str, bytes: &[u8]| {
        let t = String::from_utf8_lossy(bytes);
        for f in &forms {
            assert!(!t.contains(f.as_str()), "{what} holds {f}");
        }
    };
    check("drover run's output", run_out.as_bytes());
    let key = d.join("evidence.key");
    let k = drover(
        d,
        &[
            "key",
            "generate",
            "--signing",
            &format!("file:{}", key.display()),
        ],
    );
    assert_eq!(k.status.code(), Some(0), "{}", text(&k.stderr));
    let bundle = d.join("bundle.tar");
    let ex = drover(
        d,
        &[
            "evidence",
            "export",
            "latest",
            &bundle.display().to_string(),
            "--signing-key",
            &format!("file:{}", key.display()),
        ],
    );
    assert_eq!(ex.status.code(), Some(0), "{}", text(&ex.stderr));
    for args in [
        vec!["status", "--format", "json"],
        vec!["status"],
        vec!["audit", "show"],
        vec!["report", "--format", "html"],
        vec!["report", "--format", "md"],
        vec!["report", "--format", "json"],
        vec!["runs", "--format", "json"],
    ] {
        let out = drover(d, &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        check(&format!("{args:?}"), &out.stdout);
    }
    // Every stored file: the journal (and its WAL), run records, the bundle and each file in it.
    let mut files = vec![bundle.clone()];
    let mut stack = vec![d.join(".drover")];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    assert!(files.iter().any(|f| f.ends_with("drover.db")));
    // The background service's log was written, redacted.
    let log = files
        .iter()
        .find(|f| f.to_string_lossy().ends_with(".service.log"))
        .expect("the service's log");
    let logged = std::fs::read_to_string(log).expect("log");
    assert!(logged.contains("serving with <redacted>"), "{logged}");
    assert!(logged.contains("warning <redacted>"), "{logged}");
    for f in &files {
        check(&f.display().to_string(), &std::fs::read(f).expect("read"));
    }
    let mut tar = tar::Archive::new(std::fs::File::open(&bundle).expect("bundle"));
    let mut n = 0;
    for entry in tar.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read");
        check(&format!("bundle {:?}", entry.path().ok()), &bytes);
        n += 1;
    }
    assert!(n >= 5, "{n} files in the bundle");
}

/// Reads a child's stdout lines into a channel.
fn lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => {
                let hit = l.contains(needle);
                seen.push(l);
                if hit {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?}: {seen:#?}"),
        }
    }
}

fn sigint(child: &Child) {
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
}

const SLEEPY: &str = r#"runbook "Sleepy" {
  owner = "me@example.org"
  rto   = 2h
  rpo   = 1h
  modes = [drill]
}

param nap: string = "2"

step first {
  action = shell
  with {
    command = "sleep {{ nap }}"
  }
}

step second {
  action = shell
  after  = [first]
  with {
    command = "echo second ran"
  }
}

milestone done {
  after     = [second]
  stops_rto = true
}
"#;

#[test]
fn one_interrupt_leaves_a_resumable_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("sleepy.drover"), SLEEPY).expect("write");
    let mut child = Command::new(bin())
        .args(["run", "sleepy.drover", "--var", "nap=2"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let rx = lines(&mut child);
    wait_for_line(&rx, "start   first");
    sigint(&child);
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(4));
    let rec = status_json(d, ".drover", "latest");
    assert_eq!(rec["status"], "interrupted", "{rec}");
    let resumed = drover(d, &["resume", "latest"]);
    let out = text(&resumed.stdout);
    assert_eq!(resumed.status.code(), Some(0), "{out}");
    assert!(out.contains("done    second"), "{out}");
    // The step the resume starts runs once: it was never in flight, so it is not read back.
    assert_eq!(out.matches("start   second").count(), 1, "{out}");
    assert!(!out.contains("observe"), "{out}");
}

#[test]
fn a_second_interrupt_forces_the_exit_and_the_run_stays_resumable() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("sleepy.drover"), SLEEPY).expect("write");
    let marker = format!("sleep 36{}", free_port());
    let nap = marker.trim_start_matches("sleep ").to_owned();
    let mut child = Command::new(bin())
        .args(["run", "sleepy.drover", "--var", &format!("nap={nap}")])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let rx = lines(&mut child);
    wait_for_line(&rx, "start   first");
    wait_until("the step's command", || !processes_with(&marker).is_empty());
    sigint(&child);
    wait_for_line(&rx, "Ctrl-C again to force");
    sigint(&child);
    // Bounded: the test fails instead of hanging if the second press is ignored.
    let mut code = None;
    wait_until("drover to exit after the second Ctrl-C", || {
        code = child.try_wait().ok().flatten().map(|s| s.code());
        code.is_some()
    });
    assert_eq!(code.flatten(), Some(4));
    // The step's command went with it.
    wait_until("the step's command to stop", || {
        processes_with(&marker).is_empty()
    });
    let rec = status_json(d, ".drover", "latest");
    assert_eq!(rec["status"], "interrupted", "{rec}");
    let first = rec["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "first"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(first["state"], "running", "{rec}");
}

#[test]
fn read_only_verbs_create_nothing_and_name_a_mistyped_state_directory() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    for args in [
        vec!["status", "--state", "nowhere"],
        vec!["report", "--state", "nowhere"],
        vec!["audit", "show", "--state", "nowhere"],
        vec!["audit", "verify", "--state", "nowhere"],
        vec!["runs", "--state", "nowhere"],
        vec![
            "evidence",
            "export",
            "latest",
            "x.tar",
            "--signing-key",
            "file:k",
            "--state",
            "nowhere",
        ],
    ] {
        let out = drover(d, &args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("nowhere") && err.contains("check --state") || err.contains("cannot read"),
            "{args:?}: {err}"
        );
        assert!(
            !d.join("nowhere").exists(),
            "{args:?} created the directory"
        );
    }
}

#[test]
fn a_state_location_that_is_not_a_path_is_refused() {
    let (_tmp, d) = quickstart_dir();
    let out = drover(
        &d,
        &[
            "run",
            "quickstart.drover",
            "--state",
            "s3://db.example/drover",
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`s3://` is not supported"), "{err}");
    assert!(err.contains("local directory"), "{err}");
    assert!(err.contains("postgres://"), "{err}");
    assert!(!d.join("s3:").exists());
}

#[test]
fn an_unreachable_postgresql_journal_is_a_clear_error_without_its_password() {
    let (_tmp, d) = quickstart_dir();
    let out = drover(
        &d,
        &[
            "run",
            "quickstart.drover",
            "--state",
            "postgres://drover:hunter2-not-shown@127.0.0.1:1/drover",
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("hunter2"), "the password was printed: {err}");
    assert!(
        !text(&out.stdout).contains("hunter2"),
        "the password was printed: {}",
        text(&out.stdout)
    );
    assert!(!d.join("postgres:").exists());
}

#[test]
fn a_repeated_run_id_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("sleepy.drover"), SLEEPY).expect("write");
    let a = drover(
        d,
        &["run", "sleepy.drover", "--var", "nap=0", "--run-id", "r1"],
    );
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    let b = drover(
        d,
        &["run", "sleepy.drover", "--var", "nap=0", "--run-id", "r1"],
    );
    let err = text(&b.stderr);
    assert_eq!(b.status.code(), Some(1), "{err}");
    assert!(err.contains("a run with id r1 already exists"), "{err}");
    assert!(!err.contains("UNIQUE"), "{err}");
}

#[test]
fn a_polling_step_says_what_it_waits_for() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let port = free_port();
    std::fs::write(
        d.join("poll.drover"),
        format!(
            r#"runbook "Poll" {{
  owner = "me@example.org"
  rto   = 1m
  rpo   = 1h
  modes = [drill]
}}

step healthy {{
  action  = http.check
  timeout = 2s
  with {{
    url      = "http://127.0.0.1:{port}/health"
    interval = 200ms
  }}
}}

milestone up {{
  after     = [healthy]
  stops_rto = true
}}
"#
        ),
    )
    .expect("write");
    let out = drover(d, &["run", "poll.drover"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("wait    healthy: attempt 1:"), "{stdout}");
    assert!(stdout.contains("cannot connect"), "{stdout}");
    assert!(
        stdout.contains("within 2s (the step's timeout)"),
        "{stdout}"
    );
}

#[test]
fn the_mode_is_optional_when_the_runbook_has_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("sleepy.drover"), SLEEPY).expect("write");
    let out = drover(
        d,
        &["run", "sleepy.drover", "--var", "nap=0", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json record");
    assert_eq!(rec["mode"], "drill");
    assert_eq!(rec["outcome"], "succeeded");
    let wrong = drover(d, &["run", "sleepy.drover", "--mode", "failover"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(text(&wrong.stderr).contains("it has: drill"));
}

#[test]
fn completions_and_the_man_page_come_from_the_argument_definitions() {
    let dir = tempfile::tempdir().expect("tmp");
    let bash = drover(dir.path(), &["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0));
    assert!(text(&bash.stdout).contains("drover__subcmd__run"));
    let man = drover(dir.path(), &["man"]);
    assert_eq!(man.status.code(), Some(0));
    let man = text(&man.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH drover"),
        "{man}"
    );
    assert!(
        man.contains("Exit codes"),
        "the man page lists the exit codes"
    );
    // --otlp is an option of the verbs that run a runbook only.
    let fmt = drover(dir.path(), &["fmt", "--help"]);
    assert!(!text(&fmt.stdout).contains("--otlp"));
    let run = drover(dir.path(), &["run", "--help"]);
    assert!(text(&run.stdout).contains("--otlp"));
    assert!(text(&run.stdout).contains("Examples:"));
}

#[test]
fn services_of_a_killed_drover_are_stopped_when_the_run_is_resumed_to_its_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    // A service whose command line is unique to this test, then a gate that holds the run.
    let marker = format!("sleep 37{}", free_port());
    std::fs::write(
        d.join("svc.drover"),
        format!(
            r#"runbook "Service" {{
  owner = "me@example.org"
  rto   = 2h
  rpo   = 1h
  modes = [drill]
}}

step service {{
  action = shell
  with {{
    command       = "exec {marker}"
    background    = true
    startup_grace = 200ms
  }}
}}

step go {{
  action = approval
  after  = [service]
  with {{
    prompt = "go?"
  }}
}}

milestone done {{
  after     = [go]
  stops_rto = true
}}
"#
        ),
    )
    .expect("write");
    let mut child = Command::new(bin())
        .args(["run", "svc.drover", "--as", "alice"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let rx = lines(&mut child);
    wait_for_line(&rx, "WAITING go");
    assert!(!processes_with(&marker).is_empty(), "the service runs");
    // Killed outright: no chance to stop anything.
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !processes_with(&marker).is_empty(),
        "the service outlived the killed drover"
    );
    let ok = drover(d, &["approve", "latest", "go", "--as", "bob"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let resumed = drover(d, &["resume", "latest"]);
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}{}",
        text(&resumed.stdout),
        text(&resumed.stderr)
    );
    wait_until("the dead run's service to stop", || {
        processes_with(&marker).is_empty()
    });
}

#[test]
fn backup_help_lists_every_key_and_location_scheme_of_the_build() {
    let dir = tempfile::tempdir().expect("tmp");
    for verb in ["create", "verify", "restore", "rewrap", "inspect"] {
        let out = drover(dir.path(), &["backup", verb, "--help"]);
        let help = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{verb}");
        for scheme in ["file:PATH", "aws-kms:KEY", "s3://BUCKET/KEY"] {
            assert!(
                help.contains(scheme),
                "backup {verb} --help lacks {scheme}: {help}"
            );
        }
    }
    // And the schemes it names are the ones the library accepts.
    assert!(drover_adapters::backup::key_provider_from_uri("aws-kms:alias/x").is_ok());
    assert!(drover_adapters::backup::location_from_uri("s3://bucket/key").is_ok());
    assert!(drover_adapters::backup::key_provider_from_uri("vault:x").is_err());
}

fn gated_failover(name: &str, dest: &Path) -> String {
    format!(
        r#"runbook "{name}" {{
  owner = "me@example.org"
  rto   = 1h
  rpo   = 1h
  modes = [failover]
}}

step go {{
  action = approval
  with {{
    prompt = "cut over?"
  }}
}}

step restore {{
  action = backup.rehydrate
  after  = [go]
  with {{
    source = "ehr.dbk"
    key    = "file:ehr.key"
    dest   = "{dest}"
  }}
}}

milestone done {{
  after     = [restore]
  stops_rto = true
}}
"#,
        dest = dest.display()
    )
}

#[test]
fn one_cutover_at_a_time_unless_concurrent_with_a_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let shared = d.join("ehr-restored.bin");
    std::fs::write(d.join("a.drover"), gated_failover("EHR failover", &shared)).expect("write");
    std::fs::write(d.join("b.drover"), gated_failover("EHR partial", &shared)).expect("write");
    std::fs::write(d.join("c.drover"), SLEEPY).expect("write");
    let mut first = Command::new(bin())
        .args([
            "run",
            "a.drover",
            "--as",
            "alice",
            "--run-id",
            "first",
            "--skip-preflight",
        ])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let rx = lines(&mut first);
    wait_for_line(&rx, "WAITING go");

    // The same runbook again: refused before anything runs, naming the run and its operator.
    // (Its backup and key do not exist: the preflight is skipped, the claims are what is tested.)
    let again = drover(
        d,
        &[
            "run",
            "a.drover",
            "--as",
            "bob",
            "--run-id",
            "second",
            "--skip-preflight",
        ],
    );
    let err = text(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{err}");
    assert!(
        err.contains("runbook `EHR failover` is claimed by run first") && err.contains("alice"),
        "{err}"
    );
    assert!(err.contains("--concurrent"), "says how to override: {err}");
    // Another runbook that changes the same resource: refused too.
    let other = drover(d, &["run", "b.drover", "--as", "bob", "--skip-preflight"]);
    let err = text(&other.stderr);
    assert_eq!(other.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("production resource {}", shared.display())),
        "{err}"
    );
    let runs = text(&drover(d, &["runs"]).stdout);
    assert!(
        !runs.contains("second"),
        "a refused run leaves nothing: {runs}"
    );
    // A drill of another runbook runs side by side.
    let drill = drover(d, &["run", "c.drover", "--var", "nap=0"]);
    assert_eq!(drill.status.code(), Some(0), "{}", text(&drill.stderr));

    // With a reason, it runs, and the reason is in the audit log.
    let mut forced = Command::new(bin())
        .args([
            "run",
            "b.drover",
            "--as",
            "bob",
            "--run-id",
            "forced",
            "--concurrent",
            "rehearsing the second region",
            "--skip-preflight",
        ])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let rx2 = lines(&mut forced);
    wait_for_line(&rx2, "WAITING go");
    let audit = text(&drover(d, &["audit", "show", "forced"]).stdout);
    assert!(
        audit.contains("concurrent with unfinished runs: rehearsing the second region"),
        "{audit}"
    );
    assert!(audit.contains("preflight skipped"), "{audit}");
    for mut c in [first, forced] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn a_run_id_that_could_name_a_path_or_a_reserved_log_is_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(
        d.join("q.drover"),
        "runbook \"q\" {\n  rto = 1h\n  rpo = 1h\n  modes = [drill]\n}\n\nstep s {\n  action = wait\n  with {\n    duration = 1ms\n  }\n}\n\nmilestone m {\n  after = [s]\n  stops_rto = true\n}\n",
    )
    .expect("runbook");
    for bad in ["../escape", "a/b", "@backups", ".hidden", ""] {
        let out = drover(d, &["run", "q.drover", "--run-id", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("is not a run id"), "{bad}");
    }
    assert!(!d.join(".drover").exists(), "nothing was created");
    assert!(
        !dir.path()
            .parent()
            .is_some_and(|p| p.join("escape.json").exists())
    );
    let ok = drover(d, &["run", "q.drover", "--run-id", "drill-2026.12_a"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
}
