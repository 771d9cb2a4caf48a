//! Who an operator is, without trusting what they type.
//!
//! Operators are listed in a **roster** kept in version control ([`Roster`]): a name, roles, and
//! the SSH public keys they already own (ed25519, ECDSA, RSA, and FIDO2 `sk-` keys). What an
//! operator decides — starting a run, approving or denying a step — is a **statement**
//! ([`Statement`]) they sign in OpenSSH's SSHSIG format under the namespace [`NAMESPACE`], with
//! `ssh-agent` ([`agent`]), a key file ([`sign::with_key_file`]) or `ssh-keygen -Y sign` itself.
//! Anyone holding the roster verifies a signature offline ([`verify`]): no identity provider and
//! no cloud is needed, which is the point in a disaster. Step-up codes are TOTP ([`totp`]).

pub mod agent;
pub mod passkey;
pub mod roster;
pub mod sign;
pub mod statement;
pub mod totp;

pub use roster::{Operator, Roster, RosterIssue, SecretRef};
pub use statement::{Decision, Statement, StatementError};

/// The SSHSIG namespace of every Drover statement: a signature made for something else (a git
/// commit, a file) never verifies as a Drover statement.
pub const NAMESPACE: &str = "drover";

/// The SSHSIG namespace of a login to a Drover server (`drover login`): a signature made for a
/// login can never pass as a statement, nor the other way round.
pub const LOGIN_NAMESPACE: &str = "drover-login";

/// Who signed a statement, by the roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The operator's name in the roster.
    pub operator: String,
    /// Their roles in the roster.
    pub roles: Vec<String>,
    /// The signing key's fingerprint (`SHA256:…`, as `ssh-keygen -l` prints it).
    pub fingerprint: String,
    /// The key's algorithm (`ssh-ed25519`, `sk-ssh-ed25519@openssh.com`, …).
    pub algorithm: String,
}

/// Why a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The text is not an SSH signature (`-----BEGIN SSH SIGNATURE-----`).
    #[error("not an SSH signature: {0}")]
    Malformed(String),
    /// Signed for another purpose.
    #[error(
        "the signature is for namespace `{0}`, not `drover` (sign with `ssh-keygen -Y sign -n drover`)"
    )]
    Namespace(String),
    /// The key is in no operator's entry.
    #[error("the key {0} is not in the operator roster")]
    UnknownKey(String),
    /// The signature does not match the statement (a changed byte, another statement).
    #[error("the signature by {operator} ({fingerprint}) does not match the statement")]
    Mismatch {
        /// The operator whose key it names.
        operator: String,
        /// The key.
        fingerprint: String,
    },
}

/// The fingerprint (`SHA256:…`) of the key an armored SSHSIG names, verified or not: for saying
/// whose refused signature it was.
#[must_use]
pub fn fingerprint_of(signature: &str) -> Option<String> {
    if passkey::PasskeySignature::is_armored(signature) {
        let s = passkey::PasskeySignature::from_armored(signature).ok()?;
        let c = passkey::Certificate::parse(&s.certificate).ok()?;
        return Some(passkey::fingerprint(&c.public_key));
    }
    let sig = ssh_key::SshSig::from_pem(signature.trim()).ok()?;
    Some(
        ssh_key::PublicKey::from(sig.public_key().clone())
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string(),
    )
}

/// The algorithm (`ssh-ed25519`, `sk-ssh-ed25519@openssh.com`, …) of the key an armored
/// SSHSIG names.
#[must_use]
pub fn algorithm_of(signature: &str) -> Option<String> {
    if passkey::PasskeySignature::is_armored(signature) {
        return Some(PASSKEY_ALGORITHM.to_owned());
    }
    let sig = ssh_key::SshSig::from_pem(signature.trim()).ok()?;
    Some(sig.public_key().algorithm().as_str().to_owned())
}

/// What [`Signer::algorithm`] says of a statement signed with a passkey.
pub const PASSKEY_ALGORITHM: &str = "webauthn-es256";

/// Verifies `signature` over exactly `statement`, by a key in `roster`: an armored SSHSIG, or a
/// passkey's WebAuthn assertion ([`passkey::PasskeySignature`]) whose certificate an operator
/// signed with a key in `roster`.
///
/// # Errors
/// Any reason the signature does not prove that a roster operator signed these bytes.
pub fn verify(roster: &Roster, statement: &str, signature: &str) -> Result<Signer, VerifyError> {
    if passkey::PasskeySignature::is_armored(signature) {
        return verify_passkey(roster, statement, signature);
    }
    verify_in(NAMESPACE, roster, statement, signature)
}

fn verify_passkey(
    roster: &Roster,
    statement: &str,
    signature: &str,
) -> Result<Signer, VerifyError> {
    let sig = passkey::PasskeySignature::from_armored(signature)
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let certifier = verify_in(
        passkey::PASSKEY_NAMESPACE,
        roster,
        &sig.certificate,
        &sig.certificate_signature,
    )
    .map_err(|e| VerifyError::Malformed(format!("the passkey's certificate: {e}")))?;
    let cert = passkey::check_assertion(&sig, statement).map_err(|e| match e {
        passkey::PasskeyError::Check(_) => VerifyError::Mismatch {
            operator: certifier.operator.clone(),
            fingerprint: passkey::Certificate::parse(&sig.certificate)
                .map(|c| passkey::fingerprint(&c.public_key))
                .unwrap_or_default(),
        },
        e @ passkey::PasskeyError::Malformed { .. } => VerifyError::Malformed(e.to_string()),
    })?;
    if cert.operator != certifier.operator {
        return Err(VerifyError::Malformed(format!(
            "the passkey's certificate names {} but was signed by {}",
            cert.operator, certifier.operator
        )));
    }
    Ok(Signer {
        operator: certifier.operator,
        roles: certifier.roles,
        fingerprint: passkey::fingerprint(&cert.public_key),
        algorithm: PASSKEY_ALGORITHM.to_owned(),
    })
}

/// [`verify`] under another namespace (a login: [`LOGIN_NAMESPACE`]).
///
/// # Errors
/// As [`verify`].
pub fn verify_in(
    namespace: &str,
    roster: &Roster,
    statement: &str,
    signature: &str,
) -> Result<Signer, VerifyError> {
    let sig = ssh_key::SshSig::from_pem(signature.trim())
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if sig.namespace() != namespace {
        return Err(VerifyError::Namespace(sig.namespace().to_owned()));
    }
    let key = ssh_key::PublicKey::from(sig.public_key().clone());
    let fingerprint = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    let op = roster
        .operator_with_key(sig.public_key())
        .ok_or_else(|| VerifyError::UnknownKey(fingerprint.clone()))?;
    key.verify(namespace, statement.as_bytes(), &sig)
        .map_err(|_| VerifyError::Mismatch {
            operator: op.name.clone(),
            fingerprint: fingerprint.clone(),
        })?;
    Ok(Signer {
        operator: op.name.clone(),
        roles: op.roles.clone(),
        fingerprint,
        algorithm: key.algorithm().as_str().to_owned(),
    })
}
