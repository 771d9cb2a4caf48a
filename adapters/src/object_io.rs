//! What the object-store locations (`s3://`, `azblob://`) share: their calls run on a thread of
//! their own with its own runtime, so a location works the same from synchronous code, from
//! `spawn_blocking`, or under any runtime; reads arrive as chunks over a bounded channel.

use crate::backup::BackupError;
use std::io::Read;
use std::sync::mpsc::Receiver;

/// Runs `fut` to completion on a thread of its own with its own runtime, without waiting.
pub(crate) fn in_background(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(fut);
        }
    });
}

/// Runs `fut` on a thread with its own runtime and waits for it.
pub(crate) fn on_own_runtime<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, BackupError> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(fut))
            .map_err(|e| BackupError::Invalid(e.to_string()))
    })
    .join()
    .map_err(|_| BackupError::Invalid("the object store thread panicked".into()))?
}

/// A reader of the chunks a background download sends; the end of the channel is the end of
/// the object.
pub(crate) struct ChannelReader {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    /// Reads what arrives on `rx`.
    pub(crate) fn new(rx: Receiver<std::io::Result<Vec<u8>>>) -> Self {
        Self {
            rx,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
