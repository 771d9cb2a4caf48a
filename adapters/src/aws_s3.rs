//! `s3://bucket/key` backup locations: streaming reads (GetObject, consumed chunk by chunk),
//! multipart writes (8 MiB parts, aborted unless committed), listing under a prefix.
//!
//! Each read or write runs its AWS calls on a thread of its own with its own small runtime, so a
//! location works the same from synchronous code, from `spawn_blocking`, or under any runtime.
//! Configuration is the AWS SDK's: credential chain, profiles, `AWS_REGION`, `AWS_ENDPOINT_URL`
//! (path-style addressing is used when an endpoint is set, as S3-compatible servers expect).

use crate::backup::{BackupError, Location, PendingWrite};
use crate::object_io::{ChannelReader, in_background, on_own_runtime};
use std::io::{Read, Write};
use std::sync::mpsc::{SyncSender, sync_channel};

const PART: usize = 8 << 20;

/// An object (or, for listing, a prefix) in S3.
#[derive(Debug, Clone)]
pub struct S3Location {
    bucket: String,
    key: String,
}

impl S3Location {
    /// Parses `s3://bucket/key`.
    ///
    /// # Errors
    /// If the URI has no bucket.
    pub fn parse(uri: &str) -> Result<Self, BackupError> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| BackupError::Invalid(format!("{uri} is not an s3:// URI")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(BackupError::Invalid(format!("{uri}: no bucket")));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The bucket.
    #[must_use]
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// An S3 client configured the AWS way.
pub async fn client() -> aws_sdk_s3::Client {
    let conf = crate::aws_common::backup_sdk_config().await;
    let mut b = aws_sdk_s3::config::Builder::from(&conf);
    if std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
    {
        b = b.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

fn s3_err<E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static>(
    call: &str,
    what: &str,
    e: &aws_sdk_s3::error::SdkError<E>,
) -> BackupError {
    BackupError::Io {
        context: format!("S3 {call} {what}"),
        source: std::io::Error::other(sdk_text(e)),
    }
}

/// A failed S3 call in one sentence: the error code and message.
fn sdk_text<E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static>(
    e: &aws_sdk_s3::error::SdkError<E>,
) -> String {
    let (code, message) = crate::aws_common::describe_sdk_error(e);
    if message.is_empty() {
        code
    } else {
        format!("{code}: {message}")
    }
}

enum Msg {
    Part(Vec<u8>),
    Commit(SyncSender<Result<(), String>>),
}

struct S3Writer {
    tx: SyncSender<Msg>,
    buf: Vec<u8>,
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PART {
            let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART));
            self.tx
                .send(Msg::Part(part))
                .map_err(|_| std::io::Error::other("the S3 upload stopped"))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl PendingWrite for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<(), BackupError> {
        let last = std::mem::take(&mut self.buf);
        let (done_tx, done_rx) = sync_channel(1);
        let send = |m| {
            self.tx
                .send(m)
                .map_err(|_| BackupError::Invalid("the S3 upload stopped".into()))
        };
        send(Msg::Part(last))?;
        send(Msg::Commit(done_tx))?;
        match done_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BackupError::Io {
                context: "S3 multipart upload".into(),
                source: std::io::Error::other(e),
            }),
            Err(_) => Err(BackupError::Invalid("the S3 upload stopped".into())),
        }
    }
}

impl Location for S3Location {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn open(&self) -> Result<Box<dyn Read + Send>, BackupError> {
        let (tx, rx) = sync_channel::<std::io::Result<Vec<u8>>>(4);
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        in_background(async move {
            let c = client().await;
            match c.get_object().bucket(&bucket).key(&key).send().await {
                Ok(out) => {
                    let mut body = out.body;
                    loop {
                        match body.try_next().await {
                            Ok(Some(chunk)) => {
                                if tx.send(Ok(chunk.to_vec())).is_err() {
                                    return;
                                }
                            }
                            Ok(None) => return,
                            Err(e) => {
                                let _ = tx.send(Err(std::io::Error::other(e.to_string())));
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    // A missing object is "not found", as a missing file is.
                    let kind = if e.as_service_error().is_some_and(
                        aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key,
                    ) {
                        std::io::ErrorKind::NotFound
                    } else {
                        std::io::ErrorKind::Other
                    };
                    let _ = tx.send(Err(std::io::Error::new(
                        kind,
                        format!("GetObject s3://{bucket}/{key}: {}", sdk_text(&e)),
                    )));
                }
            }
        });
        Ok(Box::new(ChannelReader::new(rx)))
    }

    fn exists(&self) -> Result<bool, BackupError> {
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        on_own_runtime(async move {
            match client()
                .await
                .head_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e)
                    if e.as_service_error().is_some_and(
                        aws_sdk_s3::operation::head_object::HeadObjectError::is_not_found,
                    ) =>
                {
                    Ok(false)
                }
                Err(e) => Err(BackupError::Invalid(format!(
                    "HeadObject s3://{bucket}/{key}: {}",
                    sdk_text(&e)
                ))),
            }
        })?
    }

