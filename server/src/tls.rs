//! The server's TLS set-up and the certificate hash SCRAM-SHA-256-PLUS binds to.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio_rustls::TlsAcceptor;
use x509_certificate::SignatureAlgorithm;
use x509_certificate::certificate::CapturedX509Certificate;

use crate::startup_error::StartupError;

/// Builds the acceptor from PEM files; also returns the certificate PEM.
pub fn acceptor(cert: &Path, key: &Path) -> Result<(TlsAcceptor, Vec<u8>), StartupError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = std::fs::read(cert).map_err(|source| StartupError::Io {
        what: format!("cannot read {}", cert.display()),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartupError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| StartupError::Tls(format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| StartupError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartupError::Tls(e.to_string()))?;
    Ok((TlsAcceptor::from(Arc::new(config)), pem))
}

/// The `tls-server-end-point` channel binding data (RFC 5929): the first
/// certificate hashed with its signature's hash (SHA-256 for MD5 and SHA-1).
/// Certificates whose signature has no single hash (Ed25519) cannot do
/// channel binding; the error says why.
pub fn channel_binding(cert_pem: &[u8]) -> Result<Vec<u8>, String> {
    let certs = CapturedX509Certificate::from_pem_multiple(cert_pem).map_err(|e| e.to_string())?;
    let cert = certs.first().ok_or("no certificate in the PEM file")?;
    let der = cert.constructed_data();
    match cert.signature_algorithm() {
        Some(SignatureAlgorithm::RsaSha1 | SignatureAlgorithm::RsaSha256 | SignatureAlgorithm::EcdsaSha256) => {
            Ok(Sha256::digest(der).to_vec())
        }
        Some(SignatureAlgorithm::RsaSha384 | SignatureAlgorithm::EcdsaSha384) => Ok(Sha384::digest(der).to_vec()),
        Some(SignatureAlgorithm::RsaSha512) => Ok(Sha512::digest(der).to_vec()),
        Some(other) => Err(format!(
            "its signature algorithm ({other:?}) has no hash to bind to (RFC 5929)"
        )),
        None => Err("its signature algorithm is not recognised".into()),
    }
}
