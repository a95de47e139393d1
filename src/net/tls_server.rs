//! The STARTTLS / implicit-TLS server configuration Postfix's smtpd_tls_* parameters describe:
//! the server's keys and certificates (a `[tls]` pair, smtpd_tls_cert_file/key_file, or
//! smtpd_tls_chain_files with several key/certificate groups), the protocol versions and
//! cipher suites left after the admin's limits, and whether to ask for client certificates;
//! and tls_server_sni_maps, other keys and certificates for the names a client asks for by SNI.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use super::client_cert::ClientCertCheck;
use super::tls::{read_certificates, TlsError};

/// Where the server's keys and certificates come from.
#[derive(Clone, Debug)]
pub enum ServerKeys {
    /// A chain file (leaf first) and a separate key file: `[tls]` or smtpd_tls_cert_file with
    /// smtpd_tls_key_file.
    Pair { cert: PathBuf, key: PathBuf },
    /// smtpd_tls_cert_file with the key in the same file: one key anywhere among the
    /// certificates (Postfix's "mixed" mode).
    Mixed(PathBuf),
    /// smtpd_tls_chain_files: each key followed by its certificate and chain, one group per
    /// algorithm, across one or more files read as one stream.
    Chains(Vec<PathBuf>),
}

/// Everything a listener's TLS server needs, resolved from its parameters.
pub struct ServerTlsSpec {
    pub keys: ServerKeys,
    pub versions: Vec<&'static SupportedProtocolVersion>,
    pub suites: Vec<SupportedCipherSuite>,
    /// smtpd_tls_ask_ccert: request a client certificate in the handshake.
    pub client_certs: Option<Arc<ClientCertCheck>>,
    /// tls_server_sni_maps, first entry for a key first.
    pub sni: Vec<SniEntry>,
}

/// One tls_server_sni_maps entry: a lookup key (a name, or `.parent` for every name under
/// it) and its chain files, read as smtpd_tls_chain_files are.
#[derive(Clone, Debug)]
pub struct SniEntry {
    pub key: String,
    pub chains: Vec<PathBuf>,
}

/// Builds the server configuration for `spec`, and the names its tls_server_sni_maps know
/// (None without maps), for the session's log line about a name they do not know.
pub fn build(spec: &ServerTlsSpec) -> Result<(Arc<ServerConfig>, Option<SniNames>), TlsError> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: spec.suites.clone(),
        ..crypto::ring::default_provider()
    });
    let default = ByAlgorithm(load_keys(&spec.keys, &provider)?);
    let mut by_name = HashMap::new();
    for entry in &spec.sni {
        let key = entry.key.to_ascii_lowercase();
        if by_name.contains_key(&key) {
            continue;
        }
        let keys =
            load_keys(&ServerKeys::Chains(entry.chains.clone()), &provider).map_err(|e| {
                TlsError::Sni {
                    key: entry.key.clone(),
                    source: Box::new(e),
                }
            })?;
        by_name.insert(key, Arc::new(ByAlgorithm(keys)));
    }
    let certs = Arc::new(ServerCerts { default, by_name });
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&spec.versions)
        .map_err(TlsError::Provider)?;
    let builder = match &spec.client_certs {
        Some(check) => builder.with_client_cert_verifier(check.verifier()),
        None => builder.with_no_client_auth(),
    };
    let names = (!certs.by_name.is_empty()).then(|| SniNames(certs.clone()));
    Ok((Arc::new(builder.with_cert_resolver(certs)), names))
}

/// The lookup keys of a listener's tls_server_sni_maps.
#[derive(Clone, Debug)]
pub struct SniNames(Arc<ServerCerts>);

impl SniNames {
    /// Whether the maps have keys for `sni` (as the client sent it).
    pub fn knows(&self, sni: &str) -> bool {
        self.0.for_name(&sni.to_ascii_lowercase()).is_some()
    }
}

fn load_keys(
    keys: &ServerKeys,
    provider: &CryptoProvider,
) -> Result<Vec<Arc<CertifiedKey>>, TlsError> {
    let groups = match keys {
        ServerKeys::Pair { cert, key } => {
            let certs = read_certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::ReadKey {
                path: key.clone(),
                source,
            })?;
            vec![(cert.clone(), certs, key)]
        }
        ServerKeys::Mixed(file) => vec![mixed(file)?],
        ServerKeys::Chains(files) => chains(files)?,
    };
    groups
        .into_iter()
        .map(|(path, certs, key)| {
            CertifiedKey::from_der(certs, key, provider)
                .map(Arc::new)
                .map_err(|source| TlsError::CertifiedKey {
                    cert: path.clone(),
                    key: path,
                    source,
                })
        })
        .collect()
}

type Group = (
    PathBuf,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
);

fn sections(path: &Path) -> Result<Vec<(SectionKind, Vec<u8>)>, TlsError> {
    let read_err = |source| TlsError::ReadCertificates {
        path: path.to_owned(),
        source,
    };
    <(SectionKind, Vec<u8>)>::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)
}

