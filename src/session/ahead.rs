//! The upstream leg opened ahead of need (`[upstream] open_ahead`): dialled, greeted and told
//! the client in a task of its own while the client reads its last reply and writes the next
//! command, instead of while the client waits.
//!
//! By default an accepted MAIL opens it and is answered at once, so only a client whose MAIL
//! passed costs the MTA a connection, as without; `"ehlo"` opens it after HELO/EHLO. The
//! held MAIL is written for the extensions the upstream offered last; a leg that offers less
//! is handled when it is there (`held_mail_for`).

use std::sync::Arc;

use super::Session;
use crate::config::OpenAhead;
use crate::smtp::command::{self, Command};
use crate::smtp::ehlo::Capabilities;
use crate::upstream::{UpstreamConn, UpstreamError};

pub(super) type Opening = tokio::task::JoinHandle<Result<UpstreamConn, UpstreamError>>;

impl Session {
    /// At an accepted MAIL: when the MAIL may be answered before the leg is there, the
    /// extensions it is to be written for (those the upstream offered last), with the leg
    /// opened ahead at EHLO or started now; `None` when the caller must open the leg itself.
    pub(super) fn ahead_at_mail(&mut self) -> Option<Arc<Capabilities>> {
        let settings = &self.ctx.snapshot.upstream;
        if !settings.defer_mail || self.upstream.is_some() {
            return None;
        }
        let offers = self.ctx.upstream.capabilities();
        if !offers.offers("PIPELINING") {
            return None;
        }
        let opening = self.opening.is_some()
            || (settings.open_ahead != OpenAhead::No && self.start_opening());
        opening.then_some(offers)
    }

    /// After an accepted HELO or EHLO, with `open_ahead = "ehlo"`: the leg opens now, unless
    /// STARTTLS may still come (it drops the leg) or postscreen holds the client.
    pub(super) fn ahead_at_helo(&mut self) {
        let starttls_to_come = !self.tls && self.rules().starttls_available;
        if self.ctx.snapshot.upstream.open_ahead == OpenAhead::Ehlo
            && !starttls_to_come
            && self.screened.is_none()
        {
            self.start_opening();
        }
    }

    /// Dials, greets and names the client in a task of its own; false when a leg is open or
    /// opening, or the session is past AUTH (only the leg that confirmed it may carry it).
    fn start_opening(&mut self) -> bool {
        if self.upstream.is_some() || self.opening.is_some() || self.heard.login.is_some() {
            return false;
        }
        let upstream = self.ctx.upstream.clone();
        let settings = self.ctx.snapshot.upstream.clone();
        let warm = self.ctx.warm.clone();
        let identity = self.identity();
        self.opening = Some(tokio::spawn(async move {
            upstream
                .connect(&settings, &identity, warm.as_deref())
                .await
        }));
        true
    }

    /// Waits for a leg being opened ahead and keeps it. `Err` when it could not be opened:
    /// the caller answers as for a leg it failed to open itself.
    pub(super) async fn settle_opening(&mut self) -> Result<(), UpstreamError> {
        let Some(opening) = self.opening.take() else {
            return Ok(());
        };
        let conn = opening
            .await
            .map_err(|e| UpstreamError::Io(std::io::Error::other(e)))??;
        self.upstream = Some(Box::new(conn));
        Ok(())
    }

    /// A leg still being opened that the session no longer wants (STARTTLS, the end): it is
    /// told QUIT once it is there, as an open leg would be.
    pub(super) fn abandon_opening(&mut self) {
        if let Some(opening) = self.opening.take() {
            tokio::spawn(async move {
                if let Ok(Ok(conn)) = opening.await {
                    conn.quit_without_reply();
                }
            });
        }
    }
}

/// The held MAIL line as `leg` takes it: written for the extensions offered last, it loses its
/// `SIZE=` on a leg that does not offer SIZE.
pub(super) fn held_mail_for(leg: &Capabilities, line: Vec<u8>) -> Vec<u8> {
    if leg.offers("SIZE") {
        return line;
    }
    let text = line.strip_suffix(b"\r\n").unwrap_or(&line);
    match command::parse(text) {
        Ok(Command::Mail { from, mut params }) if params.size.is_some() => {
            params.size = None;
            let mut out = Vec::with_capacity(line.len());
            Command::Mail { from, params }.write_to(&mut out);
            out
        }
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::held_mail_for;
    use crate::smtp::ehlo::Capabilities;
    use crate::smtp::response::parse_reply;

    fn offering(keywords: &str) -> Capabilities {
        let text = format!("250-mx.example\r\n{keywords}250 8BITMIME\r\n");
        let (reply, _) = parse_reply(text.as_bytes()).unwrap().unwrap();
        Capabilities::from_ehlo(&reply)
    }

    const MAIL: &[u8] = b"MAIL FROM:<s@sender.example> SIZE=5120 BODY=8BITMIME\r\n";

    #[test]
    fn a_leg_that_offers_size_takes_the_line_as_written() {
        let leg = offering("250-SIZE 10240000\r\n250-PIPELINING\r\n");
        assert_eq!(held_mail_for(&leg, MAIL.to_vec()), MAIL);
    }

    #[test]
    fn a_leg_without_size_gets_the_mail_without_size() {
        let leg = offering("250-PIPELINING\r\n");
        let line = held_mail_for(&leg, MAIL.to_vec());
        assert_eq!(line, b"MAIL FROM:<s@sender.example> BODY=8BITMIME\r\n");
    }
}
