//! The AWS backup path against a real AWS-compatible server (moto, started by `.ci/test` on
//! 127.0.0.1 with `AWS_ENDPOINT_URL` and static test credentials exported): backups created in and
//! restored from `s3://`, data keys from `aws-kms:`, rotation with ReEncrypt.

use super::support::rt;
use drover_adapters::aws_kms::KmsKeyProvider;
use drover_adapters::backup::{
    self, CreateOptions, KeyError, KeyProvider, NoProgress, location_from_uri,
};
use time::macros::datetime;

fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: run the AWS suite through .ci/test, which starts moto on 127.0.0.1")
    })
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

async fn world() -> (String, String, String) {
    let _ = endpoint();
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let kms = aws_sdk_kms::Client::new(&conf);
    let bucket = unique("drover-backups");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let mut keys = Vec::new();
    for _ in 0..2 {
        let k = kms.create_key().send().await.expect("key");
        let id = k
            .key_metadata()
            .map(|m| m.key_id().to_owned())
            .expect("key id");
        let alias = format!("alias/{}", unique("drover"));
        kms.create_alias()
            .alias_name(&alias)
            .target_key_id(&id)
            .send()
            .await
            .expect("alias");
        keys.push(alias);
    }
    (bucket, keys[0].clone(), keys[1].clone())
}

#[test]
fn backups_round_trip_through_s3_under_kms_keys_and_rotate_with_reencrypt() {
    let rt = rt();
    let (bucket, alias, alias2) = rt.block_on(world());
    let key = KmsKeyProvider::new(alias.clone());
    let plain: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
    let uri = format!("s3://{bucket}/ehr/ehr.dbk");
    let loc = location_from_uri(&uri).expect("s3 location");
    let mut opts = CreateOptions::new("ehr", datetime!(2026-11-23 03:00 UTC));
    opts.recovery_point = Some(datetime!(2026-11-23 02:45 UTC));
    let mut input: &[u8] = &plain;
    let created = rt
        .block_on(backup::create(
            &mut input,
            loc.as_ref(),
            &key,
            &opts,
            &NoProgress,
        ))
        .expect("create in s3");
    assert!(created.key_id.contains("arn:aws:kms"), "{}", created.key_id);
    assert!(created.chunks >= 20);

    let keyless = rt
        .block_on(backup::verify(loc.as_ref(), None, None, &NoProgress))
        .expect("keyless verify");
    assert_eq!(keyless.ciphertext_sha256, created.ciphertext_sha256);
    let full = rt
        .block_on(backup::verify(loc.as_ref(), Some(&key), None, &NoProgress))
        .expect("keyed verify");
    assert_eq!(full.sha256, created.sha256);

    let dir = tempfile::tempdir().expect("tmp");
    let dest = dir.path().join("ehr.bin");
    rt.block_on(backup::restore(
        loc.as_ref(),
        &dest,
        &key,
        Some(&created.sha256),
        false,
        &NoProgress,
    ))
    .expect("restore from s3");
    assert!(std::fs::read(&dest).expect("read") == plain);

    // A second create at the same key is refused: backups are never overwritten.
    let mut again: &[u8] = b"other";
    assert!(
        rt.block_on(backup::create(
            &mut again,
            loc.as_ref(),
            &key,
            &opts,
            &NoProgress
        ))
        .is_err()
    );

    // Rotation: ReEncrypt to the second key; chunks unchanged; the new key restores.
    let key2 = KmsKeyProvider::new(alias2.clone());
    let rewrapped = rt
        .block_on(backup::rewrap(loc.as_ref(), &key, &key2))
        .expect("rewrap");
    assert_eq!(
        rewrapped.ciphertext_sha256, created.ciphertext_sha256,
        "data chunks unchanged"
    );
    assert_ne!(rewrapped.key_id, created.key_id);
    let dest2 = dir.path().join("ehr2.bin");
    rt.block_on(backup::restore(
        loc.as_ref(),
        &dest2,
        &key2,
        None,
        false,
        &NoProgress,
    ))
    .expect("the new key restores");
    assert!(std::fs::read(&dest2).expect("read") == plain);
}

#[test]
fn a_missing_object_and_a_disabled_key_fail_cleanly() {
    let rt = rt();
    let (bucket, alias, _) = rt.block_on(world());
    let key = KmsKeyProvider::new(alias);
    let loc = location_from_uri(&format!("s3://{bucket}/nope.dbk")).expect("location");
    let err = rt
        .block_on(backup::verify(loc.as_ref(), Some(&key), None, &NoProgress))
        .expect_err("missing object");
    assert!(
        err.to_string().contains("NoSuchKey")
            || err.to_string().contains("not found")
            || err.to_string().contains("GetObject"),
        "{err}"
    );
    let bad = KmsKeyProvider::new("alias/does-not-exist");
    let e = rt.block_on(bad.preflight()).expect_err("unknown key");
    assert!(
        matches!(&e, KeyError::BadKey { uri, .. } if uri == "aws-kms:alias/does-not-exist"),
        "an unknown key is a bad key, not a transient failure: {e:?}"
    );
}

