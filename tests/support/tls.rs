//! Throwaway TLS material for tests: a CA and a leaf for `localhost`, 127.0.0.1 and ::1.
//!
//! Made with openssl(1) (installed by `.ci/run`) so that the harness adds no crypto crates.
//! The repository's `certs/dev-*.pem`, when present, are preferred for relayguard itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// PEM files of one certificate chain: `ca` signed `cert`, `key` is the leaf's private key.
#[derive(Clone, Debug)]
pub struct CertSet {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertSet {
    /// The repository's development certificates, if another change has added them.
    pub fn dev() -> Option<CertSet> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let set = CertSet {
            ca: root.join("dev-ca.pem"),
            cert: root.join("dev-cert.pem"),
            key: root.join("dev-key.pem"),
        };
        (set.ca.is_file() && set.cert.is_file() && set.key.is_file()).then_some(set)
    }

    /// Generates a fresh CA and leaf (EC P-256, 30 days) in `dir`, which must exist.
    /// The leaf file holds the leaf then the CA, as `[tls] cert` expects a chain.
    pub fn generate(dir: &Path) -> CertSet {
        let ca_key = dir.join("ca-key.pem");
        let ca = dir.join("ca.pem");
        let key = dir.join("key.pem");
        let csr = dir.join("leaf.csr");
        let leaf = dir.join("leaf.pem");
        let cert = dir.join("cert.pem");
        let ext = dir.join("leaf.ext");
        fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-days", "30", "-subj", "/CN=relayguard test CA"],
            ]
            .concat(),
            &[("-keyout", &ca_key), ("-out", &ca)],
        );
        openssl(
            &[&["req"][..], &ec, &["-subj", "/CN=localhost"]].concat(),
            &[("-keyout", &key), ("-out", &csr)],
        );
        openssl(
            &["x509", "-req", "-days", "30", "-set_serial", "1"],
            &[
                ("-in", &csr),
                ("-CA", &ca),
                ("-CAkey", &ca_key),
                ("-extfile", &ext),
                ("-out", &leaf),
            ],
        );
        let chain = [fs::read(&leaf).unwrap(), fs::read(&ca).unwrap()].concat();
        fs::write(&cert, chain).unwrap();
        CertSet { ca, cert, key }
    }
}

fn openssl(args: &[&str], paths: &[(&str, &Path)]) {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    for (flag, path) in paths {
        cmd.arg(flag).arg(path);
    }
    let out = cmd.output().expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
