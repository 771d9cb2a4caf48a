//! Every diagnostic code is documented in docs/diagnostics.md, and every documented code exists.

use super::support::root;
use drover_dsl::Code;
use std::collections::BTreeSet;

#[test]
fn codes_and_docs_are_one_to_one() {
    let doc =
        std::fs::read_to_string(root().join("docs/diagnostics.md")).expect("docs/diagnostics.md");
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let defined: BTreeSet<String> = Code::ALL.iter().map(|c| c.as_str().to_owned()).collect();
    assert_eq!(documented, defined);
    for c in Code::ALL {
        let heading = format!("## {} {}", c.as_str(), c.title());
        assert!(
            doc.contains(&heading),
            "docs/diagnostics.md lacks `{heading}`"
        );
    }
}

#[test]
fn codes_are_unique_and_ordered() {
    let all: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    let mut sorted = all.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(all, sorted);
}
