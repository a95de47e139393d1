//! Postfix's smtpd_tls_* parameters pasted into relayguard: certificate files (per listener
//! too), chain files with several key/certificate groups, protocol limits in both syntaxes,
//! cipher exclusions, wrapper mode and the legacy security-level switches. Handshakes are
//! made with `openssl s_client`; protocol and cipher limits are compared with a private
//! Postfix 3.7 given the same parameters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

use support::client::Client;
use support::postfix::Postfix;
use support::relayguard::{Relayguard, Role};
use support::tls::{negotiated, s_client, smtp_replies, CertSet};

const HOST: &str = "relayguard.test";

fn base() -> support::relayguard::RelayguardBuilder {
    Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .upstream_maildir()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// STARTTLS handshake outcome on `port` with extra s_client `args`: the protocol, or `None`.
fn starttls_protocol(port: u16, args: &[&str]) -> Option<&'static str> {
    let text = s_client(port, &[&["-starttls", "smtp"][..], args].concat(), "QUIT\n");
    ["TLSv1.3", "TLSv1.2"]
        .into_iter()
        .find(|p| negotiated(&text, p) && text.contains("221 2.0.0 Bye"))
}

/// `check-config` on a config text; returns (success, output).
fn check_config(dir: &Path, text: &str) -> (bool, String) {
    let file = dir.join("relayguard.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relayguard"))
        .args(["check-config", "--config", path(&file)])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn config_with(policy: &str) -> String {
    let dev = CertSet::dev().expect("certs/ dev certificates");
    format!(
        "[policy]\nmydestination = \"local.test\"\n{policy}\n\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:0\"\nrole = \"smtp\"\n\n\
         [upstream]\nkind = \"maildir\"\npath = \"/nonexistent/maildir\"\n",
        path(&dev.cert),
        path(&dev.key)
    )
}

#[test]
fn cert_file_override_on_one_listener() {
    let dir = tempfile::tempdir().unwrap();
    let other = CertSet::generate(dir.path());
    let rg = base()
        .listener("smtp", Role::Smtp)
        .listener_with(
            "other",
            Role::Smtp,
            &[
                ("smtpd_tls_cert_file", path(&other.cert)),
                ("smtpd_tls_key_file", path(&other.key)),
            ],
        )
        .start();
    let verify = |port: u16, ca: &Path| {
        let text = s_client(
            port,
            &[
                "-starttls",
                "smtp",
                "-CAfile",
                path(ca),
                "-verify_return_error",
            ],
            "QUIT\n",
        );
        text.contains("Verify return code: 0 (ok)") && text.contains("221 2.0.0 Bye")
    };
    assert!(
        verify(rg.port("other"), &other.ca),
        "the override's certificate"
    );
    assert!(!verify(rg.port("other"), rg.ca_path()));
    assert!(verify(rg.port("smtp"), rg.ca_path()), "[tls] elsewhere");
}

#[test]
fn cert_file_holding_its_key_and_chain_files_with_two_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    let ec = CertSet::generate(dir.path());
    // One file with key, leaf and CA: smtpd_tls_cert_file alone (key_file defaults to it).
    let mixed = dir.path().join("mixed.pem");
    let pem = |p: &Path| std::fs::read_to_string(p).unwrap();
    std::fs::write(&mixed, pem(&ec.cert) + &pem(&ec.key)).unwrap();
    // An RSA group after the EC one, as Postfix's chain files allow.
    let (rsa_key, rsa_cert) = (dir.path().join("rsa-key.pem"), dir.path().join("rsa.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=rsa.localhost",
            "-keyout",
            path(&rsa_key),
            "-out",
            path(&rsa_cert),
        ])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let chains = dir.path().join("chains.pem");
    std::fs::write(
        &chains,
        pem(&ec.key) + &pem(&ec.cert) + &pem(&rsa_key) + &pem(&rsa_cert),
    )
    .unwrap();
    let rg = base()
        .listener_with(
            "mixed",
            Role::Smtp,
            &[("smtpd_tls_cert_file", path(&mixed))],
        )
        .listener_with(
            "chains",
            Role::Smtp,
            &[("smtpd_tls_chain_files", path(&chains))],
        )
        .start();
    let text = s_client(
        rg.port("mixed"),
        &["-starttls", "smtp", "-CAfile", path(&ec.ca)],
        "QUIT\n",
    );
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    let subject = |sigalgs: &str| {
        let text = s_client(
            rg.port("chains"),
            &["-starttls", "smtp", "-tls1_2", "-sigalgs", sigalgs],
            "QUIT\n",
        );
        assert!(text.contains("221 2.0.0 Bye"), "{text}");
        text.lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(subject("ECDSA+SHA256").contains("CN = localhost"));
    assert!(subject("RSA-PSS+SHA256:RSA+SHA256").contains("CN = rsa.localhost"));

    // Postfix's rules for chain files: the key comes first.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, pem(&ec.cert) + &pem(&ec.key)).unwrap();
    let err = base()
        .listener_with("bad", Role::Smtp, &[("smtpd_tls_chain_files", path(&bad))])
        .try_start()
        .err()
        .expect("a chain file with the certificate first is refused");
    assert!(
        err.contains("bad value for `smtpd_tls_chain_files`"),
        "{err}"
    );
    assert!(err.contains("key not first"), "{err}");
}

