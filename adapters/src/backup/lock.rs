//! Write-once retention set on the object itself when it is written (S3 Object Lock), rather than
//! assumed from a bucket's default — which a misconfigured bucket, or an emulator, may not apply.
//! After writing, the lock is read back from the store and must be what was asked for.

use crate::backup::error::BackupError;
use crate::backup::report::Retention;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The lock's mode, as S3 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// No one, the root account included, can delete or shorten it before it ends.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl LockMode {
    /// S3's name (`COMPLIANCE`, `GOVERNANCE`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compliance => "COMPLIANCE",
            Self::Governance => "GOVERNANCE",
        }
    }

    /// Parses `compliance` or `governance` (any case).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "compliance" => Some(Self::Compliance),
            "governance" => Some(Self::Governance),
            _ => None,
        }
    }
}

/// A write-once lock to put on a backup as it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLock {
    /// Its mode.
    pub mode: LockMode,
    /// Until when (seconds since the epoch).
    pub retain_until: i64,
}

impl WriteLock {
    /// A lock in `mode` for `retain` (`90d`, `6y`: days, or calendar years) from `now`.
    ///
    /// # Errors
    /// `retain` is not a number of days or years.
    pub fn new(mode: LockMode, retain: &str, now: OffsetDateTime) -> Result<Self, BackupError> {
        Ok(Self {
            mode,
            retain_until: retained_until(now, retain)?.unix_timestamp(),
        })
    }

    /// Checks the lock the store reports for `location` against this one: the same mode, and
    /// retained at least as long.
    ///
    /// # Errors
    /// No lock, another mode, or a shorter retention.
    pub fn check(&self, location: &str, found: Option<&Retention>) -> Result<(), BackupError> {
        let want = OffsetDateTime::from_unix_timestamp(self.retain_until)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default();
        let Some(found) = found else {
            return Err(BackupError::Invalid(format!(
                "{location} was written without the {} lock asked for (until {want}): the store reports none",
                self.mode.as_str()
            )));
        };
        let until = OffsetDateTime::parse(&found.retain_until, &Rfc3339)
            .map(OffsetDateTime::unix_timestamp)
            .unwrap_or(i64::MIN);
        if found.mode != self.mode.as_str() || until < self.retain_until {
            return Err(BackupError::Invalid(format!(
                "{location} is locked {} until {}, not {} until {want} as asked",
                found.mode,
                found.retain_until,
                self.mode.as_str()
            )));
        }
        Ok(())
    }
}

/// `now` plus `retain` (`90d`, `6y`: days, or calendar years — six years from 29 February is
/// 1 March, never a day short).
///
/// # Errors
/// `retain` is not a number of days or years.
pub fn retained_until(now: OffsetDateTime, retain: &str) -> Result<OffsetDateTime, BackupError> {
    let bad = || {
        BackupError::Invalid(format!(
            "retention `{retain}` is not a number of days or years (examples: 90d, 6y)"
        ))
    };
    let (n, unit) = retain.split_at(retain.len().saturating_sub(1));
    let n: i32 = n.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let until = match unit {
        "d" => now.checked_add(time::Duration::days(i64::from(n))),
        // Calendar years: six years from 29 February is 1 March, never a day short.
        "y" => {
            let year = now.year().checked_add(n).ok_or_else(bad)?;
            now.replace_year(year).ok().or_else(|| {
                now.checked_add(time::Duration::days(1))
                    .and_then(|d| d.replace_year(year).ok())
            })
        }
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn retention_is_days_or_calendar_years_never_short() {
        let now = datetime!(2028-02-29 12:00 UTC);
        let six = WriteLock::new(LockMode::Compliance, "6y", now).expect("6y");
        assert_eq!(
            six.retain_until,
            datetime!(2034-03-01 12:00 UTC).unix_timestamp()
        );
        let d = WriteLock::new(LockMode::Governance, "90d", now).expect("90d");
        assert_eq!(
            d.retain_until,
            (now + time::Duration::days(90)).unix_timestamp()
        );
        for bad in ["", "6", "y", "0d", "-3d", "6w", "1.5y"] {
            assert!(
                WriteLock::new(LockMode::Compliance, bad, now).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_lock_read_back_must_match_the_mode_and_last_long_enough() {
        let now = datetime!(2026-12-03 00:00 UTC);
        let lock = WriteLock::new(LockMode::Compliance, "30d", now).expect("lock");
        let r = |mode: &str, until: &str| Retention {
            mode: mode.into(),
            retain_until: until.into(),
        };
        assert!(
            lock.check("s3://b/k", Some(&r("COMPLIANCE", "2027-01-02T00:00:00Z")))
                .is_ok()
        );
        assert!(lock.check("s3://b/k", None).is_err());
        assert!(
            lock.check("s3://b/k", Some(&r("GOVERNANCE", "2027-01-02T00:00:00Z")))
                .is_err()
        );
        assert!(
            lock.check("s3://b/k", Some(&r("COMPLIANCE", "2026-12-20T00:00:00Z")))
                .is_err()
        );
    }
}
