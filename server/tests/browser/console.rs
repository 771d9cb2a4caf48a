//! The console in a real headless Chromium: a drill watched live without reloading, passkeys
//! registered with DevTools' virtual authenticator and certified with the operators' SSH keys,
//! four eyes enforced on browser approvals, the approval verified offline in the evidence
//! bundle, CSRF refused, no console message, no serious accessibility violation.

use super::cdp::{Browser, looks_rendered};
use super::{Server, server};

const DRILL: &str = r#"runbook "browser drill" {
  rto   = 10m
  rpo   = 1h
  modes = [drill]
}

step warm {
  action = shell
  with {
    command = "sleep 2"
  }
}

step gate {
  action = approval
  after  = [warm]
  with {
    prompt = "cut over?"
    roles  = ["incident-commander"]
  }
}

step cut {
  action = shell
  after  = [gate]
  with {
    command = "sleep 1"
  }
}

milestone done {
  after     = [cut]
  stops_rto = true
}
"#;

fn shots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// The browser address of the server: by host name, as WebAuthn needs (IP addresses are no
/// relying party).
fn localhost(s: &Server) -> String {
    s.base.replace("127.0.0.1", "localhost")
}

async fn start_drill(s: &Server, token: &str, who: &str) -> String {
    let prep: serde_json::Value = s
        .post(
            token,
            "/api/v1/runs/prepare",
            serde_json::json!({ "runbook": "drill.drover" }),
        )
        .await
        .json()
        .await
        .expect("prepare");
    let run = prep["run_id"].as_str().expect("run id").to_owned();
    let statement = prep["statement"].as_str().expect("statement").to_owned();
    let r = s
        .post(
            token,
            "/api/v1/runs",
            serde_json::json!({
                "runbook": "drill.drover",
                "run_id": run,
                "statement": statement,
                "signature": s.sign(who, &statement),
            }),
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    run
}

/// Signs `who` into a fresh browser through a one-time console link, on the page of `run`.
async fn open_console(s: &Server, token: &str, run: &str) -> Browser {
    open_console_on(s, token, run, "browser drill").await
}

/// [`open_console`] on a run of the runbook titled `title`.
pub(super) async fn open_console_on(s: &Server, token: &str, run: &str, title: &str) -> Browser {
    let link: serde_json::Value = s
        .post(token, "/api/v1/console/link", serde_json::json!({}))
        .await
        .json()
        .await
        .expect("link");
    let b = Browser::launch(&shots()).await;
    let url = format!(
        "{}{}&run={run}",
        localhost(s),
        link["path"].as_str().expect("path")
    );
    b.goto(&url).await;
    b.wait(
        "the run page",
        &format!("document.getElementById('run-title').textContent.includes('{title}')"),
    )
    .await;
    b
}

/// Registers a passkey in the browser, then certifies it with `who`'s SSH key as
/// `drover passkey confirm` does.
pub(super) async fn passkey(s: &Server, b: &Browser, token: &str, who: &str) {
    b.virtual_authenticator().await;
    b.eval("document.getElementById('passkey-register').click()")
        .await;
    b.wait(
        "the passkey registered",
        "document.getElementById('notice').textContent.includes('registered')",
    )
    .await;
    let list: serde_json::Value = s
        .get(token, "/api/v1/passkeys")
        .await
        .json()
        .await
        .expect("passkeys");
    let k = &list["passkeys"][0];
    assert_eq!(k["confirmed"], false);
    assert_eq!(k["rp_id"], "localhost");
    // Approving with a passkey nobody certified is refused.
    let cert = k["certificate"].as_str().expect("certificate");
    let signature = drover_identity::sign::with_key_file_in(
        drover_identity::passkey::PASSKEY_NAMESPACE,
        &s.keys[who],
        cert,
    )
    .expect("sign");
    let id = k["credential_id"].as_str().expect("id");
    let r = s
        .post(
            token,
            &format!("/api/v1/passkeys/{id}/confirm"),
            serde_json::json!({ "signature": signature }),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

async fn click_approve(b: &Browser) {
    b.eval(
        "document.querySelector('button[data-step=\"gate\"][data-decision=\"approve\"]').click()",
    )
    .await;
}

pub(super) fn no_console_messages(b: &Browser, page: &str) {
    let m = b.console_messages();
    assert!(m.is_empty(), "console messages on {page}: {m:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_is_watched_live_and_approved_with_a_passkey_in_chromium() {
    let s = server().await;
    std::fs::write(s.dir.path().join("runbooks/drill.drover"), DRILL).expect("runbook");
    let alice = s.token("alice").await;
    let bob = s.token("bob").await;
    let run = start_drill(&s, &alice, "alice").await;

    // Bob watches from the start: the page advances as the drill does, never reloaded.
    let b = open_console(&s, &bob, &run).await;
    b.eval("window.__loaded_once = true").await;
    b.wait(
        "warm running",
        "[...document.querySelectorAll('#steps-body tr')].some(r => r.cells[0].textContent === 'warm' && r.cells[1].textContent === 'running')",
    )
    .await;
    let early = b.screenshot("1-running").await;
    assert!(looks_rendered(&early));
    b.wait(
        "the gate waiting for approval",
        "document.querySelector('.approval.waiting') !== null",
    )
    .await;
    assert_eq!(b.eval("window.__loaded_once === true").await, true);
    let text = b.text().await;
    assert!(
        text.contains("Eligible\nbob, carol"),
        "eligible approvers shown:\n{text}"
    );
    assert!(
        text.contains(
            "1 distinct approver in role incident-commander, not alice (who started the run)"
        ),
        "{text}"
    );
    assert!(text.contains("Four eyes\nnot yet: 0 of 1"), "{text}");
    assert!(
        text.contains("Simulator's prediction for this plan: RTO p50"),
        "{text}"
    );
    // What is approved: the resolved inputs of the gate and of the step it gates.
    assert!(
        b.eval("document.querySelector('.approval pre').textContent")
            .await
            .as_str()
            .is_some_and(|t| t.contains("sleep 1") && t.contains("cut over?")),
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#gantt rect').length > 0")
            .await,
        true,
        "the Gantt draws the attempts"
    );
    assert_eq!(
        b.eval("[...document.querySelectorAll('#gantt text')].map(t => t.textContent).filter(t => ['warm', 'gate', 'cut', 'done'].includes(t)).join(' ')").await,
        "warm gate cut done",
        "the Gantt has a row per node, those not reached yet included"
    );
    // A state-changing request without the CSRF token: refused, even from the console's page.
    let status = b
        .eval(&format!(
            "fetch('/api/v1/runs/{run}/interrupt', {{ method: 'POST', credentials: 'same-origin' }}).then(r => r.status)"
        ))
        .await;
    assert_eq!(status, 403);
    b.clear_messages(); // the refused request logs a 403 in the console, as it should

    // Alice started the run: her own passkey may not approve it (four eyes).
    let a = open_console(&s, &alice, &run).await;
    passkey(&s, &a, &alice, "alice").await;
    click_approve(&a).await;
    a.wait(
        "alice's approval refused",
        "document.getElementById('notice').textContent.startsWith('Not approved')",
    )
    .await;
    let refusal = a.text().await;
    assert!(refusal.contains("four eyes"), "{refusal}");
    a.screenshot("2-own-approval-refused").await;
    // Chromium logs the refused request (403): expected, and the only message.
    let m = a.console_messages();
    assert!(
        m.len() == 1 && m[0].contains("403"),
        "console messages on the run page (refused approval): {m:#?}"
    );
    a.clear_messages();

    // Bob's passkey, certified with his SSH key: accepted, and the run goes on.
    passkey(&s, &b, &bob, "bob").await;
    let before = b.screenshot("3-waiting").await;
    click_approve(&b).await;
    b.wait(
        "bob's approval accepted",
        "document.getElementById('notice').textContent.startsWith('Approved gate as bob')",
    )
    .await;
    b.wait(
        "the run over",
        "document.getElementById('run-meta').textContent.includes('succeeded')",
    )
    .await;
    assert_eq!(b.eval("window.__loaded_once === true").await, true);
    let text = b.text().await;
    assert!(text.contains("bob (webauthn-es256"), "{text}");
    assert!(text.contains("Four eyes\nsatisfied"), "{text}");
    let after = b.screenshot("4-succeeded").await;
    assert!(looks_rendered(&after) && after != before);
    // The statement signed is the one shown.
    let shown = b
        .eval("document.getElementById('statement-gate').textContent")
        .await;
    assert!(
        shown
            .as_str()
            .is_some_and(|t| t.contains("kind: approve") && t.contains(&format!("run: {run}"))),
        "{shown}"
    );
    no_console_messages(&b, "the run page");
    no_console_messages(&a, "the run page (refused approval)");
    let v = b.accessibility_violations().await;
    assert!(v.is_empty(), "serious accessibility violations: {v:#?}");

    // On a phone: readable, nothing wider than the screen.
    b.phone(true).await;
    assert_eq!(
        b.eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        true
    );
    b.screenshot("5-phone").await;
    b.phone(false).await;

    // Signed out, the page says how to sign in: no message, nothing serious for axe.
    let out = Browser::launch(&shots()).await;
    out.goto(&format!("{}/console/", localhost(&s))).await;
    out.wait(
        "the sign-in page",
        "!document.getElementById('signin').hidden",
    )
    .await;
    assert!(out.text().await.contains("drover console --server URL"));
    let v = out.accessibility_violations().await;
    assert!(v.is_empty(), "serious accessibility violations: {v:#?}");
    no_console_messages(&out, "the sign-in page");

    // The runs list: no message, nothing serious for axe either.
    b.goto(&format!("{}/console/", localhost(&s))).await;
    b.wait(
        "the runs list",
        "document.querySelectorAll('#runs-body a').length > 0",
    )
    .await;
    let v = b.accessibility_violations().await;
    assert!(v.is_empty(), "serious accessibility violations: {v:#?}");
    no_console_messages(&b, "the runs list");

    // The evidence bundle verifies the browser approval offline — and not once its statement
    // is altered, even in a bundle re-sealed with the right key.
    let key = drover_evidence::SigningKey::from_bytes(&[7; 32]);
    let (_, bundle, _) = drover_ops::Workspace::new(s.dir.path().join("state"))
        .evidence(&run, &key)
        .expect("bundle");
    let ok = drover_report::bundle::verify_bundle(&bundle, &key.verifying_key()).expect("verifies");
    assert_eq!(ok.signatures, 2, "the start and bob's passkey approval");
    let mut files = drover_evidence::read(&bundle).expect("read");
    let statements = String::from_utf8(files["identity/statements.json"].clone()).expect("utf8");
    assert!(statements.contains("DROVER PASSKEY SIGNATURE"));
    let mut lines: Vec<serde_json::Value> = serde_json::from_str(&statements).expect("json");
    let approval = lines
        .iter_mut()
        .find(|l| l["step"] == "gate")
        .expect("the gate's approval");
    let text = approval["statement"].as_str().expect("statement");
    approval["statement"] = serde_json::json!(text.replace("comment: ", "comment: approved"));
    files.insert(
        "identity/statements.json".into(),
        serde_json::to_vec(&lines).expect("json"),
    );
    let resealed: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .filter(|(n, _)| n != drover_evidence::MANIFEST && n != drover_evidence::SIGNATURE)
        .collect();
    let forged =
        drover_evidence::seal(&resealed, std::collections::BTreeMap::new(), &key).expect("seal");
    let e = drover_report::bundle::verify_bundle(&forged, &key.verifying_key())
        .expect_err("an altered statement does not verify");
    assert!(
        e.to_string()
            .contains("approval of `gate` by bob does not verify"),
        "{e}"
    );
}
