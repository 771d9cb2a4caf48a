//! Backup posture: for each dataset of an [`Inventory`], the 3-2-1-1-0 rule (3 copies of the
//! newest recovery point, on 2 platforms, 1 off site, 1 immutable, 0 verification errors), its
//! age against the RPO, retention against the policy and the key's rotation — each read from
//! the stores, the key service and the journal, never taken from the inventory's word.
//!
//! [`assess`] is pure over a [`Probe`] (what the stores and keys say) and the journal's
//! operation records; [`LiveProbe`] asks the real stores. [`render`] draws the result as
//! Markdown or HTML; the [`Report`] serialises to JSON.

mod adapter;
mod inventory;
pub mod render;

pub use adapter::{PostureAdapter, RecordSource};

pub use inventory::{Dataset, Inventory, Policy, duration_s};

use drover_adapters::backup::{KeyRotation, Retention};
use drover_engine::audit::AuditRecord;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why posture could not be assessed at all.
#[derive(Debug, thiserror::Error)]
pub enum PostureError {
    /// The inventory does not read.
    #[error("{origin}: {message}")]
    Inventory {
        /// The file.
        origin: String,
        /// What is wrong, with line and column where TOML gives them.
        message: String,
    },
}

/// The checks, in the order of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// 3 copies of the newest recovery point.
    ThreeCopies,
    /// The newest recovery point no older than the RPO.
    Rpo,
    /// 2 platforms.
    TwoPlatforms,
    /// 1 off site.
    OneOffSite,
    /// 1 immutable, retained at least as long as required.
    OneImmutable,
    /// 0 verification errors, every copy verified recently.
    ZeroErrors,
    /// Retention at least the policy's.
    Retention,
    /// The key rotated within the policy's period.
    KeyRotation,
}

impl Check {
    /// Every check, in order.
    pub const ALL: [Check; 8] = [
        Check::ThreeCopies,
        Check::Rpo,
        Check::TwoPlatforms,
        Check::OneOffSite,
        Check::OneImmutable,
        Check::ZeroErrors,
        Check::Retention,
        Check::KeyRotation,
    ];

    /// Its stable id.
    #[must_use]
    pub fn id(self) -> &'static str {
        match self {
            Check::ThreeCopies => "3-copies",
            Check::Rpo => "rpo",
            Check::TwoPlatforms => "2-platforms",
            Check::OneOffSite => "1-off-site",
            Check::OneImmutable => "1-immutable",
            Check::ZeroErrors => "0-errors",
            Check::Retention => "retention",
            Check::KeyRotation => "key-rotation",
        }
    }

    /// What it asks, in a line.
    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            Check::ThreeCopies => "3 copies of the newest recovery point",
            Check::Rpo => "newest recovery point within the RPO",
            Check::TwoPlatforms => "copies on 2 different platforms",
            Check::OneOffSite => "1 copy off site (another cloud or region)",
            Check::OneImmutable => "1 immutable copy (compliance lock) kept as long as required",
            Check::ZeroErrors => "0 verification errors, every copy verified recently",
            Check::Retention => "retention at least the policy's",
            Check::KeyRotation => "key material rotated within the policy's period",
        }
    }

    /// The controls it evidences.
    #[must_use]
    pub fn controls(self) -> &'static [&'static str] {
        const A: &str = "HIPAA §164.308(a)(7)(ii)(A)";
        const B: &str = "HIPAA §164.308(a)(7)(ii)(B)";
        const D: &str = "HIPAA §164.310(d)(2)(iv)";
        const CP9: &str = "NIST SP 800-53 CP-9";
        const CSF: &str = "NIST CSF 2.0 PR.DS-11";
        match self {
            Check::ThreeCopies => &[A, D, CP9, CSF],
            Check::Rpo => &[A, CP9, CSF],
            Check::TwoPlatforms => &[A, CP9, CSF],
            Check::OneOffSite => &[B, CP9, CSF],
            Check::OneImmutable => &[D, CP9, CSF],
            Check::ZeroErrors => &[A, B, CP9, CSF],
            Check::Retention => &[D, CP9],
            Check::KeyRotation => &["NIST SP 800-53 CP-9(8)", CSF],
        }
    }
}

