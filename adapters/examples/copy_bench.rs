//! `drover backup copy` from S3 to Azure Blob against a bare SDK get+put of the same object, on
//! moto and Azurite in the same run. Run through `bench/backup_copy.sh`, which starts both.
//!
//! - `copy_bench container AZBLOB_URI` makes the container;
//! - `copy_bench setup MIB BUCKET` writes a MIB-sized backup to `s3://BUCKET/src.dbk` (not timed)
//!   and prints its URI;
//! - `copy_bench drover S3_URI AZBLOB_URI` copies with `backup::copy` (checked while it streams,
//!   read back after);
//! - `copy_bench bare S3_URI AZBLOB_URI` streams GetObject into 8 MiB Put Block calls and one
//!   Put Block List: what a hand-written transfer does, with no checks.
//!
//! The last two print `seconds peak_rss_kib`.

use drover_adapters::backup::{self, NoProgress};
use std::io::Read;
use std::time::Instant;

#[allow(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
fn now() -> Instant {
    Instant::now()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Bytes that do not compress, from a xorshift generator.
struct Noise {
    left: u64,
    x: u64,
}

impl Read for Noise {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for b in &mut out[..n] {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            *b = self.x as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn azure_container(uri: &str) -> azure_storage_blobs::prelude::ContainerClient {
    let conn = std::env::var("AZURE_STORAGE_CONNECTION_STRING").expect("connection string");
    let cs = azure_storage::ConnectionString::new(&conn).expect("connection string");
    let rest = uri.strip_prefix("azblob://").expect("azblob uri");
    let container = rest.split('/').nth(1).expect("container");
    azure_storage_blobs::prelude::ClientBuilder::with_location(
        azure_storage::CloudLocation::Custom {
            account: cs.account_name.expect("account").to_owned(),
            uri: cs.blob_endpoint.expect("endpoint").to_owned(),
        },
        cs.storage_credentials().expect("credentials"),
    )
    .container_client(container)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        Some("container") => {
            let c = azure_container(&args[1]);
            rt.block_on(async { c.create().await }).expect("container");
        }
        Some("setup") => {
            let mib: u64 = args[1].parse().expect("MiB");
            let bucket = &args[2];
            let dir = tempfile::tempdir().expect("tmp");
            let key = dir.path().join("k.key");
            backup::generate_file_key(&key, false).expect("key");
            let key = backup::FileKeyProvider::new(&key);
            let uri = format!("s3://{bucket}/src-{mib}.dbk");
            let loc = backup::location_from_uri(&uri).expect("location");
            let mut data = Noise {
                left: mib << 20,
                x: 0x2545_f491_4f6c_dd1d,
            };
            let opts = backup::CreateOptions::new("bench", time::OffsetDateTime::UNIX_EPOCH);
            rt.block_on(backup::create(
                &mut data,
                loc.as_ref(),
                &key,
                &opts,
                &NoProgress,
            ))
            .expect("create");
            println!("{uri}");
        }
        Some("drover") => {
            let src = backup::location_from_uri(&args[1]).expect("src");
            let dst = backup::location_from_uri(&args[2]).expect("dst");
            let t = now();
            let r = backup::copy(src.as_ref(), dst.as_ref(), None, &NoProgress).expect("copy");
            assert!(!r.already_there);
            println!("{:.3} {}", t.elapsed().as_secs_f64(), peak_rss_kib());
        }
        Some("bare") => {
            let s3 = &args[1]["s3://".len()..];
            let (bucket, key) = s3.split_once('/').expect("bucket/key");
            let blob_name = args[2].splitn(5, '/').nth(4).expect("blob").to_owned();
            let container = azure_container(&args[2]);
            let t = now();
            rt.block_on(async {
                let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let s3 = aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&conf)
                        .force_path_style(true)
                        .build(),
                );
                let blob = container.blob_client(blob_name);
                let mut body = s3
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .expect("get")
                    .body;
                let mut buf = Vec::with_capacity(8 << 20);
                let mut ids = Vec::new();
                loop {
                    let next = body.try_next().await.expect("body");
                    if let Some(chunk) = &next {
                        buf.extend_from_slice(chunk);
                    }
                    if buf.len() >= 8 << 20 || (next.is_none() && !buf.is_empty()) {
                        let id = azure_storage_blobs::prelude::BlockId::new(
                            format!("{:08}", ids.len()).into_bytes(),
                        );
                        ids.push(
                            azure_storage_blobs::prelude::BlobBlockType::new_uncommitted(
                                id.clone(),
                            ),
                        );
                        let block = std::mem::replace(&mut buf, Vec::with_capacity(8 << 20));
                        blob.put_block(id, block).await.expect("put block");
                    }
                    if next.is_none() {
                        break;
                    }
                }
                blob.put_block_list(azure_storage_blobs::blob::BlockList { blocks: ids })
                    .await
                    .expect("put block list");
            });
            println!("{:.3} {}", t.elapsed().as_secs_f64(), peak_rss_kib());
        }
        _ => {
            eprintln!(
                "usage: copy_bench setup MIB BUCKET | drover S3_URI AZBLOB_URI | bare S3_URI AZBLOB_URI"
            );
            std::process::exit(2);
        }
    }
}
