//! Every fixed reply the session writes itself, with Postfix 3.7's exact texts.
//!
//! One place, so the wording is checked once and grep finds it. Texts come from
//! postfix-semantics.md section 9 (and 7.2 for AUTH) unless a line says "ours": those are
//! situations Postfix has no reply for, worded in Postfix's style. Replies that name the host
//! take it as an argument (`$myhostname`). Nothing here decides *when* a reply is due.

use super::reply::Reply;

/// `220 {host} ESMTP {banner}`: Postfix's default `smtpd_banner` is `$myhostname ESMTP
/// $mail_name`, so `greeting("mx.example", "Postfix")` is what clients and fail2ban expect.
pub fn greeting(host: &str, banner: &str) -> Reply {
    Reply::plain(220, format!("{host} ESMTP {banner}"))
}

/// `250 {host}`: the HELO reply (no enhanced code on HELO/EHLO replies).
pub fn helo(host: &str) -> Reply {
    Reply::plain(250, host.to_owned())
}

/// `250 2.0.0 Ok` (RSET, NOOP).
pub fn ok() -> Reply {
    Reply::new(250, (2, 0, 0), "Ok")
}

/// `250 2.1.0 Ok` (MAIL accepted).
pub fn mail_ok() -> Reply {
    Reply::new(250, (2, 1, 0), "Ok")
}

/// `250 2.1.5 Ok` (RCPT accepted).
pub fn rcpt_ok() -> Reply {
    Reply::new(250, (2, 1, 5), "Ok")
}

/// `221 2.0.0 Bye` (QUIT).
pub fn bye() -> Reply {
    Reply::new(221, (2, 0, 0), "Bye")
}

/// `354 End data with <CR><LF>.<CR><LF>`.
pub fn start_data() -> Reply {
    Reply::plain(354, "End data with <CR><LF>.<CR><LF>")
}

pub fn nested_mail() -> Reply {
    Reply::new(503, (5, 5, 1), "Error: nested MAIL command")
}

pub fn need_mail() -> Reply {
    Reply::new(503, (5, 5, 1), "Error: need MAIL command")
}

/// Also Postfix's answer to DATA with no transaction open (sic) and to BDAT without RCPT.
pub fn need_rcpt() -> Reply {
    Reply::new(503, (5, 5, 1), "Error: need RCPT command")
}

pub fn no_valid_recipients() -> Reply {
    Reply::new(554, (5, 5, 1), "Error: no valid recipients")
}

/// MAIL with `SIZE=` above `message_size_limit`.
pub fn message_size_exceeds_limit() -> Reply {
    Reply::new(552, (5, 3, 4), "Message size exceeds fixed limit")
}

/// After the end of data when the body was larger than `message_size_limit`.
pub fn message_file_too_big() -> Reply {
    Reply::new(552, (5, 3, 4), "Error: message file too big")
}

/// A BDAT chunk that takes the message past `message_size_limit` [src].
pub fn chunk_exceeds_limit() -> Reply {
    Reply::new(552, (5, 3, 4), "Chunk exceeds message size limit")
}

pub fn too_many_recipients() -> Reply {
    Reply::new(452, (4, 5, 3), "Error: too many recipients")
}

pub fn data_after_bdat() -> Reply {
    Reply::new(503, (5, 5, 1), "Error: DATA after BDAT")
}

pub fn rcpt_after_bdat() -> Reply {
    Reply::new(503, (5, 5, 1), "Error: RCPT after BDAT")
}

pub fn mail_after_bdat() -> Reply {
    Reply::new(503, (5, 5, 1), "Error: MAIL after BDAT")
}

/// A BDAT chunk taken that is not the last: Postfix counts the client's bytes, as sent.
pub fn chunk_ok(bytes: u64) -> Reply {
    Reply::new(250, (2, 0, 0), format!("Ok: {bytes} bytes"))
}

/// `BDAT 0` without LAST [src smtpd.c]: read as nothing, and the chunks after it are discarded.
pub fn null_bdat() -> Reply {
    Reply::new(551, (5, 7, 1), "Null BDAT request")
}

/// BDAT where CHUNKING is not offered [src smtpd.c]: 521, so the session hangs up, because
/// the bytes after the command line are message content that would run as commands.
pub fn bdat_not_implemented() -> Reply {
    Reply::new(521, (5, 5, 1), "Error: command not implemented")
}

/// A BDAT chunk read and thrown away after an earlier error in the same BDAT sequence.
pub fn discarded_after_error(bytes: u64) -> Reply {
    Reply::new(
        551,
        (5, 0, 0),
        format!("Discarded {bytes} bytes after earlier error"),
    )
}

