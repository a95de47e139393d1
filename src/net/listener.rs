//! Binds a listener, accepts under a per-listener connection limit, reads a PROXY header when the
//! peer is trusted to send one, does implicit TLS, and spawns a session with the snapshot of the
//! moment.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::config::{ListenerSnapshot, Role, SnapshotCell, TlsLevel};
use crate::lookup::Lookups;
use crate::net::balance::{Balance, Handoff};
use crate::net::limit::{ConnectionLimit, Slot};
use crate::net::proxy_header::{looks_like_proxy_header, read_proxy_header, ProxiedAddrs};
use crate::net::resolve::{ClientNames, HostName, NameResolver};
use crate::net::shutdown::Shutdown;
use crate::net::stream::BoxStream;
use crate::session::{Session, SessionContext, TlsFacts};
use crate::smtp::{replies, Reply};
use crate::state::StateStore;
use crate::upstream::{Upstream, WarmPool};

/// What every session of every listener shares.
#[derive(Clone)]
pub struct Services {
    pub snapshots: Arc<SnapshotCell>,
    pub upstream: Arc<Upstream>,
    pub resolver: Option<NameResolver>,
    /// What waiting policies fetch their facts with.
    pub lookups: Arc<Lookups>,
    pub shutdown: Shutdown,
    /// This worker's warm upstream connections, when configured.
    pub warm: Option<Arc<WarmPool>>,
    /// Counters, bans and postscreen results; replaced when a reload changes `[state]`.
    pub state: Arc<arc_swap::ArcSwap<StateStore>>,
}

/// A listener's sockets, bound before the workers start: one per worker, with SO_REUSEPORT,
/// so every worker accepts on a socket of its own and the kernel spreads the connections.
/// A session's work never crosses threads; only a connection handed over at accept, to even
/// out the workers' loads (`net::balance`), wakes another worker.
pub struct BoundListener {
    pub name: String,
    pub address: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
    limit: Arc<ConnectionLimit>,
}

impl BoundListener {
    /// Binds `shards` sockets on the listener's address (must run inside a runtime).
    pub fn bind(config: &ListenerSnapshot, shards: usize) -> std::io::Result<BoundListener> {
        let mut address = config.address;
        let mut sockets = Vec::new();
        for _ in 0..shards.max(1) {
            let socket = if address.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind(address)?;
            let listener = socket.listen(1024)?;
            // Port 0 binds a free port once; the other shards join that one.
            address = listener.local_addr()?;
            sockets.push(listener.into_std()?);
        }
        Ok(BoundListener {
            name: config.name.clone(),
            address,
            sockets,
            // The connection limit is the listener's, across all workers.
            limit: ConnectionLimit::new(),
        })
    }

    /// One accept socket per worker.
    pub fn into_shards(self) -> Vec<Listener> {
        let BoundListener {
            name,
            sockets,
            limit,
            ..
        } = self;
        let (balance, inboxes) = Balance::new(sockets.len());
        let metrics = crate::observe::metrics::metrics().listener(&name);
        sockets
            .into_iter()
            .zip(inboxes)
            .enumerate()
            .map(|(worker, (socket, inbox))| Listener {
                name: name.clone(),
                socket: Some(socket),
                limit: limit.clone(),
                worker,
                balance: balance.clone(),
                inbox,
                next_id: 0,
                metrics: metrics.clone(),
            })
            .collect()
    }
}

/// One worker's accept socket of a listener.
pub struct Listener {
    name: String,
    /// Taken by `serve`.
    socket: Option<std::net::TcpListener>,
    limit: Arc<ConnectionLimit>,
    /// This shard's worker, and where connections other workers hand over arrive.
    worker: usize,
    balance: Arc<Balance>,
    inbox: mpsc::UnboundedReceiver<Handoff>,
    /// Numbers this shard's sessions in debug logs.
    next_id: u64,
    /// The listener's counters, resolved once.
    metrics: Arc<crate::observe::metrics::ListenerMetrics>,
}

/// What the accept loop got next.
enum Arrival {
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    HandedOver(Handoff),
}

