//! rustls configurations from PEM files: the server side for STARTTLS and implicit TLS, the
//! client side for STARTTLS to the upstream.
//!
//! Built once at config load and shared as `Arc`; nothing here opens a socket or logs. The
//! caller logs the `verify = false` opt-out, since only it knows which upstream it is for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};

/// Both versions Postfix 3.7 speaks by default; SSLv3, TLS 1.0 and 1.1 are not offered.
const VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Why a TLS configuration could not be built. Every variant names the file involved, so
/// `check-config` can tell the admin which one to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain file is missing, unreadable or not PEM.
    #[error("{}: cannot read certificate chain: {source}", path.display())]
    ReadCertificates { path: PathBuf, source: pem::Error },
    /// The chain file holds no `CERTIFICATE` section.
    #[error("{}: no certificate found (expected PEM `BEGIN CERTIFICATE`)", path.display())]
    NoCertificates { path: PathBuf },
    /// The key file is missing, unreadable, or holds no PKCS#8, PKCS#1 or SEC1 private key.
    #[error("{}: cannot read private key: {source}", path.display())]
    ReadKey { path: PathBuf, source: pem::Error },
    /// rustls refused the pair: unsupported key type, or a key that does not match the leaf.
    #[error("{} with {}: certificate or key rejected: {source}", cert.display(), key.display())]
    CertifiedKey {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    /// A chain file breaks Postfix's rules for smtpd_tls_chain_files (each key followed by its
    /// certificates) or for a cert file holding its key (one key, any place).
    #[error("{}: cannot load private keys and certificates: {why}", path.display())]
    Chain { path: PathBuf, why: String },
    /// A CA file certificate could not be parsed as a trust anchor.
    #[error("{}: bad CA certificate: {source}", path.display())]
    BadCaCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    /// No CA file was given and the system trust store had no usable certificate.
    #[error("no system CA certificates found (set ca_file): {detail}")]
    NoSystemRoots { detail: String },
    /// A tls_server_sni_maps entry's chain files cannot be loaded.
    #[error("tls_server_sni_maps entry `{key}`: {source}")]
    Sni { key: String, source: Box<TlsError> },
    /// The crypto provider does not support the protocol versions asked for (a build problem).
    #[error("TLS provider: {0}")]
    Provider(rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// Reads every certificate in a PEM file, in file order (leaf first for a chain).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_err = |source| TlsError::ReadCertificates {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The server configuration for STARTTLS and implicit TLS (port 465): TLS 1.2 and 1.3, no
/// client certificates, the chain from `cert_chain_pem` (leaf first) and the key from `key_pem`.
pub fn server_config(cert_chain_pem: &Path, key_pem: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_versions(cert_chain_pem, key_pem, VERSIONS)
}

/// [`server_config`] restricted to the given protocol versions (tests force TLS 1.2 or 1.3).
pub fn server_config_with_versions(
    cert_chain_pem: &Path,
    key_pem: &Path,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ServerConfig>, TlsError> {
    super::tls_server::build(&super::tls_server::ServerTlsSpec {
        keys: super::tls_server::ServerKeys::Pair {
            cert: cert_chain_pem.to_owned(),
            key: key_pem.to_owned(),
        },
        versions: versions.to_vec(),
        suites: super::tls_server::all_suites().to_vec(),
        client_certs: None,
        sni: Vec::new(),
    })
    .map(|(config, _)| config)
}

/// The client configuration for STARTTLS to the upstream.
///
/// With `verify`, the upstream's certificate must chain to a certificate in `ca_file`, or to
/// the system trust store when `ca_file` is `None`, and match the server name the caller
/// connects with. With `verify = false` any certificate is accepted (the handshake signature is
/// still checked, so the peer holds the key of the certificate it sent): the connection is
/// encrypted but not authenticated, an explicit opt-out the caller must log.
pub fn client_config(ca_file: Option<&Path>, verify: bool) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with_versions(ca_file, verify, VERSIONS)
}

/// [`client_config`] restricted to the given protocol versions (tests force TLS 1.2 or 1.3).
pub fn client_config_with_versions(
    ca_file: Option<&Path>,
    verify: bool,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(TlsError::Provider)?;
    let config = if verify {
        let roots = match ca_file {
            Some(path) => roots_from_file(path)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

pub fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots
            .add(cert)
            .map_err(|source| TlsError::BadCaCertificate {
                path: path.to_owned(),
                source,
            })?;
    }
    Ok(roots)
}

/// The operating system's trust store, read from files (`/etc/ssl/certs` and friends, or
/// `SSL_CERT_FILE`/`SSL_CERT_DIR`) by rustls-native-certs; no network involved.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    // A trust store commonly holds a few certificates webpki cannot parse; skip them, as
    // rustls' own examples do, and fail only when nothing usable is left.
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let detail = if found.errors.is_empty() {
            "the trust store is empty".to_owned()
        } else {
            found
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(TlsError::NoSystemRoots { detail });
    }
    Ok(roots)
}

/// The `verify = false` opt-out: accepts any certificate for any name, but still verifies the
/// handshake signatures against the presented certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
