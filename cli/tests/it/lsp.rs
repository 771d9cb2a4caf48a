//! `drover lsp` driven as an editor drives it: real JSON-RPC over the process's stdin and stdout.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

/// How long any one answer may take before the test gives up (a hang is a failure, not a wait).
const PATIENCE: Duration = Duration::from_secs(60);

struct Client {
    child: Child,
    stdin: ChildStdin,
    incoming: Receiver<Value>,
    /// Notifications read while waiting for something else.
    backlog: Vec<Value>,
    next_id: i64,
}

impl Client {
    fn start(dir: &Path) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .arg("lsp")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("drover lsp starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; len.expect("a Content-Length header")];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let v: Value = serde_json::from_slice(&body).expect("a JSON message");
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut c = Client {
            child,
            stdin,
            incoming: rx,
            backlog: Vec::new(),
            next_id: 0,
        };
        let init = c.request(
            "initialize",
            json!({ "processId": null, "rootUri": null, "capabilities": {},
                    "initializationOptions": { "debounceMs": 20 } }),
        );
        let caps = &init["capabilities"];
        for cap in [
            "completionProvider",
            "hoverProvider",
            "definitionProvider",
            "referencesProvider",
            "renameProvider",
            "documentFormattingProvider",
            "documentSymbolProvider",
            "codeActionProvider",
        ] {
            assert!(!caps[cap].is_null(), "the server announces {cap}: {caps}");
        }
        c.notify("initialized", json!({}));
        c
    }

    fn send(&mut self, v: &Value) {
        let body = serde_json::to_vec(v).expect("serialize");
        write!(self.stdin, "Content-Length: {}\r\n\r\n", body.len()).expect("write");
        self.stdin.write_all(&body).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    fn next(&mut self) -> Value {
        match self.incoming.recv_timeout(PATIENCE) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => panic!("drover lsp said nothing for {PATIENCE:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("drover lsp closed its output"),
        }
    }

    /// The response's `result`; a protocol error is returned as `{"error": ...}`.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let v = self.next();
            if v["id"] == json!(id) && v.get("method").is_none() {
                if let Some(e) = v.get("error") {
                    return json!({ "error": e });
                }
                return v["result"].clone();
            }
            self.backlog.push(v);
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let v = self.call(method, params);
        assert!(v.get("error").is_none(), "{method} failed: {v}");
        v
    }

    /// The next diagnostics published for `uri` (at `version`, when given).
    fn diagnostics(&mut self, uri: &str, version: Option<i64>) -> Vec<Value> {
        let fits = |v: &Value| {
            v["method"] == "textDocument/publishDiagnostics"
                && v["params"]["uri"] == uri
                && version.is_none_or(|n| v["params"]["version"] == json!(n))
        };
        if let Some(i) = self.backlog.iter().position(fits) {
            let v = self.backlog.remove(i);
            return v["params"]["diagnostics"]
                .as_array()
                .cloned()
                .unwrap_or_default();
        }
        loop {
            let v = self.next();
            if fits(&v) {
                return v["params"]["diagnostics"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
            }
            self.backlog.push(v);
        }
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "drover", "version": 1, "text": text } }),
        );
    }

    /// Replaces the whole text of an open document (a full-text `didChange`).
    fn replace_text(&mut self, uri: &str, version: i64, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [{ "text": text }] }),
        );
    }

    fn stop(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        let status = self.child.wait().expect("drover lsp exits");
        assert!(status.success(), "drover lsp exit status {status}");
    }
}