pub fn ready_to_start_tls() -> Reply {
    Reply::new(220, (2, 0, 0), "Ready to start TLS")
}

pub fn tls_already_active() -> Reply {
    Reply::new(554, (5, 5, 1), "Error: TLS already active")
}

/// STARTTLS without TLS configured (and any other command relayguard does not implement).
pub fn command_not_implemented() -> Reply {
    Reply::new(502, (5, 5, 1), "Error: command not implemented")
}

/// The unknown-command reply (500, not 502). Postfix gives it to `HELP` too.
pub fn command_not_recognized() -> Reply {
    Reply::new(500, (5, 5, 2), "Error: command not recognized")
}

pub fn tls_not_available() -> Reply {
    Reply::new(454, (4, 7, 0), "TLS not available due to local problem")
}

/// `smtpd_tls_security_level = encrypt` and a command other than EHLO/HELO/STARTTLS/NOOP/QUIT.
pub fn must_issue_starttls() -> Reply {
    Reply::new(530, (5, 7, 0), "Must issue a STARTTLS command first")
}

pub fn send_helo_first() -> Reply {
    Reply::new(503, (5, 5, 1), "Error: send HELO/EHLO first")
}

pub fn auth_not_enabled() -> Reply {
    Reply::new(503, (5, 5, 1), "Error: authentication not enabled")
}

pub fn already_authenticated() -> Reply {
    Reply::new(503, (5, 5, 1), "Error: already authenticated")
}

/// AUTH between MAIL and the end of DATA.
pub fn mail_transaction_in_progress() -> Reply {
    Reply::new(503, (5, 5, 1), "Error: MAIL transaction in progress")
}

/// The client answered a 334 challenge with `*`.
pub fn auth_aborted() -> Reply {
    Reply::new(501, (5, 7, 0), "Authentication aborted")
}

/// A SASL response line longer than `smtpd_sasl_response_limit` [src].
pub fn sasl_response_too_long() -> Reply {
    Reply::new(500, (5, 5, 6), "SASL response limit exceeded")
}

/// `MAIL FROM:<...> AUTH=x AUTH=y`.
pub fn multiple_auth_options() -> Reply {
    Reply::new(503, (5, 5, 4), "Error: multiple AUTH= options")
}

/// No command within `smtpd_timeout`, or a stalled DATA. The connection closes.
pub fn timeout_exceeded(host: &str) -> Reply {
    Reply::new(421, (4, 4, 2), format!("{host} Error: timeout exceeded"))
}

/// A connection relayguard will not serve (a bad, missing or untrusted PROXY header, a local
/// fault). The connection closes. Postfix's exact text for a failed haproxy header
/// (postfix-semantics 12.3).
pub fn server_local_error(host: &str) -> Reply {
    Reply::new(421, (4, 3, 0), format!("{host} Server local error"))
}

/// relayguard is draining for shutdown or reload. Ours; RFC 3463 X.3.2 is "system not
/// accepting network messages". The connection closes.
pub fn shutting_down(host: &str) -> Reply {
    Reply::new(
        421,
        (4, 3, 2),
        format!("{host} Error: service shutting down"),
    )
}

/// A listener at `max_connections` (Postfix's anvil text for a client over its limit).
pub fn too_many_connections(host: &str) -> Reply {
    Reply::new(
        421,
        (4, 7, 0),
        format!("{host} Error: too many connections"),
    )
}

/// The upstream cannot be reached or dropped the connection outside a message: ours, worded
/// like Postfix's 421s. The session closes, since relayguard has no queue to fall back on.
pub fn upstream_unavailable(host: &str) -> Reply {
    Reply::new(
        421,
        (4, 3, 0),
        format!("{host} Error: upstream server unavailable"),
    )
}

/// The upstream failed while a message was being handed on (it closed, timed out, or answered
/// nonsense during DATA/BDAT). This is Postfix's own text when its cleanup daemon fails, so
/// clients retry the message exactly as they would with Postfix; the session may go on.
pub fn queue_file_write_error() -> Reply {
    Reply::new(451, (4, 3, 0), "Error: queue file write error")
}

/// `252 2.0.0 {address}` for VRFY (Postfix does not confirm; it echoes the address).
pub fn vrfy_cannot_verify(address: &str) -> Reply {
    Reply::new(252, (2, 0, 0), address.to_owned())
}

/// VRFY with `disable_vrfy_command = yes`.
pub fn vrfy_disabled() -> Reply {
    Reply::new(502, (5, 5, 1), "VRFY command is disabled")
}

