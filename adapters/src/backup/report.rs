//! What backup operations return: the facts the engine's outputs, the RTO/RPO clocks and the audit
//! log need. Never key material, never plaintext.

use crate::backup::format::{BackupHeader, Manifest};
use serde::Serialize;

/// How thoroughly a backup was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyLevel {
    /// Structure and ciphertext hash (no key).
    Structure,
    /// Full authenticated decryption and the plaintext SHA-256.
    Full,
}

/// Write-once retention of a stored backup (S3 Object Lock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// `COMPLIANCE` or `GOVERNANCE`.
    pub mode: String,
    /// Until when (RFC 3339).
    pub retain_until: String,
}

/// The outcome of creating, verifying, restoring or rewrapping a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    /// Where the backup is.
    pub location: String,
    /// The backup's id.
    pub backup_id: String,
    /// The data set.
    pub dataset: String,
    /// The recovery point (RFC 3339).
    pub recovery_point: String,
    /// When the backup was written (RFC 3339).
    pub created_at: String,
    /// The key-encryption key's id.
    pub key_id: String,
    /// Plaintext SHA-256 (verified when `level` is full).
    pub sha256: String,
    /// Ciphertext SHA-256 (verified).
    pub ciphertext_sha256: String,
    /// Plaintext bytes.
    pub bytes: u64,
    /// Chunks.
    pub chunks: u64,
    /// How thoroughly it was checked.
    pub level: VerifyLevel,
    /// Write-once retention, where the location reports it (`verify` fills it in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

impl BackupReport {
    pub(crate) fn new(
        location: String,
        h: &BackupHeader,
        key_id: String,
        m: &Manifest,
        level: VerifyLevel,
    ) -> Self {
        Self {
            location,
            backup_id: h.backup_id.clone(),
            dataset: h.dataset.clone(),
            recovery_point: h.recovery_point.clone(),
            created_at: h.created_at.clone(),
            key_id,
            sha256: m.plaintext_sha256.clone(),
            ciphertext_sha256: m.ciphertext_sha256.clone(),
            bytes: m.plaintext_bytes,
            chunks: m.chunks,
            level,
            retention: None,
        }
    }
}

/// What `inspect` shows: the header, who holds the key, and the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// The authenticated header.
    pub header: BackupHeader,
    /// The key provider kind.
    pub key_provider: String,
    /// The key-encryption key's id.
    pub key_id: String,
    /// The manifest.
    pub manifest: Manifest,
    /// Header length on disk.
    pub header_bytes: u64,
}