/// The (line, UTF-16 column) of the end of the `n`th occurrence of `needle`, minus `back` columns.
fn at(text: &str, needle: &str, back: u32) -> Value {
    let off = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` in the text"))
        + needle.len();
    let line = text[..off].matches('\n').count();
    let col = text[..off]
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .encode_utf16()
        .count();
    json!({ "line": line, "character": col as u32 - back })
}

/// The range of the first occurrence of `word` after `context` in `text`.
fn range_of(text: &str, context: &str, word: &str) -> Value {
    let base = text
        .find(context)
        .unwrap_or_else(|| panic!("`{context}` in the text"));
    let start = base + text[base..].find(word).expect("word after its context");
    let pos = |off: usize| {
        let line = text[..off].matches('\n').count();
        let col = text[..off]
            .rsplit('\n')
            .next()
            .unwrap_or("")
            .encode_utf16()
            .count();
        json!({ "line": line, "character": col })
    };
    json!({ "start": pos(start), "end": pos(start + word.len()) })
}

fn labels(items: &Value) -> Vec<String> {
    items["items"]
        .as_array()
        .expect("a completion list")
        .iter()
        .map(|i| i["label"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

const RUNBOOK: &str = r#"import "lib/checks.drover"

runbook "EHR failover" {
  rto       = 4h
  rpo       = 15m
  modes     = [drill, failover]
  operators = "operators.toml"
}

param region: string = "us-west-2"
param zone_id: string = "Z0EHR"

step verify_dump {
  action   = backup.verify
  estimate = { p50 = 12m, p95 = 25m }
  with {
    source = "s3://ehr/{{ region }}/latest.dbk"
    key    = "aws-kms:alias/ehr"
  }
}

step approve {
  action = approval
  after  = [verify_dump]
  with {
    prompt    = "Move EHR to {{ region }}?"
    approvers = 1
    roles     = ["incident-commander"]
  }
}

step dns_cutover {
  action   = aws_route53.set_failover
  after    = [approve]
  estimate = 30s..2m
  with {
    zone_id = zone_id
    name    = "ehr.example.org"
    type    = A
    active  = "ehr-{{ region }}"
  }
}

step dns_insync {
  action = aws_route53.wait_insync
  with {
    change_id = steps.dns_cutover.change_id
  }
}

use smoke {
  group = service_checks
  after = [dns_insync]
  with {
    url      = "https://ehr.example.org/health"
    hostname = "ehr.example.org"
    expect   = ["10.0.0.1"]
  }
}

milestone restored {
  after     = [smoke]
  stops_rto = true
}
"#;

const LIBRARY: &str = r#"group service_checks {
  param url: string
  param hostname: string
  param expect: list<string>

  step resolves {
    action  = dns.wait_resolves
    timeout = 10m
    with {
      name   = "{{ hostname }}"
      expect = expect
    }
  }

  step healthy {
    action  = http.check
    after   = [resolves]
    timeout = 5m
    with {
      url = "{{ url }}"
    }
  }
}
"#;

const ROSTER: &str = r#"[operators.alice]
roles = ["incident-commander", "dba-lead"]
keys  = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"]
"#;

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("lib")).expect("lib dir");
    std::fs::write(dir.path().join("lib/checks.drover"), LIBRARY).expect("library");
    std::fs::write(dir.path().join("operators.toml"), ROSTER).expect("roster");
    std::fs::write(dir.path().join("ehr.drover"), RUNBOOK).expect("runbook");
    dir
}

/// A server in `dir` with the example runbook open, checked clean; the runbook's URI.
fn session(dir: &tempfile::TempDir) -> (Client, String) {
    let main = uri(&dir.path().join("ehr.drover"));
    let mut c = Client::start(dir.path());
    c.open(&main, RUNBOOK);
    assert_eq!(c.diagnostics(&main, Some(1)), Vec::<Value>::new());
    (c, main)
}

#[test]
fn diagnostics_with_exact_ranges_codes_and_quick_fixes() {
    let dir = workspace();
    let main = uri(&dir.path().join("ehr.drover"));
    // Two mistakes: a typo'd step id in `after`, and a word outside the input's fixed set.
    let text = RUNBOOK
        .replace("after  = [verify_dump]", "after  = [verfy_dump]")
        .replace("type    = A\n", "type    = AA\n");
    let mut c = Client::start(dir.path());
    c.open(&main, &text);
    let diags = c.diagnostics(&main, Some(1));
    assert_eq!(diags.len(), 2, "{diags:#?}");
    let unknown = diags
        .iter()
        .find(|d| d["code"] == "DR0011")
        .expect("an unknown-step diagnostic");
    assert_eq!(
        unknown["range"],
        range_of(&text, "after  = [", "verfy_dump")
    );
    assert_eq!(unknown["severity"], 1);
    assert_eq!(unknown["source"], "drover");
    assert_eq!(unknown["message"], "no step is called `verfy_dump`");
    assert!(
        unknown["codeDescription"]["href"]
            .as_str()
            .is_some_and(|h| h.ends_with("diagnostics.md#dr0011")),
        "{unknown}"
    );
    let word = diags
        .iter()
        .find(|d| d["code"] == "DR0018")
        .expect("a wrong-word diagnostic");
    assert_eq!(word["range"], range_of(&text, "type    = ", "AA"));

    // The same messages as `drover check`.
    std::fs::write(dir.path().join("typos.drover"), &text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["check", "--format", "json", "typos.drover"])
        .current_dir(dir.path())
        .output()
        .expect("drover check");
    let check: Value = serde_json::from_slice(&out.stdout).expect("check JSON");
    let mut from_check: Vec<String> = check
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["code"].as_str().unwrap_or(""),
                d["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    let mut from_lsp: Vec<String> = diags
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["code"].as_str().unwrap_or(""),
                d["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    from_check.sort();
    from_lsp.sort();
    assert_eq!(from_lsp, from_check);

    // The typo'd step id has a mechanical fix: the suggested id, replacing exactly the word.
    let actions = c.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": main }, "range": unknown["range"],
                "context": { "diagnostics": [unknown] } }),
    );
    let fix = actions
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| {
            a["title"]
                .as_str()
                .is_some_and(|t| t.contains("verify_dump"))
        })
        .unwrap_or_else(|| panic!("a fix to verify_dump: {actions}"));
    let edits = &fix["edit"]["changes"][main.as_str()];
    assert_eq!(edits[0]["newText"], "verify_dump");
    assert_eq!(edits[0]["range"], unknown["range"]);

    // Fixing both (an incremental edit each) clears the file.
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": main, "version": 2 },
                "contentChanges": [
                  { "range": range_of(&text, "after  = [", "verfy_dump"), "text": "verify_dump" }
                ] }),
    );
    let fixed_once = text.replacen("verfy_dump", "verify_dump", 1);
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": main, "version": 3 },
                "contentChanges": [
                  { "range": range_of(&fixed_once, "type    = ", "AA"), "text": "A" }
                ] }),
    );
    let diags = c.diagnostics(&main, Some(3));
    assert!(diags.is_empty(), "{diags:#?}");

    // A step without a timeout gets its action's default written out.
    let actions = c.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": main }, "range": { "start": at(RUNBOOK, "step dns_cutover", 2), "end": at(RUNBOOK, "step dns_cutover", 2) },
                "context": { "diagnostics": [] } }),
    );
    let add = actions
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| {
            a["title"]
                .as_str()
                .is_some_and(|t| t.contains("timeout = 10m"))
        })
        .unwrap_or_else(|| panic!("an add-timeout action: {actions}"));
    let edit = &add["edit"]["changes"][main.as_str()][0];
    assert_eq!(edit["newText"], "\n  timeout = 10m");
    assert_eq!(
        edit["range"]["start"],
        at(RUNBOOK, "action   = aws_route53.set_failover", 0)
    );
    c.stop();
}

#[test]
fn completion_of_actions_inputs_steps_outputs_parameters_words_and_roles() {
    let dir = workspace();
    let (mut c, main) = session(&dir);
    let complete = |c: &mut Client, pos: Value| {
        c.request(
            "textDocument/completion",
            json!({ "textDocument": { "uri": main }, "position": pos }),
        )
    };

    // Typing `action = aws_` in a new step (an edit the server has not compiled yet).
    let typed = RUNBOOK.replace(
        "use smoke {",
        "step reroute {\n  action = aws_\n}\n\nuse smoke {",
    );
    c.replace_text(&main, 2, &typed);
    let items = complete(&mut c, at(&typed, "action = aws_", 0));
    let names = labels(&items);
    assert!(
        names.contains(&"aws_route53.set_failover".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"aws_ec2.replace_route".to_owned()),
        "{names:?}"
    );
    assert!(names.iter().all(|n| n.starts_with("aws_")), "{names:?}");
    let set_failover = items["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["label"] == "aws_route53.set_failover")
        .expect("set_failover");
    assert!(
        set_failover["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{set_failover}"
    );
    // The edit replaces what was typed, dots and all.
    assert_eq!(
        set_failover["textEdit"]["range"]["start"],
        at(&typed, "action = aws_", 4)
    );

    // Inside `with {` of the set_failover step: its inputs not yet set, required first, typed.
    let blank = RUNBOOK
        .replace("    active  = \"ehr-{{ region }}\"\n", "    \n")
        .replace("    hostname = \"ehr.example.org\"\n", "    \n");
    c.replace_text(&main, 3, &blank);
    let pos = at(&blank, "    type    = A\n    ", 0);
    let items = complete(&mut c, pos);
    let names = labels(&items);
    assert!(names.contains(&"active".to_owned()), "{names:?}");
    for set in ["zone_id", "name", "type"] {
        assert!(
            !names.contains(&set.to_owned()),
            "{set} is already set: {names:?}"
        );
    }
    // An empty `with {` of a new set_failover step: every input, the required ones first.
    let fresh = blank.replace(
        "use smoke {",
        "step extra {\n  action = aws_route53.set_failover\n  with {\n    \n  }\n}\n\nuse smoke {",
    );
    c.replace_text(&main, 4, &fresh);
    let c2 = c.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": main }, "position": at(&fresh, "set_failover\n  with {\n    ", 0) }),
    );
    let all = c2["items"].as_array().expect("items");
    let mut by_sort: Vec<&Value> = all.iter().collect();
    by_sort.sort_by_key(|i| i["sortText"].as_str().unwrap_or("").to_owned());
    let first: Vec<&str> = by_sort
        .iter()
        .take(3)
        .map(|i| i["label"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(first, ["name", "type", "zone_id"], "required inputs first");
    let ty = all.iter().find(|i| i["label"] == "type").expect("type");
    assert!(
        ty["detail"]
            .as_str()
            .is_some_and(|d| d.contains("AAAA") && d.contains("required")),
        "{ty}"
    );

    // The fixed set of `type`, a step's outputs, step ids in `after`, parameters in templates,
    // modes and roles.
    let words = labels(&complete(&mut c, at(&blank, "type    = ", 0)));
    assert!(words.contains(&"CNAME".to_owned()), "{words:?}");
    let outputs = labels(&complete(&mut c, at(&blank, "steps.dns_cutover.", 0)));
    assert!(outputs.contains(&"change_id".to_owned()), "{outputs:?}");
    let steps = labels(&complete(&mut c, at(&blank, "after  = [", 0)));
    assert!(
        steps.contains(&"verify_dump".to_owned()) && steps.contains(&"dns_cutover".to_owned()),
        "{steps:?}"
    );
    assert!(
        !steps.contains(&"approve".to_owned()),
        "a step does not wait for itself: {steps:?}"
    );
    let params = labels(&complete(&mut c, at(&blank, "s3://ehr/{{ ", 0)));
    assert!(
        params.contains(&"region".to_owned()) && params.contains(&"zone_id".to_owned()),
        "{params:?}"
    );
    let modes = labels(&complete(&mut c, at(&blank, "modes     = [", 0)));
    assert_eq!(modes, ["drill", "failover", "failback"]);
    let roles = labels(&complete(&mut c, at(&blank, "roles     = [\"", 0)));
    assert_eq!(roles, ["dba-lead", "incident-commander"]);
    // A `use`'s arguments are the group's parameters, from the imported file.
    let args = labels(&complete(&mut c, at(&fresh, "/health\"\n    ", 0)));
    assert_eq!(args, ["hostname"], "url and expect are set");
    c.stop();
}

#[test]
fn hover_definition_references_rename_format_and_symbols() {
    let dir = workspace();
    let lib_path = dir.path().join("lib/checks.drover");
    let lib = uri(&lib_path);
    let (mut c, main) = session(&dir);

    let hover = |c: &mut Client, pos: Value| {
        let h = c.request(
            "textDocument/hover",
            json!({ "textDocument": { "uri": main }, "position": pos }),
        );
        h["contents"]["value"].as_str().unwrap_or("").to_owned()
    };
    let action = hover(&mut c, at(RUNBOOK, "aws_route53.set_fail", 0));
    assert!(
        action.contains("**aws_route53.set_failover**")
            && action.contains("`zone_id`")
            && action.contains("Outputs"),
        "{action}"
    );
    let step = hover(&mut c, at(RUNBOOK, "change_id = steps.dns_cu", 0));
    assert!(
        step.contains("dns_cutover")
            && step.contains("`approve`")
            && step.contains("estimate: 30s..2m"),
        "{step}"
    );
    let insync = hover(&mut c, at(RUNBOOK, "step dns_ins", 0));
    assert!(
        insync.contains("`dns_cutover` (reads its outputs)"),
        "the resolved dependency: {insync}"
    );
    let param = hover(&mut c, at(RUNBOOK, "zone_id = zone_i", 0));
    assert!(
        param.contains("param") && param.contains("string") && param.contains("\"Z0EHR\""),
        "{param}"
    );
    let duration = hover(&mut c, at(RUNBOOK, "rto       = 4", 0));
    assert!(duration.contains("14400 seconds"), "{duration}");

    // Go to definition: a step id, and a group across the import.
    let def = c.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": main }, "position": at(RUNBOOK, "after  = [verify_d", 0) }),
    );
    assert_eq!(def["uri"], main.as_str());
    assert_eq!(
        def["range"],
        range_of(RUNBOOK, "step verify_dump", "verify_dump")
    );
    let def = c.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": main }, "position": at(RUNBOOK, "group = service_ch", 0) }),
    );
    assert_eq!(def["uri"], lib.as_str(), "{def}");
    assert_eq!(def["range"], range_of(LIBRARY, "group ", "service_checks"));
    let def = c.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": main }, "position": at(RUNBOOK, "import \"lib/che", 0) }),
    );
    assert_eq!(def["uri"], lib.as_str(), "{def}");

    // References and rename of a step: its id, `after`, `steps.ID.OUTPUT`.
    let refs = c.request(
        "textDocument/references",
        json!({ "textDocument": { "uri": main }, "position": at(RUNBOOK, "step dns_cut", 0),
                "context": { "includeDeclaration": true } }),
    );
    assert_eq!(refs.as_array().map(Vec::len), Some(2), "{refs}");
    let templated = RUNBOOK.replace(
        "    name    = \"ehr.example.org\"\n",
        "    name    = \"ehr.example.org\"\n    comment = \"after {{ steps.verify_dump.sha256 }}\"\n",
    );
    c.replace_text(&main, 2, &templated);
    let prep = c.request(
        "textDocument/prepareRename",
        json!({ "textDocument": { "uri": main }, "position": at(&templated, "step verify_d", 0) }),
    );
    assert_eq!(
        prep,
        range_of(&templated, "step verify_dump", "verify_dump")
    );
    let edit = c.request(
        "textDocument/rename",
        json!({ "textDocument": { "uri": main }, "position": at(&templated, "step verify_d", 0), "newName": "check_dump" }),
    );
    let edits = edit["changes"][main.as_str()]
        .as_array()
        .expect("edits")
        .clone();
    assert_eq!(edits.len(), 3, "declaration, after, template: {edits:#?}");
    let renamed = apply(&templated, &edits);
    assert!(!renamed.contains("verify_dump"), "{renamed}");
    assert!(
        renamed.contains("step check_dump {")
            && renamed.contains("after  = [check_dump]")
            && renamed.contains("{{ steps.check_dump.sha256 }}")
    );
    let clash = c.call(
        "textDocument/rename",
        json!({ "textDocument": { "uri": main }, "position": at(&templated, "step verify_d", 0), "newName": "approve" }),
    );
    assert!(
        clash["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already called `approve`")),
        "{clash}"
    );
    let bad = c.call(
        "textDocument/rename",
        json!({ "textDocument": { "uri": main }, "position": at(&templated, "step verify_d", 0), "newName": "9 lives" }),
    );
    assert!(bad.get("error").is_some(), "{bad}");

    // Formatting is `drover fmt`.
    let messy = "runbook \"x\" {\nrto=1h\n    rpo   = 5m\n}\nstep a {\naction=wait\n  with { duration = 1s }\n}\nmilestone done {\n  after = [a]\n  stops_rto = true\n}\n";
    c.replace_text(&main, 3, messy);
    let edits = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": main }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    let formatted = apply(messy, edits.as_array().expect("edits"));
    let expected = drover_dsl::format_source("ehr.drover", messy).expect("formats");
    assert_eq!(formatted, expected);
    assert!(formatted.contains("  rto = 1h\n"), "{formatted}");
    // Text that does not parse is not formatted (nothing would survive the broken item).
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": main, "version": 4 }, "contentChanges": [{ "text": "step a {\n  action = \n" }] }),
    );
    let refused = c.call(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": main }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot format")),
        "{refused}"
    );

    // The outline.
    c.replace_text(&main, 5, RUNBOOK);
    let symbols = c.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": main } }),
    );
    let names: Vec<&str> = symbols
        .as_array()
        .expect("symbols")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "runbook",
            "region",
            "zone_id",
            "verify_dump",
            "approve",
            "dns_cutover",
            "dns_insync",
            "smoke",
            "restored"
        ]
    );
    c.stop();
}

#[test]
fn a_library_change_is_reported_through_the_runbook_that_imports_it() {
    let dir = workspace();
    let lib = uri(&dir.path().join("lib/checks.drover"));
    let (mut c, _) = session(&dir);
    c.open(&lib, LIBRARY);
    assert_eq!(
        c.diagnostics(&lib, Some(1)),
        Vec::<Value>::new(),
        "a library alone has no header and that is fine"
    );
    // Break the library: an action that does not exist.
    let broken = LIBRARY.replace("action  = http.check", "action  = http.chek");
    c.replace_text(&lib, 2, &broken);
    let diags = c.diagnostics(&lib, Some(2));
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(diags[0]["code"], "DR0015");
    assert_eq!(
        diags[0]["range"],
        range_of(&broken, "action  = ", "http.chek")
    );
    c.stop();
}

#[test]
fn a_library_changed_on_disk_is_checked_again_through_the_open_runbook() {
    let dir = workspace();
    let lib_path = dir.path().join("lib/checks.drover");
    let lib = uri(&lib_path);
    let (mut c, _) = session(&dir);
    // The library is not open: its problems are still published, on its own URI (none yet).
    assert_eq!(c.diagnostics(&lib, None), Vec::<Value>::new());
    let broken = LIBRARY.replace("param hostname: string", "param hostname: strng");
    std::fs::write(&lib_path, &broken).expect("write the library");
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [{ "uri": lib, "type": 2 }] }),
    );
    let diags = c.diagnostics(&lib, None);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(diags[0]["code"], "DR0027");
    assert_eq!(diags[0]["range"], range_of(&broken, "hostname: ", "strng"));
    // Repaired on disk: the library's problems are cleared.
    std::fs::write(&lib_path, LIBRARY).expect("write the library");
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [{ "uri": lib, "type": 2 }] }),
    );
    assert_eq!(c.diagnostics(&lib, None), Vec::<Value>::new());
    c.stop();
}

/// Applies non-overlapping edits (LSP ranges) to a text.
fn apply(text: &str, edits: &[Value]) -> String {
    let offset = |p: &Value| {
        let line = p["line"].as_u64().unwrap_or(0) as usize;
        let col = p["character"].as_u64().unwrap_or(0) as usize;
        let start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
        let l = text[start..].split('\n').next().unwrap_or("");
        let mut units = 0;
        for (i, ch) in l.char_indices() {
            if units >= col {
                return start + i;
            }
            units += ch.len_utf16();
        }
        start + l.len()
    };
    let mut spans: Vec<(usize, usize, String)> = edits
        .iter()
        .map(|e| {
            (
                offset(&e["range"]["start"]),
                offset(&e["range"]["end"]),
                e["newText"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    spans.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut out = text.to_owned();
    for (s, e, t) in spans {
        out.replace_range(s..e, &t);
    }
    out
}
