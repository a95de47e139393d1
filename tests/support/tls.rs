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

/// A client certificate: `cert` (EC P-256, `CN=<cn>`, clientAuth) signed by `ca`, its `key`,
/// and its Postfix-style SHA-256 fingerprints (upper-case hex pairs joined by `:`).
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub fingerprint: String,
    pub pubkey_fingerprint: String,
}

impl ClientCert {
    /// A new CA (`CN=<cn> CA`) in `dir` and one client certificate it signed.
    pub fn generate(dir: &Path, cn: &str) -> ClientCert {
        Self::issue(dir, cn, None)
    }

    /// A client certificate for `cn` signed by `issuer`'s CA.
    pub fn issued_by(dir: &Path, cn: &str, issuer: &ClientCert) -> ClientCert {
        Self::issue(dir, cn, Some(issuer))
    }

    fn issue(dir: &Path, cn: &str, issuer: Option<&ClientCert>) -> ClientCert {
        let file = |suffix: &str| dir.join(format!("{}-{suffix}", cn.replace(' ', "_")));
        let (ca_key, ca, key, csr, cert, ext) = (
            file("ca-key.pem"),
            file("ca.pem"),
            file("key.pem"),
            file("client.csr"),
            file("cert.pem"),
            file("client.ext"),
        );
        fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca_subject = format!("/CN={cn} CA");
        let subject = format!("/CN={cn}");
        let (ca, ca_key) = match issuer {
            Some(i) => (i.ca.clone(), i.ca_key.clone()),
            None => {
                let args = [
                    &["req", "-x509"][..],
                    &ec,
                    &["-days", "30", "-subj", &ca_subject],
                ];
                openssl(&args.concat(), &[("-keyout", &ca_key), ("-out", &ca)]);
                (ca, ca_key)
            }
        };
        openssl(
            &[&["req"][..], &ec, &["-subj", &subject]].concat(),
            &[("-keyout", &key), ("-out", &csr)],
        );
        openssl(
            &["x509", "-req", "-days", "30", "-set_serial", "7"],
            &[
                ("-in", &csr),
                ("-CA", &ca),
                ("-CAkey", &ca_key),
                ("-extfile", &ext),
                ("-out", &cert),
            ],
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let spki = Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&key)
            .output()
            .unwrap()
            .stdout;
        ClientCert {
            ca,
            ca_key,
            cert,
            key,
            fingerprint: sha256_colons(&der),
            pubkey_fingerprint: sha256_colons(&spki),
        }
    }
}

/// `openssl dgst -sha256` of `data` as Postfix prints fingerprints.
fn sha256_colons(data: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap().stdout;
    out.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `openssl s_client` against 127.0.0.1:`port` with `args`, writes `input` lines (CRLF
/// added by `-crlf`) 300 ms apart and waits until the server closes; returns stdout and
/// stderr together, stderr first (s_client prints the plaintext part of `-starttls` there, so
/// the session's replies stay in order at the end).
/// Bounded by `timeout 20`, so a server that never closes fails the test instead of hanging.
pub fn s_client(port: u16, args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("timeout")
        .args(["20", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-crlf",
            "-ign_eof",
            "-nocommands",
            "-servername",
            "localhost",
        ])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl s_client runs");
    // One command at a time, as a client waiting for each reply would send them: a burst
    // makes Postfix log improper pipelining, and its close after QUIT can then reset the
    // connection before s_client has printed every reply.
    let mut stdin = child.stdin.take().unwrap();
    for line in input.lines() {
        std::thread::sleep(std::time::Duration::from_millis(300));
        if stdin.write_all(format!("{line}\n").as_bytes()).is_err() {
            break;
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

/// The SMTP replies (lines starting with three digits and a space) in an s_client transcript.
pub fn smtp_replies(transcript: &str) -> Vec<&str> {
    transcript
        .lines()
        .filter(|l| {
            l.len() > 4
                && l.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                && l.as_bytes()[3] == b' '
        })
        .collect()
}

/// Whether the transcript shows a completed handshake with `protocol` (`TLSv1.2`).
pub fn negotiated(transcript: &str, protocol: &str) -> bool {
    transcript.contains(&format!("Protocol  : {protocol}"))
        || transcript.contains(&format!("New, {protocol}"))
}
