//! Shared helpers: the built-in catalogue, fixture loading and diagnostic rendering.

use drover_dsl::{Compilation, CompileOptions, MemoryLoader};
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every file under `dir`, with names relative to `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable fixture dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((name, std::fs::read_to_string(&p).expect("utf-8 fixture")));
            }
        }
    }
    out.sort();
    out
}

/// A loader holding every file under `dir` by relative name.
pub fn loader_for(dir: &Path) -> MemoryLoader {
    files_under(dir)
        .into_iter()
        .fold(MemoryLoader::new(), |l, (name, text)| l.with(&name, &text))
}

/// `--var`s from a first-line `# vars: k=v, k=v` directive.
pub fn vars_of(text: &str) -> Vec<(String, String)> {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# vars:"))
        .map(|rest| {
            rest.split(',')
                .filter_map(|kv| kv.trim().split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Compiles `name` from `loader` with the built-in catalogue.
pub fn compile_with(name: &str, loader: &MemoryLoader, vars: Vec<(String, String)>) -> Compilation {
    let catalogue = drover_adapters::builtin_catalogue();
    drover_dsl::compile(
        name,
        loader,
        &CompileOptions {
            catalogue: &catalogue,
            vars,
            operators: None,
        },
    )
}

/// Compiles one source text.
pub fn compile_text(text: &str) -> Compilation {
    compile_with(
        "test.drover",
        &MemoryLoader::new().with("test.drover", text),
        Vec::new(),
    )
}

/// Every diagnostic rendered without colour at a fixed width.
pub fn render_all(c: &Compilation) -> String {
    let mut out = String::new();
    for d in &c.diagnostics {
        out.push_str(&drover_dsl::render(d, &c.sources, false, 100));
        out.push('\n');
    }
    out
}
