//! Write-ahead captures: the state a step is about to change, saved durably in the run's state
//! directory *before* the change is made.
//!
//! Undo needs the state from before the first attempt. If the process dies after the cloud call
//! but before the journal records the step's outputs, a retry or a resume would capture the
//! already-changed world and "undo" to it. So the capture is taken once per step (keyed by the
//! idempotency key), written with fsync before the first mutating call, and every later attempt,
//! `observe` and `compensate` reads that first capture back.

use drover_schema::{AdapterError, StepContext};
use serde::{Serialize, de::DeserializeOwned};
use sha2::Digest;
use std::io::Write;
use std::path::PathBuf;

fn path(ctx: &StepContext) -> PathBuf {
    let digest = sha2::Sha256::digest(ctx.idempotency_key.as_bytes());
    ctx.state_dir
        .join("captures")
        .join(format!("{}.json", hex::encode(&digest[..16])))
}

/// The capture saved for this step, if any.
///
/// # Errors
/// If a capture exists but cannot be read (never silently ignored: undo depends on it).
pub(crate) fn load<T: DeserializeOwned>(ctx: &StepContext) -> Result<Option<T>, AdapterError> {
    let p = path(ctx);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            AdapterError::permanent(format!(
                "step {}: the saved pre-change state {} is unreadable: {e}",
                ctx.step_id,
                p.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AdapterError::permanent(format!(
            "step {}: cannot read the saved pre-change state {}: {e}",
            ctx.step_id,
            p.display()
        ))),
    }
}

/// Saves `value` durably (temp file, fsync, rename), replacing any earlier capture.
///
/// # Errors
/// If it cannot be written: the step must not go ahead without it.
pub(crate) fn save<T: Serialize>(ctx: &StepContext, value: &T) -> Result<(), AdapterError> {
    let p = path(ctx);
    let fail = |e: &dyn std::fmt::Display| {
        AdapterError::permanent(format!(
            "step {}: cannot save the pre-change state under {}: {e}",
            ctx.step_id,
            ctx.state_dir.display()
        ))
    };
    let dir = p
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| fail(&e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| fail(&e))?;
    tmp.write_all(&bytes).map_err(|e| fail(&e))?;
    tmp.as_file().sync_all().map_err(|e| fail(&e))?;
    tmp.persist(&p).map_err(|e| fail(&e.error))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The first capture of this step: the saved one if there is one, else `take()`'s result, saved
/// before it is returned.
///
/// # Errors
/// From `take` or from saving.
pub(crate) async fn first<T, F>(ctx: &StepContext, take: F) -> Result<T, AdapterError>
where
    T: Serialize + DeserializeOwned,
    F: std::future::Future<Output = Result<T, AdapterError>>,
{
    if let Some(saved) = load(ctx)? {
        return Ok(saved);
    }
    let value = take.await?;
    save(ctx, &value)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(dir: &std::path::Path, key: &str) -> StepContext {
        StepContext {
            run_id: "r".into(),
            step_id: "s".into(),
            action: "a".into(),
            idempotency_key: key.into(),
            attempt: 1,
            mode: drover_schema::Mode::Failover,
            state_dir: dir.to_path_buf(),
            production: Vec::new(),
            production_tags: Default::default(),
            progress: Default::default(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_first_capture_wins_across_attempts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = ctx(dir.path(), "run/step");
        let a: String = first(&c, async { Ok("before".to_owned()) })
            .await
            .expect("first");
        let b: String = first(&c, async { Ok("after".to_owned()) })
            .await
            .expect("second");
        assert_eq!((a.as_str(), b.as_str()), ("before", "before"));
        let other = ctx(dir.path(), "run/other");
        let o: String = first(&other, async { Ok("x".to_owned()) })
            .await
            .expect("other");
        assert_eq!(o, "x");
    }

    #[tokio::test]
    async fn a_corrupt_capture_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = ctx(dir.path(), "run/step");
        save(&c, &"ok").expect("save");
        std::fs::write(path(&c), b"{not json").expect("corrupt");
        let r: Result<String, _> = first(&c, async { Ok("fresh".to_owned()) }).await;
        assert!(r.is_err());
    }
}
