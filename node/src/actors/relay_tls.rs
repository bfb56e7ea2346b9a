//! Which TLS certificates the data plane's endpoint trusts: the relays' QUIC address
//! discovery (QAD) tells a node behind NAT its public address, over TLS.
//!
//! A bootstrap's QAD server presents a self-signed certificate whose key is the bootstrap's
//! own Ed25519 identity key (see `streamgate-bootstrap`). The node already knows that key:
//! it is inside the peer id of every configured bootstrap address. So such a certificate is
//! trusted when its public key is one of those keys and the handshake proves possession of
//! it; no certificate is distributed and no name is checked. Every other certificate goes to
//! the usual WebPKI check against the embedded root store, as iroh does by default.

use std::{io, sync::Arc};

use iroh::tls::CaTlsConfig;
use rustls::{
    DigitallySignedStruct, Error, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};

/// DER of an Ed25519 SubjectPublicKeyInfo up to the key (RFC 8410): the key's 32 bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Trust for the endpoint: certificates keyed by one of `bootstrap_keys`, else WebPKI.
pub fn ca_tls_config(bootstrap_keys: Vec<[u8; 32]>) -> CaTlsConfig {
    let bootstrap_keys = Arc::new(bootstrap_keys);
    CaTlsConfig::custom_server_cert_verifier(Arc::new(move |provider: Arc<CryptoProvider>| {
        let webpki = CaTlsConfig::embedded().server_cert_verifier(provider.clone())?;
        let verifier: Arc<dyn ServerCertVerifier> = Arc::new(BootstrapKeyVerifier {
            bootstrap_keys: bootstrap_keys.clone(),
            provider,
            webpki,
        });
        io::Result::Ok(verifier)
    }))
}

#[derive(Debug)]
struct BootstrapKeyVerifier {
    bootstrap_keys: Arc<Vec<[u8; 32]>>,
    provider: Arc<CryptoProvider>,
    webpki: Arc<dyn ServerCertVerifier>,
}

/// The Ed25519 key of a certificate's SubjectPublicKeyInfo, if it has one.
pub fn ed25519_key_of(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    key.try_into().ok()
}

impl ServerCertVerifier for BootstrapKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // Possession of the key is proven by the handshake signature, which rustls checks
        // against this same certificate through `verify_tls13_signature`.
        if ed25519_key_of(end_entity).is_some_and(|key| self.bootstrap_keys.contains(&key)) {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `seed`'s Ed25519 key, as a bootstrap makes one.
    fn ed25519_cert(seed: [u8; 32]) -> CertificateDer<'static> {
        let pkcs8 = streamgate_swarm::identity::ed25519_pkcs8(&seed);
        let key = rcgen::KeyPair::try_from(pkcs8.as_slice()).expect("key");
        rcgen::CertificateParams::new(vec!["streamgate-bootstrap".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert")
            .der()
            .clone()
    }

    #[test]
    fn the_key_of_an_ed25519_certificate_is_its_signing_key() {
        let seed = [7; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        assert_eq!(ed25519_key_of(&ed25519_cert(seed)), Some(public));
    }

    #[test]
    fn other_certificates_have_no_ed25519_key() {
        let p256 = rcgen::generate_simple_self_signed(vec!["x".to_string()]).expect("cert");
        assert_eq!(ed25519_key_of(p256.cert.der()), None);
        assert_eq!(
            ed25519_key_of(&CertificateDer::from(vec![0x30, 0x00])),
            None
        );
        assert_eq!(ed25519_key_of(&CertificateDer::from(Vec::new())), None);
    }
}