impl Listener {
    /// Accepts until the shutdown is announced (on the worker's runtime). Each session gets
    /// the snapshot current at accept time.
    pub async fn serve(mut self, services: Services) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        let socket = match TcpListener::from_std(socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(listener = %self.name, "cannot serve: {e}");
                return;
            }
        };
        let mut shutdown = services.shutdown.clone();
        loop {
            // In this order: a connection handed over at the moment of shutdown hears 421
            // from here rather than a greeting from a session that will say 421 next.
            let arrival = tokio::select! {
                biased;
                _ = shutdown.announced() => {
                    self.refuse_handed_over(&services);
                    return;
                }
                Some(handoff) = self.inbox.recv() => Arrival::HandedOver(handoff),
                accepted = socket.accept() => Arrival::Accepted(accepted),
            };
            let (stream, peer, slot) = match arrival {
                Arrival::HandedOver(h) => match TcpStream::from_std(h.stream) {
                    Ok(stream) => (stream, h.peer, h.slot),
                    Err(e) => {
                        tracing::warn!(listener = %self.name, "taking over a connection: {e}");
                        continue;
                    }
                },
                Arrival::Accepted(Err(e)) => {
                    tracing::warn!(listener = %self.name, "accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                Arrival::Accepted(Ok((stream, peer))) => {
                    // The slot is taken after accept: the workers each accept on their own
                    // socket, and a slot held by a worker whose socket has nothing waiting would
                    // strand a connection queued on another's. A full listener answers 421 at
                    // once and closes. The limit is the one of the snapshot current now, so a
                    // reload applies to the next accept (`net::limit`).
                    let snapshot = services.snapshots.load();
                    let Some(listener) = snapshot.listener(&self.name) else {
                        continue;
                    };
                    let Some(slot) = self.limit.try_acquire(listener.max_connections) else {
                        refuse_when_full(listener, self.limit.open(), stream, peer);
                        continue;
                    };
                    match self.hand_over_if_busier(stream, peer, slot) {
                        Some(kept) => kept,
                        None => continue,
                    }
                }
            };
            self.start_session(stream, peer, slot, &services);
        }
    }

    /// Sends the connection to a worker running fewer of this listener's sessions, if there is
    /// one; gives it back when it stays here.
    fn hand_over_if_busier(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        slot: Slot,
    ) -> Option<(TcpStream, SocketAddr, Slot)> {
        let to = self.balance.pick(self.worker);
        if to == self.worker {
            return Some((stream, peer, slot));
        }
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(listener = %self.name, "handing over a connection: {e}");
                return None;
            }
        };
        let handoff = Handoff { stream, peer, slot };
        match self.balance.hand_over(to, handoff) {
            Ok(()) => None,
            // That worker has stopped: serve it here.
            Err(h) => TcpStream::from_std(h.stream)
                .ok()
                .map(|s| (s, h.peer, h.slot)),
        }
    }

    /// Connections another worker handed over that this one had not taken when the shutdown
    /// came: each gets the 421 a session would have given, without waiting.
    fn refuse_handed_over(&mut self, services: &Services) {
        self.inbox.close();
        let snapshot = services.snapshots.load();
        let Some(listener) = snapshot.listener(&self.name) else {
            return;
        };
        let reply = replies::shutting_down(&listener.smtpd.myhostname);
        while let Ok(handoff) = self.inbox.try_recv() {
            answer_and_close(listener, &handoff.stream, &reply);
        }
    }

    /// Spawns the session with the snapshot current now, counted on this worker.
    fn start_session(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        slot: Slot,
        services: &Services,
    ) {
        let snapshot = services.snapshots.load();
        let Some(listener) = snapshot.listener(&self.name).cloned() else {
            return;
        };
        self.next_id += 1;
        let ctx = SessionContext {
            snapshot,
            listener,
            upstream: services.upstream.clone(),
            warm: services.warm.clone(),
            shutdown: services.shutdown.clone(),
            lookups: services.lookups.clone(),
            state: services.state.load_full(),
            metrics: self.metrics.clone(),
        };
        let resolver = services.resolver.clone();
        let load = self.balance.enter(self.worker);
        let open = self.metrics.session_opened();
        // A debug span: entered on every poll, it costs measurably when it is enabled.
        let span = tracing::debug_span!("session", session = self.next_id, listener = %self.name, client = %peer);
        // An idle session costs what its task holds, and a task is as large as its largest
        // state: the accept phase (PROXY header, names, implicit TLS) and the session itself
        // live in allocations of their own, so the task holds three pointers and the dialogue.
        let accepted = Box::new(Accepted {
            ctx,
            stream,
            peer,
            resolver,
        });
        let session = async move {
            if let Some(mut session) = Box::pin(accept_session(accepted)).await {
                let end = session.run().await;
                tracing::debug!(?end, "session ended");
            }
            drop((slot, load, open));
        };
        // Instrumented costs on every poll even when its span is off.
        if span.is_disabled() {
            tokio::spawn(session);
        } else {
            tokio::spawn(session.instrument(span));
        }
    }
}

