//! What each sink is sent: pure functions, so that the shapes are tested without a network.

use crate::{Action, Alert};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

/// The header carrying a webhook body's signature: `sha256=` and the hex HMAC-SHA256, keyed by
/// the sink's secret, of `TIMESTAMP.BODY`.
pub const SIGNATURE_HEADER: &str = "x-drover-signature";
/// The header carrying the Unix time (seconds) the signature covers (reject old ones: replay).
pub const TIMESTAMP_HEADER: &str = "x-drover-timestamp";

/// The generic webhook's JSON body.
#[must_use]
pub fn webhook_body(alert: &Alert, action: Action, source: &str) -> Value {
    json!({
        "version": 1,
        "event": action.as_str(),
        "key": alert.key,
        "kind": alert.kind.as_str(),
        "severity": alert.kind.severity().as_str(),
        "summary": alert.summary,
        "runbook": alert.runbook,
        "run_id": alert.run_id,
        "details": alert.details,
        "since": alert.since,
        "source": source,
    })
}

/// `sha256=HEX`: HMAC-SHA256 of `TIMESTAMP.BODY` under `secret`.
#[must_use]
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn headline(alert: &Alert, action: Action) -> String {
    match action {
        Action::Trigger => format!("FIRING: {}", alert.summary),
        Action::Resolve => format!("RESOLVED: {}", alert.summary),
    }
}

/// A Slack-compatible incoming webhook's body (`text`, in Slack's mrkdwn).
#[must_use]
pub fn slack_body(alert: &Alert, action: Action, source: &str) -> Value {
    let icon = match action {
        Action::Trigger => ":rotating_light:",
        Action::Resolve => ":white_check_mark:",
    };
    let mut text = format!("{icon} *{}*", headline(alert, action));
    for (k, v) in &alert.details {
        text.push_str(&format!("\n• {k}: {v}"));
    }
    text.push_str(&format!(
        "\n_{} · since {} · {} · key {}_",
        alert.kind.as_str(),
        alert.since,
        source,
        alert.key
    ));
    json!({ "text": text })
}

/// A PagerDuty Events API v2 event: a trigger with the alert as its payload, or a resolve of
/// the same `dedup_key`.
#[must_use]
pub fn pagerduty_body(alert: &Alert, action: Action, routing_key: &str, source: &str) -> Value {
    match action {
        Action::Trigger => {
            let mut summary = alert.summary.clone();
            if summary.len() > 1024 {
                let mut cut = 1021;
                while !summary.is_char_boundary(cut) {
                    cut -= 1;
                }
                summary.truncate(cut);
                summary.push_str("...");
            }
            json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": alert.key,
                "client": "Drover",
                "payload": {
                    "summary": summary,
                    "source": source,
                    "severity": alert.kind.severity().as_str(),
                    "component": alert.runbook,
                    "group": "drover",
                    "class": alert.kind.as_str(),
                    "custom_details": {
                        "run_id": alert.run_id,
                        "since": alert.since,
                        "details": alert.details,
                    },
                },
            })
        }
        Action::Resolve => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": alert.key,
        }),
    }
}

/// An e-mail's subject: `[Drover] FIRING: …` naming the runbook and what happened.
#[must_use]
pub fn email_subject(alert: &Alert, action: Action) -> String {
    let s = format!("[Drover] {}", headline(alert, action));
    // One line, whatever the summary held.
    s.replace(['\r', '\n'], " ")
}

/// An e-mail's plain-text body.
#[must_use]
pub fn email_text(alert: &Alert, action: Action, source: &str) -> String {
    let mut t = format!("{}\n\n", headline(alert, action));
    if let Some(r) = &alert.runbook {
        t.push_str(&format!("Runbook:  {r}\n"));
    }
    if let Some(r) = &alert.run_id {
        t.push_str(&format!("Run:      {r}\n"));
    }
    t.push_str(&format!("Kind:     {}\n", alert.kind.as_str()));
    t.push_str(&format!("Severity: {}\n", alert.kind.severity().as_str()));
    t.push_str(&format!("Since:    {}\n", alert.since));
    for (k, v) in &alert.details {
        t.push_str(&format!("{k}: {v}\n"));
    }
    t.push_str(&format!("\nSent by {source}. Alert key: {}\n", alert.key));
    t
}
