//! Opens an upstream session: dial with a timeout, optional STARTTLS, then tell the upstream who
//! the client is (XCLIENT or a PROXY header) and EHLO as that client.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::conn::{UpstreamConn, UpstreamError};
use super::identity::{proxy_header_v1, proxy_header_v2, xclient_commands, ClientIdentity};
use crate::config::{IdentityMode, UpstreamSettings, UpstreamTarget};
use crate::net::resolve::HostName;
use crate::net::stream::BoxStream;
use crate::smtp::ehlo::Capabilities;
use crate::smtp::response::build_reply;

/// Dials the upstream and completes the handshake for `client`. `None` as the client means
/// relayguard speaks as itself (the start-up probe).
pub async fn open(
    settings: &UpstreamSettings,
    client: Option<&ClientIdentity>,
) -> Result<UpstreamConn, UpstreamError> {
    let mut conn = prepare(settings, client).await?;
    match client {
        Some(id) => introduce(&mut conn, settings, id).await?,
        None => ehlo(&mut conn, &settings.helo_name).await?,
    }
    Ok(conn)
}

/// Everything before the client is named: dial, the PROXY header (which must come first, so
/// it is sent here), the greeting, and STARTTLS when configured.
pub async fn prepare(
    settings: &UpstreamSettings,
    client: Option<&ClientIdentity>,
) -> Result<UpstreamConn, UpstreamError> {
    let proxy_header = matches!(
        settings.identity,
        IdentityMode::ProxyV1 | IdentityMode::ProxyV2
    );
    let (stream, ends) = dial(settings, proxy_header && client.is_none()).await?;
    let mut conn = UpstreamConn::new(stream, settings.reply_timeout);
    // A PROXY listener refuses a connection without a header, so relayguard speaking as itself
    // (the probe) sends one naming its own address.
    let own;
    let header_for = match (client, ends) {
        (Some(id), _) => Some(id),
        (None, Some((local, peer))) => {
            own = ClientIdentity {
                addr: local,
                server: peer,
                name: HostName::Unavailable,
                reverse_name: HostName::Unavailable,
                helo: None,
                login: None,
                esmtp: true,
            };
            Some(&own)
        }
        (None, None) => None,
    };
    if let Some(id) = header_for {
        match settings.identity {
            IdentityMode::ProxyV1 => conn.queue(&proxy_header_v1(id)),
            IdentityMode::ProxyV2 => conn.queue(&proxy_header_v2(id)),
            IdentityMode::Xclient | IdentityMode::None => {}
        }
    }
    expect(&mut conn, "greeting", 220).await?;

    if let UpstreamTarget::Smtp {
        tls: Some(tls),
        server_name,
        ..
    } = &settings.target
    {
        ehlo(&mut conn, &settings.helo_name).await?;
        if !conn.capabilities().offers("STARTTLS") {
            return Err(UpstreamError::Tls(
                "upstream does not offer STARTTLS".into(),
            ));
        }
        let reply = conn.command(b"STARTTLS\r\n").await?;
        if reply.code != 220 {
            return Err(UpstreamError::Refused {
                stage: "STARTTLS",
                reply,
            });
        }
        conn = starttls(conn, tls.clone(), server_name, settings).await?;
    }
    Ok(conn)
}