/// Postfix's answer to a client over its connection limit (anvil): a 421 and a close,
/// written without waiting so a flood costs no more than the accept.
fn refuse_when_full(listener: &ListenerSnapshot, open: usize, stream: TcpStream, peer: SocketAddr) {
    // smtpd's own line for a client over its anvil limit, with the listener as the service,
    // counting this connection: after a reload lowered the limit, more than one past it.
    tracing::warn!(
        tag = %listener.smtpd.syslog_tag,
        "warning: Connection concurrency limit exceeded: {} from unknown[{}] for service {}",
        open + 1,
        peer.ip(),
        listener.name,
    );
    let reply = replies::too_many_connections(&listener.smtpd.myhostname);
    if let Ok(stream) = stream.into_std() {
        answer_and_close(listener, &stream, &reply);
    }
}

/// Writes `reply` to a connection no session will serve, without waiting; the caller then
/// drops it. Implicit TLS gets only the close: a plaintext reply would be garbage to a client
/// expecting a handshake.
fn answer_and_close(listener: &ListenerSnapshot, stream: &std::net::TcpStream, reply: &Reply) {
    use std::io::{Read, Write};
    if listener.role == Role::Submissions {
        return;
    }
    // Whatever already arrived (a load balancer's PROXY header) is read away first: closing
    // with unread input would send a reset that can destroy the reply in flight. The stream
    // is non-blocking (tokio's `into_std` leaves it so).
    let mut discard = [0u8; 512];
    let _ = (&*stream).read(&mut discard);
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    let _ = (&*stream).write(&wire);
}

/// A connection as it was accepted, before the session that will serve it exists.
struct Accepted {
    ctx: SessionContext,
    stream: TcpStream,
    peer: SocketAddr,
    resolver: Option<NameResolver>,
}

/// Everything between accept and the greeting; `None` when the connection ends here.
async fn accept_session(accepted: Box<Accepted>) -> Option<Box<Session>> {
    let Accepted {
        ctx,
        stream,
        peer,
        resolver,
    } = *accepted;
    let _ = stream.set_nodelay(true);
    // The address the client reached: the configured one, unless it is a wildcard or port 0.
    let configured = ctx.listener.address;
    let local = if configured.ip().is_unspecified() || configured.port() == 0 {
        stream.local_addr().unwrap_or(configured)
    } else {
        configured
    };
    let host = ctx.listener.smtpd.myhostname.clone();
    let mut stream = stream;
    let (client_addr, server_addr) = match &ctx.listener.proxy {
        Some(trust) if trust.trusted.is_trusted(peer.ip()) => {
            match Box::pin(read_proxy_header(
                &mut stream,
                ctx.snapshot.handshake_timeout,
            ))
            .await
            {
                Ok(ProxiedAddrs::Proxied {
                    client,
                    destination,
                }) => (client, destination),
                Ok(ProxiedAddrs::Local) => (peer, local),
                Err(e) => {
                    tracing::warn!("haproxy read: {e} from {peer}");
                    refuse(stream, &host).await;
                    return None;
                }
            }
        }
        Some(trust) if trust.required => {
            tracing::warn!("connection from {peer}, which is not a trusted PROXY peer, refused");
            refuse(stream, &host).await;
            return None;
        }
        Some(_) => {
            // Not trusted: it may talk SMTP directly, but never claim another address.
            let mut first = [0u8; 16];
            if let Ok(Ok(n)) =
                tokio::time::timeout(std::time::Duration::from_millis(0), stream.peek(&mut first))
                    .await
            {
                if looks_like_proxy_header(&first[..n]) {
                    tracing::warn!("PROXY header from untrusted {peer} refused");
                    refuse(stream, &host).await;
                    return None;
                }
            }
            (peer, local)
        }
        None => (peer, local),
    };
    let names = match resolver {
        Some(r) if ctx.snapshot.dns.resolves_for(&ctx.listener) => {
            Box::pin(r.client_names(client_addr.ip())).await
        }
        _ => ClientNames::failed(HostName::Unavailable),
    };
    let implicit_tls = ctx.listener.smtpd.tls_level == TlsLevel::Wrapper;
    let mut tls_facts = None;
    let boxed: BoxStream = if implicit_tls {
        let config = ctx.listener.tls.clone()?;
        match tokio::time::timeout(
            ctx.snapshot.handshake_timeout,
            Box::pin(TlsAcceptor::from(config).accept(stream)),
        )
        .await
        {
            Ok(Ok(tls)) => {
                tls_facts = TlsFacts::of(tls.get_ref().1, ctx.listener.client_certs.as_deref());
                if let Some(sni) = ctx.listener.unmatched_sni(tls.get_ref().1) {
                    tracing::info!(
                        tag = %ctx.listener.smtpd.syslog_tag,
                        "TLS SNI {sni} from {}[{}] not matched, using default chain",
                        names.name.as_str(),
                        client_addr.ip(),
                    );
                }
                Box::new(tls)
            }
            Ok(Err(e)) => {
                tracing::info!("TLS handshake failed for {client_addr}: {e}");
                return None;
            }
            Err(_) => {
                tracing::info!("TLS handshake timeout for {client_addr}");
                return None;
            }
        }
    } else {
        Box::new(stream)
    };
    Some(Box::new(
        Session::new(ctx, boxed, names, client_addr, server_addr, implicit_tls)
            .with_tls_facts(tls_facts),
    ))
}

