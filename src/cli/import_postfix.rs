//! `import-postfix`: main.cf (and master.cf) -> the equivalent relayguard config, with a comment
//! for everything that could not be carried over.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::settings;
use crate::policy::main_cf::{parse_main_cf, parse_master_cf, MasterService};
use crate::policy::{self, ParamMap};

pub fn import(main_cf: &Path, master_cf: Option<&Path>) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(main_cf)
        .with_context(|| format!("reading {}", main_cf.display()))?;
    let params = parse_main_cf(&text, main_cf)?;
    let services = match master_cf {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse_master_cf(&text, path)?
        }
        None => Vec::new(),
    };
    print!("{}", render(&params, &services, main_cf, master_cf));
    Ok(ExitCode::SUCCESS)
}

/// Names relayguard reads: the policy's, the session's, the restriction classes declared, and
/// the admin's own parameters that main.cf or a master.cf service refers to as `$name`
/// (without them the reference would point nowhere, and relayguard refuses that).
fn carried<'a>(params: &'a ParamMap, services: &[MasterService]) -> impl Fn(&str) -> bool + 'a {
    let classes = policy::restriction_class_names(params);
    let user_defined = policy::user_defined_parameters(
        std::iter::once(params).chain(services.iter().map(|s| &s.overrides)),
    );
    move |name: &str| {
        policy::PARAMETERS.contains(&name)
            || settings::PARAMETERS.contains(&name)
            // The key files go to the [tls] table (TLS_FILES), not the policy.
            || (crate::config::tls_params::PARAMETERS.contains(&name)
                && !TLS_FILES.contains(&name))
            || classes.iter().any(|c| c == name)
            || user_defined.contains(name)
    }
}

/// TLS files relayguard takes in its own `[tls]` table.
const TLS_FILES: [&str; 3] = [
    "smtpd_tls_cert_file",
    "smtpd_tls_key_file",
    "smtpd_tls_chain_files",
];

fn render(
    params: &ParamMap,
    services: &[MasterService],
    main_cf: &Path,
    master_cf: Option<&Path>,
) -> String {
    let is_carried = carried(params, services);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# relayguard config imported from {}",
        main_cf.display()
    );
    if let Some(m) = master_cf {
        let _ = writeln!(out, "# and {}", m.display());
    }
    let _ = writeln!(
        out,
        "# Review it, then run `relayguard check-config --config FILE`.\n\n[policy]"
    );
    let mut skipped = Vec::new();
    for (name, value) in params.iter() {
        if is_carried(name) {
            let _ = writeln!(out, "{name} = {}", toml_string(&value.value));
        } else if !TLS_FILES.contains(&name) {
            skipped.push(format!("{name} = {}", value.value));
        }
    }
    if !skipped.is_empty() {
        out.push_str("\n# Not carried over (MTA settings relayguard does not use or implement):\n");
        for s in skipped {
            let _ = writeln!(out, "#   {s}");
        }
    }
    out.push_str(&render_tls(params));
    out.push_str(&render_listeners(services, &is_carried));
    out.push_str(
        "\n[upstream]\n# Your MTA, on a listener that trusts relayguard's XCLIENT (smtpd_authorized_xclient_hosts),\n# with relayguard's address NOT in its mynetworks.\nkind = \"smtp\"\naddress = \"127.0.0.1:10025\"\nidentity = \"xclient\"\n",
    );
    out
}

fn render_tls(params: &ParamMap) -> String {
    let chain = params.value("smtpd_tls_chain_files");
    let (cert, key) = match chain {
        Some(files) => {
            let files: Vec<&str> = files.split([',', ' ']).filter(|s| !s.is_empty()).collect();
            match files.as_slice() {
                [key, cert, ..] if key.contains("key") => (Some(*cert), Some(*key)),
                [cert, key, ..] => (Some(*cert), Some(*key)),
                _ => (None, None),
            }
        }
        None => (
            params.value("smtpd_tls_cert_file"),
            params.value("smtpd_tls_key_file"),
        ),
    };
    match (cert, key) {
        (Some(c), Some(k)) => format!(
            "\n[tls]\ncert = {}\nkey = {}\n",
            toml_string(c),
            toml_string(k)
        ),
        _ => "\n# No smtpd_tls_cert_file/key_file: add a [tls] table for STARTTLS and port 465.\n"
            .into(),
    }
}

fn render_listeners(services: &[MasterService], is_carried: &impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    let smtpd = services
        .iter()
        .filter(|s| s.kind == "inet" && s.command == "smtpd");
    let mut any = false;
    for s in smtpd {
        any = true;
        let wrapper = s
            .overrides
            .value("smtpd_tls_wrappermode")
            .is_some_and(|v| v == "yes");
        let (address, role) = listener_of(&s.name, wrapper);
        let name = s.name.rsplit(':').next().unwrap_or(&s.name);
        let _ = writeln!(out, "\n# master.cf line {}: {}", s.line, s.name);
        let _ = writeln!(
            out,
            "[[listener]]\nname = {}\naddress = {}\nrole = \"{role}\"",
            toml_string(name),
            toml_string(&address)
        );
        let mut overrides = String::new();
        let mut dropped = Vec::new();
        for (k, v) in s.overrides.iter() {
            if is_carried(k) {
                let _ = writeln!(overrides, "{k} = {}", toml_string(&v.value));
            } else if k != "smtpd_tls_wrappermode" {
                dropped.push(format!("-o {k}={}", v.value));
            }
        }
        if !overrides.is_empty() {
            let _ = write!(out, "[listener.policy]\n{overrides}");
        }
        for d in dropped {
            let _ = writeln!(out, "# not carried over: {d}");
        }
    }
    if !any {
        out.push_str(
            "\n[[listener]]\nname = \"smtp\"\naddress = \"0.0.0.0:25\"\nrole = \"smtp\"\n",
        );
    }
    out
}

