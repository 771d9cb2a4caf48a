//! Passkey signatures: a WebAuthn assertion over a statement's hash, by a passkey its operator
//! certified with their SSH key (made by `ssh-keygen`), verified with the roster alone. The
//! authenticator here is a P-256 key signing exactly what a browser's authenticator signs.

use drover_identity::passkey::{
    self, Certificate, PasskeySignature, Registration, b64url, challenge,
};
use drover_identity::{Roster, VerifyError, sign, verify};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

fn keygen(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen runs (Debian's openssh-client)");
    assert!(out.status.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
    (path, public.trim().to_owned())
}

struct Authenticator {
    key: EcdsaKeyPair,
    id: Vec<u8>,
}

impl Authenticator {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key");
        Self {
            key,
            id: vec![9, 8, 7, 6],
        }
    }

    fn public(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// What `navigator.credentials.get` returns for `statement`, on `origin`, for `rp`.
    fn assert(&self, statement: &str, origin: &str, rp: &str) -> (String, String, String) {
        let client = format!(
            r#"{{"type":"webauthn.get","challenge":"{}","origin":"{origin}","crossOrigin":false}}"#,
            b64url(&challenge(statement))
        );
        let mut data = Sha256::digest(rp.as_bytes()).to_vec();
        data.push(0x05); // user present, user verified
        data.extend_from_slice(&[0, 0, 0, 1]);
        let mut signed = data.clone();
        signed.extend_from_slice(&Sha256::digest(client.as_bytes()));
        let sig = self.key.sign(&SystemRandom::new(), &signed).expect("sign");
        (
            b64url(&data),
            b64url(client.as_bytes()),
            b64url(sig.as_ref()),
        )
    }
}

fn setup() -> (
    tempfile::TempDir,
    Roster,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().expect("dir");
    let (alice, alice_pub) = keygen(dir.path(), "alice");
    let (bob, bob_pub) = keygen(dir.path(), "bob");
    let text = format!(
        "[operators.alice]\nroles = [\"ic\"]\nkeys = [\"{alice_pub}\"]\n\n[operators.bob]\nroles = [\"dba\"]\nkeys = [\"{bob_pub}\"]\n"
    );
    let roster = Roster::parse(&text, dir.path()).expect("roster");
    (dir, roster, alice, bob)
}

fn passkey_signature(
    auth: &Authenticator,
    operator: &str,
    certifier_key: &Path,
    statement: &str,
) -> PasskeySignature {
    let cert = Certificate {
        operator: operator.into(),
        rp_id: "localhost".into(),
        credential_id: auth.id.clone(),
        public_key: auth.public(),
        time: "2026-12-03T02:04:00Z".into(),
    }
    .to_text()
    .expect("text");
    let cert_sig = sign::with_key_file_in(passkey::PASSKEY_NAMESPACE, certifier_key, &cert)
        .expect("ssh signature");
    let (data, client, sig) = auth.assert(statement, "https://localhost:8443", "localhost");
    PasskeySignature {
        certificate: cert,
        certificate_signature: cert_sig,
        authenticator_data: data,
        client_data_json: client,
        signature: sig,
    }
}

const STATEMENT: &str = "drover statement v1\nkind: approve\nrun: r1\nstep: gate\nplan: aa\ninputs: bb\ncomment: \ntime: 2026-12-03T02:04:00Z\nnonce: 01\n";

#[test]
fn a_certified_passkey_signs_a_statement_that_verifies_with_the_roster_alone() {
    let (_dir, roster, alice, _) = setup();
    let auth = Authenticator::new();
    let armored = passkey_signature(&auth, "alice", &alice, STATEMENT).to_armored();
    let signer = verify(&roster, STATEMENT, &armored).expect("verifies");
    assert_eq!(signer.operator, "alice");
    assert_eq!(signer.roles, ["ic"]);
    assert_eq!(signer.algorithm, "webauthn-es256");
    assert_eq!(signer.fingerprint, passkey::fingerprint(&auth.public()));
    assert_eq!(
        drover_identity::fingerprint_of(&armored),
        Some(signer.fingerprint.clone())
    );
    // One changed byte of the statement: the challenge differs.
    let altered = STATEMENT.replace("step: gate", "step: gatf");
    assert!(matches!(
        verify(&roster, &altered, &armored),
        Err(VerifyError::Mismatch { operator, .. }) if operator == "alice"
    ));
}

#[test]
fn a_passkey_certified_by_someone_else_or_made_on_another_site_is_refused() {
    let (_dir, roster, alice, bob) = setup();
    let auth = Authenticator::new();
    // Bob signs a certificate that names alice: it names one operator and is signed by another.
    let forged = passkey_signature(&auth, "alice", &bob, STATEMENT).to_armored();
    let e = verify(&roster, STATEMENT, &forged).expect_err("refused");
    assert!(
        e.to_string().contains("names alice but was signed by bob"),
        "{e}"
    );
    // An assertion made on another origin than the certified relying party.
    let mut s = passkey_signature(&auth, "alice", &alice, STATEMENT);
    let (data, client, sig) = auth.assert(STATEMENT, "https://evil.example", "localhost");
    (s.authenticator_data, s.client_data_json, s.signature) = (data, client, sig);
    assert!(verify(&roster, STATEMENT, &s.to_armored()).is_err());
    // The certificate altered after signing (another public key).
    let mut s = passkey_signature(&auth, "alice", &alice, STATEMENT);
    s.certificate = s
        .certificate
        .replace("credential: CQgHBg", "credential: CQgHBw");
    assert!(verify(&roster, STATEMENT, &s.to_armored()).is_err());
}

#[test]
fn a_registration_yields_the_attested_credential_and_its_key() {
    let auth = Authenticator::new();
    let ch = [7u8; 32];
    let client = format!(
        r#"{{"type":"webauthn.create","challenge":"{}","origin":"https://localhost:8443"}}"#,
        b64url(&ch)
    );
    let mut data = Sha256::digest(b"localhost").to_vec();
    data.push(0x45); // user present, user verified, attested credential data
    data.extend_from_slice(&[0, 0, 0, 0]);
    data.extend_from_slice(&[0; 16]);
    data.extend_from_slice(&u16::try_from(auth.id.len()).expect("len").to_be_bytes());
    data.extend_from_slice(&auth.id);
    data.extend_from_slice(&[0xa0]); // the COSE key (not read: the SPKI is)
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    spki.extend_from_slice(&auth.public());
    let (id_b64, client_b64, data_b64, spki_b64) = (
        b64url(&auth.id),
        b64url(client.as_bytes()),
        b64url(&data),
        b64url(&spki),
    );
    let r = Registration {
        credential_id: &id_b64,
        client_data_json: &client_b64,
        authenticator_data: &data_b64,
        public_key_spki: &spki_b64,
        algorithm: -7,
    };
    let (id, key) = passkey::check_registration(&r, &ch, "localhost").expect("accepted");
    assert_eq!((id, key), (auth.id.clone(), auth.public()));
    assert!(passkey::check_registration(&r, &[8u8; 32], "localhost").is_err());
    assert!(passkey::check_registration(&r, &ch, "drover.example.org").is_err());
    assert!(
        passkey::check_registration(
            &Registration {
                algorithm: -8,
                ..r.clone()
            },
            &ch,
            "localhost"
        )
        .is_err()
    );
}
