//! What checking an approval costs: verifying a statement's SSHSIG signature against a roster of
//! 50 operators (parse the armor, find the key, verify), and a passkey's (the SSH-signed
//! certificate, then the WebAuthn ES256 assertion over the statement's hash), against the bare
//! Ed25519 verification of the same bytes — the floor — measured in the same run.
//! Run: `cargo bench -p drover-identity --bench verify` (optionally `-- N`).

use ed25519_dalek::{Signer, Verifier};
use std::process::Command;

#[allow(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
fn main() {
    let n: u32 = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(2_000);
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let mut roster = String::new();
    let mut signer = None;
    for i in 0..50 {
        let path = d.join(format!("k{i}"));
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&path)
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success());
        let public = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
        roster.push_str(&format!(
            "[operators.op{i}]\nroles = [\"ic\"]\nkeys = [\"{}\"]\n\n",
            public.trim()
        ));
        signer = Some(path);
    }
    let roster = drover_identity::Roster::parse(&roster, d).expect("roster");
    let text = "drover statement v1\nkind: approve\nrun: r1\nstep: gate\nplan: aa\ninputs: bb\ncomment: \ntime: 2026-12-03T02:04:00Z\nnonce: cc\n";
    let sig = drover_identity::sign::with_key_file(&signer.expect("a key"), text).expect("sign");

    // Baseline: a bare Ed25519 signature over the same bytes, verified.
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let raw = key.sign(text.as_bytes());
    let public = key.verifying_key();
    let t = std::time::Instant::now();
    for _ in 0..n {
        public.verify(text.as_bytes(), &raw).expect("verify");
    }
    let bare = t.elapsed().as_secs_f64() / f64::from(n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        drover_identity::verify(&roster, text, &sig).expect("verify");
    }
    let full = t.elapsed().as_secs_f64() / f64::from(n);
    println!("bare Ed25519 verify (baseline): {:.1} µs", bare * 1e6);
    println!(
        "SSHSIG statement verified against a 50-operator roster: {:.1} µs",
        full * 1e6
    );
    println!("ratio: {:.2}", full / bare);

    // A passkey approval of the same statement: an ES256 authenticator (ring) and a certificate
    // signed by the last operator's SSH key.
    use drover_identity::passkey::{Certificate, PasskeySignature, b64url, challenge};
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    use sha2::Digest;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
    let es = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .expect("key");
    let cert = Certificate {
        operator: "op49".into(),
        rp_id: "localhost".into(),
        credential_id: vec![1, 2, 3, 4],
        public_key: es.public_key().as_ref().to_vec(),
        time: "2026-12-03T02:04:00Z".into(),
    }
    .to_text()
    .expect("certificate");
    let cert_sig = drover_identity::sign::with_key_file_in(
        drover_identity::passkey::PASSKEY_NAMESPACE,
        &d.join("k49"),
        &cert,
    )
    .expect("sign");
    let client = format!(
        r#"{{"type":"webauthn.get","challenge":"{}","origin":"https://localhost:8440"}}"#,
        b64url(&challenge(text))
    );
    let mut data = sha2::Sha256::digest(b"localhost").to_vec();
    data.extend_from_slice(&[0x05, 0, 0, 0, 1]);
    let mut signed = data.clone();
    signed.extend_from_slice(&sha2::Sha256::digest(client.as_bytes()));
    let assertion = es.sign(&rng, &signed).expect("sign");
    let armored = PasskeySignature {
        certificate: cert,
        certificate_signature: cert_sig,
        authenticator_data: b64url(&data),
        client_data_json: b64url(client.as_bytes()),
        signature: b64url(assertion.as_ref()),
    }
    .to_armored();
    let t = std::time::Instant::now();
    for _ in 0..n {
        drover_identity::verify(&roster, text, &armored).expect("verify");
    }
    let passkey = t.elapsed().as_secs_f64() / f64::from(n);
    println!(
        "passkey statement (SSH-signed certificate + WebAuthn ES256 assertion) verified: {:.1} µs",
        passkey * 1e6
    );
    println!("ratio: {:.2}", passkey / bare);
}
