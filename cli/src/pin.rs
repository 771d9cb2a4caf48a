//! Certificate pinning for `--server https://…`: a server is trusted when its certificate's
//! SHA-256 fingerprint is the one the operator pinned (as `drover server` prints it), the way
//! SSH trusts a host key. The handshake signature is still checked against that certificate.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A fingerprint as 32 bytes: hex with or without colons, any case, `SHA256:` prefix allowed.
fn parse(fp: &str) -> Result<[u8; 32], String> {
    let t = fp.trim();
    let t = t
        .strip_prefix("SHA256:")
        .or_else(|| t.strip_prefix("sha256:"))
        .unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&hex).map_err(|_| {
        format!("`{fp}` is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
    })?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("`{fp}` is not a SHA-256 fingerprint (64 hex digits, colons allowed)"))
}

#[derive(Debug)]
struct Pinned {
    want: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.want {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate has fingerprint {}, not the pinned one: it is not the server you logged in to (or its certificate changed)",
                got.iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<Vec<_>>()
                    .join(":")
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS client configuration that trusts exactly the certificate with fingerprint `fp`.
///
/// # Errors
/// `fp` is not a SHA-256 fingerprint.
pub fn client_config(fp: &str) -> Result<rustls::ClientConfig, String> {
    let want = parse(fp)?;
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        want,
        algorithms: provider.signature_verification_algorithms,
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn fingerprints_parse_in_the_forms_people_paste() {
        let hex = "AB".repeat(32);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(parse(&hex).expect("hex"), [0xab; 32]);
        assert_eq!(parse(&colons).expect("colons"), [0xab; 32]);
        assert_eq!(
            parse(&format!("SHA256:{hex}")).expect("prefixed"),
            [0xab; 32]
        );
        assert!(parse("AB:CD").is_err());
        assert!(parse(&"zz".repeat(32)).is_err());
    }
}
