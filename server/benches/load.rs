//! Load on one server, on 127.0.0.1 (run through `bench/server_load.sh`): RUNS concurrent runs of
//! 20 short steps started over the API, four Server-Sent Event subscribers per run. Checks that
//! every subscriber receives every event of its run, in order; reports p50/p99 event delivery
//! latency (journal time of the transition to its arrival at the subscriber), journaled steps per
//! second against the same runs driven in-process one after another (what `drover run` does),
//! and peak RSS (server and clients share this process).

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const STEPS: usize = 20;
const SUBSCRIBERS_PER_RUN: usize = 4;

fn runbook() -> String {
    let mut s = String::from("runbook \"load\" {\n  rto = 1h\n  rpo = 1h\n  modes = [drill]\n}\n");
    for i in 0..STEPS {
        let after = if i > 0 {
            format!("  after = [s{}]\n", i - 1)
        } else {
            String::new()
        };
        s.push_str(&format!(
            "step s{i} {{\n  action = wait\n{after}  with {{\n    duration = 1ms\n  }}\n}}\n"
        ));
    }
    s.push_str(&format!(
        "milestone m {{\n  after = [s{}]\n  stops_rto = true\n}}\n",
        STEPS - 1
    ));
    s
}

fn adapters() -> drover_engine::driver::Adapters {
    let sink: drover_adapters::local::NotifySink = Arc::new(|_: &str| {});
    drover_adapters::builtin_adapters(sink).into_iter().fold(
        drover_engine::driver::Adapters::default(),
        drover_engine::driver::Adapters::with,
    )
}

struct Quiet;
impl drover_engine::driver::Observer for Quiet {
    fn line(&self, _: &str) {}
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0)
}

