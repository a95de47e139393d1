//! Client certificates as Postfix's smtpd_tls_ask_ccert asks for them: requested during the
//! handshake with the CA names of smtpd_tls_CAfile, never required by the handshake itself,
//! and described afterwards (verified or not, fingerprints, subject and issuer CN) for the
//! policy to judge.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, UnixTime};
use tokio_rustls::rustls::crypto::{self, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{
    self, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConnection,
    SignatureScheme,
};

use crate::policy::ClientCert;

/// smtpd_tls_fingerprint_digest: the digests ring has. Postfix's md5 (its default below
/// compatibility level 3.6) is not among them and is refused at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    /// The digest for a smtpd_tls_fingerprint_digest value, `None` when ring lacks it.
    pub fn named(name: &str) -> Option<Digest> {
        match name.trim().to_ascii_lowercase().as_str() {
            "sha1" => Some(Digest::Sha1),
            "sha256" => Some(Digest::Sha256),
            "sha384" => Some(Digest::Sha384),
            "sha512" => Some(Digest::Sha512),
            _ => None,
        }
    }

    /// Postfix's fingerprint text (tls_digest_encode): upper-case hex pairs joined by `:`.
    fn fingerprint(self, data: &[u8]) -> String {
        let algorithm = match self {
            Digest::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Digest::Sha256 => &ring::digest::SHA256,
            Digest::Sha384 => &ring::digest::SHA384,
            Digest::Sha512 => &ring::digest::SHA512,
        };
        ring::digest::digest(algorithm, data)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// What a listener with smtpd_tls_ask_ccert = yes needs after a handshake: whether a client
/// certificate chains to smtpd_tls_CAfile, and how to fingerprint it.
#[derive(Debug)]
pub struct ClientCertCheck {
    /// A verifier over smtpd_tls_CAfile's certificates; `None` without a CA file, when no
    /// certificate can verify (Postfix's "untrusted").
    trusted: Option<Arc<dyn ClientCertVerifier>>,
    digest: Digest,
    /// smtpd_tls_req_ccert at level encrypt: a session without a verified certificate ends.
    required: bool,
}

impl ClientCertCheck {
    pub fn new(
        roots: Option<RootCertStore>,
        digest: Digest,
        required: bool,
    ) -> Result<ClientCertCheck, rustls::server::VerifierBuilderError> {
        let trusted = match roots.filter(|r| !r.is_empty()) {
            Some(roots) => Some(
                WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::new(crypto::ring::default_provider()),
                )
                .build()?,
            ),
            None => None,
        };
        Ok(ClientCertCheck {
            trusted,
            digest,
            required,
        })
    }

    /// The verifier the handshake uses: it offers the CA names and accepts any certificate,
    /// or none, as Postfix completes the handshake and judges the certificate later.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::new(AskClientCert {
            hints: self
                .trusted
                .as_ref()
                .map(|t| t.root_hint_subjects().to_vec())
                .unwrap_or_default(),
            algorithms: crypto::ring::default_provider().signature_verification_algorithms,
        })
    }

    /// smtpd.c's refusal when a verified certificate is required and `cert` is not one:
    /// the text after `421 4.7.1 <myhostname> Error: `.
    pub fn refusal(&self, cert: Option<&ClientCert>) -> Option<&'static str> {
        match cert {
            _ if !self.required => None,
            None => Some("No client certificate presented"),
            Some(c) if !c.verified => Some("Client certificate not trusted"),
            Some(_) => None,
        }
    }

    /// The certificate the client presented on `conn`, described; `None` when it sent none.
    pub fn describe(&self, conn: &ServerConnection) -> Option<ClientCert> {
        let (leaf, intermediates) = conn.peer_certificates()?.split_first()?;
        let verified = self.trusted.as_ref().is_some_and(|t| {
            t.verify_client_cert(leaf, intermediates, UnixTime::now())
                .is_ok()
        });
        let parts = der::CertParts::of(leaf);
        Some(ClientCert {
            verified,
            fingerprint: self.digest.fingerprint(leaf.as_ref()),
            pubkey_fingerprint: parts
                .as_ref()
                .map(|p| self.digest.fingerprint(p.spki))
                .unwrap_or_default(),
            subject_cn: parts
                .as_ref()
                .and_then(|p| der::common_name(p.subject))
                .unwrap_or_default(),
            issuer_cn: parts
                .as_ref()
                .and_then(|p| der::common_name(p.issuer))
                .unwrap_or_default(),
        })
    }
}

