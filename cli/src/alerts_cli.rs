//! `drover alerts list | test`: what the server told people, and trying a sink.

use drover_engine::clock::{Clock, SystemClock};
use drover_engine::run_record::rfc3339;
use std::process::ExitCode;

fn print_list(v: &serde_json::Value, json: bool) -> ExitCode {
    if json {
        outln!("{v}");
        return ExitCode::SUCCESS;
    }
    let sinks = v["sinks"].as_array().cloned().unwrap_or_default();
    if sinks.is_empty() {
        outln!("sinks: none configured");
    } else {
        let names: Vec<String> = sinks
            .iter()
            .map(|s| {
                format!(
                    "{} ({})",
                    s["name"].as_str().unwrap_or("?"),
                    s["type"].as_str().unwrap_or("?")
                )
            })
            .collect();
        outln!("sinks: {}", names.join(", "));
    }
    let alerts = v["alerts"].as_array().cloned().unwrap_or_default();
    if alerts.is_empty() {
        outln!("no alerts");
    }
    for a in &alerts {
        outln!(
            "{:<8} {}  {}",
            a["state"].as_str().unwrap_or("?").to_uppercase(),
            a["updated_at"].as_str().unwrap_or(""),
            a["summary"].as_str().unwrap_or("")
        );
        outln!("         key {}", a["key"].as_str().unwrap_or("?"));
        for s in a["sinks"].as_array().into_iter().flatten() {
            let mut line = format!(
                "         → {}: {} ({} attempt(s))",
                s["sink"].as_str().unwrap_or("?"),
                match s["delivered"].as_str() {
                    Some("") | None => "not delivered",
                    Some(d) => d,
                },
                s["attempts"].as_u64().unwrap_or(0)
            );
            if let Some(e) = s["last_error"].as_str() {
                line.push_str(&format!(", last error: {e}"));
            }
            if let Some(g) = s["gave_up"].as_str() {
                line.push_str(&format!(", gave up on the {g}"));
            }
            outln!("{line}");
        }
    }
    ExitCode::SUCCESS
}

/// The alerts journaled in `state` (no sinks: those are the server's configuration).
pub fn list_local(state: &str, json: bool) -> ExitCode {
    match drover_ops::alerts::alert_list(&drover_ops::Workspace::new(state)) {
        Ok(list) => print_list(&serde_json::json!({ "sinks": [], "alerts": list }), json),
        Err(e) => {
            errln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The server's sinks and alerts.
pub fn list_remote(server: &str, json: bool) -> ExitCode {
    let url = crate::remote::base(server);
    match crate::remote::get(&url, "/api/v1/alerts") {
        Ok(v) => print_list(&v, json),
        Err(e) => {
            errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Asks the server to send a test alert through `sink`.
pub fn test_remote(server: &str, sink: &str, json: bool) -> ExitCode {
    let url = crate::remote::base(server);
    match crate::remote::post(
        &url,
        "/api/v1/alerts/test",
        &serde_json::json!({ "sink": sink }),
    ) {
        Ok(v) => {
            if json {
                outln!("{v}");
            } else {
                outln!(
                    "test alert delivered to `{sink}`: {}",
                    v["answer"].as_str().unwrap_or("?")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends a test alert through `sink` of the configuration file at `config`, from this host.
pub fn test_local(config: &str, sink: &str, json: bool) -> ExitCode {
    let cfg = match std::fs::read_to_string(config)
        .map_err(|e| e.to_string())
        .and_then(|t| drover_alerts::AlertsConfig::from_toml(&t).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            errln!("error: {config}: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(s) = cfg.sink(sink) else {
        errln!("error: {config} has no sink `{sink}`");
        return ExitCode::from(2);
    };
    let now = SystemClock.now_ms();
    let host = drover_engine::journal::hostname();
    let alert = drover_alerts::Alert {
        key: format!("drover/test/{sink}/{now}"),
        kind: drover_alerts::AlertKind::Test,
        summary: format!("Test alert from drover on {host} to sink `{sink}`"),
        runbook: None,
        run_id: None,
        details: std::collections::BTreeMap::new(),
        since: rfc3339(now),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let http = reqwest::Client::new();
    let r = rt.block_on(drover_alerts::deliver(
        s,
        &alert,
        drover_alerts::Action::Trigger,
        &format!("drover on {host}"),
        now,
        &http,
    ));
    match r {
        Ok(answer) => {
            if json {
                outln!(
                    "{}",
                    serde_json::json!({ "sink": sink, "delivered": true, "answer": answer })
                );
            } else {
                outln!("test alert delivered to `{sink}`: {answer}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("error: sink `{sink}`: {e}");
            ExitCode::FAILURE
        }
    }
}
