//! A private MariaDB for table tests: a data directory made by mariadb-install-db in a temp
//! dir, mariadbd on a loopback port and a socket of its own, stopped by PID on drop.
//!
//! The admin is root over the socket (unix_socket auth, as the tests run as root); tables
//! are read by a password user made per server, so bad credentials can be tested.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::process::{free_port, wait_listening};

pub const USER: &str = "rgtable";
pub const PASSWORD: &str = "Tbl-pw-9d1c";
pub const DB: &str = "relayguard";

pub struct Mariadb {
    dir: TempDir,
    child: Option<Child>,
    pub port: u16,
}

impl Mariadb {
    /// Initialises a data directory and starts the server; creates the database and the
    /// table user (SELECT only).
    pub fn start() -> Mariadb {
        let dir = tempfile::Builder::new()
            .prefix("rg-mariadb-")
            .tempdir()
            .unwrap();
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .args([
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ])
            .output()
            .expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut m = Mariadb {
            dir,
            child: None,
            port: free_port(),
        };
        m.run();
        m.admin_sql(&format!(
            "CREATE DATABASE {DB}; CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'; \
             CREATE USER '{USER}'@'localhost' IDENTIFIED BY '{PASSWORD}'; \
             GRANT SELECT ON {DB}.* TO '{USER}'@'%'; GRANT SELECT ON {DB}.* TO '{USER}'@'localhost';"
        ));
        m
    }

    /// The server's UNIX socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--pid-file={}", d.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=16M",
                "--skip-log-bin",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        let pid = child.id();
        self.child = Some(child);
        let up = wait_listening(self.port, Duration::from_secs(30), || {
            super::process::pid_alive(pid)
        });
        assert!(
            up,
            "mariadbd did not listen on {}: {}",
            self.port,
            self.log()
        );
    }

    /// Runs SQL as root in the table database.
    pub fn sql(&self, sql: &str) {
        self.admin_sql(&format!("USE {DB}; {sql}"));
    }

    /// Runs SQL as root in no database.
    pub fn admin_sql(&self, sql: &str) {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "-e", sql])
            .output()
            .expect("run mariadb client");
        assert!(
            out.status.success(),
            "mariadb: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (TERM, then waits for it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::process::signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- mariadbd error log:\n{}", self.log());
        }
        self.stop();
    }
}
