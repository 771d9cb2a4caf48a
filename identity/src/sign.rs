//! Signing a statement with a private key file (`--key PATH`).

use std::path::Path;

/// Why a statement could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key file could not be read or parsed.
    #[error("cannot use the key {path}: {why}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// `ssh-agent` failed.
    #[error("ssh-agent: {0}")]
    Agent(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Signs `statement` with the OpenSSH private key at `path`, returning the armored SSHSIG
/// (`-----BEGIN SSH SIGNATURE-----`), exactly as `ssh-keygen -Y sign -n drover -f PATH` would.
/// A passphrase-protected key is refused with the way out (the agent, or `ssh-keygen`): Drover
/// never asks for a passphrase.
///
/// # Errors
/// An unreadable, encrypted or unsupported key.
pub fn with_key_file(path: &Path, statement: &str) -> Result<String, SignError> {
    with_key_file_in(crate::NAMESPACE, path, statement)
}

/// [`with_key_file`] under another namespace (a login: [`crate::LOGIN_NAMESPACE`]).
///
/// # Errors
/// As [`with_key_file`].
pub fn with_key_file_in(
    namespace: &str,
    path: &Path,
    statement: &str,
) -> Result<String, SignError> {
    let key_err = |why: String| SignError::Key {
        path: path.display().to_string(),
        why,
    };
    let key = ssh_key::PrivateKey::read_openssh_file(path).map_err(|e| key_err(e.to_string()))?;
    if key.is_encrypted() {
        return Err(key_err(
            "it is protected by a passphrase: load it into ssh-agent (`ssh-add`) and leave out --key, or sign the printed statement with `ssh-keygen -Y sign -n drover`".into(),
        ));
    }
    let sig = key
        .sign(namespace, ssh_key::HashAlg::Sha512, statement.as_bytes())
        .map_err(|e| SignError::Sign(e.to_string()))?;
    sig.to_pem(ssh_key::LineEnding::LF)
        .map_err(|e| SignError::Sign(e.to_string()))
}
