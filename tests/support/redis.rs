//! Private Redis servers for the state-store tests: Debian's `/usr/bin/redis-server` on a free
//! loopback port with nothing saved to disk and its working dir in a temp dir, killed by PID
//! on drop. Also a sentinel watching one of them, and a three-master cluster.
//!
//! [`RedisServer::stop`] kills the server as a crash would (SIGKILL) and
//! [`RedisServer::restart`] starts a fresh one on the same port, empty: outages for tests.

use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::{free_port, pid_alive, wait_listening, POLL};

const SERVER: &str = "/usr/bin/redis-server";

pub struct RedisServer {
    dir: TempDir,
    child: Option<Child>,
    pub port: u16,
    /// What follows `--port` on the command line (the config file first, for a sentinel).
    args: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// A server with more `redis-server` arguments, e.g. cluster mode.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = temp_dir();
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--dir".into(), dir.path().display().to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        RedisServer::launch(dir, None, args)
    }

    /// A sentinel that knows the master on 127.0.0.1:`master_port` as `service`.
    pub fn sentinel(master_port: u16, service: &str) -> RedisServer {
        let dir = temp_dir();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "bind 127.0.0.1\ndir {}\nsentinel monitor {service} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {service} 60000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let args = vec!["--sentinel".to_string()];
        RedisServer::launch(dir, Some(conf.display().to_string()), args)
    }

    fn launch(dir: TempDir, conf: Option<String>, args: Vec<String>) -> RedisServer {
        let mut s = RedisServer {
            dir,
            child: None,
            port: free_port(),
            args: conf.into_iter().chain(args).collect(),
        };
        s.run();
        s
    }

    fn run(&mut self) {
        let log = self.dir.path().join("redis.log");
        let (conf, rest) = match self.args.first() {
            Some(c) if c.ends_with(".conf") => (vec![c.clone()], &self.args[1..]),
            _ => (vec![], &self.args[..]),
        };
        let child = Command::new(SERVER)
            .args(&conf)
            .arg("--port")
            .arg(self.port.to_string())
            .args(rest)
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed for the state tests (apt-get install redis-server)",
            );
        let pid = child.id();
        self.child = Some(child);
        let up = wait_listening(self.port, Duration::from_secs(10), || pid_alive(pid));
        assert!(
            up,
            "redis-server did not listen on {}: {}",
            self.port,
            self.log()
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server, as a crash would; its port stops answering at once.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new, empty server on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// `redis-cli` against this server; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- redis log (port {}):\n{}", self.port, self.log());
        }
        self.stop();
    }
}

fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("rg-redis-")
        .tempdir()
        .unwrap()
}

/// Three masters, no replicas, all slots assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                // The bus port is chosen too: the default, port + 10000, may not exist.
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(out.status.success(), "cluster create: {out:?}");
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster
            .nodes
            .iter()
            .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster never became ok");
            sleep(POLL);
        }
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
