//! Turns Postfix parameters into a [`Policy`]: names checked, `$` expanded, defaults of
//! compatibility_level 3.6 applied, lists and tables compiled, mistakes reported with file and line.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::access::{parse_action, Action, Codes, MTA_ACTIONS};
use super::address::Rewrite;
use super::compile_checks::{check_names, check_references};
use super::defaults::{default_value, parse_compat, style_networks};
use super::error::{Hint, PolicyError, PolicyWarning};
use super::eval_dns::DnsRules;
use super::netlist::{NetList, TableOpener};
use super::params::{expand, Origin, ParamMap};
use super::policy_service::PolicySettings;
use super::recipient_maps::{Maps, RecipientMaps, UnknownCodes};
use super::restriction::{parse_list, ListContext, Lookup, Restriction};
use super::table::{Entry, Table};
use super::{HostInfo, Policy, StageLists};

struct Ctx<'a> {
    params: &'a ParamMap,
    host: &'a HostInfo,
    compat: (u32, u32),
    errors: Vec<PolicyError>,
    warnings: Vec<PolicyWarning>,
    /// `mynetworks` as computed from `mynetworks_style` when not set, so `$mynetworks` expands
    /// to it (e.g. in smtpd_client_event_limit_exceptions).
    style_mynetworks: Option<String>,
}

impl Ctx<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        if let Some(v) = self.params.value(name) {
            return Some(v.to_string());
        }
        match name {
            "mynetworks" => self.style_mynetworks.clone(),
            "myhostname" => Some(
                self.host
                    .hostname
                    .clone()
                    .unwrap_or_else(|| "localhost".into()),
            ),
            "mydomain" => {
                let h = self.raw("myhostname").unwrap_or_default();
                Some(
                    h.split_once('.')
                        .map(|(_, d)| d.to_string())
                        .filter(|d| d.contains('.') || !d.is_empty())
                        .unwrap_or_else(|| "localdomain".into()),
                )
            }
            _ => default_value(name, self.compat).map(str::to_string),
        }
    }

    fn get(&self, name: &str) -> String {
        let raw = self.raw(name).unwrap_or_default();
        expand(&raw, &|n| self.raw(n))
    }

    /// Where `name` was written; for a parameter left at a default such as `$mynetworks`,
    /// where the parameter it expands from was written, so that an error in the expanded
    /// value still names a file and line.
    fn origin(&self, name: &str) -> Origin {
        if let Some(v) = self.params.get(name) {
            return v.origin.clone();
        }
        let default = default_value(name, self.compat).unwrap_or_default();
        default
            .split('$')
            .skip(1)
            .map(|r| {
                r.trim_start_matches(['{', '('])
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")
            })
            .find_map(|referenced| self.params.get(referenced))
            .map(|v| v.origin.clone())
            .unwrap_or_default()
    }

    fn yes(&mut self, name: &str) -> bool {
        let v = self.get(name);
        match v.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" => true,
            "no" | "false" => false,
            _ => {
                self.errors.push(PolicyError::BadValue {
                    name: name.into(),
                    origin: self.origin(name),
                    why: format!("\"{v}\" is not yes or no"),
                    hint: Hint::none(),
                });
                false
            }
        }
    }

    /// A `*_tempfail_action`: true for defer_if_permit, false for defer.
    fn tempfail_action(&mut self, name: &str) -> bool {
        let v = self.get(name);
        match v.trim().to_ascii_lowercase().as_str() {
            "defer_if_permit" => true,
            "defer" => false,
            _ => {
                self.errors.push(PolicyError::BadValue {
                    name: name.into(),
                    origin: self.origin(name),
                    why: format!("\"{v}\" is not defer_if_permit or defer"),
                    hint: Hint::none(),
                });
                true
            }
        }
    }

    fn code(&mut self, name: &str, default: u16) -> u16 {
        let v = self.get(name);
        if v.trim().is_empty() {
            return default;
        }
        match v.trim().parse::<u16>() {
            Ok(c) if (400..600).contains(&c) => c,
            _ => {
                self.errors.push(PolicyError::BadValue {
                    name: name.into(),
                    origin: self.origin(name),
                    why: format!("\"{v}\" is not a 4xx or 5xx reply code"),
                    hint: Hint::none(),
                });
                default
            }
        }
    }
}