#[test]
fn a_disabled_kms_key_is_refused_before_a_restore_and_the_refusal_is_permanent() {
    use drover_schema::Adapter;
    let rt = rt();
    let (bucket, alias, _) = rt.block_on(world());
    let key = KmsKeyProvider::new(alias.clone());
    rt.block_on(key.preflight()).expect("an enabled key passes");
    let uri = format!("s3://{bucket}/ehr.dbk");
    let loc = location_from_uri(&uri).expect("location");
    let mut input: &[u8] = b"clinical data";
    rt.block_on(backup::create(
        &mut input,
        loc.as_ref(),
        &key,
        &CreateOptions::new("ehr", datetime!(2026-11-23 03:00 UTC)),
        &NoProgress,
    ))
    .expect("create");

    let conf = rt.block_on(aws_config::load_defaults(
        aws_config::BehaviorVersion::latest(),
    ));
    let kms = aws_sdk_kms::Client::new(&conf);
    // DisableKey takes the key's id, not an alias (as in AWS).
    let key_id = rt
        .block_on(kms.describe_key().key_id(&alias).send())
        .expect("DescribeKey")
        .key_metadata
        .map(|m| m.key_id)
        .expect("key id");
    rt.block_on(kms.disable_key().key_id(&key_id).send())
        .expect("DisableKey");

    let e = rt.block_on(key.preflight()).expect_err("a disabled key");
    match &e {
        KeyError::BadKey { uri, reason } => {
            assert_eq!(uri, &format!("aws-kms:{alias}"));
            assert!(reason.contains("Disabled"), "{reason}");
        }
        other => panic!("a disabled key must be a BadKey, got {other:?}"),
    }

    // The rehydrate step's preflight refuses it as permanent: no retry, no restore attempted.
    let dir = tempfile::tempdir().expect("tmp");
    let ctx = drover_schema::StepContext {
        run_id: "r".into(),
        step_id: "rehydrate".into(),
        action: "backup.rehydrate".into(),
        idempotency_key: "r/rehydrate".into(),
        attempt: 1,
        state_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let mut inputs = drover_schema::Inputs::new();
    inputs.insert("source".into(), serde_json::json!(uri));
    inputs.insert("key".into(), serde_json::json!(format!("aws-kms:{alias}")));
    inputs.insert(
        "dest".into(),
        serde_json::json!(dir.path().join("ehr.bin").to_string_lossy()),
    );
    let refused = rt
        .block_on(
            drover_adapters::local::LocalAdapter::new(std::sync::Arc::new(|_: &str| {})).preflight(
                "backup.rehydrate",
                &inputs,
                &ctx,
            ),
        )
        .expect_err("a disabled key refuses the step");
    assert!(
        !refused.is_transient() && refused.message.contains("Disabled"),
        "{refused:?}"
    );
    assert!(!dir.path().join("ehr.bin").exists());

    // Enabled again, the same backup restores: disabling lost nothing.
    rt.block_on(kms.enable_key().key_id(&key_id).send())
        .expect("EnableKey");
    rt.block_on(backup::restore(
        loc.as_ref(),
        &dir.path().join("ehr.bin"),
        &key,
        None,
        false,
        &NoProgress,
    ))
    .expect("restore after EnableKey");
}

#[test]
fn sampled_verification_works_under_an_s3_prefix() {
    let rt = rt();
    let (bucket, alias, _) = rt.block_on(world());
    let key = KmsKeyProvider::new(alias);
    for i in 0..3 {
        let loc = location_from_uri(&format!("s3://{bucket}/vault/b{i}.dbk")).expect("location");
        let mut input: &[u8] = b"some clinical data";
        rt.block_on(backup::create(
            &mut input,
            loc.as_ref(),
            &key,
            &CreateOptions::new("d", datetime!(2026-11-23 03:00 UTC)),
            &NoProgress,
        ))
        .expect("create");
    }
    let prefix = location_from_uri(&format!("s3://{bucket}/vault/")).expect("prefix");
    let r = rt
        .block_on(backup::verify_sample(prefix.as_ref(), 2, 1, &key))
        .expect("sample");
    assert_eq!(r.backups.len(), 3);
    assert_eq!(r.sampled(), 2);
    assert_eq!(r.errors(), 0);
}

#[test]
fn object_lock_is_reported_checked_and_a_locked_backup_cannot_be_deleted() {
    use drover_schema::Adapter;
    let rt = rt();
    let (_, alias, _) = rt.block_on(world());
    let key = KmsKeyProvider::new(alias);
    let bucket = unique("drover-locked");
    let conf = rt.block_on(aws_config::load_defaults(
        aws_config::BehaviorVersion::latest(),
    ));
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    rt.block_on(
        s3.create_bucket()
            .bucket(&bucket)
            .object_lock_enabled_for_bucket(true)
            .send(),
    )
    .expect("locked bucket");
    let loc = location_from_uri(&format!("s3://{bucket}/ehr.dbk")).expect("location");
    let mut input: &[u8] = b"immutable copy";
    rt.block_on(backup::create(
        &mut input,
        loc.as_ref(),
        &key,
        &CreateOptions::new("ehr", datetime!(2026-11-23 03:00 UTC)),
        &NoProgress,
    ))
    .expect("create");
    let until = aws_sdk_s3::primitives::DateTime::from_secs(4_102_444_800); // 2100-01-01
    rt.block_on(
        s3.put_object_retention()
            .bucket(&bucket)
            .key("ehr.dbk")
            .retention(
                aws_sdk_s3::types::ObjectLockRetention::builder()
                    .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Compliance)
                    .retain_until_date(until)
                    .build(),
            )
            .send(),
    )
    .expect("retention");

    let report = rt
        .block_on(backup::verify(loc.as_ref(), None, None, &NoProgress))
        .expect("verify");
    let lock = report.retention.expect("object lock reported");
    assert_eq!(lock.mode, "COMPLIANCE");
    assert!(
        lock.retain_until.starts_with("2100-01-01"),
        "{}",
        lock.retain_until
    );

    let ctx = drover_schema::StepContext {
        run_id: "r".into(),
        step_id: "check".into(),
        action: "aws_s3.check_object_lock".into(),
        idempotency_key: "r/check".into(),
        attempt: 1,
        mode: drover_schema::Mode::Drill,
        state_dir: ".".into(),
        production: Vec::new(),
        production_tags: Default::default(),
        progress: Default::default(),
        ..Default::default()
    };
    let mut inputs = drover_schema::Inputs::new();
    inputs.insert("bucket".into(), serde_json::json!(bucket));
    inputs.insert("key".into(), serde_json::json!("ehr.dbk"));
    inputs.insert("mode".into(), serde_json::json!("COMPLIANCE"));
    inputs.insert(
        "min_retention".into(),
        serde_json::json!(189_216_000_000u64),
    ); // 6 years
    let adapter = drover_adapters::aws_s3::AwsS3Adapter;
    let out = rt
        .block_on(adapter.execute("aws_s3.check_object_lock", &inputs, &ctx))
        .expect("locked long enough");
    assert_eq!(out["mode"], "COMPLIANCE");
    inputs.insert("key".into(), serde_json::json!("nope.dbk"));
    assert!(
        rt.block_on(adapter.execute("aws_s3.check_object_lock", &inputs, &ctx))
            .is_err()
    );

    // The store itself refuses to delete the locked version.
    let versions = rt
        .block_on(s3.list_object_versions().bucket(&bucket).send())
        .expect("versions");
    let version = versions
        .versions()
        .first()
        .and_then(|v| v.version_id())
        .expect("a version")
        .to_owned();
    let deleted = rt.block_on(
        s3.delete_object()
            .bucket(&bucket)
            .key("ehr.dbk")
            .version_id(&version)
            .send(),
    );
    assert!(deleted.is_err(), "deleting a locked object must be refused");
}

