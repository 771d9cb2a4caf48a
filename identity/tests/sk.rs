//! FIDO2 keys (`sk-ssh-ed25519@openssh.com`): no security key is plugged into CI, so the test
//! plays the authenticator — it signs exactly what a FIDO2 token signs for OpenSSH (SHA-256 of
//! the application, the flags, the counter, SHA-256 of the SSHSIG data) and wraps it the way
//! `ssh-keygen -Y sign` does. Drover must parse the key from the roster and verify the signature.

use base64::Engine;
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256, Sha512};

fn string(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

const ALG: &str = "sk-ssh-ed25519@openssh.com";
const APP: &str = "ssh:";

fn public_blob(pk: &[u8; 32]) -> Vec<u8> {
    let mut b = Vec::new();
    string(&mut b, ALG.as_bytes());
    string(&mut b, pk);
    string(&mut b, APP.as_bytes());
    b
}

/// An armored SSHSIG over `msg` by the sk key `sk`, as OpenSSH would make with a token.
fn sk_sign(sk: &ed25519_dalek::SigningKey, msg: &[u8], flags: u8, counter: u32) -> String {
    let mut signed = b"SSHSIG".to_vec();
    string(&mut signed, b"drover");
    string(&mut signed, b"");
    string(&mut signed, b"sha512");
    string(&mut signed, &Sha512::digest(msg));
    let mut token = Sha256::digest(APP.as_bytes()).to_vec();
    token.push(flags);
    token.extend_from_slice(&counter.to_be_bytes());
    token.extend_from_slice(&Sha256::digest(&signed));
    let sig = sk.sign(&token).to_bytes();
    let mut sig_blob = Vec::new();
    string(&mut sig_blob, ALG.as_bytes());
    string(&mut sig_blob, &sig);
    sig_blob.push(flags);
    sig_blob.extend_from_slice(&counter.to_be_bytes());
    let mut blob = b"SSHSIG".to_vec();
    blob.extend_from_slice(&1u32.to_be_bytes());
    string(&mut blob, &public_blob(&sk.verifying_key().to_bytes()));
    string(&mut blob, b"drover");
    string(&mut blob, b"");
    string(&mut blob, b"sha512");
    string(&mut blob, &sig_blob);
    let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(70)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n",
        lines.join("\n")
    )
}

#[test]
fn a_fido2_key_in_the_roster_verifies_a_token_signature() {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let pk = sk.verifying_key().to_bytes();
    let line = format!(
        "{ALG} {} dana@yubikey",
        base64::engine::general_purpose::STANDARD.encode(public_blob(&pk))
    );
    let dir = tempfile::tempdir().expect("tmp");
    let roster = drover_identity::Roster::parse(
        &format!("[operators.dana]\nroles = [\"incident-commander\"]\nkeys = [\"{line}\"]\n"),
        dir.path(),
    )
    .unwrap_or_else(|e| panic!("the sk key parses: {e:?}"));
    let text = "drover statement v1\nkind: approve\nrun: r1\nstep: gate\nplan: aa\ninputs: bb\ncomment: \ntime: 2026-12-03T02:04:00Z\nnonce: cc\n";
    // User presence (0x01) as a token reports it.
    let sig = sk_sign(&sk, text.as_bytes(), 0x01, 42);
    let who = drover_identity::verify(&roster, text, &sig).expect("the token signature verifies");
    assert_eq!(who.operator, "dana");
    assert_eq!(who.algorithm, ALG);
    // The same signature over another statement does not.
    assert!(drover_identity::verify(&roster, &text.replace("r1", "r2"), &sig).is_err());
}