fn private_key(kind: SectionKind, der: &[u8]) -> Option<PrivateKeyDer<'static>> {
    let der = der.to_vec();
    match kind {
        SectionKind::PrivateKey => Some(PrivateKeyDer::Pkcs8(der.into())),
        SectionKind::RsaPrivateKey => Some(PrivateKeyDer::Pkcs1(der.into())),
        SectionKind::EcPrivateKey => Some(PrivateKeyDer::Sec1(der.into())),
        _ => None,
    }
}

/// Postfix's load_mixed_file: certificates in file order, and exactly one key anywhere
/// (a second key is ignored with a warning by Postfix; here it is an error, as the admin
/// surely meant smtpd_tls_chain_files).
fn mixed(path: &Path) -> Result<Group, TlsError> {
    let bad = |why: String| TlsError::Chain {
        path: path.to_owned(),
        why,
    };
    let mut certs = Vec::new();
    let mut key = None;
    for (i, (kind, der)) in sections(path)?.into_iter().enumerate() {
        if kind == SectionKind::Certificate {
            certs.push(CertificateDer::from(der));
        } else if let Some(k) = private_key(kind, &der) {
            if key.is_some() {
                return Err(bad(format!("a second private key at PEM object {}", i + 1)));
            }
            key = Some(k);
        }
    }
    let key = key.ok_or_else(|| bad("no private key found".into()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok((path.to_owned(), certs, key))
}

/// Postfix's load_chain_files: the files are one sequence of PEM objects in which each key
/// comes first and is followed by its certificate and that certificate's chain.
fn chains(files: &[PathBuf]) -> Result<Vec<Group>, TlsError> {
    let mut groups: Vec<Group> = Vec::new();
    let mut current: Option<(
        PathBuf,
        usize,
        PrivateKeyDer<'static>,
        Vec<CertificateDer<'static>>,
    )> = None;
    for path in files {
        let bad = |why: String| TlsError::Chain {
            path: path.clone(),
            why,
        };
        for (i, (kind, der)) in sections(path)?.into_iter().enumerate() {
            let n = i + 1;
            if kind == SectionKind::Certificate {
                let Some((_, _, _, certs)) = current.as_mut() else {
                    return Err(bad(format!(
                        "key not first (certificate at PEM object {n})"
                    )));
                };
                certs.push(CertificateDer::from(der));
            } else if let Some(key) = private_key(kind, &der) {
                if let Some((from, at, key, certs)) = current.take() {
                    if certs.is_empty() {
                        return Err(TlsError::Chain {
                            path: from,
                            why: format!("key at PEM object {at} not followed by a certificate"),
                        });
                    }
                    groups.push((from, certs, key));
                }
                current = Some((path.clone(), n, key, Vec::new()));
            }
        }
    }
    match current {
        Some((from, at, _, certs)) if certs.is_empty() => Err(TlsError::Chain {
            path: from,
            why: format!("no certificates for the key at PEM object {at}"),
        }),
        Some((from, _, key, certs)) => {
            groups.push((from, certs, key));
            Ok(groups)
        }
        None => Err(TlsError::Chain {
            path: files.first().cloned().unwrap_or_default(),
            why: "no PEM data".into(),
        }),
    }
}

/// Several key/certificate groups (say RSA and ECDSA): the first whose key can sign with a
/// scheme the client offers, as OpenSSL picks among its per-algorithm slots.
#[derive(Debug)]
struct ByAlgorithm(Vec<Arc<CertifiedKey>>);

impl ByAlgorithm {
    fn choose(&self, hello: &ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or_else(|| self.0.first())
            .cloned()
    }
}

/// The default keys, and tls_server_sni_maps' keys by lookup key.
#[derive(Debug)]
struct ServerCerts {
    default: ByAlgorithm,
    by_name: HashMap<String, Arc<ByAlgorithm>>,
}

impl ServerCerts {
    /// Postfix's server_sni_callback order: the name as sent, then each ancestor domain with
    /// its leading dot (`mx.example.net`, `.example.net`, `.net`).
    fn for_name(&self, sni: &str) -> Option<&ByAlgorithm> {
        let mut key = sni;
        loop {
            if let Some(keys) = self.by_name.get(key) {
                return Some(keys);
            }
            let next = key.get(1..)?.find('.')?;
            key = key.get(next + 1..)?;
        }
    }
}

impl ResolvesServerCert for ServerCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands over SNI as a validated, lower-cased DNS name.
        let keys = hello
            .server_name()
            .and_then(|name| self.for_name(name))
            .unwrap_or(&self.default);
        keys.choose(&hello)
    }
}

/// Every suite the provider has, for a caller narrowing them down.
pub fn all_suites() -> &'static [SupportedCipherSuite] {
    crypto::ring::ALL_CIPHER_SUITES
}

/// Both versions rustls has, newest first.
pub fn all_versions() -> &'static [&'static SupportedProtocolVersion] {
    rustls::ALL_VERSIONS
}
