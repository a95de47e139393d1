//! Restriction lists as Postfix writes them (`permit_mynetworks, check_client_access TABLE, ...`),
//! parsed once into [`Restriction`] values.
//!
//! Parsing refuses what Postfix would turn into a `451 4.3.5 Server configuration error` at run
//! time (unknown names, undeclared classes, a bare table where no lookup is implied) and what
//! relayguard does not implement, so an admin learns it at load, with the line.

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::dnsxl::{Dnsxl, DnsxlKind};
use super::error::{Hint, PolicyError, PolicyWarning};
use super::netlist::TableOpener;
use super::params::Origin;
use super::pending::RecordType;
use super::policy_service::{PolicyService, PolicySettings};
use super::table::Table;
use super::text::split_list;

/// Which lookup order a `check_*_access` uses, and whose voice its rejects speak with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    Client,
    /// check_reverse_client_hostname_access: the unverified (PTR) name, then the address.
    ReverseClient,
    Helo,
    Sender,
    Recipient,
    /// check_sasl_access: the SASL login name, as one key.
    Sasl,
}

impl Lookup {
    pub(crate) fn restriction_name(self) -> &'static str {
        match self {
            Lookup::Client => "check_client_access",
            Lookup::ReverseClient => "check_reverse_client_hostname_access",
            Lookup::Helo => "check_helo_access",
            Lookup::Sender => "check_sender_access",
            Lookup::Recipient => "check_recipient_access",
            Lookup::Sasl => "check_sasl_access",
        }
    }
}

/// Which sender/login checks `reject_*sender_login_mismatch` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoginMismatch {
    pub(crate) authenticated: bool,
    pub(crate) unauthenticated: bool,
    /// `reject_known_sender_login_mismatch`: an authenticated client may use unowned senders.
    pub(crate) known_only: bool,
    pub(crate) name: &'static str,
}

#[derive(Clone, Debug)]
pub(crate) enum Restriction {
    Permit,
    Reject,
    Defer,
    DeferIfPermit,
    DeferIfReject,
    WarnIfReject(Box<Restriction>),
    PermitMynetworks,
    PermitInetInterfaces,
    PermitSaslAuthenticated,
    RejectUnauthDestination,
    DeferUnauthDestination,
    PermitAuthDestination,
    RejectUnauthPipelining,
    Check {
        lookup: Lookup,
        table: Arc<Table>,
    },
    RejectNonFqdnHelo {
        name: &'static str,
    },
    RejectInvalidHelo {
        name: &'static str,
    },
    RejectNonFqdnSender,
    RejectNonFqdnRecipient,
    SenderLoginMismatch(LoginMismatch),
    Class(u32),
    /// reject_unknown_client_hostname (`reverse: false`) or
    /// reject_unknown_reverse_client_hostname.
    RejectUnknownClient {
        reverse: bool,
        name: &'static str,
    },
    /// reject_unknown_helo_hostname: no A, AAAA or MX record.
    RejectUnknownHelo {
        name: &'static str,
    },
    /// reject_unknown_sender_domain (`sender: true`) or reject_unknown_recipient_domain.
    RejectUnknownDomain {
        sender: bool,
        name: &'static str,
    },
    /// reject_unlisted_recipient (or its old name check_recipient_maps) and
    /// reject_unlisted_sender: the address must be known to its class's tables.
    RejectUnlisted {
        sender: bool,
        name: &'static str,
    },
    /// The DNS allow and deny lists.
    Dnsxl(Box<Dnsxl>),
    /// check_{client,reverse_client_hostname,helo,sender,recipient}_{a,mx,ns}_access.
    CheckServer(Box<ServerCheck>),
    /// check_policy_service: delegation to a policy server.
    PolicyService(Box<PolicyService>),
    /// permit_tls_clientcerts, permit_tls_all_clientcerts, check_ccert_access.
    ClientCert(Box<super::eval_ccert::CertRestriction>),
}

/// Whose name a check_*_{a,mx,ns}_access restriction looks up the servers of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subject {
    Client,
    ReverseClient,
    Helo,
    Sender,
    Recipient,
}

/// check_*_{a,mx,ns}_access: the name's A/AAAA, MX or NS hosts and their addresses, looked up
/// in an access table.
#[derive(Clone, Debug)]
pub(crate) struct ServerCheck {
    pub(crate) name: &'static str,
    pub(crate) subject: Subject,
    /// A (meaning A and AAAA), MX or NS.
    pub(crate) rtype: RecordType,
    pub(crate) table: Arc<Table>,
}

