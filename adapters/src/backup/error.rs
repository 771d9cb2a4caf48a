//! Errors of the backup library. None of them carries key material or plaintext.

use crate::backup::key_provider::KeyError;

/// Why a backup operation failed. Every variant leaves no plaintext behind.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a Drover backup, or its structure is damaged.
    #[error("not a valid Drover backup: {0}")]
    Malformed(String),
    /// The backup uses a format version this build does not read.
    #[error("unsupported backup format version {0} (this build reads version 1)")]
    UnsupportedVersion(u8),
    /// The key could not unwrap the data key, or the key commitment did not match: wrong key.
    #[error("wrong key: {0}")]
    WrongKey(String),
    /// A chunk or the manifest failed authentication: the backup was altered or damaged.
    #[error("integrity check failed: {0}")]
    Tampered(String),
    /// A hash did not match the manifest or the expected value.
    #[error("hash mismatch: {0}")]
    HashMismatch(String),
    /// The key provider failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Invalid arguments (a bad recovery point, a bad location).
    #[error("{0}")]
    Invalid(String),
}

impl BackupError {
    /// The same fault, naming the backup it was found in (for operations on more than one).
    #[must_use]
    pub fn at(self, location: &str) -> Self {
        let named = |s: String| {
            if s.contains(location) {
                s
            } else {
                format!("{location}: {s}")
            }
        };
        match self {
            Self::Io { context, source } => Self::Io {
                context: named(context),
                source,
            },
            Self::Malformed(s) => Self::Malformed(named(s)),
            Self::WrongKey(s) => Self::WrongKey(named(s)),
            Self::Tampered(s) => Self::Tampered(named(s)),
            Self::HashMismatch(s) => Self::HashMismatch(named(s)),
            Self::Invalid(s) => Self::Invalid(named(s)),
            other => other,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
        let context = context.into();
        move |source| BackupError::Io { context, source }
    }
}