    fn create(&self, replace: bool) -> Result<Box<dyn PendingWrite>, BackupError> {
        if !replace && self.exists()? {
            return Err(BackupError::Invalid(format!(
                "{} exists; refusing to overwrite it",
                self.describe()
            )));
        }
        Ok(self.upload(None))
    }

    fn create_locked(
        &self,
        lock: &crate::backup::WriteLock,
    ) -> Result<Box<dyn PendingWrite>, BackupError> {
        if self.exists()? {
            return Err(BackupError::Invalid(format!(
                "{} exists; refusing to overwrite it",
                self.describe()
            )));
        }
        // A bucket without Object Lock cannot hold it: refused before anything is sent.
        require_object_lock(&self.bucket)?;
        Ok(self.upload(Some(*lock)))
    }

    fn retention(&self) -> Result<Option<crate::backup::Retention>, BackupError> {
        let me = self.clone();
        on_own_runtime(async move { me.head_retention(&client().await).await })?
    }

    fn site(&self) -> Result<String, BackupError> {
        let bucket = self.bucket.clone();
        on_own_runtime(async move {
            let out = client()
                .await
                .get_bucket_location()
                .bucket(&bucket)
                .send()
                .await
                .map_err(|e| s3_err("GetBucketLocation", &format!("s3://{bucket}"), &e))?;
            // No constraint is us-east-1, as S3 defines it.
            let region = out
                .location_constraint()
                .map(|c| c.as_str().to_owned())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "us-east-1".to_owned());
            Ok(format!("aws:{region}"))
        })?
    }

