//! `azblob://` backup locations against Azurite (Microsoft's Azure Storage emulator, from the npm
//! registry), started by `.ci/test` on 127.0.0.1 with `AZURE_STORAGE_CONNECTION_STRING` exported;
//! with moto for the S3 leg of the cross-cloud chain.

use super::support::rt;
use drover_adapters::backup::{self, Location, NoProgress, location_from_uri};
use std::io::Read;

/// Azurite's connection string, or `None` (the test is skipped) outside `.ci/test`.
fn azurite() -> Option<String> {
    match std::env::var("AZURE_STORAGE_CONNECTION_STRING") {
        Ok(c) if !c.is_empty() => Some(c),
        _ => {
            assert!(
                std::env::var_os("DROVER_TEST_REQUIRE_AZURITE").is_none(),
                "AZURE_STORAGE_CONNECTION_STRING is not set: run through .ci/test, which starts Azurite"
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A new container in Azurite's account; the account name.
pub fn container(conn: &str, name: &str) -> String {
    let cs = azure_storage::ConnectionString::new(conn).expect("connection string");
    let account = cs.account_name.expect("account").to_owned();
    let creds = cs.storage_credentials().expect("credentials");
    let uri = cs.blob_endpoint.expect("blob endpoint").to_owned();
    let client = azure_storage_blobs::prelude::ClientBuilder::with_location(
        azure_storage::CloudLocation::Custom {
            account: account.clone(),
            uri,
        },
        creds,
    )
    .container_client(name);
    rt().block_on(async { client.create().await })
        .expect("container");
    account
}

fn read_all(loc: &dyn Location) -> Vec<u8> {
    let mut v = Vec::new();
    loc.open().expect("open").read_to_end(&mut v).expect("read");
    v
}

#[cfg(feature = "aws")]
#[test]
fn a_backup_travels_s3_to_azure_to_local_and_restores_from_the_azure_copy() {
    let Some(conn) = azurite() else { return };
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let k = super::support::key(dir.path(), "k.key");
    let data: Vec<u8> = (0..(19u32 << 20)).map(|i| (i % 251) as u8).collect();
    let src = super::support::create(dir.path(), "ehr.dbk", &data, 1 << 20, &k);
    let original = std::fs::read(&src).expect("read");

    // S3 (moto): the primary.
    let conf = rt.block_on(aws_config::load_defaults(
        aws_config::BehaviorVersion::latest(),
    ));
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("drover-chain");
    rt.block_on(s3.create_bucket().bucket(&bucket).send())
        .expect("bucket");
    let s3_uri = format!("s3://{bucket}/ehr/ehr.dbk");
    let s3_loc = location_from_uri(&s3_uri).expect("s3");
    backup::copy(
        &backup::LocalLocation::new(&src),
        s3_loc.as_ref(),
        None,
        &NoProgress,
    )
    .expect("to S3");

    // S3 → Azure Blob (three blocks of 8 MiB at most) → local.
    let box_name = unique("drdata");
    let account = container(&conn, &box_name);
    let az_uri = format!("azblob://{account}/{box_name}/ehr/ehr.dbk");
    let az = location_from_uri(&az_uri).expect("azblob");
    assert!(!az.exists().expect("exists"));
    let r = backup::copy(s3_loc.as_ref(), az.as_ref(), None, &NoProgress).expect("to Azure");
    assert!(!r.already_there);
    assert_eq!(r.destination.location, az_uri);
    assert!(az.exists().expect("exists"));
    assert_eq!(read_all(az.as_ref()), original, "the ciphertext as it is");
    // Azurite reports no immutability policy: the copy says so rather than assuming one.
    assert_eq!(az.retention().expect("retention"), None);
    let local2 = dir.path().join("third.dbk");
    let l2 = location_from_uri(&local2.to_string_lossy()).expect("local");
    backup::copy(az.as_ref(), l2.as_ref(), None, &NoProgress).expect("to local");

    // Every copy verifies with the key; the Azure copy restores byte-identical.
    for loc in [s3_loc.as_ref(), az.as_ref(), l2.as_ref()] {
        let v = rt
            .block_on(backup::verify(loc, Some(&k), None, &NoProgress))
            .unwrap_or_else(|e| panic!("{}: {e}", loc.describe()));
        assert_eq!(v.level, backup::VerifyLevel::Full);
    }
    let restored = dir.path().join("restored.bin");
    rt.block_on(backup::restore(
        az.as_ref(),
        &restored,
        &k,
        None,
        false,
        &NoProgress,
    ))
    .expect("restore from Azure");
    assert_eq!(std::fs::read(&restored).expect("restored"), data);

    // Copying again finds it there; nothing is rewritten. Listing the prefix finds it.
    let again = backup::copy(s3_loc.as_ref(), az.as_ref(), None, &NoProgress).expect("again");
    assert!(again.already_there);
    let prefix = location_from_uri(&format!("azblob://{account}/{box_name}/ehr/")).expect("p");
    let found: Vec<String> = prefix
        .list()
        .expect("list")
        .iter()
        .map(|l| l.describe())
        .collect();
    assert_eq!(found, vec![az_uri.clone()]);

    // Creating over it is refused; the blob is unchanged.
    let e = match az.create(false) {
        Ok(_) => panic!("created over an existing blob"),
        Err(e) => e,
    };
    assert!(e.to_string().contains("refusing to overwrite"), "{e}");
    assert_eq!(read_all(az.as_ref()), original);
}

#[test]
fn a_corrupted_azure_copy_is_refused_naming_the_copy() {
    let Some(conn) = azurite() else { return };
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let k = super::support::key(dir.path(), "k.key");
    let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 97) as u8).collect();
    let src = super::support::create(dir.path(), "lab.dbk", &data, 1 << 20, &k);
    let box_name = unique("drdata");
    let account = container(&conn, &box_name);
    let az_uri = format!("azblob://{account}/{box_name}/lab/lab.dbk");
    let az = location_from_uri(&az_uri).expect("azblob");
    backup::copy(
        &backup::LocalLocation::new(&src),
        az.as_ref(),
        None,
        &NoProgress,
    )
    .expect("to Azure");

    // Someone with write access flips one byte in the middle of the stored blob.
    let mut bytes = read_all(az.as_ref());
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let mut w = az.create(true).expect("overwrite for the test");
    std::io::Write::write_all(&mut w, &bytes).expect("write");
    w.commit().expect("commit");

    let e = rt
        .block_on(backup::verify(az.as_ref(), Some(&k), None, &NoProgress))
        .expect_err("corrupted");
    assert!(matches!(e, backup::BackupError::Tampered(_)), "{e}");
    // The sampled verification of the prefix names the copy that failed.
    let prefix = location_from_uri(&format!("azblob://{account}/{box_name}/lab/")).expect("p");
    let report = rt
        .block_on(backup::verify_sample(prefix.as_ref(), 1, 7, &k))
        .expect("sample");
    assert_eq!(report.errors(), 1);
    let failed = &report.backups[0];
    assert_eq!(failed.location, az_uri);
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("chunk 1")),
        "{failed:?}"
    );
    let out = dir.path().join("from-bad.dbk");
    let e = backup::copy(
        az.as_ref(),
        &backup::LocalLocation::new(&out),
        None,
        &NoProgress,
    )
    .expect_err("refused");
    assert!(e.to_string().contains(&az_uri), "names the copy: {e}");
    assert!(!out.exists(), "nothing left at the destination");
}

#[test]
fn a_connection_string_for_another_account_is_refused_without_showing_the_key() {
    let Some(conn) = azurite() else { return };
    let loc = drover_adapters::backup::location_from_uri("azblob://someoneelse/box/x.dbk")
        .expect("parse");
    let e = loc.exists().expect_err("wrong account");
    let text = e.to_string();
    assert!(text.contains("someoneelse"), "{text}");
    let key = conn
        .split(';')
        .find_map(|p| p.strip_prefix("AccountKey="))
        .expect("key");
    assert!(!text.contains(key), "the account key leaked: {text}");
}
