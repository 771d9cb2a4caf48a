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

step slow {
  action = shell
  after  = [first]
  with {
    command = "sleep 3"
  }
}

milestone done {
  after     = [slow]
  stops_rto = true
}
"#;

#[test]
fn an_open_console_catches_up_after_the_server_restarts() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
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
    // While the server was away, Chromium logged the failed reconnections, and nothing else.
    let other: Vec<String> = b
        .console_messages()
        .into_iter()
        .filter(|m| !(m.contains("/events") && m.starts_with("log error: ")))
        .collect();
    assert!(other.is_empty(), "console messages: {other:#?}");
    let first = std::fs::read_to_string(d.join("first.log")).expect("first ran");
    assert_eq!(
        first.lines().count(),
        1,
        "a journaled-complete step ran again"
    );
}
