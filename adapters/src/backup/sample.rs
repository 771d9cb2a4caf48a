//! Sampled verification (the seeds' scheduled integrity checks): fully verify N randomly chosen
//! backups under a location, check every other one's ciphertext hash, and count the unresolved
//! verification errors — the "0" of the 3-2-1-1-0 rule.

use crate::backup::error::BackupError;
use crate::backup::key_provider::KeyProvider;
use crate::backup::location::Location;
use crate::backup::operations::verify;
use crate::backup::progress::NoProgress;
use crate::backup::report::BackupReport;
use rand::SeedableRng;
use serde::Serialize;

/// One backup's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct SampleOutcome {
    /// Where it is.
    pub location: String,
    /// Whether it was in the sample (fully decrypted) or only structure-checked.
    pub sampled: bool,
    /// What verification found, if it passed.
    pub report: Option<BackupReport>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// The result of a sampled verification.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    /// The seed that chose the sample (rerun with it to check the same backups).
    pub seed: u64,
    /// Every backup found, in name order.
    pub backups: Vec<SampleOutcome>,
}

impl SampleReport {
    /// The unresolved verification errors: must be 0.
    #[must_use]
    pub fn errors(&self) -> usize {
        self.backups.iter().filter(|b| b.error.is_some()).count()
    }

    /// How many were fully verified.
    #[must_use]
    pub fn sampled(&self) -> usize {
        self.backups.iter().filter(|b| b.sampled).count()
    }
}

/// Verifies `n` backups chosen with `seed` fully (decrypting with `key`) and the rest by
/// structure and ciphertext hash.
///
/// # Errors
/// Only if the location cannot be listed; each backup's failure is in the report.
pub async fn verify_sample(
    dir: &dyn Location,
    n: usize,
    seed: u64,
    key: &dyn KeyProvider,
) -> Result<SampleReport, BackupError> {
    let all = dir.list()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let picked: std::collections::BTreeSet<usize> =
        rand::seq::index::sample(&mut rng, all.len(), n.min(all.len()))
            .into_iter()
            .collect();
    let mut backups = Vec::with_capacity(all.len());
    for (i, loc) in all.iter().enumerate() {
        let sampled = picked.contains(&i);
        let result = verify(loc.as_ref(), sampled.then_some(key), None, &NoProgress).await;
        backups.push(SampleOutcome {
            location: loc.describe(),
            sampled,
            error: result.as_ref().err().map(ToString::to_string),
            report: result.ok(),
        });
    }
    Ok(SampleReport { seed, backups })
}