#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
fn main() {
    let runs: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(50);
    let dir = tempfile::tempdir_in(".").expect("tmp");
    let d = dir.path();
    let key = d.join("alice");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub");
    std::fs::write(
        d.join("operators.toml"),
        format!(
            "[operators.alice]\nroles = [\"ic\"]\nkeys = [\"{}\"]\n",
            public.trim()
        ),
    )
    .expect("roster");
    std::fs::create_dir(d.join("runbooks")).expect("dir");
    std::fs::write(d.join("runbooks/load.drover"), runbook()).expect("runbook");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");

    // Baseline: the same runs driven in-process one after another, as `drover run` does.
    let baseline_runs = runs.min(10);
    let catalogue = drover_adapters::builtin_catalogue();
    let opts = drover_dsl::CompileOptions {
        catalogue: &catalogue,
        vars: Vec::new(),
        operators: None,
    };
    let plan = drover_dsl::compile_str("load.drover", &runbook(), &opts)
        .plan
        .expect("plan");
    let t0 = Instant::now();
    for i in 0..baseline_runs {
        let state = d.join("baseline");
        let journal = drover_engine::journal::SqliteJournal::open(&state).expect("journal");
        let clock: Arc<dyn drover_engine::clock::Clock> =
            Arc::new(drover_engine::clock::SystemClock);
        let spec = drover_engine::driver::RunSpec {
            run_id: format!("b{i}"),
            mode: drover_dsl::Mode::Drill,
            initiator: "bench".into(),
            state_dir: state.clone(),
            declared_at: clock.now_ms(),
            sources: Vec::new(),
            concurrent: Some("benchmark".into()),
            preflight_skipped: false,
            start: None,
            anchor: None,
        };
        let p = plan.clone();
        rt.block_on(async {
            let d = drover_engine::driver::Driver::start(
                spec,
                Arc::new(p),
                Box::new(journal),
                clock,
                adapters(),
                Arc::new(Quiet),
            )?;
            d.drive(true).await
        })
        .expect("baseline run");
    }
    let baseline = (baseline_runs * STEPS) as f64 / t0.elapsed().as_secs_f64();

    let result = rt.block_on(async move {
        let app = drover_server::App::new(
            drover_server::Config {
                replica: Default::default(),
                alerts: drover_alerts::AlertsConfig::default(),
                state: d.join("state"),
                operators: d.join("operators.toml"),
                runbooks: d.join("runbooks"),
                name: "load".into(),
                evidence_key: None,
            },
            adapters,
        )
        .expect("app");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(drover_server::serve(
            app,
            listener,
            None,
            true,
            std::future::pending(),
        ));
        let http = reqwest::Client::new();
        let c: serde_json::Value = http
            .post(format!("{base}/api/v1/login/challenge"))
            .send()
            .await
            .expect("challenge")
            .json()
            .await
            .expect("json");
        let challenge = c["challenge"].as_str().expect("challenge");
        let sig = drover_identity::sign::with_key_file_in(
            drover_identity::LOGIN_NAMESPACE,
            &key,
            challenge,
        )
        .expect("sign");
        let login: serde_json::Value = http
            .post(format!("{base}/api/v1/login"))
            .json(&serde_json::json!({ "challenge": challenge, "signature": sig }))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        let token = login["token"].as_str().expect("token").to_owned();
        // Prepare and sign every start first, so the measured part is the runs themselves.
        let mut starts = Vec::new();
        let mut ids = std::collections::HashSet::new();
        while starts.len() < runs {
            let prep: serde_json::Value = http
                .post(format!("{base}/api/v1/runs/prepare"))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "runbook": "load.drover" }))
                .send()
                .await
                .expect("prepare")
                .json()
                .await
                .expect("json");
            // Run ids are made from the clock: two prepares in one millisecond may share one.
            if !ids.insert(prep["run_id"].as_str().unwrap_or_default().to_owned()) {
                continue;
            }
            let statement = prep["statement"].as_str().expect("statement").to_owned();
            let signature = drover_identity::sign::with_key_file(&key, &statement).expect("sign");
            starts.push(serde_json::json!({
                "runbook": "load.drover",
                "run_id": prep["run_id"],
                "statement": statement,
                "signature": signature,
                "concurrent": "load benchmark",
            }));
        }
        let t0 = Instant::now();
        let mut subs = Vec::new();
        for s in &starts {
            let r = http
                .post(format!("{base}/api/v1/runs"))
                .bearer_auth(&token)
                .json(s)
                .send()
                .await
                .expect("start");
            assert_eq!(r.status(), 202, "{:?}", r.text().await);
            let run = s["run_id"].as_str().expect("run").to_owned();
            for _ in 0..SUBSCRIBERS_PER_RUN {
                let (http, base, token, run) =
                    (http.clone(), base.clone(), token.clone(), run.clone());
                subs.push(tokio::spawn(async move {
                    subscribe(&http, &base, &token, &run).await
                }));
            }
        }
        let mut latencies = Vec::new();
        let mut complete = 0;
        for s in subs {
            let (ids, lat) = s.await.expect("subscriber");
            if ids.windows(2).all(|w| w[1] == w[0] + 1) && ids.first() == Some(&1) {
                complete += 1;
            }
            latencies.extend(lat);
        }
        let took = t0.elapsed().as_secs_f64();
        (starts.len(), complete, latencies, took)
    });
    let (started, complete, mut lat, took) = result;
    let steps_per_s = (started * STEPS) as f64 / took;
    println!(
        "{started} concurrent runs of {STEPS} steps, {} subscribers: {complete} received every event of their run in order",
        started * SUBSCRIBERS_PER_RUN
    );
    println!(
        "event delivery latency: p50 {} ms, p99 {} ms ({} events)",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99),
        lat.len()
    );
    println!(
        "journaled steps/s: server {steps_per_s:.0}, single-process baseline {baseline:.0} = {:.2}x",
        steps_per_s / baseline
    );
    println!(
        "peak RSS (server and clients in one process): {} MiB",
        peak_rss_kib() / 1024
    );
}

/// Reads a run's events to `end`: the ids in order, and each event's delivery latency (ms).
#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
async fn subscribe(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    run: &str,
) -> (Vec<usize>, Vec<u64>) {
    use futures_util::StreamExt;
    let resp = http
        .get(format!("{base}/api/v1/runs/{run}/events"))
        .bearer_auth(token)
        .send()
        .await
        .expect("events");
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let (mut ids, mut lat) = (Vec::new(), Vec::new());
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let mut id = None;
            let mut end = false;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if line.starts_with("event:") && line.contains("end") {
                    end = true;
                } else if let Some(v) = line.strip_prefix("data:") {
                    if let Ok(d) = serde_json::from_str::<serde_json::Value>(v.trim()) {
                        if let Some(at) = d["at"].as_u64() {
                            lat.push(now.saturating_sub(at));
                        }
                    }
                }
            }
            if let Some(id) = id {
                ids.push(id);
            }
            if end {
                return (ids, lat);
            }
        }
    }
    (ids, lat)
}
