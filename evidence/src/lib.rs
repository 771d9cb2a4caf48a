//! Evidence bundles: a tar of named files with `MANIFEST.json` (every file's SHA-256 and size,
//! and who signed) and `MANIFEST.sig` (an Ed25519 signature over the manifest's exact bytes).
//! [`verify`] checks a bundle offline with the signer's public key alone: any changed byte of
//! any file, a removed file, an added file, or a bad signature is refused, naming what is wrong.
//!
//! Keys: [`generate_signing_key`] writes a PKCS#8 PEM private key (mode 0600) and `PATH.pub`, an
//! SPKI PEM public key, so that `openssl pkeyutl -verify -pubin -inkey PATH.pub -rawin -in
//! MANIFEST.json -sigfile MANIFEST.sig` verifies the manifest too.

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, Verifier};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The manifest's name in a bundle.
pub const MANIFEST: &str = "MANIFEST.json";
/// The signature's name in a bundle.
pub const SIGNATURE: &str = "MANIFEST.sig";

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A key file could not be read, written or parsed.
    #[error("key {path}: {what}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// The bundle is not a well-formed evidence bundle.
    #[error("not a valid bundle: {0}")]
    Malformed(String),
    /// The signature does not verify with the given public key.
    #[error(
        "the manifest's signature does not verify with this public key: the manifest was changed or signed by another key"
    )]
    BadSignature,
    /// A file's content does not match the manifest.
    #[error("{0}: its content does not match the signed manifest (changed)")]
    Changed(String),
    /// A file listed in the manifest is missing.
    #[error("{0}: listed in the signed manifest but missing from the bundle (removed)")]
    Missing(String),
    /// A file not in the manifest is in the bundle.
    #[error("{0}: in the bundle but not in the signed manifest (added)")]
    Added(String),
}

/// One file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Its name in the bundle.
    pub name: String,
    /// SHA-256 of its content, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version (1).
    pub format: u32,
    /// What the bundle is evidence of (run id, runbook, …), as the exporter describes it.
    pub subject: BTreeMap<String, String>,
    /// The signer's Ed25519 public key, hex.
    pub signer: String,
    /// Every file but the manifest and its signature.
    pub files: Vec<Entry>,
}

fn key_error(path: &Path, what: impl ToString) -> EvidenceError {
    EvidenceError::Key {
        path: path.display().to_string(),
        what: what.to_string(),
    }
}

/// The public key file that goes with a private key file: `PATH.pub`.
#[must_use]
pub fn public_path(private: &Path) -> std::path::PathBuf {
    let mut p = private.as_os_str().to_owned();
    p.push(".pub");
    p.into()
}

/// Makes a new Ed25519 signing key: `path` (PKCS#8 PEM, mode 0600, never overwritten) and
/// `path.pub` (SPKI PEM). Returns the public key.
///
/// # Errors
/// The file exists, or cannot be written.
pub fn generate_signing_key(path: &Path) -> Result<VerifyingKey, EvidenceError> {
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| key_error(path, e))?;
    let public = key.verifying_key();
    let public_pem = public
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| key_error(path, e))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(|e| key_error(path, e))?;
    std::io::Write::write_all(&mut f, pem.as_bytes()).map_err(|e| key_error(path, e))?;
    f.sync_all().map_err(|e| key_error(path, e))?;
    let pub_path = public_path(path);
    std::fs::write(&pub_path, public_pem).map_err(|e| key_error(&pub_path, e))?;
    Ok(public)
}

/// Reads a private signing key (PKCS#8 PEM).
///
/// # Errors
/// Unreadable, or not an Ed25519 PKCS#8 PEM key.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, EvidenceError> {
    let pem = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|_| key_error(path, "not an Ed25519 private key in PKCS#8 PEM"))
}

/// Reads a public key (SPKI PEM).
///
/// # Errors
/// Unreadable, or not an Ed25519 public key in PEM.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, EvidenceError> {
    let pem = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    VerifyingKey::from_public_key_pem(&pem)
        .map_err(|_| key_error(path, "not an Ed25519 public key in PEM"))
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn append(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) -> Result<(), EvidenceError> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data)
        .map_err(|e| EvidenceError::Malformed(format!("{name}: {e}")))
}