/// `user_defined` are names referred to as `$name` elsewhere in the configuration (other
/// listeners); the ones `params` refers to itself are found here.
pub(crate) fn compile(
    params: &ParamMap,
    host: &HostInfo,
    others: &[&str],
    user_defined: &BTreeSet<String>,
    mta_action_tables: &[String],
) -> Result<Policy, Vec<PolicyError>> {
    let compat = params
        .value("compatibility_level")
        .map(|v| parse_compat(v).unwrap_or((3, 6)))
        .unwrap_or((3, 6));
    let mut cx = Ctx {
        params,
        host,
        compat,
        errors: Vec::new(),
        warnings: Vec::new(),
        style_mynetworks: None,
    };

    // Classes are parameter names too, so read them before checking names.
    let class_names = super::restriction_class_names(params);
    let mut user_defined = user_defined.clone();
    user_defined.extend(super::compile_checks::user_defined([params]));
    check_names(params, &mut cx.errors, &class_names, others, &user_defined);
    let builtin = |name: &str| {
        matches!(name, "myhostname" | "mydomain" | "mynetworks")
            || default_value(name, compat).is_some()
    };
    check_references(params, others, builtin, &mut cx.errors);

    let mut cache: FxHashMap<String, Arc<Table>> = FxHashMap::default();
    let mut table_warnings: Vec<PolicyWarning> = Vec::new();
    let mut open = |spec: &str, origin: &Origin| -> Result<Arc<Table>, PolicyError> {
        if let Some(t) = cache.get(spec) {
            return Ok(t.clone());
        }
        let t = Arc::new(Table::open(spec, origin, &mut table_warnings)?);
        cache.insert(spec.to_string(), t.clone());
        Ok(t)
    };

    let parent: Vec<String> = super::text::split_list(&cx.get("parent_domain_matches_subdomains"))
        .into_iter()
        .map(str::to_ascii_lowercase)
        .collect();
    let is_parent = |n: &str| parent.iter().any(|p| p == n);

    let list = |cx: &mut Ctx<'_>, name: &str, value: String, open: &mut TableOpener<'_>| {
        let origin = cx.origin(name);
        // The lists the evaluation asks itself (permit_mynetworks, address classes) may name
        // remote tables; the AUTH gate and the client limits answer without waiting.
        let allow_remote = matches!(
            name,
            "mynetworks"
                | "mydestination"
                | "relay_domains"
                | "virtual_alias_domains"
                | "virtual_mailbox_domains"
        );
        NetList::compile(
            name,
            &value,
            &origin,
            is_parent(name),
            allow_remote,
            open,
            &mut cx.errors,
            &mut cx.warnings,
        )
    };

    let mynetworks_value = if params.get("mynetworks").is_some() {
        cx.get("mynetworks")
    } else {
        let style = cx.get("mynetworks_style").trim().to_ascii_lowercase();
        let interfaces = local_interfaces(&mut cx);
        match style_networks(&style, &interfaces) {
            Ok(v) => v,
            Err(why) => {
                cx.errors.push(PolicyError::BadValue {
                    name: "mynetworks_style".into(),
                    origin: cx.origin("mynetworks_style"),
                    why,
                    hint: Hint::text("host, subnet or class"),
                });
                String::new()
            }
        }
    };
    if params.get("mynetworks").is_none() {
        cx.style_mynetworks = Some(mynetworks_value.clone());
    }
    let mynetworks = list(&mut cx, "mynetworks", mynetworks_value, &mut open);
    let v = cx.get("smtpd_sasl_exceptions_networks");
    let sasl_exceptions = list(&mut cx, "smtpd_sasl_exceptions_networks", v, &mut open);
    let v = cx.get("smtpd_client_event_limit_exceptions");
    let reported = (cx.errors.len(), cx.warnings.len());
    let event_limit_exceptions = list(&mut cx, "smtpd_client_event_limit_exceptions", v, &mut open);
    let explicit = [
        "smtpd_client_event_limit_exceptions",
        "smtpd_client_connection_limit_exceptions",
    ]
    .iter()
    .any(|n| params.get(n).is_some());
    if !explicit {
        // Left at its default, `$mynetworks`: its errors and warnings are mynetworks' own,
        // already reported.
        cx.errors.truncate(reported.0);
        cx.warnings.truncate(reported.1);
        if mynetworks.has_remote() {
            cx.errors.push(PolicyError::BadValue {
                name: "smtpd_client_event_limit_exceptions".into(),
                origin: cx.origin("mynetworks"),
                why: "it defaults to $mynetworks, which names a remote table; the client limits cannot wait for a lookup".into(),
                hint: Hint::text("set smtpd_client_event_limit_exceptions explicitly (addresses, cidr: or texthash: tables)"),
            });
        }
    }
    let v = cx.get("mydestination");
    let mydestination = list(&mut cx, "mydestination", v, &mut open);
    let v = cx.get("relay_domains");
    let relay_domains = list(&mut cx, "relay_domains", v, &mut open);
    let v = cx.get("virtual_alias_domains");
    let virtual_alias_domains = list(&mut cx, "virtual_alias_domains", v, &mut open);
    let v = cx.get("virtual_mailbox_domains");
    let virtual_mailbox_domains = list(&mut cx, "virtual_mailbox_domains", v, &mut open);
    let mut local_literals: Vec<IpAddr> = local_interfaces(&mut cx)
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let inet_count = local_literals.len();
    for item in super::text::split_list(&cx.get("proxy_interfaces")) {
        match item.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(a) => local_literals.push(a),
            Err(_) => cx.errors.push(PolicyError::BadValue {
                name: "proxy_interfaces".into(),
                origin: cx.origin("proxy_interfaces"),
                why: format!("\"{item}\" is not an IP address"),
                hint: Hint::text("relayguard takes addresses only, no host names"),
            }),
        }
    }

    // Restriction classes, then the stage lists that may use them.
    let class_index: FxHashMap<String, u32> = class_names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i as u32))
        .collect();
    let mut classes: Vec<(Box<str>, Vec<Restriction>)> = Vec::new();
    let mut lists = StageLists::default();
    let policy_defaults = policy_settings(&mut cx);
    let relay_clientcerts = one_table(&mut cx, &mut open, "relay_clientcerts");
    {
        let mut errors = std::mem::take(&mut cx.errors);
        let mut warnings = std::mem::take(&mut cx.warnings);
        let mut lcx = ListContext {
            classes: &class_index,
            open: &mut open,
            errors: &mut errors,
            warnings: &mut warnings,
            policy_defaults: &policy_defaults,
            relay_clientcerts,
        };
        for name in &class_names {
            let Some(pv) = params.get(name) else {
                lcx.errors.push(PolicyError::BadValue {
                    name: "smtpd_restriction_classes".into(),
                    origin: params
                        .get("smtpd_restriction_classes")
                        .map(|v| v.origin.clone())
                        .unwrap_or_default(),
                    why: format!("class `{name}` is declared but not defined"),
                    hint: Hint::text(format!("add `{name} = restriction, ...`")),
                });
                classes.push((name.as_str().into(), Vec::new()));
                continue;
            };
            let value = expand(&pv.value, &|n| cx.raw(n));
            let parsed = parse_list(name, &value, &pv.origin, None, &mut lcx);
            classes.push((name.as_str().into(), parsed));
        }
        let stage = |param: &str,
                     bare: Option<Lookup>,
                     lcx: &mut ListContext<'_, '_>|
         -> Vec<Restriction> {
            let value = cx.get(param);
            parse_list(param, &value, &cx.origin(param), bare, lcx)
        };
        lists.client = stage("smtpd_client_restrictions", Some(Lookup::Client), &mut lcx);
        lists.helo = stage("smtpd_helo_restrictions", Some(Lookup::Helo), &mut lcx);
        lists.sender = stage("smtpd_sender_restrictions", Some(Lookup::Sender), &mut lcx);
        lists.relay = stage(
            "smtpd_relay_restrictions",
            Some(Lookup::Recipient),
            &mut lcx,
        );
        lists.recipient = stage(
            "smtpd_recipient_restrictions",
            Some(Lookup::Recipient),
            &mut lcx,
        );
        lists.data = stage("smtpd_data_restrictions", None, &mut lcx);
        lists.end_of_data = stage("smtpd_end_of_data_restrictions", None, &mut lcx);

        // Access-table values that name restrictions or classes are parsed now, not per lookup.
        let mut value_lists: FxHashMap<Box<str>, Vec<Restriction>> = FxHashMap::default();
        let tables = access_tables(&lists, &classes);
        let codes_probe = Codes::default();
        for t in &tables {
            let mta_actions = mta_action_tables.iter().any(|m| m == t.spec());
            for Entry { key, value, origin } in t.entries() {
                if value.contains('$') {
                    continue;
                }
                let bad = |why: String| PolicyError::Table {
                    table: t.spec().into(),
                    origin: origin.clone(),
                    why,
                    hint: Hint::none(),
                };
                match parse_action(value, &codes_probe) {
                    Action::Restrictions(text) => {
                        let key = text.trim();
                        if value_lists.contains_key(key) {
                            continue;
                        }
                        if super::text::split_list(key).iter().any(|t| t.contains(':')) {
                            lcx.errors.push(bad(format!("value \"{value}\" names a lookup table; do not specify lookup tables inside SMTPD access maps, define a restriction class and specify its name instead")));
                            continue;
                        }
                        let before = lcx.errors.len();
                        let parsed = parse_list(t.spec(), key, &origin, None, &mut lcx);
                        if lcx.errors.len() == before {
                            value_lists.insert(key.into(), parsed);
                        }
                    }
                    Action::Unsupported(word) if mta_actions && MTA_ACTIONS.contains(&word) => {}
                    Action::Unsupported(word) => lcx.errors.push(PolicyError::Table {
                        table: t.spec().into(),
                        origin: origin.clone(),
                        why: format!("entry `{key} {value}`: action {word} acts on the queued message, which relayguard (a proxy without a queue) cannot do"),
                        hint: Hint::text(message_action_hint(word)),
                    }),
                    Action::Table => lcx.errors.push(bad(format!("value \"{value}\" is a lookup table; do not specify lookup tables inside SMTPD access maps, define a restriction class and specify its name instead"))),
                    Action::Invalid => lcx.errors.push(bad(format!("value \"{value}\" is not an access action (Postfix answers 451 4.3.5 Server configuration error)"))),
                    _ => {}
                }
            }
        }
        cx.errors = errors;
        cx.warnings = warnings;
        let sender_login_maps = one_table(&mut cx, &mut open, "smtpd_sender_login_maps");
        let recipient_maps = recipient_maps(&mut cx, &mut open);
        let rbl_reply_maps = one_table(&mut cx, &mut open, "rbl_reply_maps");
        // Reply templates are expanded while the reply is built, which cannot wait.
        let rbl_reply_maps = match rbl_reply_maps {
            Some(t) if t.is_remote() => {
                cx.errors.push(PolicyError::BadValue {
                    name: "rbl_reply_maps".into(),
                    origin: cx.origin("rbl_reply_maps"),
                    why: format!(
                        "`{}`: a remote table in rbl_reply_maps is not supported yet",
                        t.spec()
                    ),
                    hint: Hint::text("use a texthash: or regexp: table"),
                });
                None
            }
            other => other,
        };
        finish(
            cx,
            FinishParts {
                mynetworks,
                sasl_exceptions,
                event_limit_exceptions,
                mydestination,
                relay_domains,
                virtual_alias_domains,
                virtual_mailbox_domains,
                local_literals,
                inet_count,
                lists,
                classes,
                value_lists,
                table_warnings,
                sender_login_maps,
                recipient_maps,
                rbl_reply_maps,
                policy_defaults,
            },
        )
        .map(|mut p| {
            p.mta_action_tables = mta_action_tables
                .iter()
                .map(|t| t.as_str().into())
                .collect();
            p
        })
    }
}

