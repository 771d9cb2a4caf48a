//! What-if scenarios: faults at virtual times, read from a TOML file (format in
//! `docs/simulator.md`).
//!
//! ```toml
//! name = "us-east-1 down, slow DNS"
//!
//! [recovery_point]
//! lag = "5m..20m"            # how old the newest usable backup is at declaration (RPO)
//!
//! [[fault]]
//! kind = "region_down"       # steps naming the region fail (transient) in the window
//! region = "us-east-1"
//! from = "0s"
//! until = "2h"
//!
//! [[fault]]
//! kind = "slow"              # DNS propagation takes 300 s
//! step = "dns_insync"
//! duration = "300s"
//! ```

use drover_dsl::{PlanStep, PlanValue, parse_duration};
use serde::Deserialize;

/// A scenario: faults and the recovery point model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    /// Its name, shown in reports.
    pub name: String,
    /// How old the newest usable backup is at declaration (RPO), if modelled.
    pub recovery_point_lag: Option<Span>,
    /// The faults.
    pub faults: Vec<Fault>,
}

/// A duration drawn uniformly between two bounds (equal bounds: fixed), in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Lower bound.
    pub min_ms: u64,
    /// Upper bound.
    pub max_ms: u64,
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// A region is down between two virtual times: steps whose inputs name it fail (transient).
    RegionDown {
        /// The region (`us-east-1`).
        region: String,
        /// From (ms after declaration).
        from_ms: u64,
        /// Until (ms after declaration).
        until_ms: u64,
    },
    /// A provider's control plane is unavailable (`aws_route53`): its steps fail (transient).
    ProviderUnavailable {
        /// The provider.
        provider: String,
        /// From (ms).
        from_ms: u64,
        /// Until (ms).
        until_ms: u64,
    },
    /// A key is disabled: backup steps using it fail (permanent).
    KeyDisabled {
        /// The key URI as the runbook writes it.
        key: String,
    },
    /// A backup is corrupted: backup steps reading it fail (permanent).
    BackupCorrupted {
        /// The source as the runbook writes it.
        source: String,
    },
    /// A step fails with a probability on each attempt.
    StepFails {
        /// Step id (or the id before fan-out).
        step: String,
        /// Probability per attempt.
        probability: f64,
        /// Whether the failure is transient (retried) or permanent.
        transient: bool,
    },
    /// A step takes this long (DNS propagation, a slow restore).
    Slow {
        /// Step id.
        step: String,
        /// Its duration.
        duration: Span,
    },
    /// An approval step's approvers are unavailable for a while.
    ApproverUnavailable {
        /// The approval step.
        step: String,
        /// How long until they approve.
        delay: Span,
    },
}