    fn list(&self) -> Result<Vec<Box<dyn Location>>, BackupError> {
        let (bucket, prefix) = (self.bucket.clone(), self.key.clone());
        let keys = on_own_runtime(async move {
            let c = client().await;
            let mut keys = Vec::new();
            let mut pages = c
                .list_objects_v2()
                .bucket(&bucket)
                .prefix(&prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page
                    .map_err(|e| s3_err("ListObjectsV2", &format!("s3://{bucket}/{prefix}"), &e))?;
                for o in page.contents() {
                    if let Some(k) = o.key() {
                        let head = c
                            .get_object()
                            .bucket(&bucket)
                            .key(k)
                            .range("bytes=0-7")
                            .send()
                            .await;
                        if let Ok(out) = head {
                            let b = out
                                .body
                                .collect()
                                .await
                                .map(|b| b.into_bytes().to_vec())
                                .unwrap_or_default();
                            if b.as_slice() == crate::backup::MAGIC {
                                keys.push(k.to_owned());
                            }
                        }
                    }
                }
            }
            Ok::<_, BackupError>(keys)
        })??;
        Ok(keys
            .into_iter()
            .map(|k| {
                Box::new(S3Location {
                    bucket: self.bucket.clone(),
                    key: k,
                }) as Box<dyn Location>
            })
            .collect())
    }
}

impl S3Location {
    /// A multipart upload to this object, under `lock` when given (set on the upload itself,
    /// with CRC32 part checksums, as S3 requires for a locked write). Nothing appears at the key
    /// unless it is committed.
    fn upload(&self, lock: Option<crate::backup::WriteLock>) -> Box<dyn PendingWrite> {
        use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode};
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        let (tx, rx) = sync_channel::<Msg>(2);
        in_background(async move {
            let c = client().await;
            let mut create = c.create_multipart_upload().bucket(&bucket).key(&key);
            if let Some(l) = lock {
                create = create
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .object_lock_mode(match l.mode {
                        crate::backup::LockMode::Compliance => ObjectLockMode::Compliance,
                        crate::backup::LockMode::Governance => ObjectLockMode::Governance,
                    })
                    .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                        l.retain_until,
                    ));
            }
            let upload = match create.send().await {
                Ok(u) => u.upload_id().unwrap_or_default().to_owned(),
                Err(e) => {
                    // Report on commit.
                    let msg = format!("CreateMultipartUpload: {}", sdk_text(&e));
                    while let Ok(m) = rx.recv() {
                        if let Msg::Commit(done) = m {
                            let _ = done.send(Err(msg));
                            return;
                        }
                    }
                    return;
                }
            };
            let mut parts = Vec::new();
            let mut failed: Option<String> = None;
            let abort = |c: &aws_sdk_s3::Client| {
                let (c, b, k, u) = (c.clone(), bucket.clone(), key.clone(), upload.clone());
                async move {
                    let _ = c
                        .abort_multipart_upload()
                        .bucket(&b)
                        .key(&k)
                        .upload_id(&u)
                        .send()
                        .await;
                }
            };
            while let Ok(m) = rx.recv() {
                match m {
                    Msg::Part(data) if failed.is_none() => {
                        let n = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
                        match c
                            .upload_part()
                            .bucket(&bucket)
                            .key(&key)
                            .upload_id(&upload)
                            .part_number(n)
                            .set_checksum_algorithm(lock.map(|_| ChecksumAlgorithm::Crc32))
                            .body(data.into())
                            .send()
                            .await
                        {
                            Ok(p) => parts.push(
                                aws_sdk_s3::types::CompletedPart::builder()
                                    .part_number(n)
                                    .set_e_tag(p.e_tag().map(str::to_owned))
                                    .set_checksum_crc32(p.checksum_crc32().map(str::to_owned))
                                    .build(),
                            ),
                            Err(e) => failed = Some(format!("UploadPart {n}: {}", sdk_text(&e))),
                        }
                    }
                    Msg::Part(_) => {}
                    Msg::Commit(done) => {
                        if let Some(f) = failed {
                            abort(&c).await;
                            let _ = done.send(Err(f));
                            return;
                        }
                        let r = c
                            .complete_multipart_upload()
                            .bucket(&bucket)
                            .key(&key)
                            .upload_id(&upload)
                            .multipart_upload(
                                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                                    .set_parts(Some(parts))
                                    .build(),
                            )
                            .send()
                            .await;
                        let r = match (r, lock) {
                            (Ok(out), Some(l)) => {
                                ensure_retention(&c, &bucket, &key, out.version_id(), l).await
                            }
                            (r, _) => r
                                .map(|_| ())
                                .map_err(|e| format!("CompleteMultipartUpload: {}", sdk_text(&e))),
                        };
                        let _ = done.send(r);
                        return;
                    }
                }
            }
            // Dropped without commit: nothing may appear at the key.
            abort(&c).await;
        });
        Box::new(S3Writer {
            tx,
            buf: Vec::with_capacity(PART),
        })
    }

    async fn head_retention(
        &self,
        client: &aws_sdk_s3::Client,
    ) -> Result<Option<crate::backup::Retention>, BackupError> {
        let out = client
            .head_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| s3_err("HeadObject", &self.describe(), &e))?;
        Ok(
            match (out.object_lock_mode(), out.object_lock_retain_until_date()) {
                (Some(mode), Some(until)) => Some(crate::backup::Retention {
                    mode: mode.as_str().to_owned(),
                    retain_until: until
                        .fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime)
                        .unwrap_or_default(),
                }),
                _ => None,
            },
        )
    }
}

/// The `aws_s3.*` actions: `aws_s3.check_object_lock` checks that the immutable copy of a backup
/// exists and is locked (HeadObject: lock mode and retain-until date), long enough.
#[derive(Debug, Default)]
pub struct AwsS3Adapter;

#[async_trait::async_trait]
impl drover_schema::Adapter for AwsS3Adapter {
    fn schemas(&self) -> Vec<drover_schema::ActionSchema> {
        crate::builtin_catalogue()
            .actions()
            .iter()
            .filter(|a| a.provider() == "aws_s3")
            .cloned()
            .collect()
    }

