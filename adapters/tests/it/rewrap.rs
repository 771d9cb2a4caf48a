//! Key rotation: after rewrap the new key restores, the old one does not, and every data chunk is
//! byte-for-byte unchanged.

use super::support::{create, frames, key, rt};
use drover_adapters::backup::{self, BackupError, LocalLocation, NoProgress};

#[test]
fn rewrap_moves_the_backup_to_the_new_key_and_leaves_chunks_unchanged() {
    let dir = tempfile::tempdir().expect("tmp");
    let old = key(dir.path(), "old.key");
    let new = key(dir.path(), "new.key");
    let plain: Vec<u8> = (0..300_000u32).flat_map(u32::to_le_bytes).collect();
    let path = create(dir.path(), "b.dbk", &plain, 65_536, &old);
    let before = std::fs::read(&path).expect("read");
    let loc = LocalLocation::new(&path);

    let report = rt()
        .block_on(backup::rewrap(&loc, &old, &new))
        .expect("rewrap");
    let after = std::fs::read(&path).expect("read");

    let fb = frames(&before);
    let fa = frames(&after);
    assert_eq!(fb.len(), fa.len());
    assert_eq!(
        &before[fb[0].start..],
        &after[fa[0].start..],
        "chunks and manifest are byte-for-byte unchanged"
    );
    let hb = backup::read_header(&mut &before[..]).expect("header");
    let ha = backup::read_header(&mut &after[..]).expect("header");
    assert_eq!(
        hb.header, ha.header,
        "the authenticated header is unchanged"
    );
    assert_ne!(hb.envelope, ha.envelope, "the key envelope changed");
    assert_eq!(
        report.key_id,
        rt().block_on(drover_adapters::backup::KeyProvider::key_id(&new))
            .expect("id")
    );

    let dest = dir.path().join("out.bin");
    rt().block_on(backup::restore(&loc, &dest, &new, None, false, &NoProgress))
        .expect("new key restores");
    assert!(std::fs::read(&dest).expect("read") == plain);
    let err = rt()
        .block_on(backup::verify(&loc, Some(&old), None, &NoProgress))
        .expect_err("old key refused");
    assert!(matches!(err, BackupError::WrongKey(_)), "{err}");
}

#[test]
fn rewrap_with_the_wrong_source_key_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let real = key(dir.path(), "real.key");
    let wrong = key(dir.path(), "wrong.key");
    let path = create(dir.path(), "b.dbk", b"some data", 16, &real);
    let before = std::fs::read(&path).expect("read");
    let loc = LocalLocation::new(&path);
    assert!(rt().block_on(backup::rewrap(&loc, &wrong, &real)).is_err());
    assert_eq!(std::fs::read(&path).expect("read"), before);
}
