//! The backup pipelines on a 64 MiB backup — keyed verification (authenticated decryption and
//! plaintext SHA-256 on different threads), restore (plus writing the file and syncing it) and
//! create (plaintext hash, encryption, frame hash and writing, four stages) — next to the floor
//! none of them can beat on one stream: a bare SHA-256 of the same plaintext, measured in the same
//! run. The end-to-end comparison against `openssl dgst -sha256` and `dd conv=fsync` is
//! `bench/backup_throughput.sh`.

use criterion::{Criterion, Throughput, criterion_main};
use drover_adapters::backup::{self, CreateOptions, FileKeyProvider, LocalLocation, NoProgress};
use sha2::{Digest, Sha256};
use std::hint::black_box;

const SIZE: usize = 64 << 20;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let key_path = dir.path().join("k.key");
    backup::generate_file_key(&key_path, false).expect("key");
    let key = FileKeyProvider::new(&key_path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    let plain: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = dir.path().join("b.dbk");
    let mut input: &[u8] = &plain;
    rt.block_on(backup::create(
        &mut input,
        &LocalLocation::new(&path),
        &key,
        &CreateOptions::new("bench", time::OffsetDateTime::UNIX_EPOCH),
        &NoProgress,
    ))
    .expect("create");
    let loc = LocalLocation::new(&path);

    let mut g = c.benchmark_group("backup_64MiB");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    g.bench_function("verify_with_key", |b| {
        b.iter(|| {
            rt.block_on(backup::verify(&loc, Some(&key), None, &NoProgress))
                .expect("verify")
        });
    });
    let out = dir.path().join("restored");
    g.bench_function("restore", |b| {
        b.iter(|| {
            rt.block_on(backup::restore(&loc, &out, &key, None, true, &NoProgress))
                .expect("restore")
        });
    });
    let created = dir.path().join("created.dbk");
    g.bench_function("create", |b| {
        b.iter(|| {
            let _ = std::fs::remove_file(&created);
            let mut input: &[u8] = &plain;
            rt.block_on(backup::create(
                &mut input,
                &LocalLocation::new(&created),
                &key,
                &CreateOptions::new("bench", time::OffsetDateTime::UNIX_EPOCH),
                &NoProgress,
            ))
            .expect("create")
        });
    });
    g.bench_function("baseline_sha256_of_plaintext", |b| {
        b.iter(|| Sha256::digest(black_box(&plain)));
    });
    g.finish();
}

// criterion's macros generate undocumented items.
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(harness::benches);
