//! What the session tells a policy service beyond the envelope (Postfix's policy attributes:
//! MAIL's SIZE= and AUTH=, the transaction's instance, the TLS session, the server address),
//! and the PREPEND headers policy servers hand back, kept for the message.

use super::Session;
use crate::net::client_cert::ClientCertCheck;
use crate::policy::{ClientCert, Decision, SessionFacts, PREPEND_NOTE};

/// The MAIL command's SIZE= and AUTH= values and the transaction's `instance`, for a policy
/// service (Postfix's msg_size, sasl_sender and instance); set at each MAIL.
#[derive(Debug, Default)]
pub(super) struct MailFacts {
    /// PREPEND headers from the MAIL stage, before the transaction exists.
    pub(super) prepend: Vec<String>,
    pub(super) size: u64,
    auth: Option<String>,
    instance: String,
    /// The id in relayguard's own Received: header for this transaction's message, if one
    /// was written (`trace_header`); the accepted-message log line repeats it.
    pub(super) received_id: Option<String>,
}

impl MailFacts {
    /// Facts for a new MAIL: an instance no other transaction of this process has had.
    pub(super) fn new(size: Option<u64>, auth: Option<&str>) -> Self {
        static TRANSACTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = TRANSACTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        MailFacts {
            prepend: Vec::new(),
            size: size.unwrap_or(0),
            // As smtpd_sasl_mail_opt keeps it: the raw value, none for `<>`.
            auth: auth.filter(|a| *a != "<>").map(str::to_owned),
            instance: format!("{:x}.{n:x}.0", crate::observe::process_id()),
            received_id: None,
        }
    }
}

/// The headers a decision asks to PREPEND.
pub(super) fn prepends(decision: &Decision) -> impl Iterator<Item = String> + '_ {
    decision
        .notes
        .iter()
        .filter(|n| n.action == PREPEND_NOTE)
        .map(|n| n.text.clone())
}

/// The negotiated TLS protocol and cipher, in the words a policy service is told, and the
/// client's certificate when the listener asked for one.
#[derive(Clone, Debug)]
pub struct TlsFacts {
    pub(super) protocol: &'static str,
    pub(super) cipher: &'static str,
    pub(super) keysize: u16,
    client_cert: Option<ClientCert>,
}

/// The OpenSSL name Postfix would send for a suite rustls negotiated, and its key bits.
fn openssl_name(suite: tokio_rustls::rustls::CipherSuite) -> (&'static str, u16) {
    use tokio_rustls::rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256 => ("TLS_AES_128_GCM_SHA256", 128),
        S::TLS13_AES_256_GCM_SHA384 => ("TLS_AES_256_GCM_SHA384", 256),
        S::TLS13_CHACHA20_POLY1305_SHA256 => ("TLS_CHACHA20_POLY1305_SHA256", 256),
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => ("ECDHE-RSA-AES128-GCM-SHA256", 128),
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => ("ECDHE-RSA-AES256-GCM-SHA384", 256),
        S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => ("ECDHE-RSA-CHACHA20-POLY1305", 256),
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => ("ECDHE-ECDSA-AES128-GCM-SHA256", 128),
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => ("ECDHE-ECDSA-AES256-GCM-SHA384", 256),
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => ("ECDHE-ECDSA-CHACHA20-POLY1305", 256),
        // rustls offers no other suite; say so rather than guess a name.
        _ => ("", 0),
    }
}

impl TlsFacts {
    /// The client's certificate, when the listener asked for one and it sent one.
    pub fn client_cert(&self) -> Option<&ClientCert> {
        self.client_cert.as_ref()
    }

    pub fn of(
        conn: &tokio_rustls::rustls::ServerConnection,
        client_certs: Option<&ClientCertCheck>,
    ) -> Option<Self> {
        use tokio_rustls::rustls::ProtocolVersion;
        let protocol = match conn.protocol_version()? {
            ProtocolVersion::TLSv1_3 => "TLSv1.3",
            ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "",
        };
        let (cipher, keysize) = openssl_name(conn.negotiated_cipher_suite()?.suite());
        Some(TlsFacts {
            protocol,
            cipher,
            keysize,
            client_cert: client_certs.and_then(|c| c.describe(conn)),
        })
    }
}

impl Session {
    /// For a session whose transport was encrypted before it started (implicit TLS).
    pub fn with_tls_facts(mut self, facts: Option<TlsFacts>) -> Self {
        self.tls_facts = facts.map(Box::new);
        self
    }

    /// Keeps the headers `decision` asks to prepend, for this transaction's message, whatever
    /// the command's outcome (Postfix adds them to the session's list as it meets them).
    pub(super) fn keep_prepends(&mut self, decision: &Decision) {
        let headers = prepends(decision);
        match self.heard.txn.as_mut() {
            Some(t) => t.prepend.extend(headers),
            None => self.mail_facts.prepend.extend(headers),
        }
    }

    /// What a policy service hears beyond the envelope; the MAIL values only while there is
    /// a sender (Postfix resets them with the transaction).
    pub(super) fn session_facts(&self, in_mail: bool) -> SessionFacts<'_> {
        let mail = (in_mail || self.heard.txn.is_some()).then_some(&self.mail_facts);
        let tls = self.tls_facts.as_ref().filter(|_| self.tls);
        SessionFacts {
            server: Some(self.local),
            sasl_method: self.heard.login.as_ref().map(|l| l.method.as_str()),
            sasl_sender: mail.and_then(|m| m.auth.as_deref()),
            tls_protocol: tls.map(|t| t.protocol),
            tls_cipher: tls.map(|t| t.cipher),
            tls_keysize: tls.map_or(0, |t| t.keysize),
            client_cert: tls.and_then(|t| t.client_cert.as_ref()),
            size: mail.map_or(0, |m| m.size),
            queue_id: "",
            instance: mail.map_or("", |m| m.instance.as_str()),
            recipients: self
                .heard
                .txn
                .as_ref()
                .map_or(&[], |t| t.recipients.as_slice()),
        }
    }
}
