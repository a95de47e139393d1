//! Real TLS handshakes over loopback TCP between relayguard's server and client configurations,
//! with the development certificates in `certs/`.

// Test helpers panic on setup failures; clippy only exempts `#[test]` bodies by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use relayguard::net::tls::{
    client_config, client_config_with_versions, server_config, server_config_with_versions,
    TlsError,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::{self, ClientConfig, ProtocolVersion, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn cert_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

fn dev_server() -> Arc<ServerConfig> {
    server_config(&cert_file("dev-cert.pem"), &cert_file("dev-key.pem")).unwrap()
}

fn dev_client() -> Arc<ClientConfig> {
    client_config(Some(&cert_file("dev-ca.pem")), true).unwrap()
}

/// Runs one handshake and a ping/pong; returns the version the client saw, or the client's error.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> Result<ProtocolVersion, std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(server).accept(tcp).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(tls.get_ref().1.protocol_version())
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let client_result = async {
        let mut tls = TlsConnector::from(client).connect(server_name, tcp).await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        Ok::<_, std::io::Error>(tls.get_ref().1.protocol_version())
    }
    .await;
    let server_result = tokio::time::timeout(Duration::from_secs(10), server_task)
        .await
        .unwrap()
        .unwrap();
    let version = client_result?;
    assert_eq!(server_result.unwrap(), version, "both ends agree");
    Ok(version.unwrap())
}

fn rustls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

#[tokio::test]
async fn default_configs_negotiate_tls13() {
    let version = handshake(dev_server(), dev_client(), "localhost")
        .await
        .unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_3);
}

#[tokio::test]
async fn certificate_is_valid_for_loopback_addresses() {
    for name in ["127.0.0.1", "::1"] {
        let version = handshake(dev_server(), dev_client(), name).await.unwrap();
        assert_eq!(version, ProtocolVersion::TLSv1_3, "{name}");
    }
}

#[tokio::test]
async fn server_speaks_tls12_to_a_tls12_only_client() {
    let client = client_config_with_versions(
        Some(&cert_file("dev-ca.pem")),
        true,
        &[&rustls::version::TLS12],
    )
    .unwrap();
    let version = handshake(dev_server(), client, "localhost").await.unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_2);
}

#[tokio::test]
async fn client_speaks_tls12_to_a_tls12_only_server() {
    let server = server_config_with_versions(
        &cert_file("dev-cert.pem"),
        &cert_file("dev-key.pem"),
        &[&rustls::version::TLS12],
    )
    .unwrap();
    let version = handshake(server, dev_client(), "localhost").await.unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_2);
}

#[tokio::test]
async fn forced_tls13_on_both_ends() {
    let v13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let server =
        server_config_with_versions(&cert_file("dev-cert.pem"), &cert_file("dev-key.pem"), v13)
            .unwrap();
    let client = client_config_with_versions(Some(&cert_file("dev-ca.pem")), true, v13).unwrap();
    let version = handshake(server, client, "localhost").await.unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_3);
}

/// A CA that did not sign the dev certificate, made fresh with openssl.
fn other_ca(dir: &Path) -> PathBuf {
    let key = dir.join("other-ca-key.pem");
    let cert = dir.join("other-ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=relayguard dev CA"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed for this test");
    assert!(status.success());
    cert
}

#[tokio::test]
async fn wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Same subject name as the real CA, so only the signature can tell them apart.
    let client = client_config(Some(&other_ca(dir.path())), true).unwrap();
    let err = handshake(dev_server(), client, "localhost")
        .await
        .unwrap_err();
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature | rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn system_roots_do_not_trust_the_dev_ca() {
    let client = client_config(None, true).unwrap();
    let err = handshake(dev_server(), client, "localhost")
        .await
        .unwrap_err();
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_name_is_refused() {
    let err = handshake(dev_server(), dev_client(), "mx.example")
        .await
        .unwrap_err();
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
                    | rustls::CertificateError::NotValidForName
            ))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn verify_false_accepts_an_unknown_ca_and_a_wrong_name() {
    let client = client_config(None, false).unwrap();
    let version = handshake(dev_server(), client, "mx.example").await.unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_3);
}

#[test]
fn missing_files_are_named() {
    let err = server_config(
        Path::new("/nonexistent/cert.pem"),
        &cert_file("dev-key.pem"),
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::ReadCertificates { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/cert.pem: cannot read certificate chain: "),
        "{err}"
    );

    let err = server_config(
        &cert_file("dev-cert.pem"),
        Path::new("/nonexistent/key.pem"),
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::ReadKey { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("/nonexistent/key.pem: "),
        "{err}"
    );
}

#[test]
fn a_key_file_is_not_a_certificate_chain() {
    let key = cert_file("dev-key.pem");
    let err = server_config(&key, &key).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificates { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no certificate found (expected PEM `BEGIN CERTIFICATE`)",
            key.display()
        )
    );
    // And a chain file holds no key.
    let chain = cert_file("dev-cert.pem");
    let err = server_config(&chain, &chain).unwrap_err();
    assert!(matches!(err, TlsError::ReadKey { .. }), "{err:?}");
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    other_ca(dir.path());
    let err = server_config(
        &cert_file("dev-cert.pem"),
        &dir.path().join("other-ca-key.pem"),
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::CertifiedKey { .. }), "{err:?}");
}

/// OpenSSL as the client, forced to each version, verifying against the dev CA.
#[tokio::test]
async fn openssl_s_client_handshakes_with_tls12_and_tls13() {
    for (flag, expected) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = TlsAcceptor::from(dev_server());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let version = tls.get_ref().1.protocol_version();
            tls.write_all(b"220 hello\r\n").await.unwrap();
            tls.shutdown().await.unwrap();
            version
        });
        let child = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-brief",
                "-ign_eof",
                "-verify_return_error",
                flag,
            ])
            .arg("-connect")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-verify_ip")
            .arg("127.0.0.1")
            .arg("-CAfile")
            .arg(cert_file("dev-ca.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl must be installed for this test");
        let output = wait_bounded(child).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stderr.contains(&format!("Protocol version: {expected}")),
            "{stderr}"
        );
        assert!(stderr.contains("Verification: OK"), "{stderr}");
        assert!(stdout.contains("220 hello"), "{stdout}");
        let version = server.await.unwrap();
        let want = if expected == "TLSv1.2" {
            ProtocolVersion::TLSv1_2
        } else {
            ProtocolVersion::TLSv1_3
        };
        assert_eq!(version, Some(want));
    }
}

/// Waits at most 20 s for the child, killing it (by its own handle) if it hangs.
async fn wait_bounded(mut child: std::process::Child) -> std::process::Output {
    for _ in 0..200 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    panic!("openssl s_client hung: {output:?}");
}
