//! What the limiter's store costs: (a) one `StateStore::hit` on the in-process store, for one
//! client and for 10,000 in turn, which must stay well under a microsecond and allocate
//! nothing; (b) a flood of 1,000,000 distinct client addresses through it, printing the
//! clients kept and the process RSS before and after (twice, to show it stays bounded);
//! (c) when `redis-server` is on PATH, a `hit` on the Redis store beside a plain PING over the
//! same client library, on a private server on a free loopback port, with their ratio.
//!
//! Run with `cargo bench --bench limiter`.

// A bench is test code: a failed setup should stop it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::future::Future;
use std::hint::black_box;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::pin::pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use relayguard::limits::{ClientKey, Event, Millis};
use relayguard::state::memory::MemorySettings;
use relayguard::state::redis::{RedisSettings, RedisTopology};
use relayguard::state::{now, BackendSettings, StateSettings, StateStore};

const UNIT: Duration = Duration::from_secs(60);

/// The memory store's futures never wait: one poll with a no-op waker runs them, without a
/// runtime's overhead in the measurement.
fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the memory store waited"),
    }
}

fn memory() -> StateStore {
    StateStore::open(&StateSettings {
        backend: BackendSettings::Memory(MemorySettings::default()),
        ..StateSettings::default()
    })
    .unwrap()
}

fn v4(i: u32) -> ClientKey {
    ClientKey::V4(Ipv4Addr::from(i))
}

fn hit_memory(c: &mut Criterion) {
    let store = memory();
    let one = v4(0xC000_0201);
    ready(store.hit("smtp", Event::Recipient, one, Millis(1), UNIT)).unwrap();
    let before = counting_alloc::allocations();
    for _ in 0..1000 {
        ready(store.hit("smtp", Event::Recipient, one, Millis(1), UNIT)).unwrap();
    }
    let allocs = counting_alloc::allocations() - before;
    assert_eq!(allocs, 0, "counting a known client allocates nothing");
    c.bench_function("memory store: hit, one client", |b| {
        b.iter(|| ready(store.hit("smtp", Event::Recipient, black_box(one), Millis(1), UNIT)))
    });
    let mut i = 0u32;
    c.bench_function("memory store: hit, 10,000 clients in turn", |b| {
        b.iter(|| {
            i = (i + 1) % 10_000;
            ready(store.hit("smtp", Event::Message, black_box(v4(i)), Millis(1), UNIT))
        })
    });
}

/// Resident set size in MiB, from /proc/self/statm (pages).
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    let page = Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(4096.0);
    pages * page / (1024.0 * 1024.0)
}

fn flood(_c: &mut Criterion) {
    let store = memory();
    let cap = MemorySettings::default().max_clients;
    println!("\nflood: 1,000,000 distinct clients through the memory store (cap {cap})");
    println!(
        "  before:          clients {:>7}, RSS {:7.1} MiB",
        store.clients().unwrap(),
        rss_mib()
    );
    for round in 0..2u32 {
        let started = Instant::now();
        for i in 0..1_000_000u32 {
            let key = v4(0x0A00_0000 + round * 1_000_000 + i);
            ready(store.hit("smtp", Event::Connect, key, Millis(1), UNIT)).unwrap();
        }
        let per = started.elapsed() / 1_000_000;
        let kept = store.clients().unwrap();
        assert!(kept <= cap + 16, "kept {kept} of a cap of {cap}");
        println!(
            "  after flood {}:   clients {kept:>7}, RSS {:7.1} MiB ({per:?} per new client)",
            round + 1,
            rss_mib()
        );
    }
}

/// A private redis-server on a free loopback port, killed by its PID on drop.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Option<Server> {
        let path = std::env::var_os("PATH")?;
        let bin: PathBuf = std::env::split_paths(&path)
            .map(|d| d.join("redis-server"))
            .find(|p| p.is_file())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hit_redis(c: &mut Criterion) {
    let Some(server) = Server::start() else {
        println!("redis-server is not on PATH: the Redis rows are skipped");
        return;
    };
    let url = format!("redis://127.0.0.1:{}/", server.port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = StateStore::open(&StateSettings {
        backend: BackendSettings::Redis(RedisSettings {
            topology: RedisTopology::Single(url.clone()),
            prefix: "rgbench:".into(),
            timeout: Duration::from_secs(2),
        }),
        ..StateSettings::default()
    })
    .unwrap();
    let mut ping = rt.block_on(async {
        let client = redis::Client::open(url.as_str()).unwrap();
        redis::aio::ConnectionManager::new(client).await.unwrap()
    });
    let key = v4(0xC000_0202);
    let hit = || {
        rt.block_on(store.hit("smtp", Event::Recipient, key, now(), UNIT))
            .unwrap()
    };
    hit();
    let mut pong = || {
        rt.block_on(redis::cmd("PING").query_async::<String>(&mut ping))
            .unwrap()
    };
    pong();

    // The ratio from one interleaved run, so both rows see the same machine.
    let n = 5_000;
    let (mut t_hit, mut t_ping) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let s = Instant::now();
        black_box(hit());
        t_hit += s.elapsed();
        let s = Instant::now();
        black_box(pong());
        t_ping += s.elapsed();
    }
    println!(
        "\nredis: hit {:?} vs PING {:?} per call over {n} interleaved: ratio {:.2}",
        t_hit / n,
        t_ping / n,
        t_hit.as_secs_f64() / t_ping.as_secs_f64()
    );
    c.bench_function("redis store: hit (atomic INCR + PEXPIRE NX)", |b| {
        b.iter(hit)
    });
    c.bench_function("redis: PING round trip", |b| b.iter(&mut pong));
    drop(server);
}

criterion_group!(benches, hit_memory, flood, hit_redis);
criterion_main!(benches);
