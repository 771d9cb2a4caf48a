//! Fuzz target: any bytes through the parser, the compiler, the diagnostic renderer and the
//! formatter. Nothing may panic; formatting what parses must be idempotent.
#![no_main]

use drover_dsl::{CompileOptions, compile_str, format_source, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let catalogue = drover_adapters::builtin_catalogue();
    let c = compile_str(
        "fuzz.drover",
        &text,
        &CompileOptions {
            catalogue: &catalogue,
            vars: Vec::new(),
        },
    );
    for d in &c.diagnostics {
        let _ = render(d, &c.sources, false, 100);
    }
    if let Ok(once) = format_source("fuzz.drover", &text) {
        let twice = format_source("fuzz.drover", &once).expect("formatted output parses");
        assert_eq!(once, twice);
    }
});