/// The check_*_{a,mx,ns}_access names.
const SERVER_CHECKS: &[(&str, Subject, RecordType)] = &[
    ("check_client_a_access", Subject::Client, RecordType::A),
    ("check_client_mx_access", Subject::Client, RecordType::Mx),
    ("check_client_ns_access", Subject::Client, RecordType::Ns),
    (
        "check_reverse_client_hostname_a_access",
        Subject::ReverseClient,
        RecordType::A,
    ),
    (
        "check_reverse_client_hostname_mx_access",
        Subject::ReverseClient,
        RecordType::Mx,
    ),
    (
        "check_reverse_client_hostname_ns_access",
        Subject::ReverseClient,
        RecordType::Ns,
    ),
    ("check_helo_a_access", Subject::Helo, RecordType::A),
    ("check_helo_mx_access", Subject::Helo, RecordType::Mx),
    ("check_helo_ns_access", Subject::Helo, RecordType::Ns),
    ("check_sender_a_access", Subject::Sender, RecordType::A),
    ("check_sender_mx_access", Subject::Sender, RecordType::Mx),
    ("check_sender_ns_access", Subject::Sender, RecordType::Ns),
    (
        "check_recipient_a_access",
        Subject::Recipient,
        RecordType::A,
    ),
    (
        "check_recipient_mx_access",
        Subject::Recipient,
        RecordType::Mx,
    ),
    (
        "check_recipient_ns_access",
        Subject::Recipient,
        RecordType::Ns,
    ),
];

/// Simple restriction names and what they parse to.
type Make = fn() -> Restriction;

const SIMPLE: &[(&str, Make)] = &[
    ("permit", || Restriction::Permit),
    ("reject", || Restriction::Reject),
    ("defer", || Restriction::Defer),
    ("defer_if_permit", || Restriction::DeferIfPermit),
    ("defer_if_reject", || Restriction::DeferIfReject),
    ("permit_mynetworks", || Restriction::PermitMynetworks),
    ("permit_inet_interfaces", || {
        Restriction::PermitInetInterfaces
    }),
    ("permit_sasl_authenticated", || {
        Restriction::PermitSaslAuthenticated
    }),
    ("reject_unauth_destination", || {
        Restriction::RejectUnauthDestination
    }),
    ("defer_unauth_destination", || {
        Restriction::DeferUnauthDestination
    }),
    ("permit_auth_destination", || {
        Restriction::PermitAuthDestination
    }),
    ("reject_unauth_pipelining", || {
        Restriction::RejectUnauthPipelining
    }),
    ("reject_non_fqdn_helo_hostname", || {
        Restriction::RejectNonFqdnHelo {
            name: "reject_non_fqdn_helo_hostname",
        }
    }),
    ("reject_non_fqdn_hostname", || {
        Restriction::RejectNonFqdnHelo {
            name: "reject_non_fqdn_hostname",
        }
    }),
    ("reject_invalid_helo_hostname", || {
        Restriction::RejectInvalidHelo {
            name: "reject_invalid_helo_hostname",
        }
    }),
    ("reject_invalid_hostname", || {
        Restriction::RejectInvalidHelo {
            name: "reject_invalid_hostname",
        }
    }),
    ("reject_non_fqdn_sender", || {
        Restriction::RejectNonFqdnSender
    }),
    ("reject_non_fqdn_recipient", || {
        Restriction::RejectNonFqdnRecipient
    }),
    ("reject_sender_login_mismatch", || {
        Restriction::SenderLoginMismatch(LoginMismatch {
            authenticated: true,
            unauthenticated: true,
            known_only: false,
            name: "reject_sender_login_mismatch",
        })
    }),
    ("reject_known_sender_login_mismatch", || {
        Restriction::SenderLoginMismatch(LoginMismatch {
            authenticated: true,
            unauthenticated: true,
            known_only: true,
            name: "reject_known_sender_login_mismatch",
        })
    }),
    ("reject_authenticated_sender_login_mismatch", || {
        Restriction::SenderLoginMismatch(LoginMismatch {
            authenticated: true,
            unauthenticated: false,
            known_only: false,
            name: "reject_authenticated_sender_login_mismatch",
        })
    }),
    ("reject_unlisted_recipient", || {
        Restriction::RejectUnlisted {
            sender: false,
            name: "reject_unlisted_recipient",
        }
    }),
    ("check_recipient_maps", || Restriction::RejectUnlisted {
        sender: false,
        name: "check_recipient_maps",
    }),
    ("reject_unlisted_sender", || Restriction::RejectUnlisted {
        sender: true,
        name: "reject_unlisted_sender",
    }),
    ("reject_unknown_client_hostname", || {
        Restriction::RejectUnknownClient {
            reverse: false,
            name: "reject_unknown_client_hostname",
        }
    }),
    ("reject_unknown_client", || {
        Restriction::RejectUnknownClient {
            reverse: false,
            name: "reject_unknown_client",
        }
    }),
    ("reject_unknown_reverse_client_hostname", || {
        Restriction::RejectUnknownClient {
            reverse: true,
            name: "reject_unknown_reverse_client_hostname",
        }
    }),
    ("reject_unknown_helo_hostname", || {
        Restriction::RejectUnknownHelo {
            name: "reject_unknown_helo_hostname",
        }
    }),
    ("reject_unknown_hostname", || {
        Restriction::RejectUnknownHelo {
            name: "reject_unknown_hostname",
        }
    }),
    ("reject_unknown_sender_domain", || {
        Restriction::RejectUnknownDomain {
            sender: true,
            name: "reject_unknown_sender_domain",
        }
    }),
    ("reject_unknown_address", || {
        Restriction::RejectUnknownDomain {
            sender: true,
            name: "reject_unknown_address",
        }
    }),
    ("reject_unknown_recipient_domain", || {
        Restriction::RejectUnknownDomain {
            sender: false,
            name: "reject_unknown_recipient_domain",
        }
    }),
    ("reject_unauthenticated_sender_login_mismatch", || {
        Restriction::SenderLoginMismatch(LoginMismatch {
            authenticated: false,
            unauthenticated: true,
            known_only: false,
            name: "reject_unauthenticated_sender_login_mismatch",
        })
    }),
];