    async fn execute(
        &self,
        action: &str,
        inputs: &drover_schema::Inputs,
        ctx: &drover_schema::StepContext,
    ) -> Result<drover_schema::Outputs, drover_schema::AdapterError> {
        use drover_schema::AdapterError;
        if action != "aws_s3.check_object_lock" {
            return Err(AdapterError::permanent(format!(
                "the S3 adapter has no action `{action}`"
            )));
        }
        let s = |k: &str| inputs.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let (Some(bucket), Some(key)) = (s("bucket"), s("key")) else {
            return Err(AdapterError::permanent("`bucket` and `key` are required"));
        };
        let loc = S3Location { bucket, key };
        // The step's own region, profile and endpoint (path-style addressing with an endpoint).
        let target = crate::aws_common::AwsTarget::load(inputs).await;
        let mut conf = aws_sdk_s3::config::Builder::from(&target.conf);
        if inputs.contains_key("endpoint_url")
            || std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
        {
            conf = conf.force_path_style(true);
        }
        let client = aws_sdk_s3::Client::from_conf(conf.build());
        let r = loc.head_retention(&client).await.map_err(|e| {
            let msg = format!(
                "step {}: aws_s3.check_object_lock in {}: {e}",
                ctx.step_id, target.region
            );
            if [
                "NotFound",
                "NoSuchKey",
                "NoSuchBucket",
                "AccessDenied",
                "Forbidden",
            ]
            .iter()
            .any(|c| msg.contains(c))
            {
                AdapterError::permanent(msg)
            } else {
                AdapterError::transient(msg)
            }
        })?;
        let Some(r) = r else {
            return Err(AdapterError::permanent(format!(
                "{} is not under S3 Object Lock",
                loc.describe()
            )));
        };
        if let Some(want) = s("mode").filter(|m| *m != r.mode) {
            return Err(AdapterError::permanent(format!(
                "{} is locked in {} mode, not {want}",
                loc.describe(),
                r.mode
            )));
        }
        if let Some(min) = inputs
            .get("min_retention")
            .and_then(serde_json::Value::as_u64)
        {
            let until = time::OffsetDateTime::parse(
                &r.retain_until,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| {
                AdapterError::permanent(format!("unreadable retain-until date {}", r.retain_until))
            })?;
            let left = (until - time::OffsetDateTime::now_utc()).whole_milliseconds();
            if left < i128::from(min) {
                return Err(AdapterError::permanent(format!(
                    "{} is locked only until {}",
                    loc.describe(),
                    r.retain_until
                )));
            }
        }
        let mut o = drover_schema::Outputs::new();
        o.insert("mode".into(), serde_json::json!(r.mode));
        o.insert("retain_until".into(), serde_json::json!(r.retain_until));
        Ok(o)
    }
}

/// An object written under Object Lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedObject {
    /// The object's version id (locks protect versions).
    pub version_id: String,
    /// Until when it cannot be deleted or overwritten (seconds since the epoch).
    pub retain_until: i64,
}

/// Refuses a bucket created without Object Lock.
async fn require_lock(c: &aws_sdk_s3::Client, bucket: &str) -> Result<(), BackupError> {
    use aws_sdk_s3::types::ObjectLockEnabled;
    let conf = c
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await;
    let enabled = match conf {
        Ok(conf) => {
            conf.object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                == Some(&ObjectLockEnabled::Enabled)
        }
        // S3's answer for a bucket created without Object Lock.
        Err(e)
            if aws_sdk_s3::error::ProvideErrorMetadata::code(&e)
                == Some("ObjectLockConfigurationNotFoundError") =>
        {
            false
        }
        Err(e) => return Err(s3_err("GetObjectLockConfiguration", bucket, &e)),
    };
    if enabled {
        Ok(())
    } else {
        Err(BackupError::Invalid(format!(
            "bucket {bucket} does not have Object Lock enabled: evidence and audit anchors need a bucket created with Object Lock (WORM)"
        )))
    }
}