/// Postfix's answer to a bad or missing PROXY header: 421 and close. A peer that takes none of
/// it (a zero window) is given a few seconds, not the task's whole life.
async fn refuse(mut stream: TcpStream, host: &str) {
    use tokio::io::AsyncWriteExt;
    const REFUSAL_WRITE: std::time::Duration = std::time::Duration::from_secs(5);
    let mut out = Vec::new();
    replies::server_local_error(host).write_to(&mut out);
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::load::load_str;
    use crate::net::shutdown::Drain;
    use crate::smtp::Capabilities;

    #[tokio::test]
    async fn a_connection_handed_over_but_not_taken_hears_421_at_shutdown() {
        let config = "[[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:0\"\nrole = \"smtp\"\n\
                      [policy]\nmyhostname = \"rg.test\"\n\
                      [upstream]\nkind = \"smtp\"\naddress = \"127.0.0.1:9\"\n";
        let snapshot = load_str(config, Path::new("/nonexistent/relayguard.toml")).unwrap();
        let bound = BoundListener::bind(&snapshot.listeners[0], 2).unwrap();
        let mut shards = bound.into_shards();
        let second = shards.pop().unwrap();
        let first = shards.pop().unwrap();

        // A connection the first worker accepted and handed to the second.
        let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(elsewhere.local_addr().unwrap()).unwrap();
        let (stream, peer) = elsewhere.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        let slot = first.limit.try_acquire(1).unwrap();
        let handoff = Handoff { stream, peer, slot };
        assert!(first.balance.hand_over(1, handoff).is_ok());

        let drain = Drain::new();
        let services = Services {
            snapshots: Arc::new(crate::config::SnapshotCell::new(snapshot)),
            upstream: Arc::new(Upstream::new(Capabilities::default())),
            resolver: None,
            lookups: Arc::new(Lookups::new(None)),
            shutdown: drain.watcher(),
            warm: None,
            state: Arc::new(arc_swap::ArcSwap::from_pointee(StateStore::in_memory())),
        };
        // Announced before the second worker looks at its inbox.
        drain.drain(Duration::ZERO).await;
        tokio::time::timeout(Duration::from_secs(5), second.serve(services))
            .await
            .unwrap();

        let heard = tokio::task::spawn_blocking(move || {
            client.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut heard = String::new();
            client.read_to_string(&mut heard).map(|_| heard)
        });
        assert_eq!(
            heard.await.unwrap().unwrap(),
            "421 4.3.2 rg.test Error: service shutting down\r\n"
        );
    }
}