/// Requests a certificate, accepts whatever comes (or nothing), and still checks the
/// handshake signature so the client holds the key of the certificate it sent.
#[derive(Debug)]
struct AskClientCert {
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AskClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Just enough DER to find a certificate's issuer, subject and public key (RFC 5280 4.1):
/// rustls verifies certificates but does not expose their names.
mod der {
    pub(super) struct CertParts<'a> {
        pub(super) issuer: &'a [u8],
        pub(super) subject: &'a [u8],
        /// The whole SubjectPublicKeyInfo, tag and length included (what Postfix digests).
        pub(super) spki: &'a [u8],
    }

    /// One TLV at the start of some DER: (tag, contents, the whole TLV, the rest).
    type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

    fn tlv(data: &[u8]) -> Option<Tlv<'_>> {
        let (&tag, rest) = data.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |l, b| (l << 8) | *b as usize);
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        let header = data.len() - rest.len();
        Some((tag, &rest[..len], &data[..header + len], &rest[len..]))
    }

    impl<'a> CertParts<'a> {
        pub(super) fn of(cert: &'a [u8]) -> Option<CertParts<'a>> {
            let (_, certificate, _, _) = tlv(cert)?;
            let (_, tbs, _, _) = tlv(certificate)?;
            let mut rest = tbs;
            // [0] EXPLICIT version is optional (absent means v1).
            if rest.first() == Some(&0xa0) {
                rest = tlv(rest)?.3;
            }
            let (_, _, _, rest) = tlv(rest)?; // serialNumber
            let (_, _, _, rest) = tlv(rest)?; // signature
            let (_, issuer, _, rest) = tlv(rest)?;
            let (_, _, _, rest) = tlv(rest)?; // validity
            let (_, subject, _, rest) = tlv(rest)?;
            let (_, _, spki, _) = tlv(rest)?;
            Some(CertParts {
                issuer,
                subject,
                spki,
            })
        }
    }

    /// The last commonName of a Name (RDNSequence), as OpenSSL's X509_NAME lookups Postfix
    /// uses find the most specific one; `None` when there is none or it is not text.
    pub(super) fn common_name(name: &[u8]) -> Option<String> {
        const CN: &[u8] = &[0x55, 0x04, 0x03];
        let mut found = None;
        let mut rdns = name;
        while let Some((_, set, _, rest)) = tlv(rdns) {
            rdns = rest;
            let mut atvs = set;
            while let Some((_, atv, _, rest)) = tlv(atvs) {
                atvs = rest;
                let Some((0x06, oid, _, value)) = tlv(atv) else {
                    continue;
                };
                if oid != CN {
                    continue;
                }
                if let Some((_, text, _, _)) = tlv(value) {
                    found = std::str::from_utf8(text).ok().map(str::to_owned);
                }
            }
        }
        found
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_names_and_key_of_the_dev_certificate() {
            use rustls_pki_types::pem::PemObject;
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-cert.pem");
            let cert = rustls_pki_types::CertificateDer::from_pem_file(path).unwrap();
            let parts = CertParts::of(cert.as_ref()).unwrap();
            assert_eq!(common_name(parts.subject).as_deref(), Some("localhost"));
            assert_eq!(
                common_name(parts.issuer).as_deref(),
                Some("relayguard dev CA")
            );
            assert_eq!(parts.spki.first(), Some(&0x30));
        }

        #[test]
        fn truncated_input_is_none_not_a_panic() {
            for data in [
                &[][..],
                &[0x30],
                &[0x30, 0x85, 1, 2, 3, 4, 5],
                &[0x30, 0x10, 0],
            ] {
                assert!(CertParts::of(data).is_none());
            }
        }
    }
}
