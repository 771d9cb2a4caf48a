//! Passkeys: WebAuthn credentials that sign statements in a browser, bound to an operator by
//! their SSH key.
//!
//! A passkey is only as good as the link from the credential to a person. Drover does not take
//! that link on the server's word: the operator **certifies** the credential with the SSH key the
//! roster lists for them ([`Certificate`], signed in SSHSIG under [`PASSKEY_NAMESPACE`], e.g. by
//! `drover passkey confirm`). A browser approval is then a WebAuthn assertion whose challenge is
//! the SHA-256 of the statement's text ([`challenge`]); the assertion, the certificate and its
//! SSH signature travel together as one armored block ([`PasskeySignature`]) wherever an SSHSIG
//! would, and [`crate::verify`] checks it offline with the roster alone: the certificate by the
//! operator's SSH key, then the assertion by the certified public key, over exactly the
//! statement shown.
//!
//! Only ES256 (ECDSA P-256 with SHA-256, COSE algorithm −7) credentials are accepted: every
//! platform authenticator and security key offers it.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// The SSHSIG namespace of a passkey certificate: a signature made for a login or a statement
/// never passes as one, nor the other way round.
pub const PASSKEY_NAMESPACE: &str = "drover-passkey";

/// The COSE algorithm of the credentials accepted: ES256.
pub const ES256: i64 = -7;

const ARMOR_BEGIN: &str = "-----BEGIN DROVER PASSKEY SIGNATURE-----";
const ARMOR_END: &str = "-----END DROVER PASSKEY SIGNATURE-----";
const CERT_HEADER: &str = "drover passkey v1";

/// Why a passkey registration, certificate or assertion is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasskeyError {
    /// Not in the expected shape.
    #[error("the passkey {what} is malformed: {why}")]
    Malformed {
        /// What was read.
        what: &'static str,
        /// Why it is not valid.
        why: String,
    },
    /// A check of the WebAuthn exchange failed.
    #[error("the passkey {0}")]
    Check(String),
}

fn malformed(what: &'static str, why: impl Into<String>) -> PasskeyError {
    PasskeyError::Malformed {
        what,
        why: why.into(),
    }
}

/// Base64url without padding, as WebAuthn writes binary fields.
#[must_use]
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url (padding tolerated).
///
/// # Errors
/// Not base64url.
pub fn from_b64url(what: &'static str, text: &str) -> Result<Vec<u8>, PasskeyError> {
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|e| malformed(what, e.to_string()))
}

/// The WebAuthn challenge that signs `statement`: the SHA-256 of its exact text.
#[must_use]
pub fn challenge(statement: &str) -> [u8; 32] {
    Sha256::digest(statement.as_bytes()).into()
}

/// A passkey's fingerprint, as shown to the person certifying it: `SHA256:` and the unpadded
/// base64 of the SHA-256 of its public key (the form `ssh-keygen -l` uses for keys).
#[must_use]
pub fn fingerprint(public_key: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD
            .encode(Sha256::digest(public_key))
            .trim_end_matches('=')
    )
}

/// What an operator signs with their SSH key to make a passkey theirs.
///
/// ```text
/// drover passkey v1
/// operator: alice
/// rp: drover.example.org
/// credential: 3q2-7w…
/// public-key: BHa0…
/// time: 2026-12-03T02:04:00Z
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The operator (their roster name).
    pub operator: String,
    /// The WebAuthn relying party id (the console's host name).
    pub rp_id: String,
    /// The credential id (raw bytes).
    pub credential_id: Vec<u8>,
    /// The ES256 public key, an uncompressed SEC1 point (65 bytes).
    pub public_key: Vec<u8>,
    /// When it was registered (RFC 3339).
    pub time: String,
}

