//! Alerts: what Drover tells people when something needs them, and the sinks it tells them
//! through — a generic webhook (JSON, HMAC-SHA256 signature header), a Slack-compatible incoming
//! webhook, the PagerDuty Events API v2 (trigger and resolve under one stable dedup key), and
//! e-mail over SMTP with STARTTLS.
//!
//! This crate builds payloads and delivers them, with retries; deciding *when* to alert (run
//! failed, targets missed, approvals waiting, schedules missed, drills overdue) and journaling
//! each attempt belong to the server. Secrets (HMAC keys, routing keys, SMTP passwords, Slack
//! URLs) are only ever referenced in the configuration (`env(NAME)`, `file:PATH`), read when a
//! delivery is made, and never appear in an error message.

mod config;
mod deliver;
mod payload;

pub use config::{AlertsConfig, ConfigError, SecretRef, SinkConfig, SinkKind};
pub use deliver::{DeliveryError, deliver, deliver_with_retry};
pub use payload::{
    SIGNATURE_HEADER, TIMESTAMP_HEADER, email_subject, email_text, pagerduty_body, sign,
    slack_body, webhook_body,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A run failed (or rolled back).
    RunFailed,
    /// A run's recovery time objective was missed.
    RtoMissed,
    /// A run's recovery point objective was missed.
    RpoMissed,
    /// An approval has waited longer than the threshold.
    ApprovalWaiting,
    /// Fires of a schedule were missed while the scheduler was down.
    ScheduleMissed,
    /// A backup verification run failed.
    VerificationFailed,
    /// A runbook's last successful drill is older than its policy allows.
    DrillOverdue,
    /// Alerts cannot be delivered to a sink.
    DeliveryFailing,
    /// A test delivery (`drover alerts test`).
    Test,
}

impl AlertKind {
    /// The kind as written in payloads and the journal.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::RunFailed => "run_failed",
            AlertKind::RtoMissed => "rto_missed",
            AlertKind::RpoMissed => "rpo_missed",
            AlertKind::ApprovalWaiting => "approval_waiting",
            AlertKind::ScheduleMissed => "schedule_missed",
            AlertKind::VerificationFailed => "verification_failed",
            AlertKind::DrillOverdue => "drill_overdue",
            AlertKind::DeliveryFailing => "delivery_failing",
            AlertKind::Test => "test",
        }
    }

    /// How bad it is.
    #[must_use]
    pub fn severity(self) -> Severity {
        match self {
            AlertKind::RunFailed | AlertKind::VerificationFailed => Severity::Critical,
            AlertKind::RtoMissed
            | AlertKind::RpoMissed
            | AlertKind::ScheduleMissed
            | AlertKind::DrillOverdue
            | AlertKind::DeliveryFailing => Severity::Error,
            AlertKind::ApprovalWaiting => Severity::Warning,
            AlertKind::Test => Severity::Info,
        }
    }
}

/// PagerDuty's severities, which the other sinks show too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Someone must act now.
    Critical,
    /// Something failed.
    Error,
    /// Something may need attention.
    Warning,
    /// For information.
    Info,
}

impl Severity {
    /// As PagerDuty spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// Whether a delivery opens or closes an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The condition holds.
    Trigger,
    /// The condition cleared.
    Resolve,
}

impl Action {
    /// As written (`trigger`, `resolve`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Resolve => "resolve",
        }
    }
}

/// One alert: a condition that holds (or held), under a key that stays the same until it
/// clears, so that every sink deduplicates it and its resolve finds its trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The stable dedup key (`drover/run_failed/quarterly-drill.drover`).
    pub key: String,
    /// What it is about.
    pub kind: AlertKind,
    /// One line: what happened, naming the runbook.
    pub summary: String,
    /// The runbook's name, if it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// The run, if it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// More, by name (read from the journal, whose secrets are already redacted).
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    /// Since when the condition holds (RFC 3339).
    pub since: String,
}
