//! `file:PATH` keys: a local 256-bit key-encryption key in a file only its owner can read.

use crate::backup::aead::Aes256Gcm;
use crate::backup::data_key::DataKey;
use crate::backup::key_provider::{Envelope, KeyError, KeyProvider, WrapContext, strict_hex};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const KEY_PREFIX: &str = "drover-kek-v1 ";

/// A key-encryption key held in a local file (`drover key generate file:PATH`).
#[derive(Debug, Clone)]
pub struct FileKeyProvider {
    path: PathBuf,
}

impl FileKeyProvider {
    /// A provider for the key at `path` (read when used).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn uri_text(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn load(&self) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let uri = self.uri_text();
        let meta = std::fs::metadata(&self.path).map_err(|e| KeyError::Unreadable {
            uri: uri.clone(),
            reason: e.to_string(),
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(KeyError::BadKey {
                    uri,
                    reason: "it is readable by other users; run `chmod 600` on it".into(),
                });
            }
        }
        let _ = meta;
        let text = Zeroizing::new(std::fs::read_to_string(&self.path).map_err(|e| {
            KeyError::Unreadable {
                uri: uri.clone(),
                reason: e.to_string(),
            }
        })?);
        let bad = |reason: &str| KeyError::BadKey {
            uri: uri.clone(),
            reason: reason.to_owned(),
        };
        let hexpart = text.trim_end().strip_prefix(KEY_PREFIX).ok_or_else(|| {
            bad("not a Drover key file (make one with `drover key generate file:PATH`)")
        })?;
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hexpart, key.as_mut_slice())
            .map_err(|_| bad("the key is not 64 hex digits"))?;
        Ok(key)
    }

    fn fingerprint(key: &[u8; 32]) -> String {
        let mut h = Sha256::new();
        h.update(b"drover/v1/key-id\0");
        h.update(key);
        format!("file:sha256:{}", &hex::encode(h.finalize())[..32])
    }

    fn aad(ctx: &WrapContext, key_id: &str) -> Vec<u8> {
        let mut aad = b"drover/v1/wrap\0".to_vec();
        aad.extend_from_slice(&ctx.backup_id);
        aad.extend_from_slice(key_id.as_bytes());
        aad
    }
}

#[async_trait::async_trait]
impl KeyProvider for FileKeyProvider {
    fn uri(&self) -> String {
        self.uri_text()
    }

    async fn key_id(&self) -> Result<String, KeyError> {
        let key = self.load()?;
        Ok(Self::fingerprint(&key))
    }

    async fn wrap(&self, key: &DataKey, ctx: &WrapContext) -> Result<Envelope, KeyError> {
        let kek = self.load()?;
        let key_id = Self::fingerprint(&kek);
        let cipher = Aes256Gcm::new(&kek).map_err(|_| KeyError::BadKey {
            uri: self.uri_text(),
            reason: "bad key length".into(),
        })?;
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let aad = Self::aad(ctx, &key_id);
        let wrapped = cipher
            .seal_vec(nonce, &aad, key.as_bytes())
            .map_err(|_| KeyError::Unwrap(self.uri_text()))?;
        Ok(Envelope {
            provider: "file".into(),
            key_id,
            wrapped_key: hex::encode(wrapped),
            nonce: Some(hex::encode(nonce)),
        })
    }

    async fn unwrap(&self, env: &Envelope, ctx: &WrapContext) -> Result<DataKey, KeyError> {
        if env.provider != "file" {
            return Err(KeyError::WrongProvider {
                expected: "file".into(),
                found: env.provider.clone(),
            });
        }
        let kek = self.load()?;
        let key_id = Self::fingerprint(&kek);
        let fail = || KeyError::Unwrap(self.uri_text());
        if key_id != env.key_id {
            return Err(fail());
        }
        let cipher = Aes256Gcm::new(&kek).map_err(|_| fail())?;
        let mut nonce = [0u8; 12];
        env.nonce
            .as_deref()
            .and_then(|n| strict_hex(n, &mut nonce))
            .ok_or_else(fail)?;
        // A wrapped 32-byte key is 48 bytes: the key and the GCM tag.
        let mut wrapped = Zeroizing::new([0u8; 48]);
        strict_hex(&env.wrapped_key, &mut wrapped[..]).ok_or_else(fail)?;
        let aad = Self::aad(ctx, &key_id);
        let (key, tag) = wrapped.split_at_mut(32);
        cipher.open(nonce, &aad, key, tag).map_err(|_| fail())?;
        let bytes: [u8; 32] = (&*key).try_into().map_err(|_| fail())?;
        Ok(DataKey::from_bytes(bytes))
    }
}

/// Writes a new random key-encryption key to `path` with mode 0600. Refuses to overwrite an
/// existing file unless `if_missing` is set, in which case an existing valid key is kept.
///
/// # Errors
/// [`KeyError::Exists`], or an I/O failure.
pub fn generate_file_key(path: &Path, if_missing: bool) -> Result<String, KeyError> {
    let uri = format!("file:{}", path.display());
    if path.exists() {
        if if_missing {
            let p = FileKeyProvider::new(path);
            return p.load().map(|k| FileKeyProvider::fingerprint(&k));
        }
        return Err(KeyError::Exists(uri));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| KeyError::Unreadable {
            uri: uri.clone(),
            reason: e.to_string(),
        })?;
    }
    let key = DataKey::random();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let write = |opts: &std::fs::OpenOptions| -> std::io::Result<()> {
        let mut f = opts.open(path)?;
        let text = Zeroizing::new(format!("{KEY_PREFIX}{}\n", hex::encode(key.as_bytes())));
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    write(&opts).map_err(|e| KeyError::Unreadable {
        uri,
        reason: e.to_string(),
    })?;
    Ok(FileKeyProvider::fingerprint(key.as_bytes()))
}