impl Certificate {
    /// The exact text signed (ends with a newline).
    ///
    /// # Errors
    /// A field holding a line break.
    pub fn to_text(&self) -> Result<String, PasskeyError> {
        for (field, v) in [
            ("operator", &self.operator),
            ("rp", &self.rp_id),
            ("time", &self.time),
        ] {
            if v.contains(['\n', '\r']) || v.is_empty() {
                return Err(malformed(
                    "certificate",
                    format!("its {field} is empty or holds a line break"),
                ));
            }
        }
        Ok(format!(
            "{CERT_HEADER}\noperator: {}\nrp: {}\ncredential: {}\npublic-key: {}\ntime: {}\n",
            self.operator,
            self.rp_id,
            b64url(&self.credential_id),
            b64url(&self.public_key),
            self.time
        ))
    }

    /// Reads a certificate's text, strictly (the fields in order, nothing else).
    ///
    /// # Errors
    /// Any other text.
    pub fn parse(text: &str) -> Result<Self, PasskeyError> {
        let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
        if lines.next() != Some(CERT_HEADER) {
            return Err(malformed(
                "certificate",
                format!("it must start with `{CERT_HEADER}`"),
            ));
        }
        let mut field = |name: &'static str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name)?.strip_prefix(": "))
                .map(str::to_owned)
                .ok_or_else(|| malformed("certificate", format!("the line `{name}: …` is missing")))
        };
        let operator = field("operator")?;
        let rp_id = field("rp")?;
        let credential_id = from_b64url("credential id", &field("credential")?)?;
        let public_key = from_b64url("public key", &field("public-key")?)?;
        let time = field("time")?;
        if lines.next().is_some() {
            return Err(malformed("certificate", "it has lines after `time`"));
        }
        let c = Self {
            operator,
            rp_id,
            credential_id,
            public_key,
            time,
        };
        if c.to_text()? != text {
            return Err(malformed("certificate", "it is not in canonical form"));
        }
        if c.public_key.len() != 65 || c.public_key[0] != 4 {
            return Err(malformed(
                "public key",
                "not an uncompressed P-256 point (ES256)",
            ));
        }
        Ok(c)
    }
}

/// A statement signed with a passkey, as carried in place of an SSHSIG: the WebAuthn assertion
/// and the operator's SSH-signed certificate of the passkey.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PasskeySignature {
    /// The certificate's text ([`Certificate::to_text`]).
    pub certificate: String,
    /// The operator's SSHSIG over it (namespace [`PASSKEY_NAMESPACE`]).
    pub certificate_signature: String,
    /// The assertion's authenticator data (base64url).
    pub authenticator_data: String,
    /// The assertion's client data JSON (base64url).
    pub client_data_json: String,
    /// The assertion's signature, ASN.1 DER ECDSA (base64url).
    pub signature: String,
}

impl PasskeySignature {
    /// The armored form, stored and bundled where an SSHSIG would be.
    #[must_use]
    pub fn to_armored(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let b64 = STANDARD.encode(json);
        let mut out = String::from(ARMOR_BEGIN);
        out.push('\n');
        for chunk in b64.as_bytes().chunks(70) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str(ARMOR_END);
        out.push('\n');
        out
    }

    /// Whether `text` is in the armored form (rather than an SSHSIG).
    #[must_use]
    pub fn is_armored(text: &str) -> bool {
        text.trim_start().starts_with(ARMOR_BEGIN)
    }

    /// Reads the armored form.
    ///
    /// # Errors
    /// Not a passkey signature.
    pub fn from_armored(text: &str) -> Result<Self, PasskeyError> {
        let body = text
            .trim()
            .strip_prefix(ARMOR_BEGIN)
            .and_then(|b| b.strip_suffix(ARMOR_END))
            .ok_or_else(|| malformed("signature", "not a DROVER PASSKEY SIGNATURE block"))?;
        let b64: String = body.split_whitespace().collect();
        let json = STANDARD
            .decode(b64)
            .map_err(|e| malformed("signature", e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| malformed("signature", e.to_string()))
    }
}

/// The host of an origin (`https://host:port` → `host`).
fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))?;
    let host = rest.split('/').next()?;
    Some(match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    })
}