#[test]
fn a_backup_copied_to_s3_and_back_is_byte_identical_and_a_damaged_object_is_refused() {
    let rt = rt();
    let (bucket, _, _) = rt.block_on(world());
    let dir = tempfile::tempdir().expect("tmp");
    let k = super::support::key(dir.path(), "k.key");
    let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 241) as u8).collect();
    let src = super::support::create(dir.path(), "ehr.dbk", &data, 1 << 20, &k);
    let local = backup::LocalLocation::new(&src);
    let uri = format!("s3://{bucket}/copies/ehr.dbk");
    let s3 = location_from_uri(&uri).expect("s3 location");
    let to = backup::copy(&local, s3.as_ref(), None, &NoProgress).expect("copy to s3");
    assert!(!to.already_there);
    assert_eq!(to.destination.location, uri);
    assert!(to.destination.retention.is_none(), "no lock was asked for");
    let back = dir.path().join("back/ehr.dbk");
    let from = backup::copy(
        s3.as_ref(),
        &backup::LocalLocation::new(&back),
        None,
        &NoProgress,
    )
    .expect("copy from s3");
    assert_eq!(from.source.backup_id, to.source.backup_id);
    assert_eq!(
        std::fs::read(&src).expect("src"),
        std::fs::read(&back).expect("back")
    );
    let again = backup::copy(&local, s3.as_ref(), None, &NoProgress).expect("again");
    assert!(again.already_there, "the object holds it: nothing copied");

    // An object damaged in the bucket: the copy from it is refused, naming it; nothing lands.
    let mut bytes = std::fs::read(&src).expect("src");
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    let bad = format!("s3://{bucket}/copies/damaged.dbk");
    rt.block_on(async {
        let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        )
        .put_object()
        .bucket(&bucket)
        .key("copies/damaged.dbk")
        .body(bytes.into())
        .send()
        .await
        .expect("put damaged")
    });
    let dst = dir.path().join("back/damaged.dbk");
    let e = backup::copy(
        location_from_uri(&bad).expect("loc").as_ref(),
        &backup::LocalLocation::new(&dst),
        None,
        &NoProgress,
    )
    .expect_err("a damaged source");
    assert!(e.to_string().contains("SHA-256"), "{e}");
    assert!(!dst.exists());
    // And a copy to S3 over another object is refused.
    let other = super::support::create(dir.path(), "other.dbk", b"other", 16, &k);
    let e = backup::copy(
        &backup::LocalLocation::new(&other),
        s3.as_ref(),
        None,
        &NoProgress,
    )
    .expect_err("refused");
    assert!(e.to_string().contains("refusing to overwrite"), "{e}");
}

