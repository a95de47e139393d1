//! The text `import-postfix` prints: the relayguard TOML with a comment for every line of
//! main.cf and master.cf it did not carry as written, the warning block for controls relayguard
//! cannot enforce, the `[import]` origins the loader reads, and what to change on the MTA.

use std::fmt::Write as _;

use super::import_classes::Class;
use super::import_postfix::{Carried, Import, Line};
use crate::policy::ParamMap;

pub fn toml(import: &Import) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# relayguard config imported from {}",
        import.main_cf.display()
    );
    if let Some(m) = &import.master_cf {
        let _ = writeln!(out, "# and {}", m.display());
    }
    out.push_str(&warnings(&import.lines));
    out.push_str("# Review it, then run `relayguard check-config --config FILE`.\n\n[policy]\n");
    for c in &import.policy {
        write_carried(&mut out, c);
    }
    out.push_str(&accounts(&import.lines));
    match &import.tls {
        Some((cert, key)) => {
            let _ = writeln!(out, "\n[tls]\ncert = {}\nkey = {}", quote(cert), quote(key));
        }
        None => out.push_str(
            "\n# No smtpd_tls_cert_file/key_file: add a [tls] table for STARTTLS and port 465.\n",
        ),
    }
    for l in &import.listeners {
        let p = &l.plan;
        let _ = writeln!(out, "\n# {}", p.note);
        let _ = writeln!(
            out,
            "[[listener]]\nname = {}\naddress = {}\nrole = \"{}\"",
            quote(&p.name),
            quote(&p.address),
            p.role
        );
        if p.proxy_protocol {
            out.push_str("# smtpd_upstream_proxy_protocol = haproxy: Postfix takes the header from any peer on\n# this port; narrow `trusted` to your load balancers.\nproxy_protocol = { trusted = [\"0.0.0.0/0\", \"::/0\"], required = true }\n");
        }
        if !l.policy.is_empty() {
            out.push_str("[listener.policy]\n");
            for c in &l.policy {
                write_carried(&mut out, c);
            }
        }
    }
    if import.listeners.is_empty() {
        out.push_str(
            "\n[[listener]]\nname = \"smtp\"\naddress = \"0.0.0.0:25\"\nrole = \"smtp\"\n",
        );
    }
    for s in &import.left_out {
        let _ = writeln!(
            out,
            "\n# master.cf line {}: {} is not a listener here: {}",
            s.line, s.service, s.why
        );
    }
    out.push_str(&mta_tables(import));
    let _ = writeln!(
        out,
        "\n[upstream]\n# Your MTA, moved to a private port (see the end of this file).\nkind = \"smtp\"\naddress = \"127.0.0.1:{}\"\nidentity = \"xclient\"",
        import.upstream_port
    );
    out.push_str("\n# On the MTA behind relayguard, change:\n");
    for m in &import.mta {
        let _ = writeln!(out, "#   {m}");
    }
    out.push_str(&origins(import));
    out
}

/// `[tables] mta_actions`, with the entries that from now on act only on the MTA.
fn mta_tables(import: &Import) -> String {
    if import.mta_tables.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n[tables]\n# These entries act on the queued message (HOLD, FILTER, REDIRECT, BCC, PREPEND),\n\
         # which only the MTA has. relayguard answers DUNNO for them, Postfix's own verdict, and\n\
         # carries the rest of each table; they now act ONLY on the MTA, which must keep the same\n\
         # restriction with the same table:\n",
    );
    for l in import
        .lines
        .iter()
        .filter(|l| l.table.is_some() && l.class == Class::Upstream)
    {
        let _ = writeln!(
            out,
            "#   {}:{}: {}    ({})",
            l.file, l.line, l.value, l.name
        );
    }
    let specs: Vec<String> = import.mta_tables.iter().map(|t| quote(t)).collect();
    let _ = writeln!(out, "mta_actions = [{}]", specs.join(", "));
    out
}

fn write_carried(out: &mut String, c: &Carried) {
    for n in &c.notes {
        let _ = writeln!(out, "# import: {n}");
    }
    let _ = writeln!(out, "{} = {}", c.name, quote(&c.value));
}

/// The loud block at the top: every control relayguard cannot enforce.
fn warnings(lines: &[Line]) -> String {
    let loud: Vec<&Line> = lines
        .iter()
        .filter(|l| l.class == Class::CannotEnforce)
        .collect();
    if loud.is_empty() {
        return "#\n".into();
    }
    let mut out = String::from(
        "#\n# ######################################################################\n\
         # WARNING: Postfix enforces these at the front and relayguard cannot.\n\
         # Clients are NOT held to them any more:\n",
    );
    for l in loud {
        let _ = writeln!(out, "#   {}", describe(l));
    }
    out.push_str("# ######################################################################\n#\n");
    out
}