/// The listen address and role for a master.cf service name (`smtp`, `submission`,
/// `127.0.0.1:2525`, ...).
fn listener_of(service: &str, wrapper: bool) -> (String, &'static str) {
    let (host, port) = match service.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']).to_owned(), p.to_owned()),
        None => ("0.0.0.0".to_owned(), service.to_owned()),
    };
    let port = match port.as_str() {
        "smtp" => "25".to_owned(),
        "submission" => "587".to_owned(),
        "smtps" | "submissions" => "465".to_owned(),
        other => other.to_owned(),
    };
    let role = match (wrapper, port.as_str()) {
        (true, _) | (_, "465") => "submissions",
        (_, "587") => "submission",
        _ => "smtp",
    };
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    (address, role)
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn imports_policy_and_listeners() {
        let main = "myhostname = mx.example.com\nmynetworks = 127.0.0.0/8 !192.168.87.9\n    192.168.87.0/24\nqueue_directory = /var/spool/postfix\nsmtpd_tls_cert_file = /etc/ssl/mx.pem\nsmtpd_tls_key_file = /etc/ssl/mx.key\nsmtpd_restriction_classes = local_only\nlocal_only = check_recipient_access texthash:/etc/postfix/local_domains, reject\n";
        let master = "smtp inet n - y - - smtpd\nsubmission inet n - y - - smtpd\n  -o smtpd_tls_security_level=encrypt\n  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n  -o milter_macro_daemon_name=ORIGINATING\nsmtps inet n - y - - smtpd\n  -o smtpd_tls_wrappermode=yes\npickup unix n - y 60 1 pickup\n";
        let params = parse_main_cf(main, Path::new("/etc/postfix/main.cf")).unwrap();
        let services = parse_master_cf(master, Path::new("/etc/postfix/master.cf")).unwrap();
        let text = render(
            &params,
            &services,
            &PathBuf::from("main.cf"),
            Some(Path::new("master.cf")),
        );
        assert!(
            text.contains("mynetworks = \"127.0.0.0/8 !192.168.87.9 192.168.87.0/24\""),
            "{text}"
        );
        assert!(text.contains("local_only = \"check_recipient_access texthash:/etc/postfix/local_domains, reject\""), "{text}");
        assert!(
            text.contains("#   queue_directory = /var/spool/postfix"),
            "{text}"
        );
        assert!(
            text.contains("[tls]\ncert = \"/etc/ssl/mx.pem\"\nkey = \"/etc/ssl/mx.key\""),
            "{text}"
        );
        assert!(text.contains("name = \"submission\"\naddress = \"0.0.0.0:587\"\nrole = \"submission\"\n[listener.policy]\nsmtpd_relay_restrictions = \"permit_sasl_authenticated,reject\"\nsmtpd_tls_security_level = \"encrypt\""), "{text}");
        assert!(
            text.contains("# not carried over: -o milter_macro_daemon_name=ORIGINATING"),
            "{text}"
        );
        assert!(
            text.contains("name = \"smtps\"\naddress = \"0.0.0.0:465\"\nrole = \"submissions\""),
            "{text}"
        );
        assert!(!text.contains("pickup"), "{text}");
        // What it prints is a config relayguard loads (certificates aside).
        let loadable = text
            .replace(
                "[tls]\ncert = \"/etc/ssl/mx.pem\"\nkey = \"/etc/ssl/mx.key\"",
                &format!(
                    "[tls]\ncert = \"{0}/certs/dev-cert.pem\"\nkey = \"{0}/certs/dev-key.pem\"",
                    env!("CARGO_MANIFEST_DIR")
                ),
            )
            .replace("texthash:/etc/postfix/local_domains", "static:OK");
        if let Err(errors) = crate::config::load_str(&loadable, Path::new("/tmp/imported.toml")) {
            panic!(
                "{}\n{loadable}",
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }

    /// Names the admin made up and refers to (main.cf or master.cf `-o`) are carried over;
    /// dropping them would leave `$name` pointing nowhere.
    #[test]
    fn carries_user_defined_parameters() {
        let main = "mydestination = local.test\noffice_nets = 192.0.2.0/24\nmynetworks = 127.0.0.0/8 $office_nets\nmua_sender_restrictions = reject_non_fqdn_sender, permit\nunused_thing = 1\n";
        let master = "submission inet n - y - - smtpd\n  -o smtpd_sender_restrictions=$mua_sender_restrictions\n";
        let params = parse_main_cf(main, Path::new("/etc/postfix/main.cf")).unwrap();
        let services = parse_master_cf(master, Path::new("/etc/postfix/master.cf")).unwrap();
        let text = render(&params, &services, Path::new("main.cf"), None);
        assert!(
            text.contains("\noffice_nets = \"192.0.2.0/24\"\n"),
            "{text}"
        );
        assert!(
            text.contains("\nmua_sender_restrictions = \"reject_non_fqdn_sender, permit\"\n"),
            "{text}"
        );
        assert!(text.contains("#   unused_thing = 1"), "{text}");
    }
}