/// HELP. Postfix 3.7 has no HELP command and answers [`command_not_recognized`] (checked live);
/// a session that wants to look exactly like Postfix sends that instead. Ours otherwise.
pub fn help() -> Reply {
    Reply::new(214, (2, 0, 0), "See https://www.rfc-editor.org/rfc/rfc5321")
}

/// A command line longer than the line limit, answered once after its end was discarded.
/// Ours: Postfix truncates at `line_length_limit` instead; RFC 5321 4.5.3.1.4 suggests 500.
pub fn line_too_long() -> Reply {
    Reply::new(500, (5, 5, 2), "Error: line too long")
}

/// Client input that is not SMTP (HTTP verbs, header lines): reply, then close.
pub fn non_smtp_command() -> Reply {
    Reply::new(221, (2, 7, 0), "Error: I can break rules, too. Goodbye.")
}

/// A DATA body with a bare LF (Postfix `smtpd_forbid_bare_newline = reject`, exact text).
pub fn bare_lf(host: &str) -> Reply {
    Reply::new(550, (5, 5, 2), format!("{host} Error: bare <LF> received"))
}

/// A DATA body with a bare CR. Ours, the same form as [`bare_lf`].
pub fn bare_cr(host: &str) -> Reply {
    Reply::new(550, (5, 5, 2), format!("{host} Error: bare <CR> received"))
}

/// A DATA body with a NUL byte. Ours, the same form as [`bare_lf`].
pub fn nul_in_body(host: &str) -> Reply {
    Reply::new(
        550,
        (5, 5, 2),
        format!("{host} Error: NUL character received"),
    )
}

/// A DATA body line over 998 octets. Ours, the same form as [`bare_lf`].
pub fn body_line_too_long(host: &str) -> Reply {
    Reply::new(
        550,
        (5, 5, 2),
        format!("{host} Error: message line too long"),
    )
}

/// `smtpd_forbid_unauth_pipelining = yes` and an improperly pipelined command; then close.
pub fn pipelining_sync_error() -> Reply {
    Reply::new(554, (5, 5, 0), "Error: SMTP protocol synchronization")
}

/// A SASL response that is not base64 (Dovecot's reason, as Postfix relays it).
pub fn auth_bad_response() -> Reply {
    Reply::new(
        535,
        (5, 7, 8),
        "Error: authentication failed: Invalid base64 data in continued response",
    )
}

/// A DSN parameter (RET, ENVID, NOTIFY, ORCPT) from a client whose EHLO reply discarded DSN.
pub fn dsn_disabled() -> Reply {
    Reply::new(501, (5, 7, 1), "DSN support is disabled")
}

/// AUTH with a mechanism the security options do not allow (Dovecot's reason, as Postfix
/// relays it from xsasl_dovecot_server_first).
pub fn invalid_auth_mechanism() -> Reply {
    Reply::new(
        535,
        (5, 7, 8),
        "Error: authentication failed: Invalid authentication mechanism",
    )
}

/// smtpd_hard_error_limit reached (Postfix: 20 errors). The connection closes.
pub fn too_many_errors(host: &str) -> Reply {
    Reply::new(421, (4, 7, 0), format!("{host} Error: too many errors"))
}