/// The same protocol limits on relayguard and on Postfix 3.7 give the same handshakes.
#[test]
fn protocol_limits_match_postfix() {
    let v13 = [None, Some("TLSv1.3")];
    let v12 = [Some("TLSv1.2"), None];
    let cases = [
        ("smtpd_tls_protocols", ">=TLSv1.3", Role::Smtp, v13),
        (
            "smtpd_tls_protocols",
            "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1, !TLSv1.2",
            Role::Smtp,
            v13,
        ),
        ("smtpd_tls_protocols", "<=TLSv1.2", Role::Smtp, v12),
        // Mandatory protocols govern encrypt; the opportunistic ones are then ignored.
        (
            "smtpd_tls_mandatory_protocols",
            ">=TLSv1.2, <=TLSv1.2",
            Role::Submission,
            v12,
        ),
    ];
    for (name, value, role, expected) in cases {
        let mut overrides = vec![(name, value)];
        if role == Role::Submission {
            overrides.push(("smtpd_tls_protocols", ">=TLSv1.3"));
        }
        let rg = base().listener_with("l", role, &overrides).start();
        let level = if role == Role::Submission {
            "encrypt"
        } else {
            "may"
        };
        let mut pf = Postfix::builder().param("smtpd_tls_security_level", level);
        for (n, v) in &overrides {
            pf = pf.param(n, v);
        }
        let pf = pf.start();
        for (flag, expected) in ["-tls1_2", "-tls1_3"].into_iter().zip(expected) {
            let ours = starttls_protocol(rg.port("l"), &[flag]);
            let theirs = starttls_protocol(pf.port_xclient(), &[flag]);
            assert_eq!(ours, theirs, "{name} = {value}, {flag}");
            assert_eq!(ours, expected, "{name} = {value}, {flag}");
        }
    }
}

#[test]
fn protocols_rustls_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = check_config(
        dir.path(),
        &config_with("smtpd_tls_protocols = \"<=TLSv1.1\""),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("relayguard.toml:3: bad value for `smtpd_tls_protocols`: `<=TLSv1.1` leaves neither TLSv1.2 nor TLSv1.3"),
        "{out}"
    );
    let (ok, out) = check_config(
        dir.path(),
        &config_with("smtpd_tls_protocols = \"!SSLv2, !SSLv3\""),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("relayguard.toml:3: warning: `smtpd_tls_protocols`: `!SSLv2, !SSLv3` also allows TLSv1, TLSv1.1, which rustls cannot offer"),
        "{out}"
    );
    let (ok, out) = check_config(
        dir.path(),
        &config_with("smtpd_tls_protocols = \"TLSv1.4\""),
    );
    assert!(!ok && out.contains("`TLSv1.4` is not one of"), "{out}");
}

/// An exclusion removes TLS 1.2 suites (OpenSSL's cipher list) and leaves TLS 1.3 alone, in
/// Postfix and in relayguard alike.
#[test]
fn cipher_exclusions_match_postfix() {
    let exclude = ("smtpd_tls_exclude_ciphers", "CHACHA20, aNULL, RC4, MD5");
    let rg = base().listener_with("l", Role::Smtp, &[exclude]).start();
    let pf = Postfix::builder().param(exclude.0, exclude.1).start();
    let cases: [&[&str]; 4] = [
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        &["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
        &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"],
    ];
    let mut outcomes = Vec::new();
    for args in cases {
        let ours = starttls_protocol(rg.port("l"), args);
        assert_eq!(ours, starttls_protocol(pf.port_xclient(), args), "{args:?}");
        outcomes.push(ours.is_some());
    }
    assert_eq!(outcomes, [false, true, true, true]);

    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = check_config(dir.path(), &config_with("smtpd_tls_ciphers = \"null\""));
    assert!(
        !ok && out.contains("bad value for `smtpd_tls_ciphers`: `null`"),
        "{out}"
    );
    let (ok, out) = check_config(
        dir.path(),
        &config_with("smtpd_tls_ciphers = \"high\"\nsmtpd_tls_exclude_ciphers = \"AES128, BOGUS\""),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("`BOGUS` is not a cipher name OpenSSL knows"),
        "{out}"
    );
    assert!(!out.contains("AES128`"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrappermode_and_legacy_levels() {
    let rg = base()
        .listener_with("wrapped", Role::Smtp, &[("smtpd_tls_wrappermode", "yes")])
        .listener_with("enforced", Role::Smtp, &[("smtpd_enforce_tls", "yes")])
        .listener_with("off", Role::Smtp, &[("smtpd_use_tls", "no")])
        .start();
    let port = rg.port("wrapped");
    let text = tokio::task::spawn_blocking(move || s_client(port, &["-tls1_3"], "QUIT\n"))
        .await
        .unwrap();
    assert_eq!(
        smtp_replies(&text),
        [
            format!("220 {HOST} ESMTP relayguard").as_str(),
            "221 2.0.0 Bye"
        ],
        "{text}"
    );
    let mut c = Client::after_ehlo(rg.addr("enforced")).await;
    assert!(c.capabilities.iter().any(|k| k == "STARTTLS"));
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example>").await,
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    let mut c = Client::after_ehlo(rg.addr("off")).await;
    assert!(!c.capabilities.iter().any(|k| k == "STARTTLS"));
    assert_eq!(
        c.cmd("STARTTLS").await,
        "502 5.5.1 Error: command not implemented"
    );
}