/// The comment blocks after [policy]: what stays on the MTA and what is not a front concern.
fn accounts(lines: &[Line]) -> String {
    let mut out = String::new();
    let upstream: Vec<&Line> = lines
        .iter()
        .filter(|l| l.class == Class::Upstream)
        .collect();
    if !upstream.is_empty() {
        out.push_str("\n# Stays on the upstream MTA, which still applies it (relayguard passes it the real\n# client by XCLIENT). Keep these lines there:\n");
        for l in upstream {
            let keep = l.keep_on_mta.as_deref().unwrap_or_default();
            let _ = writeln!(out, "#   {keep}    ({}:{}: {})", l.file, l.line, l.why);
        }
    }
    let other: Vec<&Line> = lines
        .iter()
        .filter(|l| l.class == Class::NotFrontProxy)
        .collect();
    if !other.is_empty() {
        out.push_str(
            "\n# Not a front-proxy concern (delivery, queue, routing, aliases ...), not carried:\n",
        );
        for l in other {
            let _ = writeln!(out, "#   {}", describe(l));
        }
    }
    out
}

fn describe(l: &Line) -> String {
    let what = match (&l.restriction, &l.listener) {
        _ if l.table.is_some() => format!("{}: entry `{}`", l.name, l.value),
        (Some(r), _) => format!("{}: {r}", l.name),
        (None, Some(listener)) => format!("-o {}={} (listener {listener})", l.name, l.value),
        (None, None) => format!("{} = {}", l.name, l.value),
    };
    format!("{what}    ({}:{}: {})", l.file, l.line, l.why)
}

/// `[import]`: where each carried value was written, so that `check-config` reports a bad value
/// at its main.cf or master.cf line rather than at this file's.
fn origins(import: &Import) -> String {
    let mut out = String::from(
        "\n# Where each value above was written: check-config reports a bad value at that main.cf\n\
         # (policy) or master.cf (listener.NAME) line. Remove a name here once you edit it above.\n[import]\n",
    );
    let _ = writeln!(
        out,
        "main_cf = {}",
        quote(&import.main_cf.display().to_string())
    );
    if let Some(m) = &import.master_cf {
        let _ = writeln!(out, "master_cf = {}", quote(&m.display().to_string()));
    }
    out.push_str("[import.policy]\n");
    for c in import.policy.iter().filter(|c| c.line > 0) {
        let _ = writeln!(out, "{} = {}", c.name, c.line);
    }
    for l in import.listeners.iter().filter(|l| !l.policy.is_empty()) {
        let _ = writeln!(out, "[import.listener.{}]", quote(&l.plan.name));
        for c in &l.policy {
            let _ = writeln!(out, "{} = {}", c.name, c.line);
        }
    }
    out
}

