//! Start-up checks of the upstream: what it offers, and whether it would relay for relayguard's
//! own address (the classic "the proxy is in mynetworks" open relay).
//!
//! Only a definite refusal of the relay test counts as closed; whatever else the upstream says
//! is [`TrustBoundary::Inconclusive`], never a pass. Retrying and reporting are the caller's.

use super::conn::UpstreamError;
use super::connect;
use crate::config::{UpstreamSettings, UpstreamTarget};
use crate::smtp::ehlo::Capabilities;
use crate::smtp::Reply;

/// The recipient used to test relaying: a reserved domain that can never be local (RFC 2606).
pub const PROBE_RECIPIENT: &str = "relayguard-open-relay-probe@relay-check.invalid";

#[derive(Debug)]
pub enum TrustBoundary {
    /// The upstream refused the relay test recipient for relayguard's own identity: good.
    Closed(Reply),
    /// The upstream accepted a foreign recipient from relayguard itself: an open relay for
    /// anyone who reaches it without relayguard's identity forwarding.
    OpenRelay(Reply),
    /// The test did not get as far as a verdict on the recipient, or the verdict was not a
    /// definite refusal: `command` got `reply`. Says nothing about relaying either way.
    Inconclusive { command: String, reply: Reply },
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
            let mail_line = "MAIL FROM:<>";
            let mail = conn.command(format!("{mail_line}\r\n").as_bytes()).await?;
            if (200..300).contains(&mail.code) {
                let rcpt_line = format!("RCPT TO:<{PROBE_RECIPIENT}>");
                let rcpt = conn.command(format!("{rcpt_line}\r\n").as_bytes()).await?;
                let _ = conn.command(b"RSET\r\n").await;
                judge_rcpt(rcpt_line, rcpt)
            } else {
                // A refused MAIL FROM:<> is about the sender (a rule against the null sender,
                // a policy service down), not about the recipient: with another sender the
                // same upstream may still relay, so even a 5xx here decides nothing.
                TrustBoundary::Inconclusive {
                    command: mail_line.to_owned(),
                    reply: mail,
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

/// The verdict on the relay test recipient.
fn judge_rcpt(command: String, reply: Reply) -> TrustBoundary {
    if (200..300).contains(&reply.code) {
        TrustBoundary::OpenRelay(reply)
    } else if is_definite_refusal(&reply) {
        TrustBoundary::Closed(reply)
    } else {
        TrustBoundary::Inconclusive { command, reply }
    }
}

/// A refusal of the relay test recipient that will not turn into an acceptance by asking
/// again: any 5xx, or Postfix's own relay verdict in its default configuration,
/// `defer_unauth_destination` (`454 4.7.1 <rcpt>: Relay access denied`, postfix-semantics 2.4),
/// which is temporary only so that a configuration mistake does not bounce mail. Any other
/// 4xx (`451 4.3.0` lookup failure, greylisting, a policy service down, a 421) means the
/// upstream did not get to judge the recipient, so it proves nothing.
fn is_definite_refusal(reply: &Reply) -> bool {
    reply.is_permanent()
        || (reply.code == 454
            && reply
                .enhanced
                .is_some_and(|e| (e.class, e.subject, e.detail) == (4, 7, 1))
            && reply.text().ends_with("Relay access denied"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(reply: Reply) -> TrustBoundary {
        judge_rcpt(format!("RCPT TO:<{PROBE_RECIPIENT}>"), reply)
    }

    #[test]
    fn a_permanent_refusal_or_postfix_default_relay_deferral_is_closed() {
        for reply in [
            Reply::new(
                554,
                (5, 7, 1),
                "<x@relay-check.invalid>: Relay access denied",
            ),
            Reply::new(550, (5, 1, 1), "<x@relay-check.invalid>: User unknown"),
            Reply::new(
                454,
                (4, 7, 1),
                "<x@relay-check.invalid>: Relay access denied",
            ),
        ] {
            assert!(
                matches!(rcpt(reply.clone()), TrustBoundary::Closed(r) if r == reply),
                "{reply}"
            );
        }
    }

    #[test]
    fn an_accepted_recipient_is_an_open_relay() {
        let ok = Reply::new(250, (2, 1, 5), "Ok");
        assert!(matches!(rcpt(ok.clone()), TrustBoundary::OpenRelay(r) if r == ok));
        let odd = Reply::plain(252, "Cannot VRFY user, but will accept message");
        assert!(matches!(rcpt(odd), TrustBoundary::OpenRelay(_)));
    }

    #[test]
    fn other_temporary_or_odd_replies_decide_nothing() {
        for reply in [
            Reply::new(
                451,
                (4, 3, 0),
                "<x@relay-check.invalid>: Temporary lookup failure",
            ),
            Reply::new(450, (4, 7, 1), "<x@relay-check.invalid>: Greylisted"),
            Reply::new(454, (4, 7, 1), "Try again later"),
            Reply::new(421, (4, 4, 2), "mx Error: timeout exceeded"),
            Reply::plain(354, "go ahead"),
        ] {
            assert!(
                matches!(
                    rcpt(reply.clone()),
                    TrustBoundary::Inconclusive { command, reply: r }
                        if r == reply && command == format!("RCPT TO:<{PROBE_RECIPIENT}>")
                ),
                "{reply}"
            );
        }
    }
}
