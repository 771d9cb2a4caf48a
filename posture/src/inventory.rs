//! The inventory: each dataset, its RPO, its required retention, its key, and the location
//! prefixes under which its copies are found.
//!
//! ```toml
//! [policy]                 # optional; these are the defaults
//! retention    = "6y"      # HIPAA documentation: six years
//! key_rotation = "90d"
//! verify_every = "7d"
//!
//! [datasets.ehr]
//! rpo       = "15m"
//! retention = "6y"
//! key       = "aws-kms:alias/phi-backup"
//! copies    = ["s3://phi-vault/ehr/", "azblob://drdata/phi/ehr/", "/backups/ehr/"]
//! # optional: a credential for a copy, named by the variable holding it (never the secret)
//! credentials = { "azblob://drdata/phi/ehr/" = "env(DR_AZURE_STORAGE)" }
//! ```

use crate::PostureError;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The checked inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Organisation-wide requirements.
    pub policy: Policy,
    /// The datasets, by name, in name order.
    pub datasets: Vec<Dataset>,
}

/// What every dataset must meet.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The minimum retention (`6y`).
    pub retention: String,
    /// The longest a key's material may be in use, in seconds (90 days).
    pub key_rotation_s: u64,
    /// How recent every copy's last verification must be, in seconds (7 days).
    pub verify_every_s: u64,
}

/// One dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Its name in the inventory.
    pub name: String,
    /// Its recovery point objective, in seconds.
    pub rpo_s: u64,
    /// As written (`15m`).
    pub rpo: String,
    /// How long its backups must be kept (`6y`).
    pub retention: String,
    /// The key-encryption key (`aws-kms:alias/…`, `file:PATH`).
    pub key: String,
    /// Location prefixes, the first being the primary.
    pub copies: Vec<String>,
    /// Credential references by copy (`env(NAME)`).
    pub credentials: BTreeMap<String, String>,
    /// How recent each copy's last verification must be, in seconds.
    pub verify_every_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    datasets: BTreeMap<String, RawDataset>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    retention: Option<String>,
    key_rotation: Option<String>,
    verify_every: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    rpo: String,
    retention: Option<String>,
    key: String,
    copies: Vec<String>,
    #[serde(default)]
    credentials: BTreeMap<String, String>,
    verify_every: Option<String>,
}

/// `30s`, `15m`, `4h`, `7d`, `2w` in seconds.
///
/// # Errors
/// Anything else.
pub fn duration_s(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (n, unit) = t.split_at(t.len().saturating_sub(1));
    let n: u64 = n
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}` is not a duration (examples: 15m, 4h, 7d)"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "`{text}` is not a duration (examples: 15m, 4h, 7d)"
            ));
        }
    };
    Ok(n.saturating_mul(mult))
}

fn retention_ok(text: &str) -> Result<(), String> {
    drover_adapters::backup::retained_until(time::OffsetDateTime::UNIX_EPOCH, text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Inventory {
    /// Reads an inventory; `origin` names it in errors.
    ///
    /// # Errors
    /// TOML that does not parse (with line and column), unknown fields, durations that do not
    /// read, a dataset without copies, a credential that is not `env(NAME)`.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PostureError> {
        let raw: RawInventory = toml::from_str(text).map_err(|e| PostureError::Inventory {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let bad = |message: String| PostureError::Inventory {
            origin: origin.to_owned(),
            message,
        };
        let policy = Policy {
            retention: raw.policy.retention.unwrap_or_else(|| "6y".into()),
            key_rotation_s: raw
                .policy
                .key_rotation
                .as_deref()
                .map_or(Ok(90 * 86_400), duration_s)
                .map_err(|e| bad(format!("policy.key_rotation: {e}")))?,
            verify_every_s: raw
                .policy
                .verify_every
                .as_deref()
                .map_or(Ok(7 * 86_400), duration_s)
                .map_err(|e| bad(format!("policy.verify_every: {e}")))?,
        };
        retention_ok(&policy.retention).map_err(|e| bad(format!("policy.retention: {e}")))?;
        if raw.datasets.is_empty() {
            return Err(bad(
                "no datasets: add a [datasets.NAME] table with rpo, key and copies".into(),
            ));
        }
        let mut datasets = Vec::new();
        for (name, d) in raw.datasets {
            let field = |f: &str, e: String| bad(format!("datasets.{name}.{f}: {e}"));
            let rpo_s = duration_s(&d.rpo).map_err(|e| field("rpo", e))?;
            let retention = d.retention.unwrap_or_else(|| policy.retention.clone());
            retention_ok(&retention).map_err(|e| field("retention", e))?;
            if d.copies.is_empty() {
                return Err(field(
                    "copies",
                    "no copies: list the location prefixes its backups are under".into(),
                ));
            }
            for (copy, r) in &d.credentials {
                if !d.copies.contains(copy) {
                    return Err(field(
                        "credentials",
                        format!("{copy} is not one of the dataset's copies"),
                    ));
                }
                if !(r.starts_with("env(") && r.ends_with(')')) {
                    return Err(field(
                        "credentials",
                        format!(
                            "the credential for {copy} is given as env(NAME), the variable holding it; never the secret itself"
                        ),
                    ));
                }
            }
            let verify_every_s = d
                .verify_every
                .as_deref()
                .map_or(Ok(policy.verify_every_s), duration_s)
                .map_err(|e| field("verify_every", e))?;
            datasets.push(Dataset {
                name,
                rpo_s,
                rpo: d.rpo,
                retention,
                key: d.key,
                copies: d.copies,
                credentials: d.credentials,
                verify_every_s,
            });
        }
        Ok(Self { policy, datasets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let inv = Inventory::parse(
            "[datasets.ehr]\nrpo = \"15m\"\nkey = \"file:k\"\ncopies = [\"/b/\"]\n",
            "inv.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.policy.retention, "6y");
        assert_eq!(inv.datasets[0].rpo_s, 900);
        assert_eq!(inv.datasets[0].retention, "6y");
        assert_eq!(inv.datasets[0].verify_every_s, 7 * 86_400);
        for (text, says) in [
            (
                "[datasets.ehr]\nrpo = \"soon\"\nkey = \"k\"\ncopies = [\"/b/\"]\n",
                "datasets.ehr.rpo",
            ),
            (
                "[datasets.ehr]\nrpo = \"1h\"\nkey = \"k\"\ncopies = []\n",
                "no copies",
            ),
            (
                "[datasets.ehr]\nrpo = \"1h\"\nkey = \"k\"\ncopies = [\"/b/\"]\ncolour = 1\n",
                "colour",
            ),
            (
                "[datasets.ehr]\nrpo = \"1h\"\nkey = \"k\"\ncopies = [\"/b/\"]\ncredentials = { \"/b/\" = \"AccountKey=x\" }\n",
                "never the secret",
            ),
            ("[datasets.ehr\n", "inv.toml"),
            ("", "no datasets"),
        ] {
            let e = Inventory::parse(text, "inv.toml")
                .expect_err(text)
                .to_string();
            assert!(e.contains(says), "{text}: {e}");
            assert!(!e.contains("AccountKey=x"), "{e}");
        }
    }
}