const CHECKS: &[(&str, Lookup)] = &[
    ("check_client_access", Lookup::Client),
    (
        "check_reverse_client_hostname_access",
        Lookup::ReverseClient,
    ),
    ("check_helo_access", Lookup::Helo),
    ("check_sender_access", Lookup::Sender),
    ("check_recipient_access", Lookup::Recipient),
    ("check_sasl_access", Lookup::Sasl),
];

/// Postfix restrictions relayguard knows but does not implement (refused with this word), and
/// whether Postfix reads the next word as their argument (smtpd_check.c takes `*(cpp += 1)`):
/// a table, a DNS domain, a server or seconds. The refusal skips that argument and nothing
/// more, so the word after a restriction without one (`reject_maps_rbl`, which reads
/// maps_rbl_domains) is still checked.
const NOT_IMPLEMENTED: &[(&str, bool)] = &[
    ("reject_unverified_recipient", false),
    ("reject_unverified_sender", false),
    ("reject_multi_recipient_bounce", false),
    ("reject_plaintext_session", false),
    ("permit_mx_backup", false),
    ("check_relay_domains", false),
    ("permit_naked_ip_address", false),
    ("check_etrn_access", true),
    ("sleep", true),
    ("warn_if_reject_rbl", true),
    ("reject_maps_rbl", false),
    ("check_address_map", true),
    ("reject_sender_login_mismatch_for_known", false),
];

/// For a restriction word Postfix knows and relayguard refuses: whether Postfix reads the next
/// word as its argument. `None` for every other word (implemented, a class, or unknown).
pub fn refused_restriction(word: &str) -> Option<bool> {
    let lower = word.to_ascii_lowercase();
    NOT_IMPLEMENTED
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|&(_, takes_argument)| takes_argument)
}

