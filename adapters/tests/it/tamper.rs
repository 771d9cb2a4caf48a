//! Every single-bit flip, every truncation, chunk swaps, duplications, appended bytes and a wrong
//! key: 100% refused by keyed verification and by restore, and no plaintext left behind.

use super::support::{create, frames, key, rt, temporaries};
use drover_adapters::backup::{self, BackupError, FileKeyProvider, LocalLocation, NoProgress};
use std::path::Path;

/// Plaintext of 100 bytes in 32-byte chunks: three full chunks and a short final one.
const DATA: &[u8; 100] = b"patient-0001,Jane Doe,1970-01-01,A+;patient-0002,John Roe,1980-02-02,O-;patient-0003,Ann Poe,1990-03";

/// Checks that `bytes` is refused by `verify --key` and by `restore`, and that nothing is left.
fn assert_refused(dir: &Path, bytes: &[u8], key: &FileKeyProvider, what: &str) {
    let path = dir.join("mutant.dbk");
    std::fs::write(&path, bytes).expect("write mutant");
    let loc = LocalLocation::new(&path);
    let rt = rt();
    let v = rt.block_on(backup::verify(&loc, Some(key), None, &NoProgress));
    assert!(v.is_err(), "{what}: verify --key accepted it");
    let dest = dir.join("restored.bin");
    let r = rt.block_on(backup::restore(&loc, &dest, key, None, false, &NoProgress));
    assert!(r.is_err(), "{what}: restore accepted it");
    assert!(
        !dest.exists(),
        "{what}: restore left plaintext at the destination"
    );
    assert!(
        temporaries(dir).is_empty(),
        "{what}: restore left a temporary file"
    );
}

#[test]
fn the_unmodified_backup_verifies_and_restores() {
    let dir = tempfile::tempdir().expect("tmp");
    let k = key(dir.path(), "k.key");
    let path = create(dir.path(), "b.dbk", DATA, 32, &k);
    let loc = LocalLocation::new(&path);
    let report = rt()
        .block_on(backup::verify(&loc, Some(&k), None, &NoProgress))
        .expect("verifies");
    assert_eq!(report.chunks, 4);
    let dest = dir.path().join("out.bin");
    rt().block_on(backup::restore(&loc, &dest, &k, None, false, &NoProgress))
        .expect("restores");
    assert_eq!(std::fs::read(&dest).expect("read"), DATA);
}

#[test]
fn every_single_bit_flip_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let k = key(dir.path(), "k.key");
    let original = std::fs::read(create(dir.path(), "b.dbk", DATA, 32, &k)).expect("read");
    let mut refused = 0;
    for i in 0..original.len() {
        for bit in 0..8 {
            let mut m = original.clone();
            m[i] ^= 1 << bit;
            assert_refused(dir.path(), &m, &k, &format!("bit {bit} of byte {i}"));
            refused += 1;
        }
    }
    assert_eq!(refused, original.len() * 8);
    eprintln!(
        "{refused} single-bit flips of a {}-byte backup: all refused",
        original.len()
    );
}

#[test]
fn every_truncation_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let k = key(dir.path(), "k.key");
    let original = std::fs::read(create(dir.path(), "b.dbk", DATA, 32, &k)).expect("read");
    // Every length, so every chunk boundary and every byte around it.
    for len in 0..original.len() {
        assert_refused(
            dir.path(),
            &original[..len],
            &k,
            &format!("truncated to {len} bytes"),
        );
    }
}

#[test]
fn swapped_dropped_duplicated_chunks_and_appended_bytes_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let k = key(dir.path(), "k.key");
    let original = std::fs::read(create(dir.path(), "b.dbk", DATA, 32, &k)).expect("read");
    let f = frames(&original);
    assert_eq!(f.len(), 5, "4 chunks and the manifest");
    let head = &original[..f[0].start];
    let part = |r: &std::ops::Range<usize>| original[r.clone()].to_vec();
    let join = |parts: Vec<Vec<u8>>| {
        let mut v = head.to_vec();
        for p in parts {
            v.extend(p);
        }
        v
    };
    let chunks: Vec<Vec<u8>> = f.iter().map(part).collect();
    for (a, b) in [(0, 1), (1, 2), (0, 2), (2, 3)] {
        let mut c = chunks.clone();
        c.swap(a, b);
        assert_refused(
            dir.path(),
            &join(c),
            &k,
            &format!("chunks {a} and {b} swapped"),
        );
    }
    for drop in 0..4 {
        let mut c = chunks.clone();
        c.remove(drop);
        assert_refused(dir.path(), &join(c), &k, &format!("chunk {drop} dropped"));
    }
    for dup in 0..4 {
        let mut c = chunks.clone();
        c.insert(dup, chunks[dup].clone());
        assert_refused(dir.path(), &join(c), &k, &format!("chunk {dup} duplicated"));
    }
    for extra in [
        &b"\0"[..],
        b"M",
        b"garbage after the manifest",
        &original[f[0].clone()],
    ] {
        let mut m = original.clone();
        m.extend_from_slice(extra);
        assert_refused(
            dir.path(),
            &m,
            &k,
            &format!("{} bytes appended", extra.len()),
        );
    }
    // A chunk from another backup under the same key, at the same index.
    let other = std::fs::read(create(dir.path(), "other.dbk", &[b'x'; 100], 32, &k)).expect("read");
    let of = frames(&other);
    let mut c = chunks.clone();
    c[1] = other[of[1].clone()].to_vec();
    assert_refused(
        dir.path(),
        &join(c),
        &k,
        "chunk spliced from another backup",
    );
    // The whole key envelope of another backup.
    let spliced = [&other[..of[0].start], &original[f[0].start..]].concat();
    assert_refused(dir.path(), &spliced, &k, "header from another backup");
}

#[test]
fn a_wrong_key_is_refused_before_any_decryption() {
    let dir = tempfile::tempdir().expect("tmp");
    let k = key(dir.path(), "k.key");
    let wrong = key(dir.path(), "wrong.key");
    let original = std::fs::read(create(dir.path(), "b.dbk", DATA, 32, &k)).expect("read");
    assert_refused(dir.path(), &original, &wrong, "wrong key");
    let loc = LocalLocation::new(dir.path().join("mutant.dbk"));
    let err = rt()
        .block_on(backup::verify(&loc, Some(&wrong), None, &NoProgress))
        .expect_err("refused");
    assert!(matches!(err, BackupError::WrongKey(_)), "{err}");
    assert!(
        !err.to_string().contains(&hex::encode(DATA)),
        "no plaintext in the error"
    );
}

#[test]
fn a_world_readable_key_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let k = key(dir.path(), "k.key");
    std::fs::set_permissions(
        dir.path().join("k.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let mut input: &[u8] = DATA;
    let opts = backup::CreateOptions::new("x", time::OffsetDateTime::UNIX_EPOCH);
    let err = rt()
        .block_on(backup::create(
            &mut input,
            &LocalLocation::new(dir.path().join("b.dbk")),
            &k,
            &opts,
            &NoProgress,
        ))
        .expect_err("refused");
    assert!(err.to_string().contains("readable by other users"), "{err}");
    assert!(!dir.path().join("b.dbk").exists());
}