/// The client data of a WebAuthn exchange, checked: its type, its challenge, and an origin on
/// the relying party's host.
fn check_client_data(
    raw: &[u8],
    kind: &str,
    challenge: &[u8],
    rp_id: &str,
) -> Result<(), PasskeyError> {
    #[derive(serde::Deserialize)]
    struct ClientData {
        #[serde(rename = "type")]
        kind: String,
        challenge: String,
        origin: String,
        #[serde(default, rename = "crossOrigin")]
        cross_origin: bool,
    }
    let cd: ClientData =
        serde_json::from_slice(raw).map_err(|e| malformed("client data", e.to_string()))?;
    if cd.kind != kind {
        return Err(PasskeyError::Check(format!(
            "client data is of type `{}`, not `{kind}`",
            cd.kind
        )));
    }
    if from_b64url("challenge", &cd.challenge)? != challenge {
        return Err(PasskeyError::Check(
            "assertion was made for another challenge: it does not sign this statement".into(),
        ));
    }
    if cd.cross_origin {
        return Err(PasskeyError::Check(
            "assertion was made in a cross-origin frame".into(),
        ));
    }
    let host = origin_host(&cd.origin).unwrap_or_default();
    if host != rp_id {
        return Err(PasskeyError::Check(format!(
            "assertion was made on {}, not on {rp_id}",
            cd.origin
        )));
    }
    Ok(())
}

/// Flags of authenticator data.
const USER_PRESENT: u8 = 0x01;
const ATTESTED: u8 = 0x40;

/// Checks the authenticator data's relying party and that a user was present.
fn check_authenticator_data(data: &[u8], rp_id: &str) -> Result<u8, PasskeyError> {
    if data.len() < 37 {
        return Err(malformed("authenticator data", "shorter than 37 bytes"));
    }
    if data[..32] != Sha256::digest(rp_id.as_bytes())[..] {
        return Err(PasskeyError::Check(format!(
            "authenticator data is for another relying party than {rp_id}"
        )));
    }
    let flags = data[32];
    if flags & USER_PRESENT == 0 {
        return Err(PasskeyError::Check(
            "authenticator did not see a user present".into(),
        ));
    }
    Ok(flags)
}

/// A credential created in a browser (`navigator.credentials.create`), as the console sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration<'a> {
    /// The credential id (base64url).
    pub credential_id: &'a str,
    /// The client data JSON (base64url).
    pub client_data_json: &'a str,
    /// The authenticator data (base64url; `response.getAuthenticatorData()`).
    pub authenticator_data: &'a str,
    /// The public key as SPKI DER (base64url; `response.getPublicKey()`).
    pub public_key_spki: &'a str,
    /// Its COSE algorithm (`response.getPublicKeyAlgorithm()`).
    pub algorithm: i64,
}

/// The DER prefix of a P-256 `SubjectPublicKeyInfo` holding an uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Checks a registration made for `challenge` on `rp_id`; returns the credential id and its
/// public key (an uncompressed P-256 point). With attestation `none` nothing vouches for the
/// authenticator: what makes the passkey the operator's is their SSH-signed [`Certificate`].
///
/// # Errors
/// Any check that fails.
pub fn check_registration(
    r: &Registration<'_>,
    challenge: &[u8],
    rp_id: &str,
) -> Result<(Vec<u8>, Vec<u8>), PasskeyError> {
    if r.algorithm != ES256 {
        return Err(PasskeyError::Check(format!(
            "algorithm {} is not ES256 (−7): create the passkey with ES256",
            r.algorithm
        )));
    }
    check_client_data(
        &from_b64url("client data", r.client_data_json)?,
        "webauthn.create",
        challenge,
        rp_id,
    )?;
    let data = from_b64url("authenticator data", r.authenticator_data)?;
    let flags = check_authenticator_data(&data, rp_id)?;
    let id = from_b64url("credential id", r.credential_id)?;
    // Attested credential data: AAGUID (16), id length (2), id.
    if flags & ATTESTED == 0 || data.len() < 55 {
        return Err(malformed(
            "authenticator data",
            "it carries no attested credential",
        ));
    }
    let len = usize::from(u16::from_be_bytes([data[53], data[54]]));
    if data.get(55..55 + len) != Some(&id[..]) {
        return Err(PasskeyError::Check(
            "credential id differs from the one the authenticator attested".into(),
        ));
    }
    let spki = from_b64url("public key", r.public_key_spki)?;
    let point = spki
        .strip_prefix(&P256_SPKI_PREFIX[..])
        .filter(|p| p.len() == 65 && p[0] == 4)
        .ok_or_else(|| malformed("public key", "not a P-256 SubjectPublicKeyInfo"))?;
    Ok((id, point.to_vec()))
}

