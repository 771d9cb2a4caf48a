//! Copying a backup to another location as it is: the ciphertext, byte for byte. No key is
//! needed or used — a copy to another cloud never exposes plaintext or a data key. The source's
//! structure and ciphertext SHA-256 are checked against its manifest while it streams; the
//! destination is written atomically and never overwritten (a copy cut short leaves nothing
//! under the final name); after writing, the destination is read back and checked the same way.

use crate::backup::error::BackupError;
use crate::backup::format::scan;
use crate::backup::location::Location;
use crate::backup::lock::WriteLock;
use crate::backup::progress::Progress;
use crate::backup::report::{BackupReport, VerifyLevel};
use serde::Serialize;
use std::io::{Read, Write};

/// What [`copy`] did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// The source, as read (structure and ciphertext hash checked).
    pub source: BackupReport,
    /// The destination, as read back after writing (the same checks).
    pub destination: BackupReport,
    /// Bytes copied (the whole backup file).
    pub bytes: u64,
    /// The destination held this very backup already: nothing was written.
    pub already_there: bool,
}

/// A reader that writes what it reads to `out`, counting it.
struct Tee<'a> {
    inner: Box<dyn Read + Send>,
    out: &'a mut dyn Write,
    bytes: u64,
    progress: &'a dyn Progress,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        self.bytes += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Reads the backup at `loc` through and checks it: its report (structure level).
///
/// # Errors
/// It cannot be read, or it is not a whole, intact backup.
fn check(loc: &dyn Location) -> Result<BackupReport, BackupError> {
    read_through(loc, &mut loc.open()?)
}

/// Scans the backup `r` reads (from `loc`) to its end: its report, with the lock `loc` holds.
fn read_through(loc: &dyn Location, r: &mut impl Read) -> Result<BackupReport, BackupError> {
    let (parsed, manifest) = scan(r)?;
    ensure_end(r)?;
    let mut report = BackupReport::new(
        loc.describe(),
        &parsed.header,
        parsed.envelope.key_id,
        &manifest,
        VerifyLevel::Structure,
    );
    report.retention = loc.retention()?;
    Ok(report)
}

/// Nothing may follow a backup's final frame.
fn ensure_end(r: &mut impl Read) -> Result<(), BackupError> {
    let mut probe = [0u8; 1];
    let n = r
        .read(&mut probe)
        .map_err(BackupError::io("reading past the end of the backup"))?;
    if n != 0 {
        return Err(BackupError::Malformed(
            "bytes follow the end of the backup".into(),
        ));
    }
    Ok(())
}

/// The same backup: id, manifest hashes and size.
fn same(a: &BackupReport, b: &BackupReport) -> bool {
    a.backup_id == b.backup_id
        && a.ciphertext_sha256 == b.ciphertext_sha256
        && a.sha256 == b.sha256
        && a.chunks == b.chunks
        && a.bytes == b.bytes
}

/// Copies the backup at `src` to `dst`, as it is (see the module docs), under `lock` when given
/// (set on the object as it is written, and read back). A destination that
/// already holds this very backup (read back and checked) is left as it is and reported
/// `already_there` — so a copy run again after it finished, or as a runbook step after a
/// crash, does nothing twice. Any other existing destination is refused.
///
/// Blocking I/O: from an async context call it through `tokio::task::spawn_blocking`.
///
/// # Errors
/// The source is not an intact backup (nothing is left at the destination), the destination
/// exists with something else, writing fails (nothing is left), or the destination does not
/// read back as the same backup.
pub fn copy(
    src: &dyn Location,
    dst: &dyn Location,
    lock: Option<&WriteLock>,
    progress: &dyn Progress,
) -> Result<CopyReport, BackupError> {
    if dst.exists()? {
        let source = check(src).map_err(|e| e.at(&src.describe()))?;
        let there = check(dst).map_err(|e| {
            BackupError::Invalid(format!(
                "{} exists and is not an intact copy of {} ({e}); refusing to overwrite it",
                dst.describe(),
                src.describe()
            ))
        })?;
        if !same(&source, &there) {
            return Err(BackupError::Invalid(format!(
                "{} exists and holds another backup ({}, not {}); refusing to overwrite it",
                dst.describe(),
                there.backup_id,
                source.backup_id
            )));
        }
        if let Some(lock) = lock {
            lock.check(&there.location, there.retention.as_ref())?;
        }
        return Ok(CopyReport {
            source,
            destination: there,
            bytes: 0,
            already_there: true,
        });
    }
    progress.start(None);
    let mut pending = match lock {
        Some(lock) => dst.create_locked(lock)?,
        None => dst.create(false)?,
    };
    let (source, bytes) = {
        let mut tee = Tee {
            inner: src.open()?,
            out: &mut pending,
            bytes: 0,
            progress,
        };
        let report = read_through(src, &mut tee).map_err(|e| e.at(&src.describe()))?;
        (report, tee.bytes)
    };
    pending
        .flush()
        .map_err(BackupError::io(format!("writing {}", dst.describe())))?;
    pending.commit()?;
    progress.finish();
    let destination = check(dst).map_err(|e| {
        BackupError::HashMismatch(format!(
            "the copy at {} does not read back intact: {e}",
            dst.describe()
        ))
    })?;
    if let Some(lock) = lock {
        lock.check(&destination.location, destination.retention.as_ref())?;
    }
    if !same(&source, &destination) {
        return Err(BackupError::HashMismatch(format!(
            "the copy at {} reads back as backup {} (ciphertext SHA-256 {}), not {} ({})",
            dst.describe(),
            destination.backup_id,
            destination.ciphertext_sha256,
            source.backup_id,
            source.ciphertext_sha256
        )));
    }
    Ok(CopyReport {
        source,
        destination,
        bytes,
        already_there: false,
    })
}
