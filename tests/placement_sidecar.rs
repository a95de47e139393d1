//! Placement rehearsal for docs/deploy/kubernetes-sidecar.md: a PROXY-speaking load balancer
//! (Debian's HAProxy, `send-proxy-v2`) in front of relayguard, relayguard and a private Postfix
//! side by side on one host (the test's loopback, as containers of one pod share theirs).
//!
//! HAProxy dials relayguard from 127.0.0.2, the only address relayguard takes PROXY from, and a
//! header is required: a client that skips the balancer is refused. Postfix trusts XCLIENT from
//! relayguard (127.0.0.1) alone and so records the address HAProxy saw. HAProxy runs in the
//! foreground with a private config and is killed by its PID. Needs root, haproxy, Postfix and
//! swaks; fails, never skips, without them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use support::client::Client;
use support::external::Swaks;
use support::postfix::Postfix;
use support::process;
use support::relayguard::{Identity, Relayguard, Role};

/// The balancer's own address towards relayguard: the one trusted for PROXY.
const LB_SOURCE: &str = "127.0.0.2";
/// The client's address, distinct from both the balancer's and relayguard's.
const CLIENT: &str = "127.0.0.9";

/// A private HAProxy in TCP mode, one frontend to one relayguard with PROXY v2. Killed on drop.
struct Haproxy {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Haproxy {
    fn start(backend: SocketAddr) -> Haproxy {
        let dir = tempfile::Builder::new()
            .prefix("rg-haproxy-")
            .tempdir()
            .unwrap();
        let port = process::free_port();
        let cfg = dir.path().join("haproxy.cfg");
        fs::write(
            &cfg,
            format!(
                "global\n  maxconn 100\n\
                 defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend smtp\n  bind 127.0.0.1:{port}\n  default_backend relayguard\n\
                 backend relayguard\n  server rg {backend} send-proxy-v2 source {LB_SOURCE}\n"
            ),
        )
        .unwrap();
        // -db: foreground, no daemon, so the PID we hold is HAProxy's own.
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run haproxy (apt-get install haproxy)");
        let up = process::wait_listening(port, Duration::from_secs(10), || {
            child.try_wait().ok().flatten().is_none()
        });
        assert!(up, "haproxy did not listen on 127.0.0.1:{port}");
        Haproxy {
            child,
            port,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.port).into()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Postfix trusting XCLIENT from relayguard's address only, and relayguard behind HAProxy.
fn pod() -> (Postfix, Relayguard, Haproxy) {
    let postfix = Postfix::builder()
        .xclient_hosts("127.0.0.1/32")
        .starttls(false)
        .start();
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .listener_toml(
            "smtp",
            &format!(r#"proxy_protocol = {{ trusted = ["{LB_SOURCE}/32"], required = true }}"#),
        )
        .upstream_postfix(&postfix, Identity::Xclient)
        .extra_toml("[dns]\nlookups = \"never\"\n[limits]\ndrain_timeout = \"10s\"\n")
        .start();
    let lb = Haproxy::start(rg.addr("smtp"));
    (postfix, rg, lb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_postfix_sees_the_real_client_and_direct_clients_are_refused() {
    let (postfix, rg, lb) = pod();

    let t = Swaks::new(lb.addr())
        .arg("--local-interface")
        .arg(CLIENT)
        .arg("--header")
        .arg("Subject: sidecar rehearsal")
        .run();
    assert!(t.success(), "swaks through HAProxy failed:\n{}", t.output);
    let msg = postfix
        .maildir()
        .wait_for_containing("sidecar rehearsal", Duration::from_secs(15));
    let received = msg.received().join("\n");
    assert!(
        received.contains(&format!("[{CLIENT}]")),
        "Postfix's Received does not name {CLIENT}:\n{received}"
    );
    postfix.wait_for_log(&format!("client=unknown[{CLIENT}]"), Duration::from_secs(5));
    assert!(
        !postfix
            .maillog_lines()
            .iter()
            .any(|l| l.contains(&format!("client=unknown[{LB_SOURCE}]"))),
        "Postfix recorded the balancer as the client"
    );

    // Straight to relayguard, no header: refused before any SMTP.
    let mut direct = Client::connect(rg.addr("smtp")).await;
    assert_eq!(
        direct.greeting().await,
        "421 4.3.0 relayguard.test Server local error"
    );
    direct.expect_closed().await;
    // Nor may a client that skips the balancer claim an address with a header of its own.
    let mut forged = Client::connect(rg.addr("smtp")).await;
    forged
        .send_raw(b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 25\r\n")
        .await;
    assert_eq!(
        forged.greeting().await,
        "421 4.3.0 relayguard.test Server local error"
    );
    rg.wait_for_log("not a trusted PROXY peer", Duration::from_secs(5));
    assert!(!postfix
        .maillog_lines()
        .iter()
        .any(|l| l.contains("198.51.100.7")));
}

/// A pod being deleted: SIGTERM while a message is in DATA; it is still delivered, and the
/// process exits within the drain timeout (below terminationGracePeriodSeconds in the kit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_behind_haproxy_delivers_the_message_in_data() {
    let (postfix, mut rg, lb) = pod();
    let mut c = Client::connect(lb.addr()).await;
    assert!(c.greeting().await.starts_with("220 "));
    assert!(c.ehlo("client.example").await.starts_with("250"));
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send_raw(b"Subject: drained in the pod\r\n\r\nfirst half\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    rg.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send_raw(b"second half\r\n.\r\n").await;
    let reply = c.read_reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let msg = postfix
        .maildir()
        .wait_for_containing("drained in the pod", Duration::from_secs(10));
    assert!(msg.text().contains("second half"));
    let status = rg
        .stop_gracefully(Duration::from_secs(12))
        .expect("relayguard exits after draining");
    assert!(status.success(), "{status:?}");
}