/// Builds a signed bundle (tar bytes) of `files` (name, content), in the given order.
///
/// # Errors
/// A name that is not a plain relative path, a duplicate, or a reserved name.
pub fn seal(
    files: &[(String, Vec<u8>)],
    subject: BTreeMap<String, String>,
    key: &SigningKey,
) -> Result<Vec<u8>, EvidenceError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut entries = Vec::new();
    for (name, data) in files {
        if !valid_name(name) || name == MANIFEST || name == SIGNATURE || !seen.insert(name) {
            return Err(EvidenceError::Malformed(format!("file name {name:?}")));
        }
        entries.push(Entry {
            name: name.clone(),
            sha256: sha256(data),
            size: data.len() as u64,
        });
    }
    let manifest = Manifest {
        format: 1,
        subject,
        signer: hex::encode(key.verifying_key().as_bytes()),
        files: entries,
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| EvidenceError::Malformed(e.to_string()))?;
    let sig = key.sign(&json);
    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, MANIFEST, &json)?;
    append(&mut b, SIGNATURE, &sig.to_bytes())?;
    for (name, data) in files {
        append(&mut b, name, data)?;
    }
    b.into_inner()
        .map_err(|e| EvidenceError::Malformed(e.to_string()))
}

/// Reads a bundle's files (name → content), refusing anything but regular files with plain
/// relative names, each once.
///
/// # Errors
/// Not a tar, or an entry that is not a plain file.
pub fn read(bundle: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, EvidenceError> {
    let mut out = BTreeMap::new();
    // A tar archive is whole 512-byte blocks whose first header carries "ustar" at offset 257
    // (POSIX and GNU): anything else is not a bundle, and its bytes are never echoed back.
    let is_tar = bundle.len() >= 512
        && bundle.len().is_multiple_of(512)
        && bundle.get(257..262) == Some(b"ustar".as_slice());
    if !is_tar {
        return Err(EvidenceError::Malformed(format!(
            "this is not a Drover evidence bundle (not a tar archive; {} bytes)",
            bundle.len()
        )));
    }
    let mut archive = tar::Archive::new(bundle);
    let entries = archive
        .entries()
        .map_err(|e| EvidenceError::Malformed(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| EvidenceError::Malformed(printable(&e.to_string())))?;
        let name = entry
            .path()
            .map_err(|e| EvidenceError::Malformed(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular || !valid_name(&name) {
            return Err(EvidenceError::Malformed(format!(
                "{name:?} is not a plain file with a relative name"
            )));
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| EvidenceError::Malformed(format!("{name}: {e}")))?;
        if out.insert(name.clone(), data).is_some() {
            return Err(EvidenceError::Malformed(format!("{name} appears twice")));
        }
    }
    Ok(out)
}

/// An error text from the tar reader with anything unprintable (quoted archive bytes) cut.
fn printable(text: &str) -> String {
    let cut = text
        .find(|c: char| c == char::REPLACEMENT_CHARACTER || (c.is_control() && c != ' '))
        .unwrap_or(text.len());
    let mut out: String = text[..cut].chars().take(200).collect();
    if cut < text.len() {
        out.push('…');
    }
    out
}

/// Verifies a bundle's files (as [`read`] returns them) with the signer's public key: the
/// signature over the manifest, then every file against it, and nothing more or less.
/// Returns the manifest.
///
/// # Errors
/// The first thing wrong.
pub fn verify_files(
    files: &BTreeMap<String, Vec<u8>>,
    public: &VerifyingKey,
) -> Result<Manifest, EvidenceError> {
    let json = files
        .get(MANIFEST)
        .ok_or_else(|| EvidenceError::Missing(MANIFEST.into()))?;
    let sig = files
        .get(SIGNATURE)
        .ok_or_else(|| EvidenceError::Missing(SIGNATURE.into()))?;
    let sig = Signature::from_slice(sig).map_err(|_| EvidenceError::BadSignature)?;
    public
        .verify(json, &sig)
        .map_err(|_| EvidenceError::BadSignature)?;
    let manifest: Manifest = serde_json::from_slice(json)
        .map_err(|e| EvidenceError::Malformed(format!("{MANIFEST}: {e}")))?;
    for e in &manifest.files {
        let data = files
            .get(&e.name)
            .ok_or_else(|| EvidenceError::Missing(e.name.clone()))?;
        if data.len() as u64 != e.size || sha256(data) != e.sha256 {
            return Err(EvidenceError::Changed(e.name.clone()));
        }
    }
    for name in files.keys() {
        if name != MANIFEST && name != SIGNATURE && !manifest.files.iter().any(|e| &e.name == name)
        {
            return Err(EvidenceError::Added(name.clone()));
        }
    }
    Ok(manifest)
}

/// Verifies a bundle (tar bytes): [`read`], then [`verify_files`].
///
/// # Errors
/// The first thing wrong.
pub fn verify(bundle: &[u8], public: &VerifyingKey) -> Result<Manifest, EvidenceError> {
    verify_files(&read(bundle)?, public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn files() -> Vec<(String, Vec<u8>)> {
        vec![
            ("run.json".into(), br#"{"run_id":"r1"}"#.to_vec()),
            ("runbook/main.drover".into(), b"runbook \"x\" {}\n".to_vec()),
            ("audit.jsonl".into(), (0..200u8).collect()),
        ]
    }

    #[test]
    fn every_changed_byte_of_every_file_is_detected() {
        let k = key();
        let bundle = seal(&files(), BTreeMap::new(), &k).expect("seal");
        let good = read(&bundle).expect("read");
        assert!(verify_files(&good, &k.verifying_key()).is_ok());
        for (name, data) in &good {
            for i in 0..data.len() {
                let mut bad = good.clone();
                if let Some(d) = bad.get_mut(name) {
                    d[i] ^= 0x01;
                }
                let r = verify_files(&bad, &k.verifying_key());
                assert!(r.is_err(), "{name} byte {i} changed and not detected");
            }
        }
    }

    #[test]
    fn removed_added_and_foreign_signatures_are_refused() {
        let k = key();
        let bundle = seal(&files(), BTreeMap::new(), &k).expect("seal");
        let good = read(&bundle).expect("read");
        for name in good.keys() {
            let mut bad = good.clone();
            bad.remove(name);
            assert!(
                verify_files(&bad, &k.verifying_key()).is_err(),
                "{name} removed"
            );
        }
        let mut added = good.clone();
        added.insert("extra.txt".into(), b"x".to_vec());
        assert!(matches!(
            verify_files(&added, &k.verifying_key()),
            Err(EvidenceError::Added(n)) if n == "extra.txt"
        ));
        let other = SigningKey::from_bytes(&[9u8; 32]);
        assert!(matches!(
            verify(&bundle, &other.verifying_key()),
            Err(EvidenceError::BadSignature)
        ));
        let resigned = seal(&files(), BTreeMap::new(), &other).expect("seal");
        assert!(matches!(
            verify(&resigned, &k.verifying_key()),
            Err(EvidenceError::BadSignature)
        ));
    }

    #[test]
    fn unsafe_names_are_refused_both_ways() {
        let k = key();
        for name in ["../x", "/etc/passwd", "a//b", "MANIFEST.json", ""] {
            assert!(
                seal(&[(name.into(), vec![1])], BTreeMap::new(), &k).is_err(),
                "{name}"
            );
        }
        assert!(verify(b"not a tar at all, just text", &k.verifying_key()).is_err());
    }

    #[test]
    fn keys_round_trip_through_pem_and_are_private() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("sign.key");
        let public = generate_signing_key(&p).expect("generate");
        assert!(generate_signing_key(&p).is_err(), "never overwritten");
        let private = read_signing_key(&p).expect("read");
        assert_eq!(private.verifying_key(), public);
        assert_eq!(read_public_key(&public_path(&p)).expect("pub"), public);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(read_signing_key(&public_path(&p)).is_err());
    }
}