/// What the MTA behind relayguard must change so that relayguard can front it.
pub fn mta_changes(import: &Import, params: &ParamMap) -> Vec<String> {
    let mut out = vec![
        "smtpd_authorized_xclient_hosts = 127.0.0.1    (relayguard's address as the MTA sees it; with identity = \"proxy-v1\"/\"proxy-v2\" instead: -o smtpd_upstream_proxy_protocol=haproxy on the listener below)".to_owned(),
        format!(
            "master.cf: 127.0.0.1:{} inet n - n - - smtpd    (its listener on a private port; remove or disable its public smtp/submission/smtps and postscreen services, which relayguard now answers)",
            import.upstream_port
        ),
    ];
    let loopback = ["127.", "[::1]", "::1", "[::ffff:127."];
    match params.value("mynetworks") {
        Some(nets) => {
            let kept: Vec<&str> = crate::policy::split_list(nets)
                .into_iter()
                .filter(|n| !loopback.iter().any(|l| n.starts_with(l)))
                .collect();
            if kept.len() != crate::policy::split_list(nets).len() {
                out.push(format!(
                    "mynetworks = {}    (relayguard's address must not be in it: the MTA would trust every session relayguard could not name; relayguard keeps your list for its own decisions)",
                    kept.join(" ")
                ));
            }
        }
        None => out.push(
            "mynetworks = <your networks, without 127.0.0.0/8 and [::1]>    (Postfix's default mynetworks includes loopback, which is relayguard's address)".into(),
        ),
    }
    out
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::import_postfix::Import;
    use crate::policy::main_cf::{parse_main_cf, parse_master_cf};

    fn import(main: &str, master: &str) -> String {
        let main_cf = Path::new("/etc/postfix/main.cf");
        let params = parse_main_cf(main, main_cf).unwrap();
        let services = parse_master_cf(master, Path::new("/etc/postfix/master.cf")).unwrap();
        super::toml(&Import::build(
            &params,
            &services,
            main_cf,
            Some(Path::new("/etc/postfix/master.cf")),
        ))
    }

    fn load(text: &str) {
        let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
        let text = &text
            .replace("/etc/ssl/mx.pem", &format!("{certs}/dev-cert.pem"))
            .replace("/etc/ssl/mx.key", &format!("{certs}/dev-key.pem"));
        if let Err(errors) = crate::config::load_str(text, Path::new("/tmp/imported.toml")) {
            let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            panic!("{}\n{text}", errors.join("\n"));
        }
    }

    /// The user-defined lists master.cf refers to are carried, unused ones reported, and a
    /// refused word in a carried list comes out with a line saying the MTA keeps it.
    #[test]
    fn carries_what_is_used_and_accounts_for_the_rest() {
        let text = import(
            "mydestination = local.test\noffice_nets = 192.0.2.0/24\nmynetworks = 127.0.0.0/8 $office_nets\nmua_sender_restrictions = reject_non_fqdn_sender, permit\nunused_thing = 1\nsmtpd_recipient_restrictions = permit_mynetworks, reject_unverified_recipient, reject_unauth_destination\nsmtpd_milters = inet:127.0.0.1:11332\nsmtpd_tls_cert_file = /etc/ssl/mx.pem\nsmtpd_tls_key_file = /etc/ssl/mx.key\n",
            "submission inet n - y - - smtpd\n  -o smtpd_sender_restrictions=$mua_sender_restrictions\n  -o milter_macro_daemon_name=ORIGINATING\n",
        );
        for want in [
            "\noffice_nets = \"192.0.2.0/24\"\n",
            "\nmua_sender_restrictions = \"reject_non_fqdn_sender, permit\"\n",
            "#   unused_thing = 1    (/etc/postfix/main.cf:5: a parameter of your own that nothing carried refers to)",
            "\nsmtpd_recipient_restrictions = \"permit_mynetworks, reject_unauth_destination\"\n",
            "#   smtpd_recipient_restrictions = permit_mynetworks, reject_unverified_recipient, reject_unauth_destination    (/etc/postfix/main.cf:6: `reject_unverified_recipient` taken out of the list: the MTA still probes the address behind XCLIENT)",
            "#   smtpd_milters = inet:127.0.0.1:11332    (/etc/postfix/main.cf:7:",
            "#   -o milter_macro_daemon_name=ORIGINATING    (/etc/postfix/master.cf:3:",
            "[import.listener.\"submission\"]\nsmtpd_sender_restrictions = 2\n",
            "mynetworks = $office_nets    (relayguard's address must not be in it",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("WARNING"), "{text}");
        load(&text);
    }

    /// A control decided at the front is a loud warning at the top, and a `$name` of a
    /// parameter relayguard does not carry is expanded, not left pointing nowhere.
    #[test]
    fn warns_loudly_and_expands_what_is_not_carried() {
        let text = import(
            "mydestination = local.test\nsmtpd_client_restrictions = check_client_access inline:{192.0.2.9=REJECT}, permit_mx_backup\nsmtpd_helo_restrictions = check_helo_access texthash:${config_directory}/helo\n",
            "",
        );
        let warning = text
            .find("# WARNING: Postfix enforces these at the front")
            .unwrap();
        let item = text
            .find("#   smtpd_client_restrictions: permit_mx_backup    (/etc/postfix/main.cf:2:")
            .unwrap();
        assert!(
            warning < item && item < text.find("[policy]").unwrap(),
            "{text}"
        );
        assert!(
            text.contains("# import: $config_directory is \"/etc/postfix\"\nsmtpd_helo_restrictions = \"check_helo_access texthash:/etc/postfix/helo\""),
            "{text}"
        );
    }

    /// Postfix 3.7 runs a main.cf without compatibility_level at level 0; import says so
    /// instead of leaving relayguard's own default (3.6) to apply.
    #[test]
    fn an_unset_compatibility_level_is_carried_as_postfix_s_zero() {
        // At level 0 smtpd_relay_restrictions is empty, so the recipient list must refuse.
        let unset = import(
            "mydestination = local.test\nsmtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n",
            "",
        );
        assert!(
            unset.contains("# import: not set in main.cf: Postfix's built-in level\ncompatibility_level = \"0\""),
            "{unset}"
        );
        load(&unset);
        let set = import(
            "compatibility_level = 3.6\nmydestination = local.test\n",
            "",
        );
        assert!(set.contains("compatibility_level = \"3.6\""), "{set}");
        assert!(!set.contains("compatibility_level = \"0\""), "{set}");
    }
}
