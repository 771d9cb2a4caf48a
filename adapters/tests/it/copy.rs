//! `backup::copy`: the ciphertext as it is, checked while it streams, atomic at the destination,
//! never over another backup, read back; a damaged source leaves nothing behind.

use super::support::{create, frames, key, rt, temporaries};
use drover_adapters::backup::{self, BackupError, LocalLocation, NoProgress};

#[test]
fn a_copy_is_byte_identical_restores_and_a_second_copy_does_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let k = key(dir.path(), "k.key");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let src = create(dir.path(), "a.dbk", &data, 64 * 1024, &k);
    let dst = dir.path().join("copies/offsite/a.dbk");
    let r = backup::copy(
        &LocalLocation::new(&src),
        &LocalLocation::new(&dst),
        None,
        &NoProgress,
    )
    .expect("copy");
    assert!(!r.already_there);
    assert_eq!(
        std::fs::read(&src).expect("src"),
        std::fs::read(&dst).expect("dst")
    );
    assert_eq!(r.bytes, std::fs::metadata(&src).expect("meta").len());
    assert_eq!(r.source.backup_id, r.destination.backup_id);
    assert_eq!(r.destination.location, dst.display().to_string());
    // The copy restores (the key was never needed to copy it).
    let out = dir.path().join("restored");
    rt().block_on(backup::restore(
        &LocalLocation::new(&dst),
        &out,
        &k,
        None,
        false,
        &NoProgress,
    ))
    .expect("restore from the copy");
    assert_eq!(std::fs::read(&out).expect("restored"), data);
    // Again: the destination holds it already; nothing is written.
    let before = std::fs::metadata(&dst)
        .expect("meta")
        .modified()
        .expect("mtime");
    let again = backup::copy(
        &LocalLocation::new(&src),
        &LocalLocation::new(&dst),
        None,
        &NoProgress,
    )
    .expect("copy again");
    assert!(again.already_there);
    assert_eq!(again.bytes, 0);
    assert_eq!(
        std::fs::metadata(&dst)
            .expect("meta")
            .modified()
            .expect("mtime"),
        before
    );
}

#[test]
fn another_backup_at_the_destination_is_never_overwritten() {
    let dir = tempfile::tempdir().expect("tmp");
    let k = key(dir.path(), "k.key");
    let a = create(dir.path(), "a.dbk", b"first data set", 16, &k);
    let b = create(dir.path(), "b.dbk", b"another data set", 16, &k);
    let other = std::fs::read(&b).expect("b");
    let e = backup::copy(
        &LocalLocation::new(&a),
        &LocalLocation::new(&b),
        None,
        &NoProgress,
    )
    .expect_err("refused");
    assert!(e.to_string().contains("refusing to overwrite"), "{e}");
    assert_eq!(
        std::fs::read(&b).expect("b"),
        other,
        "the destination changed"
    );
    // Something that is not a backup at all is not overwritten either.
    let note = dir.path().join("note.txt");
    std::fs::write(&note, "keep me").expect("note");
    let e = backup::copy(
        &LocalLocation::new(&a),
        &LocalLocation::new(&note),
        None,
        &NoProgress,
    )
    .expect_err("refused");
    assert!(e.to_string().contains("refusing to overwrite"), "{e}");
    assert_eq!(std::fs::read_to_string(&note).expect("note"), "keep me");
}

#[test]
fn a_damaged_source_is_refused_and_leaves_nothing_at_the_destination() {
    let dir = tempfile::tempdir().expect("tmp");
    let k = key(dir.path(), "k.key");
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
    let good = create(dir.path(), "good.dbk", &data, 4096, &k);
    let bytes = std::fs::read(&good).expect("read");
    let ranges = frames(&bytes);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out");
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // A flipped bit in a data frame: the ciphertext hash no longer matches the manifest.
    let mut flipped = bytes.clone();
    flipped[ranges[2].start + 20] ^= 0x01;
    cases.push(("flipped", flipped));
    // Cut short in the middle.
    cases.push(("truncated", bytes[..bytes.len() / 2].to_vec()));
    // The manifest frame gone.
    let last = ranges.len() - 1;
    let mut no_manifest = bytes[..ranges[last - 1].start].to_vec();
    no_manifest.extend_from_slice(&bytes[ranges[last].clone()]);
    cases.push(("no manifest", no_manifest));
    // Bytes after the end.
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"appended");
    cases.push(("trailing", trailing));
    for (what, b) in cases {
        let src = dir.path().join(format!("{what}.dbk"));
        std::fs::write(&src, b).expect("write");
        let dst = out.join(format!("{what}.dbk"));
        let e = backup::copy(
            &LocalLocation::new(&src),
            &LocalLocation::new(&dst),
            None,
            &NoProgress,
        )
        .expect_err(what);
        assert!(
            matches!(
                e,
                BackupError::HashMismatch(_) | BackupError::Malformed(_) | BackupError::Io { .. }
            ),
            "{what}: {e}"
        );
        assert!(!dst.exists(), "{what}: a partial copy was left");
        assert!(
            temporaries(&out).is_empty(),
            "{what}: {:?}",
            temporaries(&out)
        );
    }
}
