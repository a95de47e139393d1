//! The built-in Maildir upstream: a small SMTP server, served in-process over a pipe, that writes
//! each accepted message into a Maildir. For trying relayguard and for tests.
//!
//! It is a peer like any MTA: the session reaches it through the same upstream code path and
//! knows nothing about it. It trusts XCLIENT from relayguard so the Received: header it writes
//! names the real client.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::net::stream::BoxStream;
use crate::observe::time::Civil;
use crate::smtp::command::{parse, Command};
use crate::smtp::line::{next_line, LineScan};
use crate::smtp::xtext;

const PIPE_BUFFER: usize = 64 * 1024;
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// Starts a Maildir SMTP server for one connection and returns relayguard's end of the pipe.
pub fn connect(root: PathBuf) -> BoxStream {
    let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
    tokio::spawn(async move {
        if let Err(e) = serve(theirs, &root).await {
            tracing::warn!("maildir upstream: {e}");
        }
    });
    Box::new(ours)
}

#[derive(Default)]
struct Envelope {
    client: String,
    client_name: String,
    /// Empty until HELO/EHLO, and again after an XCLIENT without HELO.
    helo: String,
    esmtp: bool,
    sender: Option<String>,
    recipients: Vec<String>,
}

async fn serve(mut io: DuplexStream, root: &Path) -> std::io::Result<()> {
    let host = "maildir.relayguard";
    io.write_all(format!("220 {host} ESMTP relayguard-maildir\r\n").as_bytes())
        .await?;
    let mut buf = Vec::with_capacity(4096);
    let mut env = Envelope {
        client: "unknown".into(),
        client_name: "unknown".into(),
        ..Envelope::default()
    };
    loop {
        let (reply, consumed, data) = match next_line(&buf, 4096) {
            LineScan::Incomplete => {
                if io.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
                continue;
            }
            LineScan::TooLong { consumed, .. } => (
                "500 5.5.0 Error: line too long\r\n".to_owned(),
                consumed,
                false,
            ),
            LineScan::Complete { line, consumed } => {
                let (reply, data) = answer(line, &mut env, host);
                (reply, consumed, data)
            }
        };
        buf.drain(..consumed);
        if reply.starts_with("221") {
            // A leg that said QUIT does not wait for the 221 (`quit_without_reply`): it may
            // be gone already, and that is no error.
            let _ = io.write_all(reply.as_bytes()).await;
            return Ok(());
        }
        io.write_all(reply.as_bytes()).await?;
        if data {
            let Some(reply) = receive_body(&mut io, &mut buf, &env, root).await? else {
                // The peer hung up inside the body. relayguard does that on purpose whenever
                // it refuses a message after DATA went upstream (a body rule, the end-of-data
                // policy), since SMTP has no other way to abort one: a client gone, as
                // Postfix's `lost connection after DATA`, and no error.
                return Ok(());
            };
            io.write_all(reply.as_bytes()).await?;
            env.sender = None;
            env.recipients.clear();
        }
    }
}