/// How to deploy a table with a message action relayguard refuses.
fn message_action_hint(word: &str) -> String {
    if MTA_ACTIONS.contains(&word) {
        format!("Postfix's verdict for {word} is DUNNO: keep this restriction on the MTA too and list the table in [tables] mta_actions, so that relayguard answers DUNNO and the MTA applies {word}")
    } else if word == "DISCARD" {
        "DISCARD decides (it accepts the recipient and skips every later restriction), so relayguard cannot leave it to the MTA: move the entry to a table only the MTA reads".into()
    } else {
        "put this rule on the upstream MTA".into()
    }
}

/// The main.cf smtpd_policy_service_* settings every check_policy_service starts from.
fn policy_settings(cx: &mut Ctx<'_>) -> PolicySettings {
    let mut settings = PolicySettings::default();
    if let Some(dir) = cx.params.value("queue_directory") {
        settings.queue_directory = dir.trim().into();
    }
    for name in super::PARAMETERS
        .iter()
        .filter(|n| n.starts_with("smtpd_policy_service_"))
    {
        if cx.params.get(name).is_none() {
            continue;
        }
        let value = cx.get(name);
        let key = &name["smtpd_policy_service_".len()..];
        if let Err(why) = settings.set(key, value.trim()) {
            cx.errors.push(PolicyError::BadValue {
                name: (*name).into(),
                origin: cx.origin(name),
                why,
                hint: Hint::none(),
            });
        }
    }
    settings
}