#[test]
fn a_copy_and_a_backup_locked_as_they_are_written_read_their_lock_back() {
    let rt = rt();
    let (plain_bucket, _, _) = rt.block_on(world());
    let conf = rt.block_on(aws_config::load_defaults(
        aws_config::BehaviorVersion::latest(),
    ));
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let vault = unique("drover-vault");
    rt.block_on(
        s3.create_bucket()
            .bucket(&vault)
            .object_lock_enabled_for_bucket(true)
            .send(),
    )
    .expect("locked bucket");
    let dir = tempfile::tempdir().expect("tmp");
    let k = super::support::key(dir.path(), "k.key");
    let data: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 199) as u8).collect();
    let src = super::support::create(dir.path(), "ehr.dbk", &data, 1 << 20, &k);
    let local = backup::LocalLocation::new(&src);
    let now = time::OffsetDateTime::now_utc();
    let lock = backup::WriteLock::new(backup::LockMode::Compliance, "30d", now).expect("lock");

    // The copy carries the lock on the object itself (two multipart parts), read back.
    let uri = format!("s3://{vault}/ehr/ehr.dbk");
    let dst = location_from_uri(&uri).expect("location");
    let r = backup::copy(&local, dst.as_ref(), Some(&lock), &NoProgress).expect("locked copy");
    let held = r.destination.retention.clone().expect("the lock read back");
    assert_eq!(held.mode, "COMPLIANCE");
    lock.check(&uri, Some(&held)).expect("as long as asked");
    // Asked again with a longer lock than it holds: refused, not silently accepted.
    let longer = backup::WriteLock::new(backup::LockMode::Compliance, "6y", now).expect("6y");
    let e = backup::copy(&local, dst.as_ref(), Some(&longer), &NoProgress)
        .expect_err("shorter than asked");
    assert!(e.to_string().contains("not COMPLIANCE until"), "{e}");

    // A locked backup created straight into the vault.
    let created_uri = format!("s3://{vault}/ehr/created.dbk");
    let created_loc = location_from_uri(&created_uri).expect("location");
    let mut opts = CreateOptions::new("ehr", datetime!(2026-11-23 03:00 UTC));
    opts.lock = Some(lock);
    let mut input: &[u8] = b"locked at birth";
    let c = rt
        .block_on(backup::create(
            &mut input,
            created_loc.as_ref(),
            &k,
            &opts,
            &NoProgress,
        ))
        .expect("locked create");
    assert_eq!(c.retention.map(|r| r.mode).as_deref(), Some("COMPLIANCE"));

    // A bucket without Object Lock cannot hold a locked copy: refused before anything is sent.
    let plain = location_from_uri(&format!("s3://{plain_bucket}/ehr.dbk")).expect("location");
    let e = backup::copy(&local, plain.as_ref(), Some(&lock), &NoProgress).expect_err("no lock");
    assert!(e.to_string().contains("does not have Object Lock"), "{e}");
    assert!(!plain.exists().expect("head"), "something was written");
    // A local destination has no such lock.
    let e = backup::copy(
        &local,
        &backup::LocalLocation::new(dir.path().join("l.dbk")),
        Some(&lock),
        &NoProgress,
    )
    .expect_err("local");
    assert!(e.to_string().contains("write-once retention"), "{e}");
}
