//! Where source files come from: the file system for the CLI, memory for tests and fuzzing.

use std::collections::BTreeMap;
use std::path::Path;

/// Reads runbook sources by name.
pub trait SourceLoader {
    /// The name of the file `path` refers to when imported from `importer` (`None` for the file
    /// named on the command line).
    fn resolve(&self, importer: Option<&str>, path: &str) -> String;

    /// The text of a resolved file.
    ///
    /// # Errors
    /// A message saying why the file cannot be read.
    fn read(&self, name: &str) -> Result<String, String>;
}

fn sibling(importer: Option<&str>, path: &str) -> String {
    match importer.and_then(|i| Path::new(i).parent()) {
        Some(dir) if !dir.as_os_str().is_empty() && !Path::new(path).is_absolute() => {
            dir.join(path).to_string_lossy().into_owned()
        }
        _ => path.to_owned(),
    }
}

/// Reads files from disk; imports are relative to the importing file.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsLoader;

impl SourceLoader for FsLoader {
    fn resolve(&self, importer: Option<&str>, path: &str) -> String {
        sibling(importer, path)
    }

    fn read(&self, name: &str) -> Result<String, String> {
        std::fs::read_to_string(name).map_err(|e| e.to_string())
    }
}

/// Files held in memory, by name.
#[derive(Debug, Clone, Default)]
pub struct MemoryLoader {
    files: BTreeMap<String, String>,
}

impl MemoryLoader {
    /// An empty set of files.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file.
    #[must_use]
    pub fn with(mut self, name: &str, text: &str) -> Self {
        self.files.insert(name.to_owned(), text.to_owned());
        self
    }
}

impl SourceLoader for MemoryLoader {
    fn resolve(&self, importer: Option<&str>, path: &str) -> String {
        sibling(importer, path)
    }

    fn read(&self, name: &str) -> Result<String, String> {
        self.files
            .get(name)
            .cloned()
            .ok_or_else(|| "no such file".to_owned())
    }
}
