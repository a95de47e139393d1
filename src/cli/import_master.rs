//! Which master.cf services become relayguard listeners: smtpd on the public ports, postscreen
//! on port 25 (as the port-25 listener, with the `-o` overrides of the smtpd `pass` service it
//! hands clients to), and not the MTA's own content-filter re-injection ports.
//!
//! Decides only; writing the TOML is `import_postfix`'s.

use crate::policy::main_cf::MasterService;
use crate::policy::ParamMap;

/// A master.cf service that becomes a `[[listener]]`.
#[derive(Debug)]
pub struct FrontListener {
    pub name: String,
    pub address: String,
    pub role: &'static str,
    /// The master.cf line of the service that listens.
    pub line: usize,
    /// The `-o` overrides relayguard reads for this listener.
    pub overrides: ParamMap,
    /// Other `-o` overrides of the service (postscreen's own), to classify.
    pub other_overrides: ParamMap,
    /// Whether the port takes a PROXY header (smtpd_/postscreen_upstream_proxy_protocol).
    pub proxy_protocol: bool,
    /// The override names import turned into listener settings rather than policy.
    pub consumed: Vec<&'static str>,
    /// What import made of the service, for the comment above the listener.
    pub note: String,
}

/// A master.cf SMTP service import does not turn into a listener, with why.
#[derive(Debug, serde::Serialize)]
pub struct LeftOut {
    pub service: String,
    pub line: usize,
    pub why: String,
}

#[derive(Debug, Default)]
pub struct MasterPlan {
    pub listeners: Vec<FrontListener>,
    pub left_out: Vec<LeftOut>,
    /// Loopback ports the MTA keeps for itself (re-injection, the content filter's own port).
    pub taken_ports: Vec<u16>,
}

/// Sorts master.cf's inet services into front listeners and services left to the MTA.
pub fn plan(services: &[MasterService], main: &ParamMap) -> MasterPlan {
    let mut plan = MasterPlan::default();
    for filter in std::iter::once(main.value("content_filter"))
        .chain(services.iter().map(|s| s.overrides.value("content_filter")))
        .flatten()
    {
        // `smtp-amavis:[127.0.0.1]:10024`: the filter's own port is not free for the MTA.
        if let Some(port) = filter.rsplit(':').next().and_then(|p| p.parse().ok()) {
            plan.taken_ports.push(port);
        }
    }
    for s in services.iter().filter(|s| s.kind == "inet") {
        match s.command.as_str() {
            "smtpd" => smtpd_service(s, main, &mut plan),
            "postscreen" => postscreen_service(s, services, main, &mut plan),
            other => plan.left_out.push(LeftOut {
                service: s.name.clone(),
                line: s.line,
                why: format!("`{other}` is not an SMTP server relayguard fronts"),
            }),
        }
    }
    // Two services on one port number (127.0.0.1:25 and [::1]:25) need distinct names.
    let mut names: Vec<String> = Vec::new();
    for l in &mut plan.listeners {
        let base = l.name.clone();
        let mut n = 2;
        while names.contains(&l.name) {
            l.name = format!("{base}-{n}");
            n += 1;
        }
        names.push(l.name.clone());
    }
    plan
}

fn smtpd_service(s: &MasterService, main: &ParamMap, plan: &mut MasterPlan) {
    let (host, port) = host_port(&s.name);
    let reinjection = s.overrides.value("content_filter") == Some("")
        || s.overrides.get("receive_override_options").is_some();
    if is_loopback(&host) && reinjection {
        if let Ok(p) = port.parse() {
            plan.taken_ports.push(p);
        }
        plan.left_out.push(LeftOut {
            service: s.name.clone(),
            line: s.line,
            why:
                "the content filter's re-injection port (loopback, with an empty content_filter or \
                  receive_override_options): mail comes back here from the filter, never from a \
                  client, so it stays the MTA's and is not fronted"
                    .into(),
        });
        return;
    }
    let wrapper = s
        .overrides
        .value("smtpd_tls_wrappermode")
        .is_some_and(|v| v == "yes");
    let (address, role) = listener_of(&host, &port, wrapper);
    let proxy = s
        .overrides
        .value("smtpd_upstream_proxy_protocol")
        .or(main.value("smtpd_upstream_proxy_protocol"))
        .is_some_and(|v| v.trim() == "haproxy");
    plan.listeners.push(FrontListener {
        name: port_name(&s.name),
        address,
        role,
        line: s.line,
        overrides: s.overrides.clone(),
        other_overrides: ParamMap::new(),
        proxy_protocol: proxy,
        consumed: vec!["smtpd_tls_wrappermode", "smtpd_upstream_proxy_protocol"],
        note: format!("master.cf line {}: {} (smtpd)", s.line, s.name),
    });
}

