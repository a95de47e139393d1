//! A private PostgreSQL for table tests: initdb in a temp dir, `postgres -D` on a loopback
//! port with its socket in the same dir, stopped by PID on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests are root both commands run as the
//! `postgres` user through setpriv, which execs (the PID we hold is the server's own). Local
//! socket logins are trusted (the admin); TCP logins need a password (the table user).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::process::{free_port, is_root, pid_alive, signal, wait_listening};

pub const USER: &str = "rgtable";
pub const PASSWORD: &str = "Tbl-pw-5e7a";
pub const DB: &str = "relayguard";

pub struct Postgres {
    dir: TempDir,
    child: Option<Child>,
    pub port: u16,
}

/// The newest installed server's binaries (Debian puts them under a version directory).
fn bin(name: &str) -> String {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server installed (/usr/lib/postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    let dir = versions.last().expect("a PostgreSQL version");
    dir.join("bin").join(name).display().to_string()
}

/// `cmd` as the postgres user when we are root.
fn as_owner(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
            program,
        ]);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("rg-postgres-")
            .tempdir()
            .unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres", &dir.path().display().to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the PostgreSQL scratch dir");
        }
        let out = as_owner(&bin("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "admin",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut p = Postgres {
            dir,
            child: None,
            port: free_port(),
        };
        p.run();
        p.sql_in(
            "postgres",
            &format!("CREATE USER {USER} PASSWORD '{PASSWORD}'"),
        );
        p.sql_in("postgres", &format!("CREATE DATABASE {DB} OWNER {USER}"));
        p
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("server.log")).unwrap();
        let child = as_owner(&bin("postgres"))
            .arg("-D")
            .arg(d.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(d)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let pid = child.id();
        self.child = Some(child);
        let up = wait_listening(self.port, Duration::from_secs(30), || pid_alive(pid));
        assert!(
            up,
            "postgres did not listen on {}: {}",
            self.port,
            self.log()
        );
        // Listening is not accepting: after a restart it says "starting up" for a while.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(d)
                .args(["-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "postgres not ready: {}",
                self.log()
            );
            std::thread::sleep(super::process::POLL);
        }
    }

    /// Runs one SQL statement as the admin over the socket, in `db`.
    pub fn sql_in(&self, db: &str, sql: &str) {
        let out = Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "admin",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs SQL in the table database.
    pub fn sql(&self, sql: &str) {
        self.sql_in(DB, sql);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: "fast shutdown", which does not wait for clients to leave.
            signal(child.id(), "INT");
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- postgres log:\n{}", self.log());
        }
        self.stop();
    }
}