/// One backup found under a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where it is.
    pub location: String,
    /// Its backup id.
    pub backup_id: String,
    /// Its recovery point.
    pub recovery_point: OffsetDateTime,
}

/// What the stores and the key service say. [`LiveProbe`] asks them.
pub trait Probe {
    /// The backups under `copy` (with `credential`, an `env(NAME)` reference, if given).
    ///
    /// # Errors
    /// The copy cannot be listed or a backup's header read (the message says which).
    fn backups(&self, copy: &str, credential: Option<&str>) -> Result<Vec<Found>, String>;
    /// Where `copy`'s bytes are (`local`, `aws:REGION`, `azure:ACCOUNT`).
    ///
    /// # Errors
    /// The store cannot be asked.
    fn site(&self, copy: &str, credential: Option<&str>) -> Result<String, String>;
    /// The write-once retention the store reports for one backup.
    ///
    /// # Errors
    /// The store cannot be asked.
    fn retention(
        &self,
        location: &str,
        credential: Option<&str>,
    ) -> Result<Option<Retention>, String>;
    /// The key's rotation.
    ///
    /// # Errors
    /// The key cannot be found or asked.
    fn key(&self, uri: &str) -> Result<KeyRotation, String>;
}

/// The stores and keys themselves, through the backup adapters.
#[derive(Debug, Default)]
pub struct LiveProbe;

impl Probe for LiveProbe {
    fn backups(&self, copy: &str, credential: Option<&str>) -> Result<Vec<Found>, String> {
        use drover_adapters::backup::{location_with_credential, read_header};
        let loc = location_with_credential(copy, credential).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for b in loc.list().map_err(|e| e.to_string())? {
            let where_ = b.describe();
            // The header alone: the rest of the object is not read.
            let parsed = b
                .open()
                .and_then(|mut r| read_header(&mut r))
                .map_err(|e| format!("{where_}: {e}"))?;
            let rp = OffsetDateTime::parse(&parsed.header.recovery_point, &Rfc3339)
                .map_err(|e| format!("{where_}: unreadable recovery point: {e}"))?;
            out.push(Found {
                location: where_,
                backup_id: parsed.header.backup_id,
                recovery_point: rp,
            });
        }
        Ok(out)
    }

    fn site(&self, copy: &str, credential: Option<&str>) -> Result<String, String> {
        drover_adapters::backup::location_with_credential(copy, credential)
            .and_then(|l| l.site())
            .map_err(|e| e.to_string())
    }

    fn retention(
        &self,
        location: &str,
        credential: Option<&str>,
    ) -> Result<Option<Retention>, String> {
        drover_adapters::backup::location_with_credential(location, credential)
            .and_then(|l| l.retention())
            .map_err(|e| e.to_string())
    }

    fn key(&self, uri: &str) -> Result<KeyRotation, String> {
        let uri = uri.to_owned();
        // On a thread of its own, with its own runtime: callable from anywhere.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(drover_adapters::backup::key_rotation(&uri))
                .map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "the key thread stopped".to_owned())?
    }
}

/// What was found about one copy.
#[derive(Debug, Clone, Serialize)]
pub struct CopyState {
    /// The copy as the inventory names it.
    pub copy: String,
    /// `local`, `s3`, `azure-blob`.
    pub platform: &'static str,
    /// Where the store says it is, if it could be asked.
    pub site: Option<String>,
    /// Backups found under it.
    pub backups: usize,
    /// The newest recovery point's backup here, if this copy holds it.
    pub newest: Option<String>,
    /// Its lock as the store reports it.
    pub retention: Option<Retention>,
    /// The latest verification recorded in the journal: when and how it ended.
    pub last_verified: Option<Verified>,
    /// Why the copy could not be read, if it could not.
    pub error: Option<String>,
}

/// A verification recorded in the journal.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// When (RFC 3339).
    pub at: String,
    /// `verified` or `failed`.
    pub outcome: String,
    /// What it said.
    pub detail: Option<String>,
}

