//! Start-up checks of the upstream: what it offers, and whether it would relay for relayguard's
//! own address (the classic "the proxy is in mynetworks" open relay).

use super::conn::UpstreamError;
use super::connect;
use crate::config::{UpstreamSettings, UpstreamTarget};
use crate::smtp::ehlo::Capabilities;
use crate::smtp::Reply;

/// The recipient used to test relaying: a reserved domain that can never be local (RFC 2606).
pub const PROBE_RECIPIENT: &str = "relayguard-open-relay-probe@relay-check.invalid";

#[derive(Debug)]
pub enum TrustBoundary {
    /// The upstream refused to relay for relayguard's own identity: good.
    Closed(Reply),
    /// The upstream accepted a foreign recipient from relayguard itself: an open relay for
    /// anyone who reaches it without relayguard's identity forwarding.
    OpenRelay(Reply),
    /// Not applicable (the built-in Maildir agent delivers locally only).
    NotChecked,
}

#[derive(Debug)]
pub struct ProbeReport {
    pub capabilities: Capabilities,
    pub trust: TrustBoundary,
}

/// EHLOs as relayguard itself and tries one relay recipient; the transaction is reset and
/// nothing is sent.
pub async fn probe(settings: &UpstreamSettings) -> Result<ProbeReport, UpstreamError> {
    let mut conn = connect::open(settings, None).await?;
    let capabilities = conn.capabilities().clone();
    let trust = match settings.target {
        UpstreamTarget::Maildir { .. } => TrustBoundary::NotChecked,
        UpstreamTarget::Smtp { .. } => {
            let mail = conn.command(b"MAIL FROM:<>\r\n").await?;
            if mail.code != 250 {
                TrustBoundary::Closed(mail)
            } else {
                let rcpt = conn
                    .command(format!("RCPT TO:<{PROBE_RECIPIENT}>\r\n").as_bytes())
                    .await?;
                let _ = conn.command(b"RSET\r\n").await;
                if rcpt.is_positive() {
                    TrustBoundary::OpenRelay(rcpt)
                } else {
                    TrustBoundary::Closed(rcpt)
                }
            }
        }
    };
    conn.quit().await;
    Ok(ProbeReport {
        capabilities,
        trust,
    })
}
