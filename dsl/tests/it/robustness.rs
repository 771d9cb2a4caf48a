//! Robustness: mutated examples and random bytes never panic the parser, the compiler or the
//! formatter, and formatting is idempotent on whatever parses. The slowest input's time is
//! printed (not asserted: wall-clock time is not a test oracle).

use super::support::{files_under, root};
use drover_dsl::{CompileOptions, MemoryLoader, format_source};
use proptest::prelude::*;
use std::sync::Mutex;
use std::time::Duration;

static SLOWEST: Mutex<Duration> = Mutex::new(Duration::ZERO);

fn examples() -> Vec<String> {
    files_under(&root().join("runbooks"))
        .into_iter()
        .filter(|(n, _)| n.ends_with(".drover"))
        .map(|(_, t)| t)
        .collect()
}

fn exercise(text: &str) {
    let catalogue = drover_adapters::builtin_catalogue();
    let loader = files_under(&root().join("runbooks"))
        .into_iter()
        .fold(MemoryLoader::new(), |l, (n, t)| l.with(&n, &t))
        .with("mutant.drover", text);
    // Measured for the report only, never asserted.
    #[allow(clippy::disallowed_methods)]
    let clock = std::time::Instant::now();
    let c = drover_dsl::compile(
        "mutant.drover",
        &loader,
        &CompileOptions {
            catalogue: &catalogue,
            vars: Vec::new(),
            operators: None,
        },
    );
    for d in &c.diagnostics {
        let _ = drover_dsl::render(d, &c.sources, false, 100);
    }
    if let Ok(once) = format_source("mutant.drover", text) {
        let twice = format_source("mutant.drover", &once).expect("formatted output parses");
        assert_eq!(once, twice, "formatting is not idempotent");
    }
    let took = clock.elapsed();
    if let Ok(mut s) = SLOWEST.lock()
        && took > *s
    {
        *s = took;
        eprintln!("slowest input so far: {took:?} ({} bytes)", text.len());
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Bytes(usize, Vec<u8>),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(a, b)| Mutation::Bytes(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut bytes_after: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut cut = None;
    for m in muts {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::Delete(i) => {
                lines.remove(i % n);
            }
            Mutation::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::Swap(a, b) => lines.swap(a % n, b % n),
            Mutation::Bytes(i, b) => bytes_after.push((*i, b.clone())),
            Mutation::Truncate(i) => cut = Some(*i),
        }
    }
    let mut bytes = lines.join("\n").into_bytes();
    for (i, b) in bytes_after {
        let at = if bytes.is_empty() { 0 } else { i % bytes.len() };
        bytes.splice(at..at, b);
    }
    if let Some(c) = cut
        && !bytes.is_empty()
    {
        bytes.truncate(c % bytes.len());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_examples_never_panic(pick in any::<usize>(), muts in proptest::collection::vec(mutation(), 1..6)) {
        let ex = examples();
        let text = apply(&ex[pick % ex.len()], &muts);
        exercise(&text);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_tokens_never_panic(tokens in proptest::collection::vec(
        prop_oneof![
            Just("step"), Just("a"), Just("{"), Just("}"), Just("["), Just("]"), Just("="),
            Just("\"x{{ y }}\""), Just("5m"), Just(".."), Just("runbook"), Just("after"),
            Just("milestone"), Just("param"), Just(":"), Just("import"), Just("#c\n"), Just("\n"),
            Just("steps.a.b"), Just(","), Just("env(\"X\")"), Just("with"), Just("action"),
        ], 0..60)) {
        exercise(&tokens.join(" "));
    }
}

#[test]
fn a_hundred_thousand_nested_brackets_are_refused_not_overflowed() {
    for (open, close) in [("[", "]"), ("{", "}"), ("(", ")")] {
        let text = format!(
            "runbook \"t\" {{\n  rto = 1h\n  rpo = 1h\n}}\nx = {}{}\n",
            open.repeat(100_000),
            close.repeat(100_000)
        );
        let c = super::support::compile_text(&text);
        assert!(
            c.diagnostics
                .iter()
                .any(|d| d.code == drover_dsl::Code::NestingTooDeep)
        );
    }
}