/// A problem a check found: where, and what to change.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The copy it concerns, if one.
    pub copy: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to change.
    pub fix: String,
}

/// One check's result for one dataset.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The check's id (`3-copies` …).
    pub id: &'static str,
    /// What it asks.
    pub title: &'static str,
    /// Whether it holds.
    pub passed: bool,
    /// What was measured, in a line.
    pub measured: String,
    /// The controls it evidences.
    pub controls: &'static [&'static str],
    /// What is wrong and what to change (empty when it passes).
    pub findings: Vec<Finding>,
}

/// One dataset's posture.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetPosture {
    /// The dataset.
    pub dataset: String,
    /// The newest recovery point found (RFC 3339) and its backup id.
    pub newest: Option<(String, String)>,
    /// Its age in seconds.
    pub age_s: Option<i64>,
    /// The RPO in seconds.
    pub rpo_s: u64,
    /// Each copy.
    pub copies: Vec<CopyState>,
    /// Each check.
    pub checks: Vec<CheckResult>,
    /// Whether every check holds.
    pub passed: bool,
}

/// The posture of every dataset.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it was assessed (RFC 3339).
    pub assessed_at: String,
    /// The inventory.
    pub inventory: String,
    /// Each dataset.
    pub datasets: Vec<DatasetPosture>,
    /// Whether every check of every dataset holds.
    pub passed: bool,
}

