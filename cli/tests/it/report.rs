//! `drover report`: the report of a real quickstart drill (with a recorded simulation) in HTML,
//! Markdown and JSON, checked against the run's own record; user templates; no key material;
//! and the HTML page rendered by headless Chromium.

use std::path::Path;
use std::process::{Command, Output};

pub(crate) fn drover(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(dir)
        .env("USER", "alice")
        .output()
        .expect("drover runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A finished quickstart drill in a temporary directory, with a recorded simulation.
pub(crate) fn drill() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::copy(
        super::root().join("runbooks/quickstart.drover"),
        d.join("quickstart.drover"),
    )
    .expect("copy");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
        .to_string();
    let var = format!("port={port}");
    let sim = drover(
        d,
        &[
            "simulate",
            "quickstart.drover",
            "--trials",
            "500",
            "--var",
            &var,
            "--record",
        ],
    );
    assert_eq!(sim.status.code(), Some(0), "{}", text(&sim.stderr));
    let run = drover(
        d,
        &[
            "run",
            "quickstart.drover",
            "--mode",
            "drill",
            "--var",
            &var,
            "--run-id",
            "q1",
        ],
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stdout));
    dir
}

fn report(d: &Path, format: &str) -> String {
    let out = drover(d, &["report", "latest", "--format", format]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn the_report_of_a_drill_matches_its_record_in_every_format_and_holds_no_key() {
    let dir = drill();
    let d = dir.path();
    let status: serde_json::Value =
        serde_json::from_slice(&drover(d, &["status", "q1", "--format", "json"]).stdout)
            .expect("status json");
    let json: serde_json::Value = serde_json::from_str(&report(d, "json")).expect("report json");
    assert_eq!(json["run_id"], "q1");
    assert_eq!(json["simulated"], false);
    assert_eq!(json["passed"], true);
    assert_eq!(json["rto"]["verdict"], "pass");
    assert_eq!(json["rto"]["achieved_ms"], status["rto"]["achieved_ms"]);
    assert_eq!(json["rpo"]["achieved_ms"], status["rpo"]["achieved_ms"]);
    let sha = status["backups"][0]["sha256"].as_str().expect("sha");
    assert!(
        json["backups"]
            .as_array()
            .expect("backups")
            .iter()
            .any(|b| b["sha256"] == sha && b["key_id"] == status["backups"][0]["key_id"])
    );
    let path: Vec<&str> = json["critical_path"]
        .as_array()
        .expect("path")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(path.last(), Some(&"service_restored"), "{path:?}");
    assert!(
        path.contains(&"rehydrate") && path.contains(&"health_check"),
        "{path:?}"
    );
    assert!(
        !path.contains(&"stop_service"),
        "after the milestone: {path:?}"
    );
    assert_eq!(json["audit"]["verified"], true);
    let head = json["audit"]["head"].as_str().expect("head");
    assert_eq!(head.len(), 64);
    assert!(head.starts_with(&status_head(d)), "{head}");
    assert!(json["prediction"]["simulation"]["trials"] == 500);
    let controls: Vec<&str> = json["controls"]
        .as_array()
        .expect("controls")
        .iter()
        .filter_map(|c| c["control"].as_str())
        .collect();
    assert_eq!(
        controls,
        [
            "§164.308(a)(7)(ii)(B)",
            "§164.308(a)(7)(ii)(D)",
            "§164.312(b)"
        ]
    );
    let health = json["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "health_check")
        .expect("health_check");
    assert_eq!(health["attempts"][0]["outcome"], "succeeded");
    assert_eq!(health["operators"][0], "alice");
    assert!(health["predicted_mean"].is_string());

    let html = report(d, "html");
    let md = report(d, "md");
    for page in [&html, &md] {
        assert!(page.contains("q1") && page.contains(sha), "run id and hash");
        assert!(page.contains("§164.312(b)"));
        assert!(
            !page.contains("SIMULATED"),
            "a live run is not labelled simulated"
        );
    }
    assert!(html.contains("<svg") && html.contains("critical path in red"));
    assert!(md.contains("| RTO | 5m |"), "{md}");

    // No key material: the key-encryption key the drill used, in any encoding.
    let key = std::fs::read(d.join(".drover/runs/q1/kek.key")).expect("key file");
    let key_text = String::from_utf8_lossy(&key).trim().to_owned();
    for page in [&html, &md, &report(d, "json")] {
        assert!(
            !key_text.is_empty() && !page.contains(&key_text),
            "key text leaked"
        );
        assert!(!page.contains(&hex_of(&key)), "key hex leaked");
    }
}

fn status_head(d: &Path) -> String {
    let out = text(&drover(d, &["audit", "verify", "q1"]).stdout);
    out.split_whitespace()
        .find(|w| w.len() >= 12 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_owned)
        .unwrap_or(out)
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn user_templates_replace_the_built_in_ones_and_bad_ones_say_where() {
    let dir = drill();
    let d = dir.path();
    let t = d.join("tpl");
    std::fs::create_dir(&t).expect("dir");
    std::fs::write(
        t.join("report.md"),
        "RUN {{ report.run_id }} RTO {{ report.rto.verdict }} STEPS {{ report.steps | length }}\n",
    )
    .expect("write");
    let out = drover(d, &["report", "q1", "--format", "md", "--template", "tpl"]);
    assert_eq!(text(&out.stdout).trim(), "RUN q1 RTO pass STEPS 9");
    std::fs::write(t.join("report.md"), "line one\n{% for x in %}\n").expect("write");
    let bad = drover(d, &["report", "q1", "--format", "md", "--template", "tpl"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("line 2"),
        "{}",
        text(&bad.stderr)
    );
    let none = drover(d, &["report", "nope"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        text(&none.stderr).contains("nope"),
        "{}",
        text(&none.stderr)
    );
}

/// The HTML report in headless Chromium (Debian's package, installed by the test command): the
/// page loads with no console message, its text holds the key figures, and a screenshot is taken.
#[test]
fn the_html_report_renders_in_headless_chromium() {
    let dir = drill();
    let d = dir.path();
    let out = drover(d, &["report", "q1", "-o", "report.html"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = format!("file://{}", d.join("report.html").display());
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", d.join("profile").display()))
            .args(extra)
            .arg(&page)
            .output()
            .expect("chromium runs (the test command installs Debian's chromium)")
    };
    let dom = chromium(&["--dump-dom"]);
    assert_eq!(dom.status.code(), Some(0), "{}", text(&dom.stderr));
    let body = text(&dom.stdout);
    let json: serde_json::Value = serde_json::from_str(&report(d, "json")).expect("json");
    for figure in [
        "q1",
        "Passed: succeeded and met its targets",
        json["rto"]["achieved"].as_str().expect("rto"),
        json["backups"][0]["sha256"].as_str().expect("sha"),
        "Audit chain verified",
    ] {
        assert!(body.contains(figure), "{figure} not in the rendered page");
    }
    let stderr = text(&dom.stderr);
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let shot = d.join("report.png");
    let s = chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1100,2000",
    ]);
    assert_eq!(s.status.code(), Some(0), "{}", text(&s.stderr));
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

/// The bundle's entries: (name, offset of its content in the tar, length).
fn entries(tar_bytes: &[u8]) -> Vec<(String, u64, u64)> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.path().expect("path").to_string_lossy().into_owned(),
                e.raw_file_position(),
                e.size(),
            )
        })
        .collect()
}

fn rebuild(tar_bytes: &[u8], skip: Option<&str>, add: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut b = tar::Builder::new(Vec::new());
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        if Some(name.as_str()) == skip {
            continue;
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).expect("read");
        let mut h = e.header().clone();
        b.append_data(&mut h, &name, data.as_slice())
            .expect("append");
    }
    if let Some((name, data)) = add {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).expect("append");
    }
    b.into_inner().expect("tar")
}

