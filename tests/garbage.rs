//! Bad input gets a reply or a clean close, never a crash: random bytes, random command soup
//! and truncated dialogues thrown at a live relayguard (seeded, so a failure replays), after
//! which it still serves a normal session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::client::Client;
use support::relayguard::{Relayguard, Role};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&[u8]] = &[
    b"EHLO x\r\n",
    b"HELO x\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"RCPT TO:<u@local.test>\r\n",
    b"RCPT TO:<x@elsewhere.example>\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    b"*\r\n",
    b"STARTTLS\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY <u@local.test>\r\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\0",
    b"\r",
    b"\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    b"XCLIENT ADDR=1.2.3.4\r\n",
    b"MAIL FROM:<",
    b"SIZE=99999999999999999999",
    b"\xff\xfe\xfd",
    b"Subject: x\r\n",
    b"QUIT\r\n",
];

async fn throw(addr: std::net::SocketAddr, bytes: &[u8]) {
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
    else {
        panic!("relayguard stopped accepting");
    };
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    // Read whatever comes back until relayguard closes or goes quiet; never more than 1 MiB.
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    while total < 1 << 20 {
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => total += n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_input_never_takes_it_down() {
    let mut rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .policy("smtpd_sasl_auth_enable", "yes")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .start();
    let addr = rg.addr("smtp");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..150 {
        let mut bytes = Vec::new();
        if round % 3 == 0 {
            let n = rng.below(4096);
            bytes.extend((0..n).map(|_| rng.next() as u8));
        } else {
            for _ in 0..rng.below(40) {
                bytes.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
        }
        throw(addr, &bytes).await;
        assert!(
            rg.is_running(),
            "relayguard died on round {round}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let mut c = Client::after_ehlo(addr).await;
    let reply = c
        .send_mail(
            "a@sender.example",
            &["u@local.test"],
            "Subject: still here\n\nok\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert!(
        !rg.log_lines().iter().any(|l| l.contains("panicked")),
        "a task panicked"
    );
}
