//! The `drover` binary, run for real: exit codes, stdout and stderr.

mod alerting;
mod anchor;
#[cfg(feature = "azure")]
#[path = "../../../adapters/tests/it/arm_server.rs"]
mod arm_server;
#[cfg(feature = "aws")]
mod aws_failover;
#[cfg(feature = "azure")]
mod azure_failover;
mod backup_audit;
mod backup_copy;
#[allow(
    dead_code,
    reason = "shared with the server's tests, which use all of it"
)]
#[path = "../../../server/tests/browser/cdp.rs"]
mod cdp;
mod console;
mod ha;
mod hardening;
mod identity;
mod lsp;
#[cfg(all(feature = "aws", feature = "azure"))]
mod posture_backups;
mod report;
mod run;
mod server;
mod simulate;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn drover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("drover runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn examples() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("runbooks"))
        .expect("runbooks/")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "drover"))
        .map(|p| {
            format!(
                "runbooks/{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn check_passes_every_example() {
    let files = examples();
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let out = drover(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("checked {} file(s): 0 error(s)", files.len())));
}

#[test]
fn fmt_check_passes_every_example() {
    let files = examples();
    let mut args = vec!["fmt", "--check", "runbooks/lib/checks.drover"];
    args.extend(files.iter().map(String::as_str));
    let out = drover(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn check_reports_errors_with_location_code_and_hint_and_exits_1() {
    let out = drover(&[
        "check",
        "dsl/tests/fixtures/invalid/unknown_step_after.drover",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("DR0011"), "{err}");
    assert!(err.contains("unknown_step_after.drover:16:16"), "{err}");
    assert!(err.contains("no step is called `restor_db`"), "{err}");
    assert!(err.contains("help:"), "{err}");
}

#[test]
fn check_json_lists_every_diagnostic() {
    let out = drover(&[
        "check",
        "--format",
        "json",
        "dsl/tests/fixtures/invalid/unknown_attribute_typo.drover",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let codes: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|d| d["code"].as_str())
        .collect();
    assert_eq!(codes, vec!["DR0003", "DR0003"]);
    assert_eq!(v[0]["line"], 9);
    assert_eq!(v[0]["column"], 3);
}

#[test]
fn check_of_a_missing_file_is_an_error_not_a_crash() {
    let out = drover(&["check", "runbooks/does-not-exist.drover"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read"));
}

#[test]
fn garbage_input_never_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"step {{{{{{{{".to_vec(),
        "[".repeat(200_000).into_bytes(),
        b"runbook \"x\" { rto = 99999999999999999999999h }".to_vec(),
        b"param x: list<list<list<secret>>> = [[[1]]]".to_vec(),
    ];
    for (i, bytes) in inputs.iter().enumerate() {
        let p = dir.path().join(format!("g{i}.drover"));
        std::fs::write(&p, bytes).expect("write");
        let path = p.to_string_lossy().into_owned();
        for args in [
            vec!["check", path.as_str()],
            vec!["plan", path.as_str()],
            vec!["graph", path.as_str()],
            vec!["fmt", "--check", path.as_str()],
        ] {
            let out = drover(&args);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{args:?}: {}",
                text(&out.stderr)
            );
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(drover(&["plan"]).status.code(), Some(2));
    assert_eq!(
        drover(&["check", "x", "--var", "novalue"]).status.code(),
        Some(2)
    );
    assert_eq!(drover(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn plan_shows_stages_critical_path_and_predicted_rto() {
    let out = drover(&["plan", "runbooks/ehr-failover.drover", "--mode", "failover"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("parallel stages"), "{s}");
    assert!(s.contains("critical path"), "{s}");
    assert!(s.contains("predicted RTO"), "{s}");
    assert!(s.contains("target 4h: within target"), "{s}");
}

#[test]
fn plan_json_is_byte_identical_across_runs_and_names_no_secret_value() {
    let a = drover(&["plan", "runbooks/ehr-failover.drover", "--format", "json"]);
    let b = drover(&["plan", "runbooks/ehr-failover.drover", "--format", "json"]);
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(a.stdout, b.stdout);
    let s = text(&a.stdout);
    assert!(
        s.contains("DROVER_PAGER_TOKEN"),
        "the secret's variable name is kept"
    );
    let v: serde_json::Value = serde_json::from_str(&s).expect("json");
    assert_eq!(v["runbook"]["name"], "EHR database failover");
}

#[test]
fn var_overrides_change_the_plan_and_bad_vars_are_errors() {
    let out = drover(&[
        "plan",
        "runbooks/pacs-restore.drover",
        "--var",
        "shards=2019",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("verify_shard[2019]"));
    let out = drover(&["check", "runbooks/pacs-restore.drover", "--var", "shardz=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("did you mean `shards`?"));
}

#[test]
fn graph_draws_dot_mermaid_and_json() {
    let dot = text(&drover(&["graph", "runbooks/quickstart.drover", "--format", "dot"]).stdout);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("->"));
    let mm = text(&drover(&["graph", "runbooks/quickstart.drover", "--format", "mermaid"]).stdout);
    assert!(mm.starts_with("flowchart LR"), "{mm}");
    let js = drover(&["graph", "runbooks/quickstart.drover", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&js.stdout).expect("json");
    assert!(v["edges"].as_array().is_some_and(|e| !e.is_empty()));
}

#[test]
fn fmt_rewrites_then_is_idempotent_and_keeps_comments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("messy.drover");
    std::fs::write(
        &p,
        "runbook \"m\" {\nrto=1h # target\n     rpo = 5m\n}\n# the only step\nstep a {\naction=wait\nwith {duration=1s}\n}\n",
    )
    .expect("write");
    let path = p.to_string_lossy().into_owned();
    assert_eq!(drover(&["fmt", "--check", &path]).status.code(), Some(1));
    assert_eq!(drover(&["fmt", &path]).status.code(), Some(0));
    let once = std::fs::read_to_string(&p).expect("read");
    assert!(once.contains("  rto = 1h # target\n"), "{once}");
    assert!(once.contains("# the only step\nstep a {"), "{once}");
    assert_eq!(drover(&["fmt", "--check", &path]).status.code(), Some(0));
    assert_eq!(drover(&["fmt", &path]).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&p).expect("read"), once);
}

#[test]
fn actions_lists_the_catalogue() {
    let out = drover(&["actions"]);
    let s = text(&out.stdout);
    for a in [
        "backup.rehydrate",
        "aws_route53.upsert_record",
        "azure_network.update_route",
        "http.check",
    ] {
        assert!(s.contains(a), "{a}");
    }
}

fn drover_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("drover runs")
}

#[test]
fn key_generate_writes_a_private_key_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let out = drover_in(dir.path(), &["key", "generate", "file:keys/kek.key"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let meta = std::fs::metadata(dir.path().join("keys/kek.key")).expect("key file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let before = std::fs::read(dir.path().join("keys/kek.key")).expect("read");
    let again = drover_in(dir.path(), &["key", "generate", "file:keys/kek.key"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("refusing to overwrite"));
    let kept = drover_in(
        dir.path(),
        &["key", "generate", "file:keys/kek.key", "--if-missing"],
    );
    assert_eq!(kept.status.code(), Some(0));
    assert_eq!(
        std::fs::read(dir.path().join("keys/kek.key")).expect("read"),
        before
    );
    assert!(
        !text(&kept.stdout).contains(&text(&before)[14..]),
        "the key is never printed"
    );
}

#[test]
fn backup_create_verify_restore_inspect_through_the_binary() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("ehr.csv"), "patient-1\npatient-2\n".repeat(50_000)).expect("write");
    assert_eq!(
        drover_in(d, &["key", "generate", "file:k.key"])
            .status
            .code(),
        Some(0)
    );
    let c = drover_in(
        d,
        &[
            "backup",
            "create",
            "ehr.csv",
            "ehr.dbk",
            "--key",
            "file:k.key",
            "--dataset",
            "ehr",
            "--recovery-point",
            "2026-11-23T02:45:00Z",
            "--format",
            "json",
        ],
    );
    assert_eq!(c.status.code(), Some(0), "{}", text(&c.stderr));
    let created: serde_json::Value = serde_json::from_slice(&c.stdout).expect("json");
    assert_eq!(created["dataset"], "ehr");
    assert_eq!(created["recovery_point"], "2026-11-23T02:45:00Z");

    let v = drover_in(d, &["backup", "verify", "ehr.dbk"]);
    assert_eq!(v.status.code(), Some(0));
    assert!(text(&v.stdout).contains("structure and ciphertext hash verified"));
    let v = drover_in(
        d,
        &[
            "backup",
            "verify",
            "ehr.dbk",
            "--key",
            "file:k.key",
            "--format",
            "json",
        ],
    );
    let verified: serde_json::Value = serde_json::from_slice(&v.stdout).expect("json");
    assert_eq!(verified["sha256"], created["sha256"]);
    assert_eq!(verified["level"], "full");

    let r = drover_in(
        d,
        &[
            "backup",
            "restore",
            "ehr.dbk",
            "restored/ehr.csv",
            "--key",
            "file:k.key",
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert_eq!(
        std::fs::read(d.join("restored/ehr.csv")).expect("read"),
        std::fs::read(d.join("ehr.csv")).expect("read")
    );
    let again = drover_in(
        d,
        &[
            "backup",
            "restore",
            "ehr.dbk",
            "restored/ehr.csv",
            "--key",
            "file:k.key",
        ],
    );
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing destination is not overwritten without --force"
    );

    let i = drover_in(d, &["backup", "inspect", "ehr.dbk", "--format", "json"]);
    let inspected: serde_json::Value = serde_json::from_slice(&i.stdout).expect("json");
    assert_eq!(inspected["header"]["dataset"], "ehr");
    assert_eq!(inspected["key_provider"], "file");
    let key_text = std::fs::read_to_string(d.join("k.key")).expect("key");
    let key_hex = key_text.trim().rsplit(' ').next().unwrap_or_default();
    for out in [&c, &v, &r, &i] {
        assert!(
            !text(&out.stdout).contains(key_hex) && !text(&out.stderr).contains(key_hex),
            "key material printed"
        );
    }
}

#[test]
fn a_refused_restore_exits_1_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("data"), vec![42u8; 3 << 20]).expect("write");
    drover_in(d, &["key", "generate", "file:k.key"]);
    drover_in(d, &["key", "generate", "file:other.key"]);
    drover_in(
        d,
        &["backup", "create", "data", "b.dbk", "--key", "file:k.key"],
    );
    let wrong = drover_in(
        d,
        &[
            "backup",
            "restore",
            "b.dbk",
            "out",
            "--key",
            "file:other.key",
        ],
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong.stderr).contains("wrong key"),
        "{}",
        text(&wrong.stderr)
    );
    let mut bytes = std::fs::read(d.join("b.dbk")).expect("read");
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(d.join("b.dbk"), bytes).expect("write");
    let tampered = drover_in(
        d,
        &["backup", "restore", "b.dbk", "out", "--key", "file:k.key"],
    );
    assert_eq!(tampered.status.code(), Some(1));
    assert!(
        text(&tampered.stderr).contains("failed authentication"),
        "{}",
        text(&tampered.stderr)
    );
    let left: Vec<String> = std::fs::read_dir(d)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left.iter().any(|n| n == "out" || n.contains("drover-tmp")),
        "{left:?}"
    );
}

#[test]
fn sampled_verify_of_a_directory_names_the_bad_backup_and_exits_1() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    drover_in(d, &["key", "generate", "file:k.key"]);
    std::fs::create_dir(d.join("vault")).expect("mkdir");
    for i in 0..4 {
        std::fs::write(d.join(format!("in{i}")), format!("data {i}").repeat(1000)).expect("write");
        let c = drover_in(
            d,
            &[
                "backup",
                "create",
                &format!("in{i}"),
                &format!("vault/b{i}.dbk"),
                "--key",
                "file:k.key",
            ],
        );
        assert_eq!(c.status.code(), Some(0));
    }
    let ok = drover_in(
        d,
        &[
            "backup",
            "verify",
            "vault",
            "--sample",
            "2",
            "--seed",
            "7",
            "--key",
            "file:k.key",
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stdout));
    assert!(text(&ok.stdout).contains("unresolved verification errors: 0 (seed 7)"));
    let mut bytes = std::fs::read(d.join("vault/b2.dbk")).expect("read");
    let n = bytes.len();
    bytes[n - 100] ^= 4;
    std::fs::write(d.join("vault/b2.dbk"), bytes).expect("write");
    let bad = drover_in(
        d,
        &[
            "backup",
            "verify",
            "vault",
            "--sample",
            "2",
            "--seed",
            "7",
            "--key",
            "file:k.key",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    let out = text(&bad.stdout);
    assert!(out.contains("FAILED") && out.contains("b2.dbk"), "{out}");
    assert!(out.contains("unresolved verification errors: 1"), "{out}");
}

#[test]
fn garbage_backups_are_errors_not_crashes() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    drover_in(d, &["key", "generate", "file:k.key"]);
    for (i, bytes) in [
        vec![],
        b"DRVRBKP\0\x01\xff\xff\xff\xff".to_vec(),
        vec![0u8; 5000],
        b"DRVRBKP\0\x01\x05\0\0\0{}{}{".to_vec(),
    ]
    .iter()
    .enumerate()
    {
        let p = format!("g{i}.dbk");
        std::fs::write(d.join(&p), bytes).expect("write");
        for args in [
            vec!["backup", "verify", p.as_str()],
            vec!["backup", "verify", p.as_str(), "--key", "file:k.key"],
            vec![
                "backup",
                "restore",
                p.as_str(),
                "out",
                "--key",
                "file:k.key",
            ],
            vec!["backup", "inspect", p.as_str()],
            vec![
                "backup",
                "rewrap",
                p.as_str(),
                "--from",
                "file:k.key",
                "--to",
                "file:k.key",
            ],
        ] {
            let out = drover_in(d, &args);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{args:?}: {}",
                text(&out.stderr)
            );
        }
    }
    assert_eq!(
        drover_in(d, &["backup", "verify", "x.dbk", "--key", "kms:nope"])
            .status
            .code(),
        Some(1)
    );
}

/// Every `{"secret": {"env": VAR}}` in a plan's JSON.
fn secret_vars(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(env) = m
                .get("secret")
                .and_then(|s| s.get("env"))
                .and_then(|e| e.as_str())
            {
                out.push(env.to_owned());
            }
            m.values().for_each(|x| secret_vars(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| secret_vars(x, out)),
        _ => {}
    }
}

#[test]
fn plans_hold_no_secret_values() {
    const VALUE: &str = "s3cret-VALUE-9d8e7f21";
    let mut checked = 0;
    for f in examples() {
        let out = drover(&["plan", &f, "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{f}: {}", text(&out.stderr));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
        let mut vars = Vec::new();
        secret_vars(&plan, &mut vars);
        if vars.is_empty() {
            continue;
        }
        // With every secret's variable set, the plan names the variables and holds no value.
        let mut c = Command::new(env!("CARGO_BIN_EXE_drover"));
        c.args(["plan", &f, "--format", "json"]).current_dir(root());
        for v in &vars {
            c.env(v, VALUE);
        }
        let out = c.output().expect("drover runs");
        let json = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{f}");
        assert!(
            !json.contains(VALUE),
            "{f}: a secret's value is in the plan"
        );
        for v in &vars {
            assert!(json.contains(v.as_str()), "{f}: the plan names {v}");
        }
        checked += 1;
    }
    assert!(checked > 0, "no example runbook has a secret parameter");
}

#[test]
fn a_huge_source_line_is_not_echoed_in_a_diagnostic() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("big.drover");
    let blob = "a".repeat(1_000_000);
    std::fs::write(
        &file,
        format!(
            "runbook \"x\" {{\n  rto = 1h\n  rpo = 1h\n}}\nstep a {{\n  action = wait\n  with {{ duration = \"{blob}\" }}\n}}\n"
        ),
    )
    .expect("write");
    let out = drover(&["check", &file.display().to_string()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.len() < 10_000, "{} bytes of diagnostics", err.len());
    assert!(err.contains("big.drover:7:"), "{err}");
    assert!(err.contains("not shown"), "{err}");
}

#[test]
fn verifying_a_file_that_is_not_a_bundle_says_so_without_echoing_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let key = d.join("k");
    let out = drover(&[
        "key",
        "generate",
        "--signing",
        &format!("file:{}", key.display()),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let junk: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(d.join("junk.tar"), &junk).expect("write");
    let out = drover(&[
        "evidence",
        "verify",
        &d.join("junk.tar").display().to_string(),
        "--public-key",
        &format!("file:{}.pub", key.display()),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a Drover evidence bundle"), "{err}");
    assert!(err.len() < 400, "{err}");
    assert!(!err.contains('\u{fffd}'), "{err}");
}
