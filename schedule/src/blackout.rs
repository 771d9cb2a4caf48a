//! Blackouts: days a schedule never fires (change freezes, holidays, weekends).

use jiff::civil::{Date, Weekday};
use serde::{Deserialize, Serialize};

/// Days a schedule does not fire, read on the schedule's own wall calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Blackout {
    /// From one date to another, both included (`"2026-12-20..2027-01-04"`, or one date).
    Dates {
        /// First day (YYYY-MM-DD).
        from: String,
        /// Last day (YYYY-MM-DD).
        to: String,
    },
    /// Saturdays and Sundays (`"weekends"`).
    Weekends,
}

/// A blackout that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlackoutError {
    /// Not a date.
    #[error(
        "`{0}` is not a date (YYYY-MM-DD), a range of dates (YYYY-MM-DD..YYYY-MM-DD) or `weekends`"
    )]
    Unreadable(String),
    /// The range ends before it starts.
    #[error("the blackout `{from}..{to}` ends before it starts")]
    Inverted {
        /// First day as written.
        from: String,
        /// Last day as written.
        to: String,
    },
}

impl Blackout {
    /// Reads a blackout as written in a runbook.
    ///
    /// # Errors
    /// Not a date, a range or `weekends`; a range that ends before it starts.
    pub fn parse(text: &str) -> Result<Blackout, BlackoutError> {
        let t = text.trim();
        if t == "weekends" {
            return Ok(Blackout::Weekends);
        }
        let (from, to) = t.split_once("..").unwrap_or((t, t));
        let b = Blackout::Dates {
            from: from.trim().to_owned(),
            to: to.trim().to_owned(),
        };
        b.check()?;
        Ok(b)
    }

    /// Checks the dates read and are in order.
    ///
    /// # Errors
    /// As [`Blackout::parse`].
    pub fn check(&self) -> Result<(), BlackoutError> {
        match (self.range()?, self) {
            (Some((first, last)), Blackout::Dates { from, to }) if last < first => {
                Err(BlackoutError::Inverted {
                    from: from.clone(),
                    to: to.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The first and last day of a date range; `None` for a weekly rule.
    ///
    /// # Errors
    /// A date that does not read.
    pub fn range(&self) -> Result<Option<(Date, Date)>, BlackoutError> {
        match self {
            Blackout::Weekends => Ok(None),
            Blackout::Dates { from, to } => Ok(Some((date(from)?, date(to)?))),
        }
    }

    /// Whether the blackout covers `day`.
    #[must_use]
    pub fn covers(&self, day: Date) -> bool {
        match self {
            Blackout::Weekends => matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday),
            Blackout::Dates { .. } => {
                matches!(self.range(), Ok(Some((from, to))) if from <= day && day <= to)
            }
        }
    }

    /// The blackout as written.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Blackout::Weekends => "weekends".into(),
            Blackout::Dates { from, to } if from == to => from.clone(),
            Blackout::Dates { from, to } => format!("{from}..{to}"),
        }
    }

    /// Whether two date ranges share a day (weekly rules never conflict).
    #[must_use]
    pub fn overlaps(&self, other: &Blackout) -> bool {
        match (self.range(), other.range()) {
            (Ok(Some((a0, a1))), Ok(Some((b0, b1)))) => a0 <= b1 && b0 <= a1,
            _ => false,
        }
    }
}

fn date(text: &str) -> Result<Date, BlackoutError> {
    // Exactly YYYY-MM-DD: jiff alone would also take other ISO 8601 spellings.
    let ok = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !ok {
        return Err(BlackoutError::Unreadable(text.to_owned()));
    }
    text.parse::<Date>()
        .map_err(|_| BlackoutError::Unreadable(text.to_owned()))
}
