//! A private OpenLDAP for table tests: a slapd.conf and an mdb database filled by slapadd
//! from the test's LDIF in a temp dir, slapd in the foreground on ldap://127.0.0.1:PORT,
//! stopped by PID on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::process::{free_port, pid_alive, signal, wait_listening};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
pub const ROOT_PW: &str = "Ldap-pw-3f0b";

pub struct Slapd {
    dir: TempDir,
    child: Option<Child>,
    pub port: u16,
}

impl Slapd {
    /// Loads `ldif` (entries below [`SUFFIX`], the suffix entry included) and starts slapd.
    pub fn start(ldif: &str) -> Slapd {
        let dir = tempfile::Builder::new()
            .prefix("rg-slapd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             pidfile {pid}\n\
             database mdb\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"{ROOT_DN}\"\n\
             rootpw {ROOT_PW}\n\
             directory {db}\n\
             maxsize 10485760\n",
            pid = d.join("slapd.pid").display(),
            db = d.join("db").display(),
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        std::fs::write(d.join("data.ldif"), ldif).unwrap();
        let out = Command::new("slapadd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("data.ldif"))
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = Slapd {
            dir,
            child: None,
            port: free_port(),
        };
        s.run();
        s
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("slapd.log")).unwrap();
        // -d 0: stay in the foreground (so the PID is slapd's) without debug output.
        let child = Command::new("slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{}/", self.port))
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        let pid = child.id();
        self.child = Some(child);
        let up = wait_listening(self.port, Duration::from_secs(30), || pid_alive(pid));
        assert!(up, "slapd did not listen on {}", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
