//! How fast `drover lsp` answers a completion right after an edit, on a large runbook.
//!
//! The server is this program started again as `--serve` (`drover lsp`'s loop over stdio): every
//! message is serialized, framed, piped and parsed, as with an editor. For each sample: one incremental edit (`didChange`), then one completion request; the
//! time is from sending the edit to receiving the answer. Three kinds of completion: the inputs
//! inside a `with {` block, the step ids of `after = [` (every step of the file), and action
//! names. The baseline, measured in the same run, is what answering from scratch would cost: a
//! full compilation of the same text.
//!
//! Usage: `cargo run --release -p drover-lsp --example completion_bench [STEPS] [SAMPLES]`

use crossbeam_channel::Receiver;
use lsp_server::{Message, Notification, Request, RequestId};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn recv_response(rx: &Receiver<Message>, id: i32) -> Value {
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Message::Response(r)) if r.id == RequestId::from(id) => {
                return r.result.unwrap_or(Value::Null);
            }
            Ok(_) => {}
            Err(e) => panic!("no answer from the server: {e}"),
        }
    }
}

fn wait_diagnostics(rx: &Receiver<Message>) {
    loop {
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(Message::Notification(n)) if n.method == "textDocument/publishDiagnostics" => return,
            Ok(_) => {}
            Err(e) => panic!("no diagnostics: {e}"),
        }
    }
}

fn position(text: &str, needle: &str, from: usize) -> (usize, usize) {
    let off = from + text[from..].find(needle).expect("needle in the runbook") + needle.len();
    let line = text[..off].matches('\n').count();
    let col = off - text[..off].rfind('\n').map_or(0, |i| i + 1);
    (line, col)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[allow(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
fn main() {
    if std::env::args().nth(1).as_deref() == Some("--serve") {
        let catalogue = Arc::new(drover_adapters::builtin_catalogue());
        drover_lsp::run_stdio(catalogue).expect("server runs");
        return;
    }
    let mut args = std::env::args().skip(1);
    let steps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let samples: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let text = drover_dsl::synthetic_runbook(steps);
    let catalogue = drover_adapters::builtin_catalogue();
    println!(
        "runbook: {steps} steps, {} lines, {} bytes",
        text.lines().count(),
        text.len()
    );

    // Baseline: compiling the whole file once (what a server without the fast path would do).
    let mut compile_ms = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let c = drover_dsl::compile_str(
            "/bench/big.drover",
            &text,
            &drover_dsl::CompileOptions {
                catalogue: &catalogue,
                vars: Vec::new(),
                operators: None,
            },
        );
        compile_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(!c.has_errors(), "the generated runbook compiles");
    }
    let compile = percentile(&mut compile_ms, 0.5);

    // The server is this program again, with `--serve`: `drover lsp`'s loop on stdin and stdout,
    // every message serialized, framed, piped and parsed as an editor's would be.
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("--serve")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("server starts");
    let stdin = std::cell::RefCell::new(child.stdin.take().expect("stdin"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(stdout);
        while let Ok(Some(m)) = Message::read(&mut r) {
            if tx.send(m).is_err() {
                return;
            }
        }
    });
    let send = |m: Message| m.write(&mut *stdin.borrow_mut()).expect("send");
    send(Message::Request(Request::new(
        RequestId::from(1),
        "initialize".to_owned(),
        json!({ "processId": null, "rootUri": null, "capabilities": {} }),
    )));
    recv_response(&rx, 1);
    send(Message::Notification(Notification::new(
        "initialized".to_owned(),
        json!({}),
    )));
    let uri = "file:///bench/big.drover";
    let t = Instant::now();
    send(Message::Notification(Notification::new(
        "textDocument/didOpen".to_owned(),
        json!({ "textDocument": { "uri": uri, "languageId": "drover", "version": 1, "text": text } }),
    )));
    wait_diagnostics(&rx);
    let open_ms = t.elapsed().as_secs_f64() * 1e3;

    // A step near the end of the file: its `after` line is edited, its `with` and `after` and
    // `action` are completed.
    let target = format!("\nstep s{} {{\n", steps - steps / 10 + 3);
    let base = text.find(&target).expect("target step");
    let (edit_line, _) = position(&text, "  after    = [", base);
    let (with_line, _) = position(&text, "  with {\n", base);
    let (after_line, after_col) = position(&text, "  after    = [", base);
    let (action_line, action_col) = position(&text, "  action   = ", base);
    let kinds: [(&str, (usize, usize)); 3] = [
        ("inputs in `with {`", (with_line, 4)),
        ("step ids in `after = [`", (after_line, after_col)),
        ("action names", (action_line, action_col)),
    ];
    let mut id = 10;
    let mut version = 1;
    println!(
        "baseline: full compilation {compile:.1} ms; didOpen → first diagnostics {open_ms:.1} ms"
    );
    for (name, (line, col)) in kinds {
        let mut ms = Vec::new();
        let mut items = 0;
        for i in 0..samples {
            version += 1;
            // Insert a space at the start of the `after` line, then take it out again.
            let change = if i % 2 == 0 {
                json!({ "range": { "start": { "line": edit_line, "character": 0 }, "end": { "line": edit_line, "character": 0 } }, "text": " " })
            } else {
                json!({ "range": { "start": { "line": edit_line, "character": 0 }, "end": { "line": edit_line, "character": 1 } }, "text": "" })
            };
            let col = if i % 2 == 0 && line == edit_line {
                col + 1
            } else {
                col
            };
            id += 1;
            let t = Instant::now();
            send(Message::Notification(Notification::new(
                "textDocument/didChange".to_owned(),
                json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [change] }),
            )));
            send(Message::Request(Request::new(
                RequestId::from(id),
                "textDocument/completion".to_owned(),
                json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": col } }),
            )));
            let r = recv_response(&rx, id);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            items = r["items"].as_array().map_or(0, Vec::len);
        }
        let p50 = percentile(&mut ms, 0.5);
        let p95 = percentile(&mut ms, 0.95);
        let max = percentile(&mut ms, 1.0);
        println!(
            "{name:<26} {items:>6} items: p50 {p50:>6.2} ms, p95 {p95:>6.2} ms, max {max:>6.2} ms; p95 = {:.3}x the full compilation",
            p95 / compile
        );
    }
    send(Message::Request(Request::new(
        RequestId::from(id + 1),
        "shutdown".to_owned(),
        Value::Null,
    )));
    recv_response(&rx, id + 1);
    send(Message::Notification(Notification::new(
        "exit".to_owned(),
        Value::Null,
    )));
    let status = child.wait().expect("server exits");
    assert!(status.success(), "server exit status {status}");
}