/// Why a scenario file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(String),
    /// Not valid TOML, or not the expected shape.
    #[error("{0}")]
    Syntax(String),
    /// A value is out of range or unknown.
    #[error("fault {index}: {message}")]
    Invalid {
        /// 1-based fault number.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    name: String,
    recovery_point: Option<RawRecoveryPoint>,
    #[serde(default)]
    fault: Vec<RawFault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecoveryPoint {
    lag: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: String,
    region: Option<String>,
    provider: Option<String>,
    key: Option<String>,
    source: Option<String>,
    step: Option<String>,
    probability: Option<f64>,
    transient: Option<bool>,
    duration: Option<String>,
    delay: Option<String>,
    from: Option<String>,
    until: Option<String>,
}

/// Parses `5m` or `5m..20m`.
fn span(text: &str) -> Result<Span, String> {
    let one = |t: &str| {
        parse_duration(t.trim())
            .ok_or_else(|| format!("`{t}` is not a duration (write 30s, 5m, 2h)"))
    };
    match text.split_once("..") {
        Some((a, b)) => {
            let (min_ms, max_ms) = (one(a)?, one(b)?);
            if min_ms > max_ms {
                return Err(format!("`{text}`: the lower bound is above the upper"));
            }
            Ok(Span { min_ms, max_ms })
        }
        None => one(text).map(|ms| Span {
            min_ms: ms,
            max_ms: ms,
        }),
    }
}

impl Scenario {
    /// Reads and parses a scenario file; no path, no scenario (nothing injected).
    ///
    /// # Errors
    /// The file cannot be read, or [`Scenario::parse`] refuses it.
    pub fn load(path: Option<&str>) -> Result<Self, ScenarioError> {
        match path {
            None => Ok(Self::default()),
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| ScenarioError::Read(e.to_string()))?;
                Self::parse(&text)
            }
        }
    }

    /// Parses a scenario file's text.
    ///
    /// # Errors
    /// Invalid TOML, an unknown fault kind, a missing field, a bad duration or probability.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let raw: RawScenario =
            toml::from_str(text).map_err(|e| ScenarioError::Syntax(e.to_string()))?;
        let recovery_point_lag = raw
            .recovery_point
            .map(|r| span(&r.lag))
            .transpose()
            .map_err(|m| ScenarioError::Syntax(format!("recovery_point.lag: {m}")))?;
        let mut faults = Vec::new();
        for (i, f) in raw.fault.into_iter().enumerate() {
            let bad = |message: String| ScenarioError::Invalid {
                index: i + 1,
                message,
            };
            let need = |v: Option<String>, field: &str| {
                v.ok_or_else(|| bad(format!("`{}` needs `{field}`", f.kind)))
            };
            let window = |from: &Option<String>,
                          until: &Option<String>|
             -> Result<(u64, u64), ScenarioError> {
                let from_ms = from
                    .as_deref()
                    .map_or(Ok(0), |t| span(t).map(|s| s.min_ms))
                    .map_err(bad)?;
                let until_ms = until
                    .as_deref()
                    .map_or(Ok(u64::MAX), |t| span(t).map(|s| s.min_ms))
                    .map_err(bad)?;
                Ok((from_ms, until_ms))
            };
            let fault = match f.kind.as_str() {
                "region_down" => {
                    let (from_ms, until_ms) = window(&f.from, &f.until)?;
                    Fault::RegionDown {
                        region: need(f.region.clone(), "region")?,
                        from_ms,
                        until_ms,
                    }
                }
                "provider_unavailable" => {
                    let (from_ms, until_ms) = window(&f.from, &f.until)?;
                    Fault::ProviderUnavailable {
                        provider: need(f.provider.clone(), "provider")?,
                        from_ms,
                        until_ms,
                    }
                }
                "key_disabled" => Fault::KeyDisabled {
                    key: need(f.key.clone(), "key")?,
                },
                "backup_corrupted" => Fault::BackupCorrupted {
                    source: need(f.source.clone(), "source")?,
                },
                "step_fails" => {
                    let p = f.probability.unwrap_or(1.0);
                    if !(0.0..=1.0).contains(&p) {
                        return Err(bad(format!("probability {p} is not between 0 and 1")));
                    }
                    Fault::StepFails {
                        step: need(f.step.clone(), "step")?,
                        probability: p,
                        transient: f.transient.unwrap_or(false),
                    }
                }
                "slow" => Fault::Slow {
                    step: need(f.step.clone(), "step")?,
                    duration: span(&need(f.duration.clone(), "duration")?).map_err(bad)?,
                },
                "approver_unavailable" => Fault::ApproverUnavailable {
                    step: need(f.step.clone(), "step")?,
                    delay: span(&need(f.delay.clone(), "delay")?).map_err(bad)?,
                },
                other => {
                    return Err(bad(format!(
                        "unknown kind `{other}`; known: region_down, provider_unavailable, key_disabled, backup_corrupted, step_fails, slow, approver_unavailable"
                    )));
                }
            };
            faults.push(fault);
        }
        Ok(Self {
            name: raw.name,
            recovery_point_lag,
            faults,
        })
    }
}

/// Whether any string input of `step` equals `needle` or (for regions) contains it.
pub(crate) fn mentions(step: &PlanStep, needle: &str, exact: bool) -> bool {
    fn walk(v: &PlanValue, needle: &str, exact: bool) -> bool {
        match v {
            PlanValue::String(s) => {
                if exact {
                    s == needle
                } else {
                    s.contains(needle)
                }
            }
            PlanValue::List(items) => items.iter().any(|i| walk(i, needle, exact)),
            PlanValue::Map(m) => m.values().any(|i| walk(i, needle, exact)),
            _ => false,
        }
    }
    step.inputs.values().any(|v| walk(v, needle, exact))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_kind_parses_and_bad_input_is_named() {
        let s = Scenario::parse(
            r#"
name = "all"
[recovery_point]
lag = "5m..20m"
[[fault]]
kind = "region_down"
region = "us-east-1"
until = "2h"
[[fault]]
kind = "provider_unavailable"
provider = "aws_route53"
from = "10m"
until = "40m"
[[fault]]
kind = "key_disabled"
key = "aws-kms:alias/ehr"
[[fault]]
kind = "backup_corrupted"
source = "s3://b/k"
[[fault]]
kind = "step_fails"
step = "x"
probability = 0.25
transient = true
[[fault]]
kind = "slow"
step = "dns_insync"
duration = "300s"
[[fault]]
kind = "approver_unavailable"
step = "approve"
delay = "45m"
"#,
        )
        .expect("parses");
        assert_eq!(s.faults.len(), 7);
        assert_eq!(
            s.recovery_point_lag,
            Some(Span {
                min_ms: 300_000,
                max_ms: 1_200_000
            })
        );
        let e = Scenario::parse("[[fault]]\nkind = \"meteor\"\n").expect_err("unknown");
        assert!(
            e.to_string().contains("fault 1: unknown kind `meteor`"),
            "{e}"
        );
        let e = Scenario::parse("[[fault]]\nkind = \"slow\"\nstep = \"a\"\nduration = \"soon\"\n")
            .expect_err("bad duration");
        assert!(e.to_string().contains("not a duration"), "{e}");
        let e =
            Scenario::parse("[[fault]]\nkind = \"step_fails\"\nstep = \"a\"\nprobability = 2.0\n")
                .expect_err("p");
        assert!(e.to_string().contains("between 0 and 1"), "{e}");
    }
}
