//! A tabletop exercise for the whole team, in real headless Chromium: the facilitator starts it
//! on the server; two participants follow it in their browsers — labelled SIMULATED — see the
//! scenario's inject and the facilitator's as they fire, and each approves a step with their own
//! passkey; the facilitator pauses it and changes its speed; the report renders as simulated and
//! history keeps it apart from real runs.

use super::console_browser::{no_console_messages, open_console_on, passkey};
use super::server;

const EXERCISE: &str = r#"runbook "tabletop drill" {
  rto   = 1h
  rpo   = 1h
  modes = [failover]
}

step declare {
  action = shell
  with {
    command = "echo declare"
  }
}

step gate_one {
  action = approval
  after  = [declare]
  with {
    prompt = "fail over the database?"
    roles  = ["incident-commander"]
  }
}

step database {
  action = shell
  after  = [gate_one]
  with {
    command = "echo database"
  }
}

step gate_two {
  action = approval
  after  = [database]
  with {
    prompt = "switch DNS?"
    roles  = ["incident-commander"]
  }
}

step dns {
  action = shell
  after  = [gate_two]
  with {
    command = "echo dns"
  }
}

milestone serving {
  after     = [dns]
  stops_rto = true
}
"#;

const SCENARIO: &str = r#"name = "primary region down"

[[fault]]
kind   = "region_down"
region = "us-east-1"
from   = "30s"
until  = "2h"
"#;

async fn approve(b: &super::cdp::Browser, step: &str, who: &str) {
    b.wait(
        &format!("{step} waiting"),
        &format!("document.querySelector('button[data-step=\"{step}\"][data-decision=\"approve\"]') !== null"),
    )
    .await;
    b.eval(&format!(
        "document.querySelector('button[data-step=\"{step}\"][data-decision=\"approve\"]').click()"
    ))
    .await;
    b.wait(
        &format!("{who}'s approval of {step}"),
        &format!(
            "document.getElementById('notice').textContent.startsWith('Approved {step} as {who}')"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_tabletop_runs_in_browsers_and_reports_as_simulated() {
    let s = server().await;
    std::fs::write(s.dir.path().join("runbooks/tabletop.drover"), EXERCISE).expect("runbook");
    let alice = s.token("alice").await;
    let bob = s.token("bob").await;
    let carol = s.token("carol").await;

    // The facilitator starts it, signed like a run's start.
    let prep: serde_json::Value = s
        .post(
            &alice,
            "/api/v1/runs/prepare",
            serde_json::json!({ "runbook": "tabletop.drover" }),
        )
        .await
        .json()
        .await
        .expect("prepare");
    let run = prep["run_id"].as_str().expect("run").to_owned();
    let statement = prep["statement"].as_str().expect("statement").to_owned();
    let started = s
        .post(
            &alice,
            "/api/v1/tabletops",
            serde_json::json!({
                "runbook": "tabletop.drover",
                "run_id": run,
                "statement": statement,
                "signature": s.sign("alice", &statement),
                "scenario": SCENARIO,
                "speed": 600.0,
            }),
        )
        .await;
    assert_eq!(
        started.status(),
        202,
        "{}",
        started.text().await.unwrap_or_default()
    );

    let title = "tabletop drill";
    let (fac, b, c) = (
        open_console_on(&s, &alice, &run, title).await,
        open_console_on(&s, &bob, &run, title).await,
        open_console_on(&s, &carol, &run, title).await,
    );
    for p in [&fac, &b, &c] {
        p.wait(
            "the SIMULATED banner",
            "!document.getElementById('sim-banner').hidden && document.getElementById('run-title').textContent.includes('SIMULATED')",
        )
        .await;
        p.wait(
            "the scenario's inject",
            "[...document.querySelectorAll('#injects li')].some(l => l.textContent.includes('region us-east-1 is down'))",
        )
        .await;
    }
    // Only the facilitator has the controls.
    assert_eq!(
        b.eval("document.getElementById('facilitator').hidden")
            .await,
        true
    );
    assert_eq!(
        fac.eval("document.getElementById('facilitator').hidden")
            .await,
        false
    );
    // Someone else's controls are refused by the server too.
    let refused = s
        .post(
            &bob,
            &format!("/api/v1/runs/{run}/tabletop"),
            serde_json::json!({ "action": "pause" }),
        )
        .await;
    assert_eq!(refused.status(), 403);

    // The facilitator adds an inject: both participants see it at once.
    fac.eval("document.getElementById('tt-inject').value = 'the DBA on call does not answer'")
        .await;
    fac.eval("document.getElementById('tt-add').click()").await;
    for p in [&b, &c] {
        p.wait(
            "the facilitator's inject",
            "[...document.querySelectorAll('#injects li')].some(l => l.textContent.includes('the DBA on call does not answer (added by alice)'))",
        )
        .await;
    }
    // Paused, the exercise's time stands still; resumed at another speed, it goes on.
    fac.eval("document.getElementById('tt-pause').click()")
        .await;
    b.wait(
        "PAUSED shown",
        "document.getElementById('tabletop-pace').textContent.includes('PAUSED')",
    )
    .await;
    fac.eval("document.getElementById('tt-resume').click()")
        .await;
    let sped = s
        .post(
            &alice,
            &format!("/api/v1/runs/{run}/tabletop"),
            serde_json::json!({ "action": "speed", "speed": 300.0 }),
        )
        .await;
    assert_eq!(sped.status(), 200);
    b.wait(
        "running at 300×",
        "document.getElementById('tabletop-pace').textContent.includes('running at 300×')",
    )
    .await;

    // Each participant approves one step with their own passkey.
    passkey(&s, &b, &bob, "bob").await;
    passkey(&s, &c, &carol, "carol").await;
    approve(&b, "gate_one", "bob").await;
    approve(&c, "gate_two", "carol").await;
    for p in [&b, &c] {
        p.wait(
            "the exercise over",
            "document.getElementById('run-meta').textContent.includes('succeeded')",
        )
        .await;
    }
    b.screenshot("tabletop-participant").await;
    for (p, who) in [(&fac, "the facilitator"), (&b, "bob"), (&c, "carol")] {
        let v = p.accessibility_violations().await;
        assert!(
            v.is_empty(),
            "serious accessibility violations for {who}: {v:#?}"
        );
        no_console_messages(p, who);
    }
    fac.screenshot("tabletop-facilitator").await;
    let text = c.text().await;
    assert!(text.contains("bob (webauthn-es256"), "{text}");
    assert!(text.contains("carol (webauthn-es256"), "{text}");

    // Journaled as a simulated run: the report says so; history keeps it apart.
    let ws = drover_ops::Workspace::new(s.dir.path().join("state"));
    let (_, html) = ws
        .report(&run, drover_report::Format::Html, None)
        .expect("report");
    assert!(
        html.contains("SIMULATED — not a verified recovery"),
        "the report is not marked simulated"
    );
    let (_, md) = ws
        .history("tabletop drill", drover_report::Format::Markdown)
        .expect("history");
    assert!(md.contains("over 0 runs"), "{md}");
    assert!(
        md.contains("Tabletop exercises (SIMULATED") && md.contains(&run),
        "{md}"
    );
    // The runs list marks it too.
    b.goto(&format!(
        "{}/console/",
        s.base.replace("127.0.0.1", "localhost")
    ))
    .await;
    b.wait(
        "the runs list",
        "document.querySelectorAll('#runs-body .sim').length === 1",
    )
    .await;
}
