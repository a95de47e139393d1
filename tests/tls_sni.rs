//! tls_server_sni_maps: the certificate a client gets is the one the map names for the SNI name
//! it sent (exact name first, then `.parent` for names under it), the default certificate when
//! nothing matches (with Postfix's log line), and a reload reads the certificates again.
//! Judged from outside with openssl s_client -servername.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::relayguard::{Relayguard, RelayguardBuilder, Role};
use support::tls::s_client;

/// A self-signed EC key and certificate for `cn`, written key first as
/// smtpd_tls_chain_files and tls_server_sni_maps values expect.
fn chain_file(dir: &Path, file: &str, cn: &str) -> String {
    let key = dir.join(format!("{file}.key"));
    let cert = dir.join(format!("{file}.crt"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={cn}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join(format!("{file}.pem"));
    fs::write(
        &path,
        [fs::read(&key).unwrap(), fs::read(&cert).unwrap()].concat(),
    )
    .unwrap();
    path.display().to_string()
}

/// The subject CN of the certificate the server sent for `servername` (STARTTLS on `port`).
fn served_cn(port: u16, servername: &str) -> String {
    let text = s_client(
        port,
        &["-starttls", "smtp", "-servername", servername],
        "QUIT\n",
    );
    let subject = text
        .lines()
        .find(|l| l.trim_start().starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject in:\n{text}"));
    subject
        .rsplit("CN")
        .next()
        .unwrap()
        .trim_start_matches([' ', '='])
        .trim()
        .to_owned()
}

/// A relayguard whose `tls_server_sni_maps` is a texthash file in `dir` with `entries`.
fn with_sni_map(dir: &Path, entries: &str) -> RelayguardBuilder {
    let map = dir.join("sni");
    fs::write(&map, entries).unwrap();
    Relayguard::builder()
        .policy("mydestination", "local.test")
        .policy(
            "tls_server_sni_maps",
            &format!("texthash:{}", map.display()),
        )
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
}

#[test]
fn the_certificate_follows_the_sni_name_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let org = chain_file(dir.path(), "org", "mx.example.org");
    let net = chain_file(dir.path(), "net", "wildcard.example.net");
    let rg = with_sni_map(
        dir.path(),
        &format!("mx.example.org {org}\n.example.net {net}\nexample.net {net}\n"),
    )
    .start();
    let port = rg.port("smtp");
    assert_eq!(served_cn(port, "mx.example.org"), "mx.example.org");
    assert_eq!(served_cn(port, "MX.Example.ORG"), "mx.example.org");
    assert_eq!(
        served_cn(port, "smtp.eu.example.net"),
        "wildcard.example.net"
    );
    assert_eq!(served_cn(port, "example.net"), "wildcard.example.net");
    // No key for it: the default ([tls]) certificate, for localhost, and Postfix's line.
    assert_eq!(served_cn(port, "other.example.com"), "localhost");
    rg.wait_for_log(
        "TLS SNI other.example.com from unknown[127.0.0.1] not matched, using default chain",
        Duration::from_secs(5),
    );
    // `.example.org` is not in the map: a name under mx.example.org's parent is not matched.
    assert_eq!(served_cn(port, "www.example.org"), "localhost");

    // A renewed certificate in the same file is served after a reload.
    chain_file(dir.path(), "org", "renewed.example.org");
    rg.signal("HUP");
    rg.wait_for_log("reloaded", Duration::from_secs(10));
    assert_eq!(served_cn(port, "mx.example.org"), "renewed.example.org");
}

#[test]
fn a_broken_sni_entry_is_a_load_error_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = chain_file(dir.path(), "good", "good.example.org");
    let err = with_sni_map(
        dir.path(),
        &format!("good.example.org {good}\nbad.example.org /nonexistent/chain.pem\n"),
    )
    .try_start()
    .err()
    .expect("a missing chain file stops the start");
    assert!(
        err.contains("tls_server_sni_maps entry `bad.example.org`")
            && err.contains("/nonexistent/chain.pem"),
        "{err}"
    );
    let err = Relayguard::builder()
        .policy("mydestination", "local.test")
        .policy("tls_server_sni_maps", "regexp:{{/x/ y}}")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .try_start()
        .err()
        .expect("a table whose keys cannot be listed stops the start");
    assert!(
        err.contains("needs a table whose keys relayguard can list"),
        "{err}"
    );
}

/// `[tls]`'s own certificate is read again on reload too: a renewal needs no restart.
#[test]
fn the_default_certificate_is_read_again_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .start();
    let port = rg.port("smtp");
    assert_eq!(served_cn(port, "mx.example.org"), "localhost");

    chain_file(dir.path(), "renewed", "renewed.localhost");
    let text = fs::read_to_string(rg.config_path()).unwrap();
    let quoted = |p: &str| toml::Value::String(dir.path().join(p).display().to_string());
    let renewed: String = text
        .lines()
        .map(|l| match l.split_once(" = ") {
            Some(("cert", _)) => format!("cert = {}", quoted("renewed.crt")),
            Some(("key", _)) => format!("key = {}", quoted("renewed.key")),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(renewed, text);
    rg.write_config(&renewed);
    rg.signal("HUP");
    rg.wait_for_log("reloaded", Duration::from_secs(10));
    assert_eq!(served_cn(port, "mx.example.org"), "renewed.localhost");
}
