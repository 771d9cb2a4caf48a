//! Round trips over sizes from 0 B to 100 MiB, exact chunk multiples included.

use super::support::{create, key, rt};
use drover_adapters::backup::{self, LocalLocation, NoProgress};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn data(len: usize, seed: u64) -> Vec<u8> {
    // Cheap deterministic bytes (xorshift), different per seed.
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn round_trip(len: usize, chunk: u32, seed: u64) {
    let dir = tempfile::tempdir().expect("tmp");
    let k = key(dir.path(), "k.key");
    let plain = data(len, seed);
    let path = create(dir.path(), "b.dbk", &plain, chunk, &k);
    let loc = LocalLocation::new(&path);
    let expected = hex::encode(Sha256::digest(&plain));
    let v = rt()
        .block_on(backup::verify(&loc, Some(&k), Some(&expected), &NoProgress))
        .expect("verify");
    assert_eq!(v.sha256, expected);
    assert_eq!(v.bytes, len as u64);
    let chunks = (len as u64).div_ceil(u64::from(chunk)).max(1);
    assert_eq!(v.chunks, chunks, "len {len} chunk {chunk}");
    let dest = dir.path().join("out.bin");
    rt().block_on(backup::restore(&loc, &dest, &k, None, false, &NoProgress))
        .expect("restore");
    assert!(
        std::fs::read(&dest).expect("read") == plain,
        "len {len}: restored bytes differ"
    );
    let keyless = rt()
        .block_on(backup::verify(&loc, None, None, &NoProgress))
        .expect("keyless verify");
    assert_eq!(keyless.ciphertext_sha256, v.ciphertext_sha256);
}

#[test]
fn empty_input_round_trips() {
    round_trip(0, 1 << 20, 1);
}

#[test]
fn exact_chunk_multiples_and_neighbours_round_trip() {
    for chunk in [16u32, 1000, 4096] {
        for k in 1..4usize {
            let c = chunk as usize;
            for len in [c * k - 1, c * k, c * k + 1] {
                round_trip(len, chunk, len as u64);
            }
        }
    }
}

#[test]
fn one_hundred_mib_round_trips() {
    round_trip(100 << 20, 1 << 20, 7);
}

#[test]
fn default_chunk_boundaries_round_trip() {
    round_trip(1 << 20, 1 << 20, 9);
    round_trip((1 << 20) - 1, 1 << 20, 10);
    round_trip((8 << 20) + 1, 1 << 20, 11);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_sizes_and_chunk_sizes_round_trip(len in 0usize..(3 << 20), chunk in prop_oneof![Just(16u32), 17u32..70_000, Just(1 << 20)], seed in any::<u64>()) {
        round_trip(len, chunk, seed);
    }
}
