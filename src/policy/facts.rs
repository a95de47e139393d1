//! What the session tells the engine: the client, the command's facts, the stage, the host.

use std::net::IpAddr;

/// The client as the policy sees it. `name` is the forward-confirmed name or `unknown`;
/// `reverse_name` the PTR name or `unknown` (Postfix's client_name / reverse_client_name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub addr: IpAddr,
    pub port: u16,
    pub name: String,
    pub reverse_name: String,
    /// How the lookups behind `name` and `reverse_name` ended.
    pub name_status: NameStatus,
    pub reverse_status: NameStatus,
}

/// How a client-name lookup ended (Postfix's SMTPD_PEER_CODE_*): reject_unknown_client_hostname
/// answers a temporary failure with 450 whatever its configured code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NameStatus {
    Ok,
    /// No name, or one that does not resolve back to the address.
    #[default]
    Permanent,
    /// The DNS did not answer in time or failed for now.
    Temporary,
}

impl Client {
    /// A client whose name is not (yet) known: `unknown[ADDR]` in replies and logs.
    pub fn unnamed(addr: IpAddr, port: u16) -> Self {
        Self {
            addr,
            port,
            name: "unknown".into(),
            reverse_name: "unknown".into(),
            name_status: NameStatus::Permanent,
            reverse_status: NameStatus::Permanent,
        }
    }
}

/// What is known about the session when a decision is asked for.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub client: &'a Client,
    /// The HELO/EHLO argument, once given (and not rejected).
    pub helo: Option<&'a str>,
    /// True after EHLO (Postfix's `proto=ESMTP`).
    pub esmtp: bool,
    /// The SASL login after the upstream answered 235.
    pub login: Option<&'a str>,
    pub tls: bool,
    /// MAIL FROM address without brackets; `Some("")` for the null sender.
    pub sender: Option<&'a str>,
    /// The RCPT TO (or VRFY) address being decided, without brackets.
    pub recipient: Option<&'a str>,
    /// The listener's name, for logs and reasons.
    pub listener: &'a str,
    /// The session saw the client send commands ahead of replies where that is not allowed
    /// (smtpd_flag_ill_pipelining); sticky for the session. Used by reject_unauth_pipelining.
    pub improper_pipelining: bool,
    /// The rest of what Postfix tells a policy service (check_policy_service); empty
    /// by default, and read by nothing else.
    pub session: SessionFacts<'a>,
}

/// What a policy-service request carries beyond the envelope (postfix-semantics 11.1).
/// Everything defaults to empty or zero, which is what Postfix sends when it does not know.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionFacts<'a> {
    /// The address the client connected to (`server_address`, `server_port`).
    pub server: Option<std::net::SocketAddr>,
    /// The SASL mechanism of the login in [`Facts::login`].
    pub sasl_method: Option<&'a str>,
    /// The MAIL FROM `AUTH=` value.
    pub sasl_sender: Option<&'a str>,
    /// The TLS protocol (`TLSv1.3`), cipher and its key size, once encrypted.
    pub tls_protocol: Option<&'a str>,
    pub tls_cipher: Option<&'a str>,
    pub tls_keysize: u16,
    /// The MAIL FROM `SIZE=` value, or the message's size at end of data.
    pub size: u64,
    /// Postfix's queue ID; relayguard queues nothing, so it stays empty.
    pub queue_id: &'a str,
    /// An identifier constant within one transaction (Postfix's `instance`).
    pub instance: &'a str,
    /// The transaction's accepted recipients (for DATA and END-OF-MESSAGE).
    pub recipients: &'a [String],
    /// The certificate the client presented in the TLS handshake (smtpd_tls_ask_ccert).
    pub client_cert: Option<&'a super::ClientCert>,
}

/// The SMTP stage a decision is for; Postfix's reject log lines name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Vrfy,
    Data,
    EndOfData,
}

impl Stage {
    /// The stage word in Postfix log lines (`reject: RCPT from ...`).
    pub fn log_word(self) -> &'static str {
        match self {
            Stage::Connect => "CONNECT",
            Stage::Helo => "HELO",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Vrfy => "VRFY",
            Stage::Data => "DATA",
            Stage::EndOfData => "END-OF-MESSAGE",
        }
    }
}

/// The host relayguard runs on, as the engine needs it for `mynetworks_style`, `inet_interfaces`
/// and `$myhostname`; supplied by the caller so the engine stays pure.
#[derive(Clone, Debug, Default)]
pub struct HostInfo {
    /// Interface addresses with their prefix lengths (e.g. `127.0.0.1/8`, `192.0.2.2/24`).
    pub interfaces: Vec<(IpAddr, u8)>,
    /// The system host name, used when `myhostname` is not set.
    pub hostname: Option<String>,
}

impl HostInfo {
    /// Loopback only: `127.0.0.1/8` and `::1/128`, host name `localhost`.
    pub fn loopback() -> Self {
        HostInfo {
            interfaces: vec![
                (IpAddr::V4([127, 0, 0, 1].into()), 8),
                (IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 128),
            ],
            hostname: Some("localhost".into()),
        }
    }
}
