//! Durations as runbooks write them: `30s`, `15m`, `4h`, `1h30m`, `250ms`, `2d`.

/// Milliseconds in each unit the language accepts.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Parses a duration into milliseconds. `None` if the text is not a duration or overflows.
#[must_use]
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, ms) = UNITS
            .iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())?;
        rest = &rest[unit.len()..];
        total = total.checked_add(n.checked_mul(*ms)?)?;
    }
    Some(total)
}

/// Formats milliseconds the way runbooks write them (`1h30m`, `45s`, `250ms`, `0s`).
#[must_use]
pub fn format_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in UNITS.iter().rev() {
        if rest >= *size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("30s"), Some(30_000));
        assert_eq!(parse_duration("15m"), Some(900_000));
        assert_eq!(parse_duration("4h"), Some(14_400_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("2d"), Some(172_800_000));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in 0u64..10_000_000_000) {
            prop_assert_eq!(parse_duration(&format_duration(ms)), Some(ms));
        }
    }
}