/// postscreen accepts on the port and hands clients that pass to the `pass` service named by
/// smtpd_service_name (default `smtpd`): that service's `-o` are what the clients then get.
fn postscreen_service(
    s: &MasterService,
    services: &[MasterService],
    main: &ParamMap,
    plan: &mut MasterPlan,
) {
    let pass_name = s
        .overrides
        .value("smtpd_service_name")
        .or(main.value("smtpd_service_name"))
        .unwrap_or("smtpd");
    let pass = services
        .iter()
        .find(|p| p.kind == "pass" && p.command == "smtpd" && p.name == pass_name);
    let (host, port) = host_port(&s.name);
    let (address, role) = listener_of(&host, &port, false);
    let proxy = s
        .overrides
        .value("postscreen_upstream_proxy_protocol")
        .or(main.value("postscreen_upstream_proxy_protocol"))
        .is_some_and(|v| v.trim() == "haproxy");
    let note = match pass {
        Some(p) => format!(
            "master.cf line {}: {} (postscreen), with the -o of its smtpd pass service `{}` (line {}); postscreen's own checks are not carried yet (abuse control is a later issue)",
            s.line, s.name, p.name, p.line
        ),
        None => format!(
            "master.cf line {}: {} (postscreen); no `{pass_name} pass ... smtpd` service found, so main.cf alone applies; postscreen's own checks are not carried yet (abuse control is a later issue)",
            s.line, s.name
        ),
    };
    plan.listeners.push(FrontListener {
        name: port_name(&s.name),
        address,
        role,
        line: s.line,
        overrides: pass.map(|p| p.overrides.clone()).unwrap_or_default(),
        other_overrides: s.overrides.clone(),
        proxy_protocol: proxy,
        consumed: vec![
            "postscreen_upstream_proxy_protocol",
            "smtpd_service_name",
            "smtpd_tls_wrappermode",
        ],
        note,
    });
}

/// `127.0.0.1:10025` -> ("127.0.0.1", "10025"); `smtp` -> ("", "smtp"); `[::1]:2525` -> ("::1", ..).
fn host_port(service: &str) -> (String, String) {
    match service.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']).to_owned(), p.to_owned()),
        None => (String::new(), service.to_owned()),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The listener name: the port part of the service name.
fn port_name(service: &str) -> String {
    service.rsplit(':').next().unwrap_or(service).to_owned()
}

/// The listen address and role for a service's host and port (`smtp`, `submission`, `2525`).
fn listener_of(host: &str, port: &str, wrapper: bool) -> (String, &'static str) {
    let port = match port {
        "smtp" => "25",
        "submission" => "587",
        "smtps" | "submissions" => "465",
        other => other,
    };
    let role = match (wrapper, port) {
        (true, _) | (_, "465") => "submissions",
        (_, "587") => "submission",
        _ => "smtp",
    };
    let host = if host.is_empty() || host == "*" {
        "0.0.0.0"
    } else {
        host
    };
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    (address, role)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::main_cf::{parse_main_cf, parse_master_cf};
    use std::path::Path;

    fn plan_of(main: &str, master: &str) -> MasterPlan {
        let main = parse_main_cf(main, Path::new("/etc/postfix/main.cf")).unwrap();
        let services = parse_master_cf(master, Path::new("/etc/postfix/master.cf")).unwrap();
        plan(&services, &main)
    }

    #[test]
    fn postscreen_becomes_port_25_with_the_pass_overrides() {
        let p = plan_of(
            "postscreen_upstream_proxy_protocol = haproxy\n",
            "smtp inet n - y - 1 postscreen\n  -o postscreen_dnsbl_sites=zen.example\nsmtpd pass - - y - - smtpd\n  -o smtpd_helo_required=yes\ndnsblog unix - - y - 0 dnsblog\n",
        );
        assert_eq!(p.listeners.len(), 1);
        let l = &p.listeners[0];
        assert_eq!(
            (l.name.as_str(), l.address.as_str(), l.role),
            ("smtp", "0.0.0.0:25", "smtp")
        );
        assert_eq!(l.overrides.value("smtpd_helo_required"), Some("yes"));
        assert_eq!(
            l.other_overrides.value("postscreen_dnsbl_sites"),
            Some("zen.example")
        );
        assert!(l.proxy_protocol);
        assert!(
            l.note.contains("smtpd pass service `smtpd` (line 3)"),
            "{}",
            l.note
        );
    }

    #[test]
    fn reinjection_is_left_out_and_its_port_taken() {
        let p = plan_of(
            "content_filter = smtp-amavis:[127.0.0.1]:10024\n",
            "smtp inet n - y - - smtpd\n127.0.0.1:10025 inet n - n - - smtpd\n  -o content_filter=\n  -o smtpd_upstream_proxy_protocol=\n[::1]:10026 inet n - n - - smtpd\n  -o receive_override_options=no_header_body_checks\n628 inet n - y - - qmqpd\n",
        );
        let names: Vec<&str> = p.listeners.iter().map(|l| l.address.as_str()).collect();
        assert_eq!(names, ["0.0.0.0:25"]);
        assert_eq!(p.left_out.len(), 3, "{:?}", p.left_out);
        assert_eq!(p.left_out[0].line, 2);
        assert!(p.left_out[0].why.contains("re-injection"));
        assert_eq!(p.taken_ports, [10024, 10025, 10026]);
    }

    #[test]
    fn proxy_protocol_per_service() {
        let p = plan_of(
            "",
            "smtp inet n - y - - smtpd\n  -o smtpd_upstream_proxy_protocol=haproxy\n192.0.2.1:2525 inet n - y - - smtpd\n",
        );
        assert!(p.listeners[0].proxy_protocol);
        assert!(!p.listeners[1].proxy_protocol);
        assert_eq!(p.listeners[1].address, "192.0.2.1:2525");
        let p = plan_of(
            "smtpd_upstream_proxy_protocol = haproxy\n",
            "127.0.0.1:25 inet n - y - - smtpd\n[::1]:25 inet n - y - - smtpd\n",
        );
        let names: Vec<&str> = p.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["25", "25-2"]);
        assert_eq!(p.listeners[1].address, "[::1]:25");
        assert!(
            p.listeners.iter().all(|l| l.proxy_protocol),
            "main.cf's applies to every smtpd"
        );
    }
}
