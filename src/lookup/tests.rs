//! The socketmap and tcp backends against scripted servers on loopback and on a UNIX socket:
//! connections reused, a closed one replaced, failures and timeouts as answers, the cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};

use super::socketmap::Socketmap;
use super::table::{RemoteTable, TableReply};
use super::tcp_table::TcpTable;

const SECOND: Duration = Duration::from_secs(1);

/// Reads one netstring request and returns its payload.
async fn request<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Option<String> {
    let mut len = Vec::new();
    loop {
        let b = r.read_u8().await.ok()?;
        if b == b':' {
            break;
        }
        len.push(b);
    }
    let n: usize = String::from_utf8(len).ok()?.parse().ok()?;
    let mut data = vec![0u8; n + 1];
    r.read_exact(&mut data).await.ok()?;
    data.pop();
    String::from_utf8(data).ok()
}

fn netstring(s: &str) -> Vec<u8> {
    format!("{}:{s},", s.len()).into_bytes()
}

#[tokio::test]
async fn socketmap_over_a_unix_socket_reuses_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                while let Some(req) = request(&mut s).await {
                    let reply = match req.as_str() {
                        "users alice@example.test" => "OK alice",
                        _ => "NOTFOUND ",
                    };
                    if s.write_all(&netstring(reply)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let name = format!("unix:{}:users", path.display());
    let map = Socketmap::open(&format!("socketmap:{name}"), &name, SECOND, Duration::ZERO).unwrap();
    let a = map.lookup("alice@example.test").await;
    assert_eq!(a.reply, TableReply::Found("alice".into()));
    assert!(!a.cached);
    assert_eq!(
        map.lookup("bob@example.test").await.reply,
        TableReply::NotFound
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for both"
    );
}

#[tokio::test]
async fn socketmap_replaces_a_connection_the_server_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        // Each connection answers one request, then the server closes it (a restart).
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if request(&mut s).await.is_some() {
                    let _ = s.write_all(&netstring("OK yes")).await;
                }
            });
        }
    });
    let name = format!("inet:127.0.0.1:{port}:m");
    let map = Socketmap::open(&format!("socketmap:{name}"), &name, SECOND, Duration::ZERO).unwrap();
    for _ in 0..3 {
        assert_eq!(map.lookup("k").await.reply, TableReply::Found("yes".into()));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_silent_server_is_a_failure_at_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let name = format!("inet:127.0.0.1:{port}:m");
    let deadline = Duration::from_millis(200);
    let map = Socketmap::open(&format!("socketmap:{name}"), &name, deadline, SECOND).unwrap();
    let started = std::time::Instant::now();
    let a = map.lookup("k").await;
    assert!(started.elapsed() < SECOND);
    assert_eq!(
        a.reply,
        TableReply::Failed(format!(
            "table socketmap:{name} lookup error: time limit exceeded"
        ))
    );
    // Failures are not cached: the next lookup asks again (and fails again).
    assert!(!map.lookup("k").await.cached);
}

#[tokio::test]
async fn tcp_table_answers_caches_and_drops_a_connection_after_4xx() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = match line.as_str() {
                        "get a%20b@example.test" => "200 REJECT%20spaced\n",
                        "get busy" => "400 busy\n",
                        _ => "500 no\n",
                    };
                    if w.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let t = TcpTable::open(
        &format!("127.0.0.1:{port}"),
        SECOND,
        Duration::from_secs(60),
    )
    .unwrap();
    let a = t.lookup("a b@example.test").await;
    assert_eq!(a.reply, TableReply::Found("REJECT spaced".into()));
    let again = t.lookup("a b@example.test").await;
    assert!(again.cached, "within the TTL");
    assert_eq!(t.lookup("other").await.reply, TableReply::NotFound);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert!(
        matches!(t.lookup("busy").await.reply, TableReply::Failed(w) if w.contains("soft error"))
    );
    assert_eq!(t.lookup("other2").await.reply, TableReply::NotFound);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a 4xx closes the connection"
    );
}