#[test]
fn an_evidence_bundle_verifies_and_any_change_removal_addition_or_other_signer_is_refused() {
    let dir = drill();
    let d = dir.path();
    let made = drover(d, &["key", "generate", "--signing", "file:sign.key"]);
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let out = drover(
        d,
        &[
            "evidence",
            "export",
            "latest",
            "b.tar",
            "--signing-key",
            "file:sign.key",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let verify = |bytes: &[u8]| {
        std::fs::write(d.join("t.tar"), bytes).expect("write");
        drover(
            d,
            &[
                "evidence",
                "verify",
                "t.tar",
                "--public-key",
                "sign.key.pub",
            ],
        )
    };
    let good = std::fs::read(d.join("b.tar")).expect("bundle");
    let ok = verify(&good);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("runbook sources match the plan"));
    let list = entries(&good);
    let names: Vec<&str> = list.iter().map(|(n, _, _)| n.as_str()).collect();
    for want in [
        "MANIFEST.json",
        "MANIFEST.sig",
        "runbook/quickstart.drover",
        "plan.json",
        "run.json",
        "audit.jsonl",
        "audit-head.json",
        "report.html",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    // A changed byte at the start, middle and end of every file.
    for (name, at, len) in &list {
        for k in [0, len / 2, len - 1] {
            let mut bad = good.clone();
            let i = usize::try_from(at + k).expect("offset");
            bad[i] ^= 0x20;
            let r = verify(&bad);
            assert_eq!(
                r.status.code(),
                Some(1),
                "{name} byte {k} changed and accepted"
            );
            assert!(text(&r.stderr).contains("REFUSED"), "{}", text(&r.stderr));
        }
    }
    for (name, _, _) in &list {
        let r = verify(&rebuild(&good, Some(name), None));
        assert_eq!(r.status.code(), Some(1), "{name} removed and accepted");
    }
    let added = verify(&rebuild(&good, None, Some(("notes.txt", b"trust me"))));
    assert_eq!(added.status.code(), Some(1));
    assert!(
        text(&added.stderr).contains("notes.txt"),
        "{}",
        text(&added.stderr)
    );
    assert_eq!(
        drover(d, &["key", "generate", "--signing", "file:other.key"])
            .status
            .code(),
        Some(0)
    );
    let other = drover(
        d,
        &[
            "evidence",
            "verify",
            "b.tar",
            "--public-key",
            "other.key.pub",
        ],
    );
    assert_eq!(other.status.code(), Some(1));
    assert!(
        text(&other.stderr).contains("signature"),
        "{}",
        text(&other.stderr)
    );

    // No key material in the bundle: neither the drill's key-encryption key nor the signing key.
    let kek = std::fs::read(d.join(".drover/runs/q1/kek.key")).expect("kek");
    let kek_text = String::from_utf8_lossy(&kek).trim().to_owned();
    let signing = std::fs::read_to_string(d.join("sign.key")).expect("signing key");
    let body = String::from_utf8_lossy(&good);
    assert!(!body.contains(&kek_text) && !body.contains(&hex_of(&kek)));
    for line in signing.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!body.contains(line), "signing key material in the bundle");
    }
}