/// A map list: every table it names, searched in turn for each key.
fn maps(cx: &mut Ctx<'_>, open: &mut TableOpener<'_>, param: &'static str) -> Maps {
    let v = cx.get(param);
    let mut out = Maps::new();
    for spec in super::text::split_list(&v) {
        match open(spec, &cx.origin(param)) {
            Ok(t) => out.push(t),
            Err(e) => cx.errors.push(e),
        }
    }
    out
}

/// check_rcpt_maps' tables. A `unix:` table in local_recipient_maps is the MTA host's own
/// passwd, which relayguard cannot see: local recipients are then left to the MTA, loudly.
fn recipient_maps(cx: &mut Ctx<'_>, open: &mut TableOpener<'_>) -> RecipientMaps {
    let local_spec = cx.get("local_recipient_maps");
    let host_tables = super::text::split_list(&local_spec)
        .into_iter()
        .find(|s| {
            let s = s.strip_prefix("proxy:").unwrap_or(s);
            s.to_ascii_lowercase().starts_with("unix:")
        })
        .map(str::to_owned);
    let local = match host_tables {
        Some(spec) => {
            cx.warnings.push(PolicyWarning::new(
                "local_recipient_maps",
                &cx.origin("local_recipient_maps"),
                format!("`{spec}` is the MTA host's user database, which relayguard cannot read: local recipients are checked by the MTA only"),
                "set local_recipient_maps to tables relayguard reads to have them checked here too".into(),
            ));
            Maps::new()
        }
        None => maps(cx, open, "local_recipient_maps"),
    };
    RecipientMaps {
        canonical: maps(cx, open, "canonical_maps"),
        recipient_canonical: maps(cx, open, "recipient_canonical_maps"),
        sender_canonical: maps(cx, open, "sender_canonical_maps"),
        virtual_alias: maps(cx, open, "virtual_alias_maps"),
        local,
        virtual_mailbox: maps(cx, open, "virtual_mailbox_maps"),
        relay: maps(cx, open, "relay_recipient_maps"),
        codes: UnknownCodes {
            local: cx.code("unknown_local_recipient_reject_code", 550),
            virtual_alias: cx.code("unknown_virtual_alias_reject_code", 550),
            virtual_mailbox: cx.code("unknown_virtual_mailbox_reject_code", 550),
            relay: cx.code("unknown_relay_recipient_reject_code", 550),
        },
        show_table: cx.yes("show_user_unknown_table_name"),
        implicit_recipient: cx.yes("smtpd_reject_unlisted_recipient"),
        implicit_sender: cx.yes("smtpd_reject_unlisted_sender"),
        double_bounce: cx.get("double_bounce_sender").trim().into(),
    }
}

