//! Postfix 3.7's built-in parameter values at a given compatibility_level, and `mynetworks`
//! computed from `mynetworks_style` and the host's interfaces.

use std::net::IpAddr;

/// Built-in values (Postfix 3.7, compatibility_level 3.6) of parameters that have one.
pub(crate) fn default_value(name: &str, compat: (u32, u32)) -> Option<&'static str> {
    Some(match name {
        "mydestination" => "$myhostname, localhost.$mydomain, localhost",
        "myorigin" => "$myhostname",
        "relay_domains" if compat < (2, 0) => "$mydestination",
        "smtpd_relay_restrictions" if compat >= (1, 0) => {
            "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
        }
        "smtpd_relay_before_recipient_restrictions" => if compat >= (3, 6) { "yes" } else { "no" },
        "mynetworks_style" => if compat >= (2, 0) { "host" } else { "subnet" },
        "smtpd_client_event_limit_exceptions" => "${smtpd_client_connection_limit_exceptions:$mynetworks}",
        "parent_domain_matches_subdomains" => "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps",
        "inet_interfaces" => "all",
        "smtpd_delay_reject" => "yes",
        "smtpd_null_access_lookup_key" => "<>",
        "allow_percent_hack" => "yes",
        "swap_bangpath" => "yes",
        "allow_untrusted_routing" => "no",
        "smtpd_sasl_auth_enable" => "no",
        "smtpd_tls_auth_only" => "no",
        "soft_bounce" => "no",
        "reject_tempfail_action" => "defer_if_permit",
        "unknown_helo_hostname_tempfail_action" => "$reject_tempfail_action",
        "unknown_address_tempfail_action" => "$reject_tempfail_action",
        "default_rbl_reply" => super::eval_dns::DEFAULT_RBL_REPLY,
        "virtual_alias_domains" => "$virtual_alias_maps",
        "smtpd_reject_unlisted_recipient" => "yes",
        "smtpd_reject_unlisted_sender" => "no",
        "show_user_unknown_table_name" => "yes",
        "double_bounce_sender" => "double-bounce",
        "virtual_mailbox_domains" => "$virtual_mailbox_maps",
        // The directories of Debian's build, which tables are most often named under
        // (`hash:$config_directory/access`): without them such a path would lose its head.
        "config_directory" | "meta_directory" => "/etc/postfix",
        "data_directory" => "/var/lib/postfix",
        "queue_directory" => "/var/spool/postfix",
        "daemon_directory" => "/usr/lib/postfix/sbin",
        "command_directory" => "/usr/sbin",
        "html_directory" | "readme_directory" | "manpage_directory" => "no",
        "mail_owner" => "postfix",
        _ => return None,
    })
}

pub(crate) fn parse_compat(v: &str) -> Option<(u32, u32)> {
    let v = v.trim();
    let (a, b) = v.split_once('.').unwrap_or((v, "0"));
    Some((a.parse().ok()?, b.split('.').next()?.parse().ok()?))
}

/// Network list from `mynetworks_style` and the host's interfaces.
pub(crate) fn style_networks(style: &str, interfaces: &[(IpAddr, u8)]) -> Result<String, String> {
    let mut out: Vec<String> = Vec::new();
    for &(addr, len) in interfaces {
        let (net, len) = match style {
            "host" => (addr, if addr.is_ipv4() { 32 } else { 128 }),
            "subnet" => (super::prefix::network_of(addr, len), len),
            "class" => match addr {
                IpAddr::V4(a) => {
                    let first = a.octets()[0];
                    let l = if first < 128 {
                        8
                    } else if first < 192 {
                        16
                    } else if first < 224 {
                        24
                    } else {
                        len
                    };
                    (super::prefix::network_of(addr, l), l)
                }
                IpAddr::V6(_) => (super::prefix::network_of(addr, len), len),
            },
            other => return Err(format!("\"{other}\" is not host, subnet or class")),
        };
        let text = if net.is_ipv6() {
            format!("[{net}]/{len}")
        } else {
            format!("{net}/{len}")
        };
        if !out.contains(&text) {
            out.push(text);
        }
    }
    Ok(out.join(" "))
}