#[test]
fn history_charts_rto_and_rpo_over_successive_drills_against_the_targets() {
    let dir = drill();
    let d = dir.path();
    // A second drill declared ten minutes before it starts: it misses the 5-minute RTO.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let declared = time_minus_10m();
    let late = drover(
        d,
        &[
            "run",
            "quickstart.drover",
            "--mode",
            "drill",
            "--run-id",
            "q2",
            "--var",
            &format!("port={port}"),
            "--declared-at",
            &declared,
        ],
    );
    assert_eq!(late.status.code(), Some(3), "{}", text(&late.stdout));
    let out = drover(
        d,
        &[
            "report",
            "--history",
            "quickstart.drover",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let runs = h["runs"].as_array().expect("runs");
    let ids: Vec<&str> = runs.iter().filter_map(|r| r["run_id"].as_str()).collect();
    assert_eq!(ids, ["q1", "q2"]);
    assert_eq!(runs[0]["rto"]["verdict"], "pass");
    assert_eq!(runs[1]["rto"]["verdict"], "fail");
    let html = text(&drover(d, &["report", "--history", "Quickstart restore drill"]).stdout);
    assert_eq!(html.matches("<circle").count(), 4, "two runs, two charts");
    assert!(html.contains("target 5m") && html.contains("q2"));
    let md = text(
        &drover(
            d,
            &["report", "--history", "quickstart.drover", "--format", "md"],
        )
        .stdout,
    );
    assert!(md.contains("| q2 | drill |") && md.contains("fail"), "{md}");
}

fn time_minus_10m() -> String {
    let out = Command::new("date")
        .args(["-u", "-d", "10 minutes ago", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    text(&out.stdout).trim().to_owned()
}