/// A parameter that names one table (relayguard does not search several in turn here).
fn one_table(
    cx: &mut Ctx<'_>,
    open: &mut TableOpener<'_>,
    param: &'static str,
) -> Option<Arc<Table>> {
    let v = cx.get(param);
    let specs = super::text::split_list(&v);
    match specs.as_slice() {
        [] => None,
        [one] => match open(one, &cx.origin(param)) {
            Ok(t) => Some(t),
            Err(e) => {
                cx.errors.push(e);
                None
            }
        },
        _ => {
            cx.errors.push(PolicyError::BadValue {
                name: param.into(),
                origin: cx.origin(param),
                why: "relayguard takes one table here".into(),
                hint: Hint::text("merge the tables into one file"),
            });
            None
        }
    }
}

struct FinishParts {
    policy_defaults: PolicySettings,
    mynetworks: NetList,
    sasl_exceptions: NetList,
    event_limit_exceptions: NetList,
    mydestination: NetList,
    relay_domains: NetList,
    virtual_alias_domains: NetList,
    virtual_mailbox_domains: NetList,
    local_literals: Vec<IpAddr>,
    inet_count: usize,
    lists: StageLists,
    classes: Vec<(Box<str>, Vec<Restriction>)>,
    value_lists: FxHashMap<Box<str>, Vec<Restriction>>,
    table_warnings: Vec<PolicyWarning>,
    sender_login_maps: Option<Arc<Table>>,
    recipient_maps: RecipientMaps,
    rbl_reply_maps: Option<Arc<Table>>,
}

