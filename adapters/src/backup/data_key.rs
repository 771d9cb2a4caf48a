//! The per-backup data key and the keys derived from it.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit data-encryption key, wiped from memory on drop. Never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh random key from the operating system's generator.
    #[must_use]
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        rand::fill(&mut k);
        Self(k)
    }

    /// Wraps raw key bytes (from a key provider).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for wrapping.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The chunk-encryption key and the key commitment for one backup: HKDF-SHA256 with the
    /// backup id as salt, so each backup's chunk key is distinct even if a data key were reused.
    pub(crate) fn derive(&self, backup_id: &[u8; 16]) -> (ChunkKey, [u8; 32]) {
        let hk = Hkdf::<Sha256>::new(Some(backup_id), &self.0);
        let mut chunk = [0u8; 32];
        let mut commitment = [0u8; 32];
        // Lengths are fixed and within HKDF's limit (255 × 32 bytes), so expand cannot fail.
        let _ = hk.expand(b"drover/v1/chunk-key", &mut chunk);
        let _ = hk.expand(b"drover/v1/commitment", &mut commitment);
        (ChunkKey(chunk), commitment)
    }
}

/// The AES-256-GCM key that encrypts one backup's chunks.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct ChunkKey(pub(crate) [u8; 32]);