/// Names the client on a prepared connection (XCLIENT; a PROXY header went out in
/// [`prepare`]) and says EHLO as the client.
///
/// A client that gave no HELO/EHLO must not reach the upstream under relayguard's name, and
/// Postfix takes the HELO from the last HELO/EHLO it read: an EHLO after XCLIENT sets it
/// again even after `XCLIENT HELO=[UNAVAILABLE]` (seen against Postfix 3.7:
/// `helo=<relayguard.test>` in its log, `Received: from relayguard.test (unknown [...])`).
/// So for such a client nothing says EHLO after the client is named:
/// - XCLIENT: relayguard says `EHLO helo_name` *before* XCLIENT, to learn the extensions,
///   and the XCLIENT, which carries no HELO, resets the HELO and PROTO to SMTP (postfix-semantics
///   12.1). The upstream then shows `Received: from unknown (unknown [addr]) ... with SMTP`,
///   as for a direct client without HELO.
/// - PROXY v1/v2: the upstream has no way to clear a HELO, so there is no EHLO at all. The leg
///   knows no extensions (empty [`UpstreamConn::capabilities`]): its MAIL is sent alone and
///   without SIZE=, as plain SMTP, which is all a client without EHLO may use anyway. An
///   EHLO before an upstream STARTTLS does not count: Postfix forgets it with the handshake.
/// - `none`: the upstream sees relayguard as the client, so relayguard's name is the truth.
///
/// When the client says HELO/EHLO later, the session forwards it and the upstream has it.
pub async fn introduce(
    conn: &mut UpstreamConn,
    settings: &UpstreamSettings,
    client: &ClientIdentity,
) -> Result<(), UpstreamError> {
    let helo = match (settings.identity, client.helo.as_deref()) {
        (_, Some(helo)) => Some(helo),
        (IdentityMode::None, None) => Some(settings.helo_name.as_str()),
        (IdentityMode::Xclient, None) => {
            ehlo(conn, &settings.helo_name).await?;
            None
        }
        (IdentityMode::ProxyV1 | IdentityMode::ProxyV2, None) => None,
    };
    if settings.identity == IdentityMode::Xclient {
        // One XCLIENT at a time, each answered by a fresh 220 before anything else is sent:
        // Postfix flags pipelining after XCLIENT, and any other reply leaves the session running
        // as relayguard itself, which is the open-relay risk (postfix-semantics 12.1, 12.2).
        for line in xclient_commands(client) {
            conn.queue(&line);
            expect(conn, "XCLIENT", 220).await?;
        }
    }
    match helo {
        Some(helo) => ehlo(conn, helo).await,
        None => Ok(()),
    }
}

/// The stream, and for TCP its local and peer addresses.
async fn dial(
    settings: &UpstreamSettings,
    want_ends: bool,
) -> Result<(BoxStream, Option<(SocketAddr, SocketAddr)>), UpstreamError> {
    match &settings.target {
        UpstreamTarget::Smtp { address, .. } => {
            let stream = timeout(
                settings.connect_timeout,
                TcpStream::connect(address.as_str()),
            )
            .await
            .map_err(|_| UpstreamError::Timeout(settings.connect_timeout))?
            .map_err(|source| UpstreamError::Connect {
                address: address.clone(),
                source,
            })?;
            // Small replies must not wait for delayed ACKs.
            stream.set_nodelay(true)?;
            // Two syscalls, needed only to name relayguard itself in a PROXY header.
            let ends = if want_ends {
                Some((stream.local_addr()?, stream.peer_addr()?))
            } else {
                None
            };
            Ok((Box::new(stream), ends))
        }
        UpstreamTarget::Maildir { path } => Ok((super::maildir::connect(path.clone()), None)),
    }
}

/// Reads a reply that must carry `code`; only a refusal's text is copied out.
async fn expect(
    conn: &mut UpstreamConn,
    stage: &'static str,
    code: u16,
) -> Result<(), UpstreamError> {
    conn.read_frame(|wire, frame| {
        if frame.code == code {
            Ok(())
        } else {
            Err(UpstreamError::Refused {
                stage,
                reply: build_reply(wire, frame),
            })
        }
    })
    .await?
}

pub async fn ehlo(conn: &mut UpstreamConn, name: &str) -> Result<(), UpstreamError> {
    let line = conn.queue_buf();
    line.extend_from_slice(b"EHLO ");
    line.extend_from_slice(name.as_bytes());
    line.extend_from_slice(b"\r\n");
    let capabilities = conn
        .read_frame(|wire, frame| match frame.code {
            250 => Ok(Capabilities::from_ehlo_wire(&wire[..frame.len])),
            _ => Err(UpstreamError::Refused {
                stage: "EHLO",
                reply: build_reply(wire, frame),
            }),
        })
        .await??;
    conn.set_capabilities(capabilities);
    Ok(())
}

async fn starttls(
    conn: UpstreamConn,
    config: Arc<tokio_rustls::rustls::ClientConfig>,
    server_name: &str,
    settings: &UpstreamSettings,
) -> Result<UpstreamConn, UpstreamError> {
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| UpstreamError::Tls(format!("{server_name}: {e}")))?;
    let mut stream = conn.into_stream();
    stream.flush().await?;
    let tls = timeout(
        settings.connect_timeout,
        TlsConnector::from(config).connect(name, stream),
    )
    .await
    .map_err(|_| UpstreamError::Timeout(settings.connect_timeout))?
    .map_err(|e| UpstreamError::Tls(e.to_string()))?;
    Ok(UpstreamConn::new(Box::new(tls), settings.reply_timeout))
}
