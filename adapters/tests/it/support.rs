//! Helpers: a runtime, keys, and backups made in a temporary directory.

use drover_adapters::backup::{self, CreateOptions, FileKeyProvider, LocalLocation, NoProgress};
use std::path::{Path, PathBuf};
use time::macros::datetime;

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn key(dir: &Path, name: &str) -> FileKeyProvider {
    let p = dir.join(name);
    backup::generate_file_key(&p, false).expect("key");
    FileKeyProvider::new(p)
}

pub fn create(dir: &Path, name: &str, data: &[u8], chunk: u32, key: &FileKeyProvider) -> PathBuf {
    let out = dir.join(name);
    let mut opts = CreateOptions::new("ehr-test", datetime!(2026-11-23 03:00 UTC));
    opts.recovery_point = Some(datetime!(2026-11-23 02:45 UTC));
    opts.chunk_size = chunk;
    let mut input: &[u8] = data;
    rt().block_on(backup::create(
        &mut input,
        &LocalLocation::new(&out),
        key,
        &opts,
        &NoProgress,
    ))
    .expect("create");
    out
}

/// Byte ranges of each frame (type, length, payload) after the header.
pub fn frames(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let parsed = backup::read_header(&mut &bytes[..]).expect("header");
    let mut at = usize::try_from(parsed.len).expect("len");
    let mut out = Vec::new();
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().expect("4 bytes")) as usize;
        out.push(at..at + 5 + len);
        at += 5 + len;
    }
    out
}

/// Files in `dir` whose name marks them as restore temporaries.
pub fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".drover-tmp"))
        .collect()
}
