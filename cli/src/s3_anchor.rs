//! `s3://bucket/prefix` audit anchors (the `aws` feature): each checkpoint is a new object
//! version written under S3 Object Lock in compliance mode (`PREFIX/RUN/COUNT.json`), which no
//! one — the account root included — can delete or overwrite until its retention ends. Reading
//! takes every version, so a newer version put over a checkpoint does not hide it.

use drover_adapters::aws_s3::{S3Location, put_locked, read_versions, require_object_lock};
use drover_engine::anchor::{AnchorStore, Checkpoint};
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How long anchored checkpoints are retained: seven years (HIPAA asks for six).
const RETAIN_DAYS: u32 = 2557;

/// An anchor in an S3 bucket with Object Lock.
#[derive(Debug)]
pub struct S3Anchor {
    bucket: String,
    prefix: String,
}

/// Opens `s3://bucket/prefix`.
///
/// # Errors
/// The location has no bucket.
pub fn open(text: &str) -> Result<Arc<dyn AnchorStore>, String> {
    let loc = S3Location::parse(text).map_err(|e| e.to_string())?;
    Ok(Arc::new(S3Anchor {
        bucket: loc.bucket().to_owned(),
        prefix: loc.key().trim_end_matches('/').to_owned(),
    }))
}

impl S3Anchor {
    fn run_prefix(&self, run_id: &str) -> String {
        if self.prefix.is_empty() {
            format!("{run_id}/")
        } else {
            format!("{}/{run_id}/", self.prefix)
        }
    }
}

impl AnchorStore for S3Anchor {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn append(&self, c: &Checkpoint) -> Result<(), String> {
        let key = format!("{}{:012}.json", self.run_prefix(&c.run_id), c.count);
        let loc =
            S3Location::parse(&format!("s3://{}/{key}", self.bucket)).map_err(|e| e.to_string())?;
        let now = OffsetDateTime::parse(&c.time, &Rfc3339)
            .map_err(|e| format!("checkpoint time {}: {e}", c.time))?
            .unix_timestamp();
        let body = serde_json::to_vec(c).map_err(|e| e.to_string())?;
        put_locked(&loc, body, RETAIN_DAYS, now)
            .map(|_| ())
            .map_err(|e| format!("cannot append to the audit anchor {}: {e}", self.location()))
    }

    fn check(&self) -> Result<(), String> {
        require_object_lock(&self.bucket)
            .map_err(|e| format!("cannot use the audit anchor {}: {e}", self.location()))
    }

    fn read(&self, run_id: &str) -> Result<Vec<Checkpoint>, String> {
        let versions = read_versions(&self.bucket, &self.run_prefix(run_id))
            .map_err(|e| format!("cannot read the audit anchor {}: {e}", self.location()))?;
        let mut out = Vec::with_capacity(versions.len());
        for (key, version, bytes) in versions {
            out.push(serde_json::from_slice::<Checkpoint>(&bytes).map_err(|e| {
                format!(
                    "s3://{}/{key} version {version} is not a checkpoint: {e}",
                    self.bucket
                )
            })?);
        }
        out.sort_by(|a, b| (a.count, &a.time).cmp(&(b.count, &b.time)));
        Ok(out)
    }
}