fn finish(mut cx: Ctx<'_>, parts: FinishParts) -> Result<Policy, Vec<PolicyError>> {
    let codes = Codes {
        reject: cx.code("reject_code", 554),
        defer: cx.code("defer_code", 450),
        relay_domains_reject: cx.code("relay_domains_reject_code", 554),
        access_map_reject: cx.code("access_map_reject_code", 554),
        access_map_defer: cx.code("access_map_defer_code", 450),
        invalid_hostname_reject: cx.code("invalid_hostname_reject_code", 501),
        non_fqdn_reject: cx.code("non_fqdn_reject_code", 504),
    };
    let dns = DnsRules {
        unknown_client: cx.code("unknown_client_reject_code", 450),
        unknown_hostname: cx.code("unknown_hostname_reject_code", 450),
        unknown_address: cx.code("unknown_address_reject_code", 450),
        maps_rbl: cx.code("maps_rbl_reject_code", 554),
        helo_tempfail_if_permit: cx.tempfail_action("unknown_helo_hostname_tempfail_action"),
        address_tempfail_if_permit: cx.tempfail_action("unknown_address_tempfail_action"),
        // A template expanded per reply, never at load (Postfix reads it raw).
        default_rbl_reply: cx
            .raw("default_rbl_reply")
            .unwrap_or_default()
            .trim()
            .into(),
        rbl_reply_maps: parts.rbl_reply_maps,
    };
    let sasl_auth_enable = cx.yes("smtpd_sasl_auth_enable");
    let sender_login_maps = parts.sender_login_maps;
    let mut policy = Policy {
        mynetworks: parts.mynetworks,
        sasl_exceptions: parts.sasl_exceptions,
        event_limit_exceptions: parts.event_limit_exceptions,
        mydestination: parts.mydestination,
        relay_domains: parts.relay_domains,
        virtual_alias_domains: parts.virtual_alias_domains,
        virtual_mailbox_domains: parts.virtual_mailbox_domains,
        local_literals: parts.local_literals,
        inet_count: parts.inet_count,
        stages: parts.lists,
        classes: parts.classes,
        value_lists: parts.value_lists,
        mta_action_tables: Vec::new(),
        codes,
        dns,
        delay_reject: cx.yes("smtpd_delay_reject"),
        relay_before_recipient: cx.yes("smtpd_relay_before_recipient_restrictions"),
        sasl_auth_enable,
        tls_auth_only: cx.yes("smtpd_tls_auth_only"),
        soft_bounce: cx.yes("soft_bounce"),
        allow_untrusted_routing: cx.yes("allow_untrusted_routing"),
        rewrite: Rewrite {
            allow_percent_hack: cx.yes("allow_percent_hack"),
            swap_bangpath: cx.yes("swap_bangpath"),
        },
        null_key: cx
            .get("smtpd_null_access_lookup_key")
            .trim()
            .to_ascii_lowercase()
            .into(),
        recipient_delimiter: cx.get("recipient_delimiter").into(),
        myorigin: cx.get("myorigin").trim().to_ascii_lowercase().into(),
        myhostname: cx.get("myhostname").trim().into(),
        access_parent_style: super::text::split_list(&cx.get("parent_domain_matches_subdomains"))
            .iter()
            .any(|p| p.eq_ignore_ascii_case("smtpd_access_maps")),
        sender_login_maps,
        recipient_maps: parts.recipient_maps,
        policy_defaults: parts.policy_defaults,
        warnings: Vec::new(),
        wants_name: false,
        waits: false,
        remote_tables: Vec::new(),
    };
    let params = cx.params;
    super::compile_checks::check(&mut policy, &mut cx.errors, &mut cx.warnings, |n| {
        params.get(n).map(|v| v.origin.clone()).unwrap_or_default()
    });
    cx.warnings.extend(parts.table_warnings);
    policy.warnings = cx.warnings;
    if cx.errors.is_empty() {
        Ok(policy)
    } else {
        Err(cx.errors)
    }
}