/// Verifies that `sig` signs exactly `statement` with the passkey its certificate names, and
/// returns the certificate (whose SSH signature the caller checks against the roster).
///
/// # Errors
/// Any check that fails.
pub fn check_assertion(
    sig: &PasskeySignature,
    statement: &str,
) -> Result<Certificate, PasskeyError> {
    let cert = Certificate::parse(&sig.certificate)?;
    let client_data = from_b64url("client data", &sig.client_data_json)?;
    check_client_data(
        &client_data,
        "webauthn.get",
        &challenge(statement),
        &cert.rp_id,
    )?;
    let data = from_b64url("authenticator data", &sig.authenticator_data)?;
    check_authenticator_data(&data, &cert.rp_id)?;
    let der = from_b64url("signature", &sig.signature)?;
    let mut signed = data;
    signed.extend_from_slice(&Sha256::digest(&client_data));
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        &cert.public_key,
    )
    .verify(&signed, &der)
    .map_err(|_| {
        PasskeyError::Check(format!(
            "signature of {} ({}) does not match the statement",
            cert.operator,
            fingerprint(&cert.public_key)
        ))
    })?;
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> Certificate {
        Certificate {
            operator: "alice".into(),
            rp_id: "localhost".into(),
            credential_id: vec![1, 2, 3],
            public_key: [vec![4], vec![7; 64]].concat(),
            time: "2026-12-03T02:04:00Z".into(),
        }
    }

    #[test]
    fn a_certificate_reads_back_and_nothing_else_does() {
        let text = cert().to_text().expect("text");
        assert_eq!(Certificate::parse(&text).expect("parses"), cert());
        assert!(Certificate::parse(&text.replace("alice", "alice\nx")).is_err());
        assert!(Certificate::parse(&format!("{text}extra: 1\n")).is_err());
        assert!(
            Certificate::parse(&text.replace("drover passkey v1", "drover passkey v2")).is_err()
        );
    }

    #[test]
    fn the_armor_round_trips_and_is_told_apart_from_sshsig() {
        let s = PasskeySignature {
            certificate: cert().to_text().expect("text"),
            certificate_signature: "-----BEGIN SSH SIGNATURE-----\n…".into(),
            authenticator_data: "AA".into(),
            client_data_json: "e30".into(),
            signature: "MEU".into(),
        };
        let a = s.to_armored();
        assert!(PasskeySignature::is_armored(&a));
        assert!(!PasskeySignature::is_armored(
            "-----BEGIN SSH SIGNATURE-----"
        ));
        assert_eq!(PasskeySignature::from_armored(&a).expect("reads"), s);
    }

    #[test]
    fn origins_name_their_host() {
        assert_eq!(origin_host("https://localhost:8443"), Some("localhost"));
        assert_eq!(
            origin_host("https://drover.example.org"),
            Some("drover.example.org")
        );
        assert_eq!(origin_host("ftp://x"), None);
    }
}
