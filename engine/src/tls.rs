//! TLS client configurations for source drivers, following libpq's sslmode
//! semantics: `require` encrypts without checking the certificate,
//! `verify-ca` checks the chain, `verify-full` also checks the host name.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use tracing::warn;

use crate::contract::{ConnectFailure, ConnectFailureKind};

/// How much of the server's certificate to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Encrypt only.
    Nothing,
    /// Check that a trusted CA signed the certificate.
    Chain,
    /// Check the chain and that the certificate names the host.
    ChainAndHost,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs the process-wide rustls provider for drivers that build their
/// own TLS configuration (mysql_async). Safe to call many times.
pub(crate) fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates the operating system trusts, read once per process:
/// the files `SSL_CERT_FILE` / `SSL_CERT_DIR` name when set, else the
/// platform's store (`rustls-native-certs`). Certificates rustls cannot use
/// as trust anchors are left out, with a warning.
pub(crate) fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            warn!(%error, "could not read some of the system's trusted certificates");
        }
        found
            .certs
            .into_iter()
            .filter(|cert| RootCertStore::empty().add(cert.clone()).is_ok())
            .collect()
    })
}

/// Object store client options that also trust the system's store (the
/// stores' HTTP client bundles the web PKI roots).
pub(crate) fn with_system_roots(options: object_store::ClientOptions) -> object_store::ClientOptions {
    system_roots()
        .iter()
        .filter_map(|cert| object_store::Certificate::from_der(cert).ok())
        .fold(options, object_store::ClientOptions::with_root_certificate)
}

/// The roots a verified connection trusts: the PEM certificates in
/// `root_cert` alone when given (as libpq's `sslrootcert`), else the
/// system's store plus the bundled web PKI roots.
pub(crate) fn trusted_roots(root_cert: Option<&str>) -> Result<RootCertStore, ConnectFailure> {
    let tls_error = |detail: String| ConnectFailure::new(ConnectFailureKind::Tls, detail);
    let mut roots = RootCertStore::empty();
    let Some(path) = root_cert else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        roots.add_parsable_certificates(system_roots().iter().cloned());
        return Ok(roots);
    };
    for cert in CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|e| tls_error(format!("cannot read root certificate file {path}: {e}")))?
    {
        let cert = cert.map_err(|e| tls_error(format!("bad certificate in {path}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| tls_error(format!("bad certificate in {path}: {e}")))?;
    }
    Ok(roots)
}

/// A client configuration for `verify`, trusting [`trusted_roots`].
pub(crate) fn client_config(verify: Verify, root_cert: Option<&str>) -> Result<ClientConfig, ConnectFailure> {
    let tls_error = |detail: String| ConnectFailure::new(ConnectFailureKind::Tls, detail);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(EncryptOnly(provider())),
        Verify::Chain | Verify::ChainAndHost => {
            let roots = trusted_roots(root_cert)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| tls_error(e.to_string()))?;
            if verify == Verify::Chain {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts any certificate but still checks handshake signatures.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks the certificate chain but not the host name (`verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
