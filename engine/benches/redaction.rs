//! The cost of redaction on the journal's hot path: serializing a typical step-succeeded payload
//! (a shell step's 16 KiB of stdout and stderr) through the [`Redactor`] that knows one secret
//! (and its hex and base64 spellings), next to plain `serde_json::to_string` of the same payload,
//! measured in the same run. Prints both rates and the ratio.
//! Run: `cargo bench -p drover-engine --bench redaction`.

use drover_engine::redactor::Redactor;
use drover_engine::scheduler::Event;

#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
fn main() {
    let line = "2026-12-02T03:00:00Z restored 4096 rows from chunk 17 of ehr.dump; sha256 ok\n";
    let text: String = line.repeat(16 * 1024 / line.len());
    let mut outputs = drover_schema::Outputs::new();
    outputs.insert("stdout".into(), serde_json::json!(text));
    outputs.insert("stderr".into(), serde_json::json!(text));
    outputs.insert("exit_code".into(), serde_json::json!(0));
    let event = Event::StepSucceeded {
        step: "restore".into(),
        attempt: 1,
        outputs,
    };
    let n = 2_000;
    let time = |f: &dyn Fn() -> usize| {
        let start = std::time::Instant::now();
        let mut bytes = 0;
        for _ in 0..n {
            bytes += f();
        }
        (start.elapsed(), bytes)
    };
    let (plain, b1) = time(&|| serde_json::to_string(&event).map_or(0, |s| s.len()));
    let r = Redactor::new();
    r.add("pHi-t0ken-7f3a9c1e5b");
    let (redacted, b2) = time(&|| r.json(&event).map_or(0, |s| s.len()));
    assert_eq!(b1, b2, "nothing to redact: the same bytes");
    let per = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!("payload: {} bytes", b1 / n);
    println!("serde_json::to_string   {:>10.0} payloads/s", per(plain));
    println!(
        "Redactor::json (1 secret) {:>8.0} payloads/s",
        per(redacted)
    );
    println!(
        "redacted ÷ plain time: {:.2}x",
        redacted.as_secs_f64() / plain.as_secs_f64()
    );
}