/// The addresses `inet_interfaces` covers on this host.
fn local_interfaces(cx: &mut Ctx<'_>) -> Vec<(IpAddr, u8)> {
    let v = cx.get("inet_interfaces");
    let mut out = Vec::new();
    for item in super::text::split_list(&v) {
        match item.to_ascii_lowercase().as_str() {
            "all" => out.extend(cx.host.interfaces.iter().copied()),
            "loopback-only" => out.extend(
                cx.host
                    .interfaces
                    .iter()
                    .copied()
                    .filter(|(a, _)| a.is_loopback()),
            ),
            "localhost" => out.extend(
                cx.host
                    .interfaces
                    .iter()
                    .copied()
                    .filter(|(a, _)| a.is_loopback()),
            ),
            other => match other.trim_matches(['[', ']']).parse::<IpAddr>() {
                Ok(a) => {
                    let len = cx
                        .host
                        .interfaces
                        .iter()
                        .find(|(i, _)| *i == a)
                        .map(|(_, l)| *l)
                        .unwrap_or(if a.is_ipv4() { 32 } else { 128 });
                    out.push((a, len));
                }
                Err(_) => cx.errors.push(PolicyError::BadValue {
                    name: "inet_interfaces".into(),
                    origin: cx.origin("inet_interfaces"),
                    why: format!("\"{item}\" is not all, loopback-only or an IP address"),
                    hint: Hint::none(),
                }),
            },
        }
    }
    out
}

/// Tables used by check_*_access anywhere (their values are access actions).
fn access_tables(lists: &StageLists, classes: &[(Box<str>, Vec<Restriction>)]) -> Vec<Arc<Table>> {
    let mut out: Vec<Arc<Table>> = Vec::new();
    let all = [
        &lists.client,
        &lists.helo,
        &lists.sender,
        &lists.relay,
        &lists.recipient,
        &lists.data,
        &lists.end_of_data,
    ]
    .into_iter()
    .chain(classes.iter().map(|(_, l)| l));
    fn visit(r: &Restriction, out: &mut Vec<Arc<Table>>) {
        match r {
            Restriction::Check { table, .. } if !out.iter().any(|t| Arc::ptr_eq(t, table)) => {
                out.push(table.clone())
            }
            Restriction::WarnIfReject(inner) => visit(inner, out),
            _ => {}
        }
    }
    for list in all {
        for r in list {
            visit(r, &mut out);
        }
    }
    out
}
