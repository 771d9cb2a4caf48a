//! Progress reporting for long operations (the CLI draws a bar with throughput on a TTY).

/// Receives progress of a long operation. Called from worker threads.
pub trait Progress: Send + Sync {
    /// The operation starts; `total` bytes if known.
    fn start(&self, _total: Option<u64>) {}
    /// `bytes` more were processed.
    fn advance(&self, _bytes: u64) {}
    /// The operation ended (successfully or not).
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