impl Restriction {
    /// The name as written in Postfix lists, for reasons.
    pub(crate) fn name(&self, classes: &[(Box<str>, Vec<Restriction>)]) -> Cow<'static, str> {
        match self {
            Restriction::WarnIfReject(inner) => {
                format!("warn_if_reject {}", inner.name(classes)).into()
            }
            Restriction::Check { lookup, table } => {
                format!("{} {}", lookup.restriction_name(), table.spec()).into()
            }
            Restriction::RejectNonFqdnHelo { name } | Restriction::RejectInvalidHelo { name } => {
                Cow::Borrowed(name)
            }
            Restriction::SenderLoginMismatch(m) => Cow::Borrowed(m.name),
            Restriction::RejectUnknownClient { name, .. }
            | Restriction::RejectUnknownHelo { name }
            | Restriction::RejectUnknownDomain { name, .. }
            | Restriction::RejectUnlisted { name, .. } => Cow::Borrowed(name),
            Restriction::Dnsxl(l) => format!("{} {}", l.name, l.spec).into(),
            Restriction::CheckServer(c) => format!("{} {}", c.name, c.table.spec()).into(),
            Restriction::PolicyService(s) => format!("check_policy_service {}", s.spec).into(),
            Restriction::ClientCert(c) => c.name().into(),
            Restriction::Class(i) => classes
                .get(*i as usize)
                .map(|c| c.0.to_string())
                .unwrap_or_default()
                .into(),
            other => Cow::Borrowed(
                SIMPLE
                    .iter()
                    .find(|(_, f)| std::mem::discriminant(&f()) == std::mem::discriminant(other))
                    .map_or("", |(n, _)| *n),
            ),
        }
    }

    /// True when evaluating it may need a fact from the network.
    pub(crate) fn waits(&self) -> bool {
        match self {
            Restriction::RejectUnknownHelo { .. }
            | Restriction::RejectUnknownDomain { .. }
            | Restriction::Dnsxl(_)
            | Restriction::CheckServer(_)
            | Restriction::PolicyService(_) => true,
            Restriction::Check { table, .. } => table.is_remote(),
            Restriction::WarnIfReject(inner) => inner.waits(),
            Restriction::ClientCert(c) => c.waits(),
            _ => false,
        }
    }

    /// True when it looks at the client's verified or PTR name, which the session then looks
    /// up before the greeting.
    pub(crate) fn uses_client_name(&self) -> bool {
        match self {
            Restriction::Check {
                lookup: Lookup::Client | Lookup::ReverseClient,
                ..
            }
            | Restriction::RejectUnknownClient { .. } => true,
            Restriction::Dnsxl(l) => matches!(
                l.kind,
                DnsxlKind::RhsblClient | DnsxlKind::RhswlClient | DnsxlKind::RhsblReverseClient
            ),
            Restriction::CheckServer(c) => {
                matches!(c.subject, Subject::Client | Subject::ReverseClient)
            }
            // Every request carries client_name and reverse_client_name.
            Restriction::PolicyService(_) => true,
            _ => false,
        }
    }

    /// Counts for Postfix's start-up check that relay control exists (smtpd_check.c has_required).
    pub(crate) fn is_relay_control(&self) -> bool {
        matches!(
            self,
            Restriction::RejectUnauthDestination
                | Restriction::DeferUnauthDestination
                | Restriction::Reject
                | Restriction::Defer
                | Restriction::DeferIfPermit
        )
    }
}

/// Everything a list parse needs from the policy being compiled.
pub(crate) struct ListContext<'a, 'o> {
    pub(crate) classes: &'a FxHashMap<String, u32>,
    pub(crate) open: &'a mut TableOpener<'o>,
    pub(crate) errors: &'a mut Vec<PolicyError>,
    pub(crate) warnings: &'a mut Vec<PolicyWarning>,
    /// The main.cf smtpd_policy_service_* settings a check_policy_service starts from.
    pub(crate) policy_defaults: &'a PolicySettings,
    /// relay_clientcerts, for permit_tls_clientcerts.
    pub(crate) relay_clientcerts: Option<Arc<Table>>,
}

/// Every name a list may contain, for "did you mean" hints.
fn all_names<'a>(classes: &'a FxHashMap<String, u32>) -> impl Iterator<Item = &'a str> + 'a {
    SIMPLE
        .iter()
        .map(|(n, _)| *n)
        .chain(CHECKS.iter().map(|(n, _)| *n))
        .chain(SERVER_CHECKS.iter().map(|(n, ..)| *n))
        .chain(DnsxlKind::ALL.iter().map(|(n, _)| *n))
        .chain(["warn_if_reject", "check_policy_service"])
        .chain(super::eval_ccert::NAMES)
        .chain(classes.keys().map(String::as_str))
}

/// Parses one restriction list. `bare_table` is the lookup a bare `type:table` implies in this
/// parameter (None in data and end-of-data restrictions, where Postfix refuses it).
pub(crate) fn parse_list(
    param: &str,
    value: &str,
    origin: &Origin,
    bare_table: Option<Lookup>,
    cx: &mut ListContext<'_, '_>,
) -> Vec<Restriction> {
    let tokens = split_list(value);
    let mut out = Vec::new();
    let mut i = 0;
    let mut terminal: Option<&str> = None;
    while i < tokens.len() {
        let start = i;
        let parsed = parse_one(param, &tokens, &mut i, origin, bare_table, cx);
        if let Some(r) = parsed {
            if let Some(t) = terminal {
                cx.warnings.push(PolicyWarning::new(
                    param,
                    origin,
                    format!("restriction `{}' after `{t}' is ignored", tokens[start]),
                    format!("remove it or move it before `{t}'"),
                ));
            } else {
                if matches!(
                    r,
                    Restriction::Permit | Restriction::Reject | Restriction::Defer
                ) {
                    terminal = Some(tokens[start]);
                }
                out.push(r);
            }
        }
    }
    out
}

