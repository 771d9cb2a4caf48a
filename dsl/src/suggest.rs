//! "Did you mean" suggestions.

/// The candidate closest to `name`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| c)
}

/// A hint for a name not found among `candidates`: "did you mean `x`?" for a likely typo, else
/// the list of valid names ("its inputs are: a, b"), or "it has no inputs".
pub fn typo_or_list(name: &str, candidates: &[&str], noun: &str) -> String {
    match did_you_mean(name, candidates.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if candidates.is_empty() => format!("it has no {noun}"),
        None => format!("its {noun} are: {}", candidates.join(", ")),
    }
}

/// [`typo_or_list`] as a diagnostic's hint, with the fix for a likely typo.
pub fn hint_typo_or_list(
    d: crate::Diagnostic,
    name: &str,
    candidates: &[&str],
    noun: &str,
) -> crate::Diagnostic {
    match did_you_mean(name, candidates.iter().copied()) {
        Some(s) => d.did_you_mean(name, s),
        None => d.help(typo_or_list(name, candidates, noun)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("retyr", ["retry", "timeout"]), Some("retry"));
        assert_eq!(did_you_mean("zzz", ["retry", "timeout"]), None);
    }
}
