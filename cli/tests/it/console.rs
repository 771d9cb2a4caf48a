//! The console across a restart of `drover server`: a browser (real headless Chromium) watches a
//! drill, the server is killed mid-step and started again; the page's EventSource reconnects,
//! the run resumes, and the page catches up without being reloaded.

use crate::cdp::Browser;
use crate::server::{free_port, keygen, login, start, start_run};

const RUNBOOK: &str = r#"runbook "restart drill" {
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

# Long enough that the page sees it running even when Chromium is slow to start on a busy
# machine (with 3 s, a loaded CI host let it finish before the first look).
step slow {
  action = shell
  after  = [first]
  with {
    command = "sleep 12"
  }
}

milestone done {
  after     = [slow]
  stops_rto = true
}
"#;

/// A server's directory: a roster with alice (her SSH key is returned) and the drill runbook.
fn workspace() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, public) = keygen(d, "alice");
    std::fs::write(
        d.join("operators.toml"),
        format!("[operators.alice]\nroles = [\"incident-commander\"]\nkeys = [\"{public}\"]\n"),
    )
    .expect("roster");
    std::fs::create_dir(d.join("runbooks")).expect("dir");
    std::fs::write(d.join("runbooks/restart.drover"), RUNBOOK).expect("runbook");
    (dir, alice)
}

#[test]
fn an_open_console_catches_up_after_the_server_restarts() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (dir, alice) = workspace();
    let d = dir.path();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start(d, port);
    let token = login(&base, &alice);
    let run = start_run(&base, &token, &alice, "restart.drover");
    let link: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{base}/api/v1/console/link"))
        .bearer_auth(&token)
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("link");
    let url = format!(
        "http://localhost:{port}{}&run={run}",
        link["path"].as_str().expect("path")
    );

    let shots = crate::root().join("target/console-screenshots");
    let b = rt.block_on(Browser::launch(&shots));
    rt.block_on(async {
        b.goto(&url).await;
        b.eval("window.__loaded_once = true").await;
        b.wait(
            "slow running",
            "[...document.querySelectorAll('#steps-body tr')].some(r => r.cells[0].textContent === 'slow' && r.cells[1].textContent === 'running')",
        )
        .await;
    });

    server.0.kill().expect("SIGKILL");
    server.0.wait().expect("reaped");
    drop(server);
    rt.block_on(b.wait(
        "the page to see the server gone",
        "document.getElementById('live').textContent === 'reconnecting…'",
    ));
    rt.block_on(b.screenshot("restart-1-server-gone"));

    let _server = start(d, port);
    rt.block_on(async {
        b.wait(
            "the run over, on the same page",
            "document.getElementById('run-meta').textContent.includes('succeeded')",
        )
        .await;
        assert_eq!(b.eval("window.__loaded_once === true").await, true);
        assert_eq!(
            b.eval("[...document.querySelectorAll('#steps-body tr')].every(r => r.cells[1].textContent === 'succeeded')").await,
            true
        );
        b.screenshot("restart-2-caught-up").await;
    });
    // While the server was away, Chromium logged the requests that found it gone, and nothing
    // else.
    let other: Vec<String> = b
        .console_messages()
        .into_iter()
        .filter(|m| {
            !(m.contains("/api/v1/")
                && (m.starts_with("log error: Failed to load resource: net::")
                    || m.contains("/events")))
        })
        .collect();
    assert!(other.is_empty(), "console messages: {other:#?}");
    let first = std::fs::read_to_string(d.join("first.log")).expect("first ran");
    assert_eq!(
        first.lines().count(),
        1,
        "a journaled-complete step ran again"
    );
}

/// `drover passkey confirm` certifies the passkey a browser registered (with the operator's SSH
/// key), and `drover tabletop FILE --server URL` runs an exercise on the server that the report
/// marks simulated and history keeps apart from real runs.
#[test]
fn the_cli_confirms_a_passkey_and_starts_a_team_tabletop() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (dir, alice) = workspace();
    let d = dir.path();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = start(d, port);
    let key = alice.to_str().expect("utf-8");
    let cli = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .current_dir(d)
            .env("DROVER_CONFIG_DIR", d.join("config"))
            .env("DROVER_SERVER", &url)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .expect("drover");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code(), text)
    };
    let (code, text) = cli(&["login", "--key", key]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = cli(&["passkey", "confirm", "--key", key]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no passkey of yours waits"), "{text}");

    // A passkey registered in the browser waits for its operator's SSH signature.
    let (code, text) = cli(&["console", "--format", "json"]);
    assert_eq!(code, Some(0), "{text}");
    let link: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
    let link = link["url"]
        .as_str()
        .expect("url")
        .replace("127.0.0.1", "localhost");
    let b = rt.block_on(Browser::launch(
        &crate::root().join("target/console-screenshots"),
    ));
    rt.block_on(async {
        b.goto(&link).await;
        b.wait("the runs list", "!document.getElementById('runs').hidden")
            .await;
        b.virtual_authenticator().await;
        b.eval("document.getElementById('passkey-register').click()")
            .await;
        b.wait(
            "the passkey registered",
            "document.getElementById('notice').textContent.includes('drover passkey confirm')",
        )
        .await;
    });
    let (code, text) = cli(&["passkey", "confirm", "--key", key]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("of alice on localhost") && text.contains("confirmed"),
        "{text}"
    );

    // A tabletop on the server, from the CLI.
    let (code, text) = cli(&[
        "tabletop",
        "runbooks/restart.drover",
        "--server",
        &url,
        "--key",
        key,
        "--speed",
        "600",
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("TABLETOP EXERCISE") && text.contains("SIMULATED"),
        "{text}"
    );
    assert!(text.contains("drover console --server"), "{text}");
    let run = text
        .split_whitespace()
        .nth(2)
        .expect("the run id")
        .to_owned();
    let mut over = false;
    for _ in 0..400 {
        let (_, s) = cli(&["status", &run, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
        if v["outcome"] == "succeeded" {
            over = true;
            break;
        }
        crate::server::pause(25);
    }
    assert!(over, "the exercise ran to its end");
    let (code, md) = cli(&["report", &run, "--format", "md"]);
    assert_eq!(code, Some(0), "{md}");
    assert!(md.contains("SIMULATED — not a verified recovery"), "{md}");
    let (code, h) = cli(&["report", "--history", "restart drill", "--format", "md"]);
    assert_eq!(code, Some(0), "{h}");
    assert!(
        h.contains("over 0 runs") && h.contains("Tabletop exercises"),
        "{h}"
    );
    // Its simulated durations measure nothing.
    let (code, sim) = cli(&[
        "simulate",
        "runbooks/restart.drover",
        "--durations",
        "measured",
        "--trials",
        "10",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0), "{sim}");
    assert!(sim.contains("no past runs"), "{sim}");
    // Nothing ran for real: the runbook's shell step would have written this file.
    assert!(!d.join("first.log").exists(), "a tabletop ran a real step");
}