fn parse_one(
    param: &str,
    tokens: &[&str],
    i: &mut usize,
    origin: &Origin,
    bare_table: Option<Lookup>,
    cx: &mut ListContext<'_, '_>,
) -> Option<Restriction> {
    let word = *tokens.get(*i)?;
    *i += 1;
    let lower = word.to_ascii_lowercase();
    let unknown = |cx: &mut ListContext<'_, '_>, why_hint: Hint| {
        cx.errors.push(PolicyError::UnknownRestriction {
            name: param.to_string(),
            origin: origin.clone(),
            restriction: word.to_string(),
            hint: why_hint,
        });
    };
    if let Some((_, f)) = SIMPLE.iter().find(|(n, _)| *n == lower) {
        return Some(f());
    }
    if lower == "warn_if_reject" {
        return parse_one(param, tokens, i, origin, bare_table, cx)
            .map(|r| Restriction::WarnIfReject(Box::new(r)));
    }
    if let Some((_, lookup)) = CHECKS.iter().find(|(n, _)| *n == lower) {
        let Some(spec) = tokens.get(*i) else {
            unknown(cx, Hint::text(format!("`{word}` needs a table argument")));
            return None;
        };
        *i += 1;
        return match (cx.open)(spec, origin) {
            Ok(table) => Some(Restriction::Check {
                lookup: *lookup,
                table,
            }),
            Err(e) => {
                cx.errors.push(e);
                None
            }
        };
    }
    if let Some(&(name, subject, rtype)) = SERVER_CHECKS.iter().find(|(n, ..)| *n == lower) {
        let Some(spec) = tokens.get(*i) else {
            unknown(cx, Hint::text(format!("`{word}` needs a table argument")));
            return None;
        };
        *i += 1;
        return match (cx.open)(spec, origin) {
            Ok(table) => Some(Restriction::CheckServer(Box::new(ServerCheck {
                name,
                subject,
                rtype,
                table,
            }))),
            Err(e) => {
                cx.errors.push(e);
                None
            }
        };
    }
    if let Some(&(name, kind)) = DnsxlKind::ALL.iter().find(|(n, _)| *n == lower) {
        let Some(spec) = tokens.get(*i) else {
            unknown(
                cx,
                Hint::text(format!("`{word}` needs a DNS domain argument")),
            );
            return None;
        };
        *i += 1;
        return match Dnsxl::parse(name, kind, spec) {
            Ok(list) => Some(Restriction::Dnsxl(Box::new(list))),
            Err(why) => {
                unknown(cx, Hint::text(format!("`{word}`: {why}")));
                None
            }
        };
    }
    if lower == "check_policy_service" {
        let Some(spec) = tokens.get(*i) else {
            unknown(
                cx,
                Hint::text("`check_policy_service` needs a server: inet:host:port or unix:/path"),
            );
            return None;
        };
        *i += 1;
        return match PolicyService::parse(spec, cx.policy_defaults) {
            Ok(service) => Some(Restriction::PolicyService(Box::new(service))),
            Err(why) => {
                unknown(
                    cx,
                    Hint::text(format!("`check_policy_service {spec}`: {why}")),
                );
                None
            }
        };
    }
    if let Some(r) = super::eval_ccert::parse(param, &lower, tokens, i, origin, cx) {
        return r;
    }
    if let Some(&idx) = cx.classes.get(&lower) {
        return Some(Restriction::Class(idx));
    }
    if word.contains(':') {
        return match bare_table {
            Some(lookup) => match (cx.open)(word, origin) {
                Ok(table) => Some(Restriction::Check { lookup, table }),
                Err(e) => {
                    cx.errors.push(e);
                    None
                }
            },
            None => {
                unknown(cx, Hint::text("specify one of check_client_access, check_helo_access, check_sender_access, check_recipient_access before the table"));
                None
            }
        };
    }
    if let Some(&(_, takes_argument)) = NOT_IMPLEMENTED.iter().find(|(n, _)| *n == lower) {
        if takes_argument {
            *i += 1;
        }
        unknown(
            cx,
            Hint::text(format!(
                "`{lower}` is a Postfix restriction relayguard does not implement"
            )),
        );
        return None;
    }
    let hint = Hint::nearest(&lower, all_names(cx.classes));
    let hint = if hint.0.is_none() {
        Hint::text(
            "not a restriction; if it is a restriction class, list it in smtpd_restriction_classes",
        )
    } else {
        hint
    };
    unknown(cx, hint);
    None
}