/// The upstream could not be asked about the credentials (Postfix's reply for a lost SASL backend).
pub fn temporary_auth_failure() -> Reply {
    Reply::new(
        454,
        (4, 7, 0),
        "Temporary authentication failure: (reason unavailable)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn exact_wire_texts() {
        let h = "mx.relayguard.test";
        let cases = [
            (
                greeting(h, "Postfix"),
                "220 mx.relayguard.test ESMTP Postfix\r\n",
            ),
            (helo(h), "250 mx.relayguard.test\r\n"),
            (ok(), "250 2.0.0 Ok\r\n"),
            (mail_ok(), "250 2.1.0 Ok\r\n"),
            (rcpt_ok(), "250 2.1.5 Ok\r\n"),
            (bye(), "221 2.0.0 Bye\r\n"),
            (start_data(), "354 End data with <CR><LF>.<CR><LF>\r\n"),
            (nested_mail(), "503 5.5.1 Error: nested MAIL command\r\n"),
            (need_mail(), "503 5.5.1 Error: need MAIL command\r\n"),
            (need_rcpt(), "503 5.5.1 Error: need RCPT command\r\n"),
            (
                no_valid_recipients(),
                "554 5.5.1 Error: no valid recipients\r\n",
            ),
            (
                message_size_exceeds_limit(),
                "552 5.3.4 Message size exceeds fixed limit\r\n",
            ),
            (
                message_file_too_big(),
                "552 5.3.4 Error: message file too big\r\n",
            ),
            (
                chunk_exceeds_limit(),
                "552 5.3.4 Chunk exceeds message size limit\r\n",
            ),
            (
                too_many_recipients(),
                "452 4.5.3 Error: too many recipients\r\n",
            ),
            (data_after_bdat(), "503 5.5.1 Error: DATA after BDAT\r\n"),
            (rcpt_after_bdat(), "503 5.5.1 Error: RCPT after BDAT\r\n"),
            (mail_after_bdat(), "503 5.5.1 Error: MAIL after BDAT\r\n"),
            (chunk_ok(4), "250 2.0.0 Ok: 4 bytes\r\n"),
            (null_bdat(), "551 5.7.1 Null BDAT request\r\n"),
            (
                bdat_not_implemented(),
                "521 5.5.1 Error: command not implemented\r\n",
            ),
            (
                discarded_after_error(12),
                "551 5.0.0 Discarded 12 bytes after earlier error\r\n",
            ),
            (ready_to_start_tls(), "220 2.0.0 Ready to start TLS\r\n"),
            (
                tls_already_active(),
                "554 5.5.1 Error: TLS already active\r\n",
            ),
            (
                command_not_implemented(),
                "502 5.5.1 Error: command not implemented\r\n",
            ),
            (
                command_not_recognized(),
                "500 5.5.2 Error: command not recognized\r\n",
            ),
            (
                tls_not_available(),
                "454 4.7.0 TLS not available due to local problem\r\n",
            ),
            (
                must_issue_starttls(),
                "530 5.7.0 Must issue a STARTTLS command first\r\n",
            ),
            (
                send_helo_first(),
                "503 5.5.1 Error: send HELO/EHLO first\r\n",
            ),
            (
                auth_not_enabled(),
                "503 5.5.1 Error: authentication not enabled\r\n",
            ),
            (
                already_authenticated(),
                "503 5.5.1 Error: already authenticated\r\n",
            ),
            (
                mail_transaction_in_progress(),
                "503 5.5.1 Error: MAIL transaction in progress\r\n",
            ),
            (auth_aborted(), "501 5.7.0 Authentication aborted\r\n"),
            (
                sasl_response_too_long(),
                "500 5.5.6 SASL response limit exceeded\r\n",
            ),
            (
                multiple_auth_options(),
                "503 5.5.4 Error: multiple AUTH= options\r\n",
            ),
            (
                timeout_exceeded(h),
                "421 4.4.2 mx.relayguard.test Error: timeout exceeded\r\n",
            ),
            (
                server_local_error(h),
                "421 4.3.0 mx.relayguard.test Server local error\r\n",
            ),
            (
                shutting_down(h),
                "421 4.3.2 mx.relayguard.test Error: service shutting down\r\n",
            ),
            (
                upstream_unavailable(h),
                "421 4.3.0 mx.relayguard.test Error: upstream server unavailable\r\n",
            ),
            (
                queue_file_write_error(),
                "451 4.3.0 Error: queue file write error\r\n",
            ),
            (
                vrfy_cannot_verify("x@local.test"),
                "252 2.0.0 x@local.test\r\n",
            ),
            (vrfy_disabled(), "502 5.5.1 VRFY command is disabled\r\n"),
            (
                help(),
                "214 2.0.0 See https://www.rfc-editor.org/rfc/rfc5321\r\n",
            ),
            (line_too_long(), "500 5.5.2 Error: line too long\r\n"),
            (
                non_smtp_command(),
                "221 2.7.0 Error: I can break rules, too. Goodbye.\r\n",
            ),
            (
                bare_lf(h),
                "550 5.5.2 mx.relayguard.test Error: bare <LF> received\r\n",
            ),
            (
                bare_cr(h),
                "550 5.5.2 mx.relayguard.test Error: bare <CR> received\r\n",
            ),
            (
                nul_in_body(h),
                "550 5.5.2 mx.relayguard.test Error: NUL character received\r\n",
            ),
            (
                body_line_too_long(h),
                "550 5.5.2 mx.relayguard.test Error: message line too long\r\n",
            ),
            (
                pipelining_sync_error(),
                "554 5.5.0 Error: SMTP protocol synchronization\r\n",
            ),
        ];
        for (reply, expected) in cases {
            assert_eq!(wire(reply), expected);
        }
    }

    #[test]
    fn closing_replies() {
        assert!(timeout_exceeded("h").closes_connection());
        assert!(upstream_unavailable("h").closes_connection());
        assert!(shutting_down("h").closes_connection());
        assert!(!queue_file_write_error().closes_connection());
    }
}
