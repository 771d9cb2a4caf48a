//! Early write-back: a writer that asks the kernel to start writing a file's dirty pages to disk
//! while the file is still being produced, so the final `fsync` finds little left to do.
//!
//! Without it, a restore or a backup fills the page cache (the kernel waits for gigabytes of dirty
//! data before writing back on its own) and then waits for the whole file in one `fsync`: hashing
//! and disk run one after the other. With it, they overlap, and the operation takes about as long
//! as the slower of the two.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

/// How many bytes are written between two requests to sync.
const STEP: u64 = 32 << 20;

/// A [`Write`] over `W` that, every [`STEP`] bytes, has a background thread `fdatasync` a second
/// handle to the same file. [`Writeback::finish`] stops the thread and reports any error it met
/// (an error seen by the background sync is not seen again by a later `fsync` of the same file).
pub(crate) struct Writeback<W: Write> {
    /// Always `Some` until [`Writeback::finish`] takes it.
    inner: Option<W>,
    since: u64,
    tx: Option<SyncSender<()>>,
    worker: Option<JoinHandle<io::Result<()>>>,
}

impl<W: Write> Writeback<W> {
    /// Writes through `inner`; `file` is another handle to the file it writes (for the syncs).
    pub(crate) fn new(inner: W, file: File) -> io::Result<Self> {
        // One request may wait while a sync runs; more would only repeat it.
        let (tx, rx) = sync_channel::<()>(1);
        let worker = std::thread::Builder::new()
            .name("drover-writeback".into())
            .spawn(move || -> io::Result<()> {
                for () in rx {
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(Self {
            inner: Some(inner),
            since: 0,
            tx: Some(tx),
            worker: Some(worker),
        })
    }

    /// Stops the background syncs and returns the writer (not yet synced: the caller's final
    /// `fsync` makes it durable).
    ///
    /// # Errors
    /// The first error a background sync met.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.stop()?;
        self.inner.take().ok_or_else(gone)
    }

    /// Closes the request channel and waits for the thread (at most the sync under way).
    fn stop(&mut self) -> io::Result<()> {
        self.tx = None;
        match self.worker.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(io::Error::other("the write-back thread panicked")),
        }
    }
}

fn gone() -> io::Error {
    io::Error::other("the writer was already finished")
}

impl<W: Write> Write for Writeback<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.as_mut().ok_or_else(gone)?.write(buf)?;
        self.since += n as u64;
        if self.since >= STEP {
            self.since = 0;
            if let Some(tx) = &self.tx {
                match tx.try_send(()) {
                    // Queued, or one is queued already.
                    Ok(()) | Err(TrySendError::Full(())) => {}
                    // The thread stopped on an error: `finish` reports it.
                    Err(TrySendError::Disconnected(())) => self.tx = None,
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().ok_or_else(gone)?.flush()
    }
}

impl<W: Write> Drop for Writeback<W> {
    fn drop(&mut self) {
        // Abandoned (an error elsewhere): no thread outlives the writer.
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_everything_through_and_stops_its_thread() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("f");
        let file = File::create(&path).expect("create");
        let sync = file.try_clone().expect("clone");
        let mut w = Writeback::new(file, sync).expect("writeback");
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..70 {
            w.write_all(&chunk).expect("write");
        }
        let file = w.finish().expect("finish");
        file.sync_all().expect("sync");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 70 << 20);
    }
}