/// Makes sure the version just written holds `lock`: S3 applies the lock given to
/// CreateMultipartUpload, but a store that did not (an emulator) gets it set on the version with
/// PutObjectRetention. Either way the caller reads it back.
async fn ensure_retention(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    lock: crate::backup::WriteLock,
) -> Result<(), String> {
    use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
    let uri = format!("s3://{bucket}/{key}");
    let head = c
        .head_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .map_err(|e| format!("HeadObject {uri}: {}", sdk_text(&e)))?;
    let held = head
        .object_lock_retain_until_date()
        .map_or(i64::MIN, aws_sdk_s3::primitives::DateTime::secs);
    let mode = match lock.mode {
        crate::backup::LockMode::Compliance => ObjectLockRetentionMode::Compliance,
        crate::backup::LockMode::Governance => ObjectLockRetentionMode::Governance,
    };
    if head.object_lock_mode().map(|m| m.as_str()) == Some(lock.mode.as_str())
        && held >= lock.retain_until
    {
        return Ok(());
    }
    c.put_object_retention()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .retention(
            ObjectLockRetention::builder()
                .mode(mode)
                .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                    lock.retain_until,
                ))
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("PutObjectRetention {uri}: {}", sdk_text(&e)))
}

/// Checks that `bucket` has Object Lock enabled (before anything is written to it).
///
/// # Errors
/// It does not, or S3 cannot be asked.
pub fn require_object_lock(bucket: &str) -> Result<(), BackupError> {
    let bucket = bucket.to_owned();
    on_own_runtime(async move { require_lock(&client().await, &bucket).await })?
}

/// Writes `bytes` to `location` as a new version under Object Lock in compliance mode, retained
/// for `retain_days` days (WORM: no one, the root account included, can delete or overwrite that
/// version until then). Refuses a bucket without Object Lock, and checks the lock on the stored
/// version after writing. The body's SHA-256 is sent for S3 to check.
///
/// # Errors
/// A bucket without Object Lock, a refused write, or a lock not in place after writing.
pub fn put_locked(
    location: &S3Location,
    bytes: Vec<u8>,
    retain_days: u32,
    now_secs: i64,
) -> Result<LockedObject, BackupError> {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode};
    let loc = location.clone();
    on_own_runtime(async move {
        let c = client().await;
        let uri = format!("s3://{}/{}", loc.bucket, loc.key);
        require_lock(&c, &loc.bucket).await?;
        let retain_until = now_secs + i64::from(retain_days) * 86_400;
        let put = c
            .put_object()
            .bucket(&loc.bucket)
            .key(&loc.key)
            .body(bytes.into())
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                retain_until,
            ))
            .send()
            .await
            .map_err(|e| s3_err("PutObject", &uri, &e))?;
        let version_id = put.version_id().unwrap_or_default().to_owned();
        let head = c
            .head_object()
            .bucket(&loc.bucket)
            .key(&loc.key)
            .version_id(&version_id)
            .send()
            .await
            .map_err(|e| s3_err("HeadObject", &uri, &e))?;
        if head.object_lock_mode() != Some(&ObjectLockMode::Compliance) {
            return Err(BackupError::Invalid(format!(
                "{uri} version {version_id} was stored without a compliance-mode lock"
            )));
        }
        Ok(LockedObject {
            version_id,
            retain_until,
        })
    })?
}

/// Every version of every object under `prefix` in `bucket`, with its bytes: `(key, version id,
/// bytes)`, in key order and, per key, newest first (as S3 lists them). Versions are read
/// because a locked version cannot be removed, but a newer one can be put over it.
///
/// # Errors
/// A listing or a read S3 refuses.
pub fn read_versions(
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, String, Vec<u8>)>, BackupError> {
    let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
    on_own_runtime(async move {
        let c = client().await;
        let what = format!("s3://{bucket}/{prefix}");
        let mut found = Vec::new();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = c
                .list_object_versions()
                .bucket(&bucket)
                .prefix(&prefix)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| s3_err("ListObjectVersions", &what, &e))?;
            for v in page.versions() {
                if let (Some(k), Some(id)) = (v.key(), v.version_id()) {
                    found.push((k.to_owned(), id.to_owned()));
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                break;
            }
        }
        let mut out = Vec::with_capacity(found.len());
        for (k, id) in found {
            let body = c
                .get_object()
                .bucket(&bucket)
                .key(&k)
                .version_id(&id)
                .send()
                .await
                .map_err(|e| s3_err("GetObject", &format!("s3://{bucket}/{k}"), &e))?
                .body
                .collect()
                .await
                .map_err(|e| BackupError::Io {
                    context: format!("S3 GetObject s3://{bucket}/{k}"),
                    source: std::io::Error::other(e.to_string()),
                })?
                .into_bytes()
                .to_vec();
            out.push((k, id, body));
        }
        Ok(out)
    })?
}
