//! The Drover backup format: streaming, chunked AES-256-GCM under a per-backup data key wrapped by a
//! key-encryption key (envelope encryption), with a manifest of SHA-256 hashes.
//!
//! The format is specified in `docs/backup-format.md`. Main entry points:
//! - [`create`] writes a backup from any reader;
//! - [`verify`] checks a backup: structure and ciphertext hash without a key, full authenticated
//!   decryption and the plaintext SHA-256 with one (no plaintext written);
//! - [`restore`] decrypts to a temporary file beside the destination and renames it into place only
//!   after every chunk and the final hash verified;
//! - [`rewrap`] re-encrypts only the wrapped data key under a new key-encryption key;
//! - [`verify_sample`] fully verifies a random sample of the backups under a directory and checks
//!   every other one's ciphertext hash (the "0 unresolved errors" of 3-2-1-1-0);
//! - [`inspect`] reads the header and manifest without a key.
//!
//! Keys come from a [`KeyProvider`] named by URI (`file:PATH` now, `aws-kms:` with the AWS
//! adapters); backups live at a [`Location`] (local paths now, `s3://` later). Every operation
//! returns a [`BackupReport`] with what the engine, the RTO/RPO clocks and the audit log need.

mod aead;
mod copy;
mod data_key;
mod error;
mod file_key;
mod format;
mod key_provider;
mod location;
mod lock;
mod operations;
mod progress;
mod report;
mod sample;
mod writeback;

pub use copy::{CopyReport, copy};
pub use data_key::DataKey;
pub use error::BackupError;
pub use file_key::{FileKeyProvider, generate_file_key};
pub use format::{
    BackupHeader, DEFAULT_CHUNK_SIZE, FORMAT_VERSION, MAGIC, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE,
    Manifest, ParsedHeader, read_header, scan,
};
pub use key_provider::{
    Envelope, KeyError, KeyProvider, KeyRotation, WrapContext, key_provider_from_uri, key_rotation,
    rewrap_via_data_key,
};
pub use location::{
    LocalLocation, Location, PendingWrite, location_from_uri, location_with_credential, platform_of,
};
pub use lock::{LockMode, WriteLock, retained_until};
pub use operations::{CreateOptions, create, inspect, restore, rewrap, verify};
pub use progress::{NoProgress, Progress};
pub use report::{BackupReport, Inspection, Retention, VerifyLevel};
pub use sample::{SampleOutcome, SampleReport, verify_sample};