/// The reply to one command line, and whether a DATA body follows.
fn answer(line: &[u8], env: &mut Envelope, host: &str) -> (String, bool) {
    if line.len() > 8 && line[..8].eq_ignore_ascii_case(b"XCLIENT ") {
        // As Postfix: HELO and PROTO an XCLIENT leaves out are reset, not kept (the proxy's own
        // EHLO must not become the client's HELO).
        env.helo.clear();
        env.esmtp = false;
        for attr in String::from_utf8_lossy(&line[8..]).split(' ') {
            let Some((name, value)) = attr.split_once('=') else {
                continue;
            };
            let value = xtext::decode(value.as_bytes())
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_else(|_| value.to_owned());
            match name.to_ascii_uppercase().as_str() {
                "ADDR" => env.client = value.trim_start_matches("IPV6:").to_owned(),
                "NAME" if value.starts_with('[') => env.client_name = "unknown".into(),
                "NAME" => env.client_name = value,
                "HELO" => env.helo = value,
                "PROTO" => env.esmtp = value.eq_ignore_ascii_case("ESMTP"),
                _ => {}
            }
        }
        return (format!("220 {host} ESMTP relayguard-maildir\r\n"), false);
    }
    let reply = match parse(line) {
        Ok(Command::Ehlo(name)) => {
            env.helo = name.to_owned();
            env.esmtp = true;
            return (
                format!(
                    "250-{host}\r\n250-PIPELINING\r\n250-SIZE 0\r\n250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
                ),
                false,
            );
        }
        Ok(Command::Helo(name)) => {
            env.helo = name.to_owned();
            env.esmtp = false;
            format!("250 {host}")
        }
        Ok(Command::Mail { from, .. }) => {
            env.sender = Some(from.to_owned());
            env.recipients.clear();
            "250 2.1.0 Ok".into()
        }
        Ok(Command::Rcpt { to, .. }) if env.sender.is_some() => {
            env.recipients.push(to.to_owned());
            "250 2.1.5 Ok".into()
        }
        Ok(Command::Rcpt { .. }) => "503 5.5.1 Error: need MAIL command".into(),
        Ok(Command::Data) if env.recipients.is_empty() => {
            "554 5.5.1 Error: no valid recipients".into()
        }
        Ok(Command::Data) => return ("354 End data with <CR><LF>.<CR><LF>\r\n".into(), true),
        Ok(Command::Rset) => {
            env.sender = None;
            env.recipients.clear();
            "250 2.0.0 Ok".into()
        }
        Ok(Command::Noop) => "250 2.0.0 Ok".into(),
        Ok(Command::Quit) => "221 2.0.0 Bye".into(),
        Ok(_) => "502 5.5.1 Error: command not implemented".into(),
        Err(e) => e.reply().to_string(),
    };
    (reply + "\r\n", false)
}

/// Reads the body to CRLF.CRLF, undoing dot-stuffing, into tmp/ and then new/, and returns the
/// reply. `None` when the peer hung up before the end of data: the message is abandoned and
/// its partial file removed.
async fn receive_body(
    io: &mut DuplexStream,
    buf: &mut Vec<u8>,
    env: &Envelope,
    root: &Path,
) -> std::io::Result<Option<String>> {
    let id = format!(
        "{:X}{:05X}",
        crate::observe::process_id(),
        DELIVERIES.fetch_add(1, Ordering::Relaxed)
    );
    for dir in ["tmp", "new", "cur"] {
        tokio::fs::create_dir_all(root.join(dir)).await?;
    }
    let name = format!(
        "{}.{id}.relayguard",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let tmp = root.join("tmp").join(&name);
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(&tmp).await?);
    let header = format!(
        "Return-Path: <{}>\r\nReceived: from {} ({} [{}])\r\n\tby maildir.relayguard (relayguard maildir) with {} id {id}\r\n\tfor <{}>; {}\r\n",
        env.sender.as_deref().unwrap_or(""),
        // Postfix names a client without HELO by its client name here.
        if env.helo.is_empty() { &env.client_name } else { &env.helo },
        env.client_name,
        env.client,
        if env.esmtp { "ESMTP" } else { "SMTP" },
        env.recipients.first().map(String::as_str).unwrap_or(""),
        Civil::now().rfc5322()
    );
    file.write_all(header.as_bytes()).await?;
    loop {
        // Whole lines only; a partial line waits for more input. One drain per read keeps a
        // large body linear.
        let mut pos = 0;
        while let Some(len) = memchr::memmem::find(&buf[pos..], b"\r\n") {
            let line = &buf[pos..pos + len];
            if line == b"." {
                buf.drain(..pos + len + 2);
                file.flush().await?;
                drop(file);
                tokio::fs::rename(&tmp, root.join("new").join(&name)).await?;
                return Ok(Some(format!("250 2.0.0 Ok: queued as {id}\r\n")));
            }
            let unstuffed = line.strip_prefix(b".").unwrap_or(line);
            file.write_all(unstuffed).await?;
            file.write_all(b"\r\n").await?;
            pos += len + 2;
        }
        buf.drain(..pos);
        buf.reserve(PIPE_BUFFER);
        if io.read_buf(buf).await? == 0 {
            drop(file);
            let _ = tokio::fs::remove_file(&tmp).await;
            return Ok(None);
        }
    }
}
