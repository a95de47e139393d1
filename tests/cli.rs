//! The command line, end to end through the real binary: `check-config` (errors as
//! `file:line:`, the all-`!` SASL trap as a warning with its fix), `import-postfix` on
//! Debian-like main.cf and master.cf (its output passes `check-config`), and `check` in text
//! and JSON form. Only files in a scratch directory; no network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

fn relayguard(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relayguard"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A config with `policy` lines under `[policy]`, one smtp listener and a Maildir upstream.
fn config(dir: &TempDir, policy: &str) -> PathBuf {
    let path = dir.path().join("relayguard.toml");
    std::fs::write(
        &path,
        format!(
            "[policy]\n{policy}\n[[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:2525\"\nrole = \"smtp\"\n\n[upstream]\nkind = \"maildir\"\npath = \"maildir\"\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_config_reports_every_error_with_file_and_line() {
    let dir = TempDir::new().unwrap();
    let path = config(
        &dir,
        concat!(
            "myhostname = \"mx.example.com\"\n",                    // line 2
            "mydestinaton = \"local.test\"\n",                      // line 3
            "mynetworks = \"127.0.0.0/8 10.1.2.3/8\"\n",            // line 4
            "smtpd_sasl_exceptions_networks = \"2001:db8::/32\"\n", // line 5
            "smtpd_relay_restrictions = \"permit_mynetworks, local_only, reject\"\n", // line 6
        ),
    );
    let out = relayguard(
        dir.path(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let text = stdout(&out);
    let f = path.display().to_string();
    for want in [
        format!("{f}:3: unknown parameter `mydestinaton` (did you mean `mydestination`?)"),
        format!("{f}:4: bad value for `mynetworks`: non-null host address bits in \"10.1.2.3/8\", perhaps you should use \"10.0.0.0/8\" instead"),
        format!("{f}:5: bad value for `smtpd_sasl_exceptions_networks`: IPv6 network \"2001:db8::/32\" without brackets"),
        format!("{f}:6: `smtpd_relay_restrictions`: unknown restriction `local_only` (not a restriction; if it is a restriction class, list it in smtpd_restriction_classes)"),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&want)),
            "missing {want:?} in:\n{text}"
        );
    }
    // Every line names the file and a real line, including errors found in a parameter left
    // at a default that expands the bad one ($mynetworks).
    for line in text.lines() {
        let rest = line
            .strip_prefix(&format!("{f}:"))
            .unwrap_or_else(|| panic!("no file: {line}"));
        let n: usize = rest.split(':').next().unwrap().parse().unwrap();
        assert!((2..=6).contains(&n), "line {n}: {line}");
    }
    // A bad mynetworks entry is reported once, not again through the defaults that expand it.
    assert_eq!(
        text.lines().filter(|l| l.contains("10.1.2.3/8")).count(),
        1,
        "{text}"
    );
}

#[test]
fn check_config_warns_about_the_all_exclusions_sasl_trap() {
    let dir = TempDir::new().unwrap();
    let path = config(
        &dir,
        "myhostname = \"mx.example.com\"\nsmtpd_sasl_auth_enable = \"yes\"\nsmtpd_sasl_exceptions_networks = \"!10.1.0.0/16 !203.0.113.7\"\n",
    );
    let out = relayguard(
        dir.path(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let f = path.display().to_string();
    assert_eq!(
        stdout(&out),
        format!(
            "{f}:4: warning: `smtpd_sasl_exceptions_networks`: every entry is a `!` exclusion, so the list matches nobody (a negation only stops the scan, it never matches) (fix: add the networks the exclusions are cut from after them, e.g. `smtpd_sasl_exceptions_networks = !10.1.0.0/16 !203.0.113.7 0.0.0.0/0 [::]/0`)\n{f}: OK (1 listener(s), 1 warning(s))\n"
        )
    );
    // With the fix applied, no warning.
    let path = config(
        &dir,
        "myhostname = \"mx.example.com\"\nsmtpd_sasl_auth_enable = \"yes\"\nsmtpd_sasl_exceptions_networks = \"!10.1.0.0/16 !203.0.113.7 0.0.0.0/0 [::]/0\"\n",
    );
    let out = relayguard(
        dir.path(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    assert_eq!(
        stdout(&out),
        format!("{f}: OK (1 listener(s), 0 warning(s))\n")
    );
}

const DEBIAN_MAIN_CF: &str = r"# See /usr/share/postfix/main.cf.dist for a commented, more complete version

smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no
compatibility_level = 3.6

# TLS parameters
smtpd_tls_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem
smtpd_tls_key_file=/etc/ssl/private/ssl-cert-snakeoil.key
smtpd_tls_security_level=may
smtp_tls_CApath=/etc/ssl/certs
smtp_tls_security_level=may
smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache

smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
myhostname = mx.example.com
alias_maps = hash:/etc/aliases
alias_database = hash:/etc/aliases
myorigin = /etc/mailname
mydestination = $myhostname, example.com, localhost.localdomain, , localhost
relayhost =
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128
  192.168.87.0/24
mailbox_size_limit = 0
recipient_delimiter = +
inet_interfaces = all
inet_protocols = all
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = yes
";

const DEBIAN_MASTER_CF: &str = r"#
# Postfix master process configuration file.
# ==========================================================================
# service type  private unpriv  chroot  wakeup  maxproc command + args
# ==========================================================================
smtp      inet  n       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o milter_macro_daemon_name=ORIGINATING
smtps     inet  n       -       y       -       -       smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       y       -       -       trivial-rewrite
smtp      unix  -       -       y       -       -       smtp
";

#[test]
fn import_postfix_output_passes_check_config() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("main.cf"), DEBIAN_MAIN_CF).unwrap();
    std::fs::write(dir.path().join("master.cf"), DEBIAN_MASTER_CF).unwrap();
    let out = relayguard(dir.path(), &["import-postfix", "main.cf", "master.cf"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = stdout(&out);
    for want in [
        "mynetworks = \"127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128 192.168.87.0/24\"",
        "smtpd_relay_restrictions = \"permit_mynetworks permit_sasl_authenticated defer_unauth_destination\"",
        "cert = \"/etc/ssl/certs/ssl-cert-snakeoil.pem\"",
        "name = \"submission\"\naddress = \"0.0.0.0:587\"\nrole = \"submission\"",
        "smtpd_relay_restrictions = \"permit_sasl_authenticated,reject\"",
        "name = \"smtps\"\naddress = \"0.0.0.0:465\"\nrole = \"submissions\"",
        "#   -o milter_macro_daemon_name=ORIGINATING    (",
        // Read as part of local_recipient_maps (Postfix's default names $alias_maps).
        "alias_maps = \"hash:/etc/aliases\"",
        "kind = \"smtp\"\naddress = \"127.0.0.1:10025\"\nidentity = \"xclient\"",
    ] {
        assert!(toml.contains(want), "missing {want:?} in:\n{toml}");
    }
    // Point [tls] at the dev pair (the snakeoil files are not here) and check the result.
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let toml = toml
        .replace(
            "cert = \"/etc/ssl/certs/ssl-cert-snakeoil.pem\"",
            &format!("cert = \"{}\"", certs.join("dev-cert.pem").display()),
        )
        .replace(
            "key = \"/etc/ssl/private/ssl-cert-snakeoil.key\"",
            &format!("key = \"{}\"", certs.join("dev-key.pem").display()),
        );
    let path = dir.path().join("imported.toml");
    std::fs::write(&path, toml).unwrap();
    let out = relayguard(
        dir.path(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    assert_eq!(
        stdout(&out),
        format!("{}: OK (3 listener(s), 0 warning(s))\n", path.display())
    );
    assert_eq!(out.status.code(), Some(0));
}

/// A policy with a table hit to explain; the table name is relative to the config.
fn table_config(dir: &TempDir) -> PathBuf {
    std::fs::write(
        dir.path().join("clients"),
        "203.0.113 REJECT no mail from this net\n",
    )
    .unwrap();
    config(
        dir,
        "myhostname = \"mx.example.com\"\nmydestination = \"local.test\"\nsmtpd_client_restrictions = \"check_client_access texthash:clients\"\n",
    )
}

fn check_args<'a>(path: &'a Path, client: &'a str) -> Vec<&'a str> {
    vec![
        "check",
        "--config",
        path.to_str().unwrap(),
        "--client",
        client,
        "--helo",
        "c.example",
        "--from",
        "a@b.example",
        "--rcpt",
        "u@local.test",
    ]
}

#[test]
fn check_names_the_deciding_restriction_table_and_key() {
    let dir = TempDir::new().unwrap();
    let path = table_config(&dir);
    let out = relayguard(dir.path(), &check_args(&path, "203.0.113.9"));
    assert_eq!(out.status.code(), Some(1), "a refusal exits 1");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "client unknown[203.0.113.9] on listener smtp (smtpd_delay_reject = yes); AUTH offered in EHLO: no"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("RCPT ")
            && l.ends_with(
                "-> 554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: no mail from this net"
            )),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.trim() == "decided by smtpd_client_restrictions: check_client_access texthash:clients 203.0.113=REJECT no mail from this net"),
        "{text}"
    );
    // A client the table does not list passes and exits 0.
    let out = relayguard(dir.path(), &check_args(&path, "198.51.100.1"));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("-> 250 2.1.5 Ok"), "{}", stdout(&out));
}

#[test]
fn check_json_has_the_documented_fields() {
    let dir = TempDir::new().unwrap();
    let path = table_config(&dir);
    let mut args = check_args(&path, "203.0.113.9");
    args.push("--json");
    let out = relayguard(dir.path(), &args);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["client"], "unknown[203.0.113.9]");
    assert_eq!(json["listener"], "smtp");
    assert_eq!(json["auth_offered"], false);
    assert_eq!(json["smtpd_delay_reject"], true);
    let steps = json["steps"].as_array().unwrap();
    let stages: Vec<&str> = steps.iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["CONNECT", "EHLO", "MAIL", "RCPT"]);
    assert_eq!(steps[2]["command"], "MAIL FROM:<a@b.example>");
    assert_eq!(
        steps[2]["reply"],
        serde_json::json!({"code": 250, "enhanced": "2.1.0", "text": "Ok", "line": "250 2.1.0 Ok"})
    );
    let rcpt = &steps[3];
    assert_eq!(rcpt["command"], "RCPT TO:<u@local.test>");
    assert_eq!(rcpt["accepted"], false);
    assert_eq!(rcpt["closes"], false);
    assert_eq!(
        rcpt["reply"],
        serde_json::json!({
            "code": 554,
            "enhanced": "5.7.1",
            "text": "<unknown[203.0.113.9]>: Client host rejected: no mail from this net",
            "line": "554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: no mail from this net"
        })
    );
    assert_eq!(
        rcpt["reason"],
        serde_json::json!({
            "parameter": "smtpd_client_restrictions",
            "restriction": "check_client_access texthash:clients",
            "table": "texthash:clients",
            "key": "203.0.113",
            "value": "REJECT no mail from this net",
            "via": []
        })
    );
    let lists = rcpt["lists"].as_array().unwrap();
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert_eq!(lists[0]["parameter"], "smtpd_client_restrictions");
    assert_eq!(lists[0]["verdict"], "reject");
    assert!(rcpt["notes"].as_array().unwrap().is_empty());
    assert!(rcpt["remark"].is_null());
}

#[test]
fn check_config_warns_about_an_exclusion_after_its_network_once() {
    let dir = TempDir::new().unwrap();
    let path = config(
        &dir,
        "mynetworks = \"127.0.0.0/8 192.168.87.0/24 !192.168.87.9\"\n", // line 2
    );
    let out = relayguard(
        dir.path(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    let f = path.display().to_string();
    let want = format!("{f}:2: warning: `mynetworks`: `!192.168.87.9` comes after `192.168.87.0/24`, which already matches it; the first match wins, so the exclusion never applies (fix: move `!192.168.87.9` before `192.168.87.0/24`)");
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(": warning: "))
            .collect::<Vec<_>>(),
        vec![want.as_str()],
        "{text}"
    );
    assert!(text.contains("OK (1 listener(s), 1 warning(s))"), "{text}");
}

#[test]
fn the_shipped_config_is_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = relayguard(
        root,
        &["check-config", "--config", "config/relayguard.toml"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).ends_with("OK (3 listener(s), 0 warning(s))\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_postfix_parameter_nobody_implements_is_an_error() {
    let dir = TempDir::new().unwrap();
    let path = config(&dir, "line_length_limit = \"4096\"\n"); // line 2
    let out = relayguard(
        dir.path(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let want = format!(
        "{}:2: Postfix parameter `line_length_limit` is not implemented by relayguard",
        path.display()
    );
    assert!(
        stdout(&out).lines().any(|l| l.starts_with(&want)),
        "{}",
        stdout(&out)
    );
}

#[test]
fn check_says_when_a_listener_wants_starttls_first() {
    let dir = TempDir::new().unwrap();
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
    let path = config(
        &dir,
        &format!(
            "myhostname = \"mx.example.com\"\nsmtpd_tls_security_level = \"encrypt\"\n\
             [tls]\ncert = \"{certs}/dev-cert.pem\"\nkey = \"{certs}/dev-key.pem\"\n"
        ),
    );
    let out = relayguard(dir.path(), &check_args(&path, "192.0.2.1"));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let mail = lines.iter().position(|l| l.starts_with("MAIL ")).unwrap();
    assert!(
        lines[mail].ends_with("-> 530 5.7.0 Must issue a STARTTLS command first"),
        "{text}"
    );
    assert_eq!(
        lines[mail + 1].trim(),
        "(listener `smtp` requires STARTTLS first (use --tls))"
    );
    let mut args = check_args(&path, "192.0.2.1");
    args.push("--tls");
    let out = relayguard(dir.path(), &args);
    assert!(!stdout(&out).contains("530"), "{}", stdout(&out));
}

/// A listener on the upstream's own address (a content-filter re-injection port copied from
/// master.cf, say) would relay to itself and probe itself forever: refused at load.
#[test]
fn check_config_refuses_a_listener_on_the_upstreams_address() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("relayguard.toml");
    let text = |listen: &str, upstream: &str| {
        format!(
            "[policy]\nmydestination = \"local.test\"\n[[listener]]\nname = \"reinject\"\naddress = \"{listen}\"\nrole = \"smtp\"\n\n[upstream]\nkind = \"smtp\"\naddress = \"{upstream}\"\n"
        )
    };
    for (listen, upstream) in [
        ("127.0.0.1:10025", "127.0.0.1:10025"),
        ("0.0.0.0:10025", "localhost:10025"),
    ] {
        std::fs::write(&path, text(listen, upstream)).unwrap();
        let out = relayguard(dir.path(), &["check-config", "--config", "relayguard.toml"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned() + &stdout(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("relayguard.toml:5: listener `reinject` on {listen} is the upstream's own address ({upstream}): relayguard would relay to itself")),
            "{err}"
        );
    }
    // Another port on the same host is the normal placement.
    std::fs::write(&path, text("127.0.0.1:2525", "127.0.0.1:10025")).unwrap();
    let out = relayguard(dir.path(), &["check-config", "--config", "relayguard.toml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
