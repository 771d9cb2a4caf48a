//! What checking an approval costs: verifying a statement's SSHSIG signature against a roster of
//! 50 operators (parse the armor, find the key, verify), against the bare Ed25519 verification of
//! the same bytes — the floor — measured in the same run.
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
}
