//! Sampled verification: the sample is fully decrypted, the rest hash-checked, and every failing
//! backup is named.

use super::support::{create, key, rt};
use drover_adapters::backup::{self, LocalLocation};

#[test]
fn sampled_verification_counts_and_names_every_bad_backup() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = tempfile::tempdir().expect("tmp");
    let k = key(keys.path(), "k.key");
    std::fs::create_dir(dir.path().join("2026-11")).expect("mkdir");
    for i in 0..6 {
        create(
            dir.path(),
            &format!("2026-11/b{i}.dbk"),
            format!("backup number {i}").as_bytes(),
            16,
            &k,
        );
    }
    std::fs::write(dir.path().join("README.txt"), "not a backup").expect("write");
    let loc = LocalLocation::new(dir.path());

    let clean = rt()
        .block_on(backup::verify_sample(&loc, 2, 42, &k))
        .expect("sample");
    assert_eq!(clean.backups.len(), 6, "non-backups are ignored");
    assert_eq!(clean.sampled(), 2);
    assert_eq!(clean.errors(), 0);
    let again = rt()
        .block_on(backup::verify_sample(&loc, 2, 42, &k))
        .expect("sample");
    let picked = |r: &backup::SampleReport| {
        r.backups
            .iter()
            .filter(|b| b.sampled)
            .map(|b| b.location.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        picked(&clean),
        picked(&again),
        "the same seed picks the same backups"
    );

    // Corrupt one backup's ciphertext: caught whether or not it is in the sample.
    let bad = dir.path().join("2026-11/b3.dbk");
    let mut bytes = std::fs::read(&bad).expect("read");
    let n = bytes.len();
    bytes[n - 80] ^= 0x10;
    std::fs::write(&bad, bytes).expect("write");
    for seed in 0..5 {
        let r = rt()
            .block_on(backup::verify_sample(&loc, 2, seed, &k))
            .expect("sample");
        assert_eq!(r.errors(), 1, "seed {seed}");
        let failed: Vec<&str> = r
            .backups
            .iter()
            .filter(|b| b.error.is_some())
            .map(|b| b.location.as_str())
            .collect();
        assert!(failed[0].ends_with("b3.dbk"), "{failed:?}");
    }
}