impl Report {
    /// The failed checks as `dataset/check` ids.
    #[must_use]
    pub fn failed(&self) -> Vec<String> {
        self.datasets
            .iter()
            .flat_map(|d| {
                d.checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(move |c| format!("{}/{}", d.dataset, c.id))
            })
            .collect()
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// `3h 5m`, `2d 4h`, `45s`.
#[must_use]
pub fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

/// The cloud part of a site: `local`, `aws`, `azure`.
fn cloud(site: &str) -> &str {
    site.split(':').next().unwrap_or(site)
}

/// Whether `location` is the copy `copy` or a backup under it.
fn under(location: &str, copy: &str) -> bool {
    let c = copy.trim_end_matches('/');
    location == c || location == copy || location.starts_with(&format!("{c}/"))
}

/// The latest verification of `copy` (or of a backup under it) in the journal's backup
/// operations log.
fn last_verification(records: &[AuditRecord], copy: &str) -> Option<(OffsetDateTime, Verified)> {
    records
        .iter()
        .filter(|r| r.action == "backup.verify" && r.outcome != "started")
        .filter(|r| r.step.as_deref().is_some_and(|s| under(s, copy)))
        .filter_map(|r| {
            let at = OffsetDateTime::parse(&r.ts, &Rfc3339).ok()?;
            Some((
                at,
                Verified {
                    at: r.ts.clone(),
                    outcome: r.outcome.clone(),
                    detail: r.error.clone(),
                },
            ))
        })
        .max_by_key(|(at, _)| *at)
}

/// Assesses every dataset of `inv` at `now`, with what `probe` reads from the stores and keys
/// and the journal's backup operation records (`records`: the `@backups` log).
#[must_use]
pub fn assess(
    inv: &Inventory,
    origin: &str,
    records: &[AuditRecord],
    now: OffsetDateTime,
    probe: &dyn Probe,
) -> Report {
    let datasets: Vec<DatasetPosture> = inv
        .datasets
        .iter()
        .map(|d| assess_dataset(inv, d, records, now, probe))
        .collect();
    Report {
        assessed_at: rfc3339(now),
        inventory: origin.to_owned(),
        passed: datasets.iter().all(|d| d.passed),
        datasets,
    }
}

fn result(check: Check, measured: String, findings: Vec<Finding>) -> CheckResult {
    CheckResult {
        id: check.id(),
        title: check.title(),
        passed: findings.is_empty(),
        measured,
        controls: check.controls(),
        findings,
    }
}

fn finding(copy: Option<&str>, message: String, fix: String) -> Finding {
    Finding {
        copy: copy.map(str::to_owned),
        message,
        fix,
    }
}

#[allow(clippy::too_many_lines)]
fn assess_dataset(
    inv: &Inventory,
    d: &Dataset,
    records: &[AuditRecord],
    now: OffsetDateTime,
    probe: &dyn Probe,
) -> DatasetPosture {
    let cred = |c: &str| d.credentials.get(c).map(String::as_str);
    let found: Vec<(String, Result<Vec<Found>, String>)> = d
        .copies
        .iter()
        .map(|c| (c.clone(), probe.backups(c, cred(c))))
        .collect();
    let newest = found
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flatten()
        .max_by(|a, b| (a.recovery_point, &a.backup_id).cmp(&(b.recovery_point, &b.backup_id)))
        .cloned();
    let mut copies: Vec<CopyState> = Vec::new();
    for (c, r) in &found {
        let holds = match (&newest, r) {
            (Some(n), Ok(list)) => list.iter().find(|b| b.backup_id == n.backup_id).cloned(),
            _ => None,
        };
        let (site, site_err) = match probe.site(c, cred(c)) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        let (retention, ret_err) = match &holds {
            Some(h) => match probe.retention(&h.location, cred(c)) {
                Ok(r) => (r, None),
                Err(e) => (None, Some(e)),
            },
            None => (None, None),
        };
        copies.push(CopyState {
            copy: c.clone(),
            platform: drover_adapters::backup::platform_of(c),
            site,
            backups: r.as_ref().map_or(0, Vec::len),
            newest: holds.map(|h| h.location),
            retention,
            last_verified: last_verification(records, c).map(|(_, v)| v),
            error: r.as_ref().err().cloned().or(site_err).or(ret_err),
        });
    }
    let holders: Vec<&CopyState> = copies.iter().filter(|c| c.newest.is_some()).collect();
    let mut checks = Vec::new();
    let newest_text = newest.as_ref().map_or_else(String::new, |n| {
        format!(
            "recovery point {} (backup {})",
            rfc3339(n.recovery_point),
            n.backup_id
        )
    });
    let none_found = || {
        vec![finding(
            None,
            format!("no backup of {} was found under any of its copies", d.name),
            format!(
                "check the copies listed for {} and the job that writes its backups",
                d.name
            ),
        )]
    };

    // 3 copies.
    let mut f = Vec::new();
    if newest.is_none() {
        f = none_found();
    } else if holders.len() < 3 {
        let from = holders
            .first()
            .and_then(|h| h.newest.clone())
            .unwrap_or_default();
        for c in copies.iter().filter(|c| c.newest.is_none()) {
            let message = match &c.error {
                Some(e) => format!("{} cannot be read: {e}", c.copy),
                None => format!("{} does not hold the newest {newest_text}", c.copy),
            };
            f.push(finding(
                Some(&c.copy),
                message,
                format!("drover backup copy {from} {}", c.copy),
            ));
        }
        if f.is_empty() || d.copies.len() < 3 {
            f.push(finding(
                None,
                format!(
                    "{} copies hold the newest recovery point; the rule asks 3",
                    holders.len()
                ),
                format!("add copies to {} in the inventory and copy to them", d.name),
            ));
        }
    }
    checks.push(result(
        Check::ThreeCopies,
        format!(
            "{} of {} copies hold the newest {}",
            holders.len(),
            d.copies.len(),
            if newest_text.is_empty() {
                "recovery point (none found)"
            } else {
                &newest_text
            }
        ),
        f,
    ));

    // RPO.
    let age = newest
        .as_ref()
        .map(|n| (now - n.recovery_point).whole_seconds());
    let rpo_s = i64::try_from(d.rpo_s).unwrap_or(i64::MAX);
    let f = match age {
        None => none_found(),
        Some(a) if a > rpo_s => vec![finding(
            None,
            format!(
                "the newest recovery point of {} is {} old; the RPO is {}",
                d.name,
                human(a),
                d.rpo
            ),
            format!(
                "run the backup of {} (and its schedule: at least every {})",
                d.name, d.rpo
            ),
        )],
        Some(_) => Vec::new(),
    };
    checks.push(result(
        Check::Rpo,
        age.map_or_else(
            || "no recovery point".to_owned(),
            |a| format!("{} old, RPO {}", human(a), d.rpo),
        ),
        f,
    ));

    // 2 platforms.
    let mut platforms: Vec<&str> = holders.iter().map(|c| c.platform).collect();
    platforms.sort_unstable();
    platforms.dedup();
    let f = if platforms.len() >= 2 {
        Vec::new()
    } else {
        vec![finding(
            None,
            format!(
                "every copy of the newest recovery point of {} is on {}",
                d.name,
                platforms.first().copied().unwrap_or("no platform")
            ),
            "keep a copy on another platform (local disk, s3://, azblob://); two buckets or two folders are one platform".into(),
        )]
    };
    checks.push(result(
        Check::TwoPlatforms,
        format!("platforms: {}", platforms.join(", ")),
        f,
    ));

    // 1 off site: another cloud, or another AWS region, than the primary (the first copy),
    // as the stores report it.
    let primary = copies.first().and_then(|c| c.site.clone());
    let off: Vec<&CopyState> = holders
        .iter()
        .copied()
        .filter(|c| match (&primary, &c.site) {
            (Some(p), Some(s)) => cloud(p) != cloud(s) || (cloud(s) == "aws" && p != s),
            _ => false,
        })
        .collect();
    let sites: Vec<String> = copies
        .iter()
        .map(|c| format!("{} at {}", c.copy, c.site.as_deref().unwrap_or("unknown")))
        .collect();
    let f = if off.is_empty() {
        vec![finding(
            None,
            format!(
                "no copy of the newest recovery point of {} is off site from the primary ({}): {}",
                d.name,
                primary.as_deref().unwrap_or("unknown"),
                sites.join("; ")
            ),
            "copy to another cloud or another AWS region (the region is read from the bucket, not from the inventory)".into(),
        )]
    } else {
        Vec::new()
    };
    checks.push(result(
        Check::OneOffSite,
        format!(
            "{} off site of {}",
            off.len(),
            primary.as_deref().unwrap_or("an unknown primary")
        ),
        f,
    ));

    // 1 immutable, for at least the required retention from the recovery point.
    let needed = newest.as_ref().and_then(|n| {
        // Locks are kept to the second.
        drover_adapters::backup::retained_until(n.recovery_point, &d.retention)
            .ok()
            .and_then(|t| t.replace_nanosecond(0).ok())
    });
    let mut reasons = Vec::new();
    let mut immutable = 0;
    for c in &holders {
        match (&c.retention, needed) {
            (None, _) => reasons.push(format!("{}: no write-once lock", c.copy)),
            (Some(r), _) if r.mode != "COMPLIANCE" => reasons.push(format!(
                "{}: {} lock{} can be lifted by a privileged user",
                c.copy,
                r.mode,
                if r.retain_until.is_empty() {
                    String::new()
                } else {
                    format!(" until {}", r.retain_until)
                }
            )),
            (Some(r), Some(need)) => match OffsetDateTime::parse(&r.retain_until, &Rfc3339) {
                Ok(until) if until >= need => immutable += 1,
                _ => reasons.push(format!(
                    "{}: locked only until {}; {} from the recovery point needs {}",
                    c.copy,
                    r.retain_until,
                    d.retention,
                    rfc3339(need)
                )),
            },
            (Some(_), None) => {}
        }
    }
    let f = if newest.is_none() {
        none_found()
    } else if immutable == 0 {
        vec![finding(
            None,
            format!(
                "no copy of the newest recovery point of {} is immutable for {}: {}",
                d.name,
                d.retention,
                reasons.join("; ")
            ),
            format!(
                "copy it to a bucket with Object Lock: drover backup copy SRC s3://VAULT/… --lock compliance --retain {}",
                d.retention
            ),
        )]
    } else {
        Vec::new()
    };
    checks.push(result(
        Check::OneImmutable,
        format!("{immutable} immutable for {}", d.retention),
        f,
    ));

    // 0 errors: every copy's latest verification, recent and clean.
    let mut f = Vec::new();
    let every = i64::try_from(d.verify_every_s).unwrap_or(i64::MAX);
    for c in &copies {
        let fix = format!("drover backup verify {} --key {} --sample 3", c.copy, d.key);
        match last_verification(records, &c.copy) {
            None => f.push(finding(
                Some(&c.copy),
                format!("{} has no verification in the journal", c.copy),
                fix,
            )),
            Some((_, v)) if v.outcome == "failed" => f.push(finding(
                Some(&c.copy),
                format!(
                    "the latest verification of {} ({}) failed: {}",
                    c.copy,
                    v.at,
                    v.detail.as_deref().unwrap_or("no detail")
                ),
                format!("restore or re-copy the damaged backup, then {fix}"),
            )),
            Some((at, v)) if (now - at).whole_seconds() > every => f.push(finding(
                Some(&c.copy),
                format!(
                    "{} was last verified {} ago ({}); every {} is required",
                    c.copy,
                    human((now - at).whole_seconds()),
                    v.at,
                    human(every)
                ),
                fix,
            )),
            Some(_) => {}
        }
    }
    checks.push(result(
        Check::ZeroErrors,
        format!(
            "{} of {} copies verified clean within {}",
            copies.len() - f.len(),
            copies.len(),
            human(every)
        ),
        f,
    ));

    // Retention against the policy.
    let base = OffsetDateTime::UNIX_EPOCH;
    let kept = drover_adapters::backup::retained_until(base, &d.retention).ok();
    let policy = drover_adapters::backup::retained_until(base, &inv.policy.retention).ok();
    let f = match (kept, policy) {
        (Some(k), Some(p)) if k >= p => Vec::new(),
        _ => vec![finding(
            None,
            format!(
                "{} keeps backups {}; the policy asks {}",
                d.name, d.retention, inv.policy.retention
            ),
            format!(
                "set retention = \"{}\" (or longer) for {} and lock its immutable copy as long",
                inv.policy.retention, d.name
            ),
        )],
    };
    checks.push(result(
        Check::Retention,
        format!("{} (policy {})", d.retention, inv.policy.retention),
        f,
    ));

    // Key rotation.
    let limit = i64::try_from(inv.policy.key_rotation_s).unwrap_or(i64::MAX);
    let limit_days = limit / 86_400;
    let (measured, f) = match probe.key(&d.key) {
        Err(e) => (
            "unknown".to_owned(),
            vec![finding(
                None,
                format!("the key {} cannot be asked: {e}", d.key),
                "check the key's name and the credentials to read it".into(),
            )],
        ),
        Ok(k) => {
            let age = now.unix_timestamp() - k.material_since;
            let mut f = Vec::new();
            if age > limit {
                f.push(finding(
                    None,
                    format!(
                        "the key {} has used the same material for {} (more than {limit_days} days)",
                        d.key,
                        human(age)
                    ),
                    if d.key.starts_with("file:") {
                        format!(
                            "generate a new key and rewrap: drover key generate file:NEW; drover backup rewrap BACKUP --from {} --to file:NEW",
                            d.key
                        )
                    } else {
                        "rotate it now (aws kms rotate-key-on-demand) and enable automatic rotation every 90 days".into()
                    },
                ));
            }
            if d.key.starts_with("aws-kms:") {
                match (k.automatic, k.period_days) {
                    (false, _) => f.push(finding(
                        None,
                        format!("automatic rotation of {} is off", d.key),
                        format!(
                            "aws kms enable-key-rotation --key-id KEY --rotation-period-in-days {limit_days}"
                        ),
                    )),
                    (true, Some(p)) if i64::from(p) > limit_days => f.push(finding(
                        None,
                        format!("{} rotates every {p} days; the policy asks {limit_days}", d.key),
                        format!(
                            "aws kms enable-key-rotation --key-id KEY --rotation-period-in-days {limit_days}"
                        ),
                    )),
                    _ => {}
                }
            }
            (
                format!(
                    "material {} old, automatic rotation {}",
                    human(age),
                    match (k.automatic, k.period_days) {
                        (false, _) => "off".to_owned(),
                        (true, Some(p)) => format!("every {p} days"),
                        (true, None) => "on".to_owned(),
                    }
                ),
                f,
            )
        }
    };
    checks.push(result(Check::KeyRotation, measured, f));

    DatasetPosture {
        dataset: d.name.clone(),
        newest: newest
            .as_ref()
            .map(|n| (rfc3339(n.recovery_point), n.backup_id.clone())),
        age_s: age,
        rpo_s: d.rpo_s,
        passed: checks.iter().all(|c| c.passed),
        copies,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Stores and keys as a test describes them.
    struct Fake {
        copies: BTreeMap<&'static str, (&'static str, Option<Retention>)>,
        rotation: KeyRotation,
    }

    const RP: i64 = 1_780_000_000;

    impl Probe for Fake {
        fn backups(&self, copy: &str, _: Option<&str>) -> Result<Vec<Found>, String> {
            self.copies.get(copy).map_or_else(
                || Err(format!("{copy}: not found")),
                |_| {
                    Ok(vec![Found {
                        location: format!("{copy}b.dbk"),
                        backup_id: "b1".into(),
                        recovery_point: OffsetDateTime::from_unix_timestamp(RP)
                            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    }])
                },
            )
        }
        fn site(&self, copy: &str, _: Option<&str>) -> Result<String, String> {
            Ok(self.copies.get(copy).map_or("?", |c| c.0).to_owned())
        }
        fn retention(&self, location: &str, _: Option<&str>) -> Result<Option<Retention>, String> {
            Ok(self
                .copies
                .iter()
                .find(|(c, _)| location.starts_with(**c))
                .and_then(|(_, v)| v.1.clone()))
        }
        fn key(&self, _: &str) -> Result<KeyRotation, String> {
            Ok(self.rotation.clone())
        }
    }

    fn lock(mode: &str, until: &str) -> Option<Retention> {
        Some(Retention {
            mode: mode.into(),
            retain_until: until.into(),
        })
    }

    fn verified(copy: &str, ts: &str, outcome: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            ts: ts.into(),
            run_id: "@backups".into(),
            operator: "alice".into(),
            step: Some(copy.into()),
            action: "backup.verify".into(),
            backup_id: None,
            key_id: None,
            outcome: outcome.into(),
            error: None,
            prev: String::new(),
            signed: None,
        }
    }

    fn run(fake: &Fake, copies: &[&str], records: &[AuditRecord]) -> BTreeMap<&'static str, bool> {
        let list = copies
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(",");
        let inv = Inventory::parse(
            &format!(
                "[datasets.ehr]\nrpo = \"1h\"\nkey = \"aws-kms:alias/k\"\ncopies = [{list}]\n"
            ),
            "inv.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let now =
            OffsetDateTime::from_unix_timestamp(RP + 600).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let r = assess(&inv, "inv.toml", records, now, fake);
        r.datasets[0]
            .checks
            .iter()
            .map(|c| (c.id, c.passed))
            .collect()
    }

    fn world() -> Fake {
        Fake {
            copies: BTreeMap::from([
                (
                    "s3://a/ehr/",
                    ("aws:us-east-1", lock("COMPLIANCE", "2032-06-01T00:00:00Z")),
                ),
                ("s3://b/ehr/", ("aws:eu-west-1", None)),
                ("azblob://x/c/ehr/", ("azure:x", None)),
                ("azblob://y/c/ehr/", ("azure:y", None)),
                ("/backups/ehr/", ("local", None)),
            ]),
            rotation: KeyRotation {
                key: "aws-kms:alias/k".into(),
                material_since: RP - 86_400,
                automatic: true,
                period_days: Some(90),
            },
        }
    }

    fn clean(copies: &[&str]) -> Vec<AuditRecord> {
        copies
            .iter()
            .map(|c| verified(c, "2026-05-28T20:00:00Z", "verified"))
            .collect()
    }

    #[test]
    fn off_site_is_another_cloud_or_another_region_as_the_stores_say() {
        let fake = world();
        let c = ["s3://a/ehr/", "s3://b/ehr/", "/backups/ehr/"];
        assert_eq!(run(&fake, &c, &clean(&c)).get("1-off-site"), Some(&true));
        // Two Azure accounts: Blob storage does not state a region, so not counted.
        let c = ["azblob://x/c/ehr/", "azblob://y/c/ehr/", "/backups/ehr/"];
        let r = run(&fake, &c, &clean(&c));
        assert_eq!(
            r.get("1-off-site"),
            Some(&true),
            "local is another site than Azure"
        );
        let c = ["azblob://x/c/ehr/", "azblob://y/c/ehr/"];
        assert_eq!(run(&fake, &c, &clean(&c)).get("1-off-site"), Some(&false));
    }

    #[test]
    fn a_governance_or_short_lock_is_not_immutable_enough() {
        let mut fake = world();
        let c = ["s3://a/ehr/", "azblob://x/c/ehr/", "/backups/ehr/"];
        assert_eq!(run(&fake, &c, &clean(&c)).get("1-immutable"), Some(&true));
        fake.copies.insert(
            "s3://a/ehr/",
            ("aws:us-east-1", lock("GOVERNANCE", "2040-01-01T00:00:00Z")),
        );
        assert_eq!(run(&fake, &c, &clean(&c)).get("1-immutable"), Some(&false));
        fake.copies.insert(
            "s3://a/ehr/",
            ("aws:us-east-1", lock("COMPLIANCE", "2030-01-01T00:00:00Z")),
        );
        assert_eq!(run(&fake, &c, &clean(&c)).get("1-immutable"), Some(&false));
    }

    #[test]
    fn verifications_must_be_recent_clean_and_the_latest_counts() {
        let fake = world();
        let c = ["s3://a/ehr/", "azblob://x/c/ehr/", "/backups/ehr/"];
        let mut rec = clean(&c);
        assert_eq!(run(&fake, &c, &rec).get("0-errors"), Some(&true));
        // A failure after the clean run: red. A clean run after that: green again.
        rec.push(verified(
            "/backups/ehr/b.dbk",
            "2026-05-28T21:00:00Z",
            "failed",
        ));
        assert_eq!(run(&fake, &c, &rec).get("0-errors"), Some(&false));
        rec.push(verified(
            "/backups/ehr/",
            "2026-05-28T22:00:00Z",
            "verified",
        ));
        assert_eq!(run(&fake, &c, &rec).get("0-errors"), Some(&true));
        // Eight days old: too old.
        let old: Vec<_> = c
            .iter()
            .map(|x| verified(x, "2026-05-20T20:00:00Z", "verified"))
            .collect();
        assert_eq!(run(&fake, &c, &old).get("0-errors"), Some(&false));
        // Another copy's prefix is not this one's ("/backups/ehr-old/" is not under "/backups/ehr/").
        let other = vec![verified(
            "/backups/ehr-old/",
            "2026-05-28T20:00:00Z",
            "verified",
        )];
        assert!(!under("/backups/ehr-old/", "/backups/ehr/"));
        assert_eq!(
            run(&fake, &["/backups/ehr/"], &other).get("0-errors"),
            Some(&false)
        );
    }

    #[test]
    fn rotation_longer_than_the_policy_is_red() {
        let mut fake = world();
        let c = ["s3://a/ehr/", "azblob://x/c/ehr/", "/backups/ehr/"];
        fake.rotation.period_days = Some(365);
        assert_eq!(run(&fake, &c, &clean(&c)).get("key-rotation"), Some(&false));
        fake.rotation.period_days = Some(90);
        fake.rotation.material_since = RP - 100 * 86_400;
        assert_eq!(run(&fake, &c, &clean(&c)).get("key-rotation"), Some(&false));
    }

    #[test]
    fn the_step_runs_the_catalogues_schema() {
        let a = PostureAdapter::new(std::sync::Arc::new(|_: &std::path::Path| Ok(Vec::new())));
        let mine = drover_schema::Adapter::schemas(&a);
        assert_eq!(mine.len(), 1);
        assert!(
            drover_adapters::builtin_catalogue()
                .actions()
                .contains(&mine[0])
        );
        assert_eq!(mine[0].name, "posture.backups");
    }
}
