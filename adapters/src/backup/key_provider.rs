//! Key-encryption-key providers, named by URI. The trait is async and shaped for a remote KMS:
//! generate (KMS GenerateDataKey), wrap, unwrap (Decrypt), rewrap (ReEncrypt), and the key id the
//! audit log records.

use crate::backup::data_key::DataKey;
use crate::backup::file_key::FileKeyProvider;
use serde::{Deserialize, Serialize};

/// What a wrapped data key is bound to (the KMS "encryption context"): unwrapping it for another
/// backup fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrapContext {
    /// The backup's id.
    pub backup_id: [u8; 16],
}

/// A wrapped data key, as stored in a backup's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The provider kind (`file`, `aws-kms`).
    pub provider: String,
    /// The key-encryption key's id (a fingerprint for file keys, the key ARN for KMS).
    pub key_id: String,
    /// The wrapped data key (hex).
    pub wrapped_key: String,
    /// The wrapping nonce (hex), for providers that need one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// Why a key operation failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key URI's scheme is not known or not built in.
    #[error(
        "unsupported key URI `{0}`: use file:PATH or aws-kms:KEY (the latter in builds with the `aws` feature)"
    )]
    UnsupportedUri(String),
    /// The key could not be read.
    #[error("cannot read key {uri}: {reason}")]
    Unreadable {
        /// The key's URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// The key file exists but is not a Drover key, or is readable by others.
    #[error("key {uri} is unusable: {reason}")]
    BadKey {
        /// The key's URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// The key exists already (generation refuses to overwrite).
    #[error("key {0} already exists; refusing to overwrite it")]
    Exists(String),
    /// The wrapped data key does not open with this key.
    #[error("the data key does not unwrap with {0}")]
    Unwrap(String),
    /// The envelope was made by another kind of provider.
    #[error("this backup's key is held by `{found}`, not `{expected}`")]
    WrongProvider {
        /// The provider asked to unwrap.
        expected: String,
        /// The provider that wrapped it.
        found: String,
    },
    /// A remote provider failed in a way a retry may fix.
    #[error("key service unavailable: {0}")]
    Transient(String),
}

/// A key-encryption key. Implementations must never log or return key material.
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync {
    /// The URI it was opened from (no secrets in it).
    fn uri(&self) -> String;

    /// The KMS key this provider uses, if it is a KMS provider (so a KMS-to-KMS rewrap can use
    /// ReEncrypt and keep the data key inside KMS).
    fn kms_key(&self) -> Option<&str> {
        None
    }

    /// The key's id, as recorded in backups and the audit log.
    ///
    /// # Errors
    /// If the key cannot be read or described.
    async fn key_id(&self) -> Result<String, KeyError>;

    /// Read-only readiness: the key exists, is readable, is enabled.
    ///
    /// # Errors
    /// What is wrong with the key.
    async fn preflight(&self) -> Result<(), KeyError> {
        self.key_id().await.map(|_| ())
    }

    /// A fresh data key and its envelope (a KMS returns both from one call).
    ///
    /// # Errors
    /// If wrapping fails.
    async fn generate(&self, ctx: &WrapContext) -> Result<(DataKey, Envelope), KeyError> {
        let key = DataKey::random();
        let env = self.wrap(&key, ctx).await?;
        Ok((key, env))
    }

    /// Wraps a data key under this key, bound to `ctx`.
    ///
    /// # Errors
    /// If the key cannot be used.
    async fn wrap(&self, key: &DataKey, ctx: &WrapContext) -> Result<Envelope, KeyError>;

    /// Unwraps a data key.
    ///
    /// # Errors
    /// [`KeyError::Unwrap`] for the wrong key or a tampered envelope.
    async fn unwrap(&self, env: &Envelope, ctx: &WrapContext) -> Result<DataKey, KeyError>;

    /// Re-wraps an envelope from this key to `to` (key rotation). The default unwraps and wraps; a
    /// KMS overrides it with ReEncrypt so the data key never leaves the service.
    ///
    /// # Errors
    /// If either key fails.
    async fn rewrap(
        &self,
        env: &Envelope,
        ctx: &WrapContext,
        to: &dyn KeyProvider,
    ) -> Result<Envelope, KeyError> {
        rewrap_via_data_key(self, env, ctx, to).await
    }
}

/// Re-wraps by unwrapping the data key with `from` and wrapping it with `to` (the data key is in
/// this process's memory briefly, and wiped on drop).
///
/// # Errors
/// If either key fails.
pub async fn rewrap_via_data_key<F: KeyProvider + ?Sized>(
    from: &F,
    env: &Envelope,
    ctx: &WrapContext,
    to: &dyn KeyProvider,
) -> Result<Envelope, KeyError> {
    let key = from.unwrap(env, ctx).await?;
    to.wrap(&key, ctx).await
}

/// Decodes lowercase hex exactly. Upper-case digits are refused so that every stored byte has one
/// spelling: a flipped case bit is a change, not an equivalent encoding.
pub(crate) fn strict_hex(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    hex::decode_to_slice(s, out).ok()
}

/// Opens the key provider a URI names: `file:PATH`.
///
/// # Errors
/// [`KeyError::UnsupportedUri`] for other schemes.
pub fn key_provider_from_uri(uri: &str) -> Result<Box<dyn KeyProvider>, KeyError> {
    match uri.split_once(':') {
        Some(("file", path)) if !path.is_empty() => Ok(Box::new(FileKeyProvider::new(path))),
        #[cfg(feature = "aws")]
        Some(("aws-kms", key)) if !key.is_empty() => {
            Ok(Box::new(crate::aws_kms::KmsKeyProvider::new(key)))
        }
        _ => Err(KeyError::UnsupportedUri(uri.to_owned())),
    }
}

/// How old a key-encryption key's current material is, and whether it rotates by itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyRotation {
    /// The key as named.
    pub key: String,
    /// When its current material was made (the key's creation, its last rotation, or for a
    /// `file:` key the file's modification time), in seconds since the epoch.
    pub material_since: i64,
    /// Whether the store rotates it automatically (KMS `GetKeyRotationStatus`); `file:` keys
    /// never do.
    pub automatic: bool,
    /// The automatic rotation period in days, where the store states one.
    pub period_days: Option<u32>,
}

/// Reads how old the key `uri` names is and whether it rotates, from the key store itself.
///
/// # Errors
/// The key cannot be found or asked.
pub async fn key_rotation(uri: &str) -> Result<KeyRotation, KeyError> {
    match uri.split_once(':') {
        Some(("file", path)) if !path.is_empty() => {
            let meta = std::fs::metadata(path).map_err(|e| KeyError::Unreadable {
                uri: uri.to_owned(),
                reason: e.to_string(),
            })?;
            let modified = meta.modified().map_err(|e| KeyError::Unreadable {
                uri: uri.to_owned(),
                reason: e.to_string(),
            })?;
            Ok(KeyRotation {
                key: uri.to_owned(),
                material_since: time::OffsetDateTime::from(modified).unix_timestamp(),
                automatic: false,
                period_days: None,
            })
        }
        #[cfg(feature = "aws")]
        Some(("aws-kms", key)) if !key.is_empty() => {
            crate::aws_kms::KmsKeyProvider::new(key).rotation().await
        }
        _ => Err(KeyError::UnsupportedUri(uri.to_owned())),
    }
}
