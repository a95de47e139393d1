//! Whole-policy checks after compilation: Postfix's start-up relay-control rule, restrictions
//! that cannot work with these settings, and whether the client name is ever needed.

use std::collections::BTreeSet;

use super::error::Hint;
use super::error::{PolicyError, PolicyWarning};
use super::params::{references, Origin, ParamMap};
use super::postfix_names::POSTFIX_NAMES;
use super::restriction::Restriction;
use super::Policy;
use super::PARAMETERS;

/// smtpd_check.c has_required: does the list (or a class it names) contain relay control before
/// any `permit`?
fn has_required(list: &[Restriction], p: &Policy, depth: usize) -> bool {
    for r in list {
        match r {
            Restriction::Permit => return false,
            r if r.is_relay_control() => return true,
            Restriction::Class(i) if depth < 10 => {
                if let Some((_, inner)) = p.classes.get(*i as usize) {
                    if has_required(inner, p, depth + 1) {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    false
}

/// Whether class `from` can reach class `target` through class names in lists or in the
/// values of the access tables its lists consult.
fn reaches(p: &Policy, from: u32, target: u32, seen: &mut Vec<bool>) -> bool {
    let Some((_, list)) = p.classes.get(from as usize) else {
        return false;
    };
    let mut next: Vec<u32> = Vec::new();
    let collect = |list: &[Restriction], next: &mut Vec<u32>| {
        for r in list {
            let r = match r {
                Restriction::WarnIfReject(inner) => inner,
                r => r,
            };
            if let Restriction::Class(c) = r {
                next.push(*c);
            }
        }
    };
    collect(list, &mut next);
    for r in list {
        if let Restriction::Check { table, .. } = r {
            for (value, _) in table.values() {
                if let Some(l) = p.value_lists.get(value.trim()) {
                    collect(l, &mut next);
                }
            }
        }
    }
    for c in next {
        if c == target {
            return true;
        }
        if let Some(s) = seen.get_mut(c as usize) {
            if !*s {
                *s = true;
                if reaches(p, c, target, seen) {
                    return true;
                }
            }
        }
    }
    false
}

fn all_lists(p: &Policy) -> impl Iterator<Item = (&str, &[Restriction])> {
    let s = &p.stages;
    [
        ("smtpd_client_restrictions", &s.client[..]),
        ("smtpd_helo_restrictions", &s.helo[..]),
        ("smtpd_sender_restrictions", &s.sender[..]),
        ("smtpd_relay_restrictions", &s.relay[..]),
        ("smtpd_recipient_restrictions", &s.recipient[..]),
        ("smtpd_data_restrictions", &s.data[..]),
        ("smtpd_end_of_data_restrictions", &s.end_of_data[..]),
    ]
    .into_iter()
    .chain(p.classes.iter().map(|(n, l)| (&**n, &l[..])))
    .chain(p.value_lists.iter().map(|(n, l)| (&**n, &l[..])))
}

fn any(list: &[Restriction], f: &dyn Fn(&Restriction) -> bool) -> bool {
    list.iter().any(|r| match r {
        Restriction::WarnIfReject(inner) => f(inner),
        r => f(r),
    })
}

pub(crate) fn check(
    p: &mut Policy,
    errors: &mut Vec<PolicyError>,
    warnings: &mut Vec<PolicyWarning>,
    origin: impl Fn(&str) -> Origin,
) {
    if !has_required(&p.stages.relay, p, 0) && !has_required(&p.stages.recipient, p, 0) {
        let o = origin("smtpd_relay_restrictions");
        let o = if o.line == 0 {
            origin("smtpd_recipient_restrictions")
        } else {
            o
        };
        errors.push(PolicyError::NoRelayControl { origin: o });
    }
    for (i, (name, _)) in p.classes.iter().enumerate() {
        if reaches(p, i as u32, i as u32, &mut vec![false; p.classes.len()]) {
            errors.push(PolicyError::BadValue {
                name: name.to_string(),
                origin: origin(name),
                why: format!(
                    "restriction class `{name}` calls itself and causes unreasonable recursion"
                ),
                hint: super::Hint::none(),
            });
        }
    }
    let mut wants_name = false;
    let mut waits = false;
    for (name, list) in all_lists(p) {
        waits |= list.iter().any(Restriction::waits);
        // Only where the admin wrote the list: Postfix's own default relay restrictions name
        // permit_sasl_authenticated on every listener, SASL or not.
        let written = origin(name).line > 0;
        if written
            && !p.sasl_auth_enable
            && any(list, &|r| matches!(r, Restriction::PermitSaslAuthenticated))
        {
            warnings.push(PolicyWarning::new(
                name,
                &origin(name),
                "permit_sasl_authenticated never matches: smtpd_sasl_auth_enable = no".into(),
                "set smtpd_sasl_auth_enable = yes if clients authenticate".into(),
            ));
        }
        let mismatch: Vec<&'static str> = list
            .iter()
            .filter_map(|r| match r {
                Restriction::SenderLoginMismatch(m) => Some(m.name),
                Restriction::WarnIfReject(inner) => match &**inner {
                    Restriction::SenderLoginMismatch(m) => Some(m.name),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        if !mismatch.is_empty() {
            if p.sender_login_maps.is_none() {
                // smtpd treats the unset map as an empty one: no sender has an owner, so
                // every logged-in sender is refused (reject_known_* and the unauthenticated
                // check refuse nobody). Postfix says nothing; mail stacks ship it so and fill
                // the map in at deploy (docker-mailserver).
                for restriction in mismatch {
                    warnings.push(PolicyWarning::new(
                        name,
                        &origin(name),
                        format!("smtpd_sender_login_maps is not set: `{restriction}' finds no sender owned by any login"),
                        "set smtpd_sender_login_maps = texthash:/path/to/logins".into(),
                    ));
                }
            } else if !p.sasl_auth_enable {
                // smtpd_check.c: "restriction `%s' ignored: no SASL support", per restriction.
                for restriction in mismatch {
                    warnings.push(PolicyWarning::new(
                        name,
                        &origin(name),
                        format!("restriction `{restriction}' ignored: no SASL support (smtpd_sasl_auth_enable = no)"),
                        "set smtpd_sasl_auth_enable = yes".into(),
                    ));
                }
            }
        }
        if any(list, &Restriction::uses_client_name) {
            wants_name = true;
        }
    }
    if p.mynetworks.uses_names() || p.sasl_exceptions.uses_names() {
        wants_name = true;
    }
    let mut remote: Vec<Box<str>> = Vec::new();
    for (_, list) in all_lists(p) {
        for r in list {
            let r = match r {
                Restriction::WarnIfReject(inner) => inner,
                r => r,
            };
            let table = match r {
                Restriction::Check { table, .. } => table,
                Restriction::CheckServer(c) => &c.table,
                _ => continue,
            };
            if table.is_remote() {
                remote.push(table.spec().into());
            }
        }
    }
    for t in p.recipient_maps.tables().filter(|t| t.is_remote()) {
        remote.push(t.spec().into());
        // The implicit reject_unlisted_* checks ask them; no restriction names them.
        waits = true;
    }
    if let Some(t) = p.sender_login_maps.as_ref().filter(|t| t.is_remote()) {
        remote.push(t.spec().into());
        // reject_*sender_login_mismatch asks it; Restriction::waits cannot see the map.
        waits = true;
    }
    for list in [
        &p.mynetworks,
        &p.mydestination,
        &p.relay_domains,
        &p.virtual_alias_domains,
        &p.virtual_mailbox_domains,
    ] {
        remote.extend(list.remote_specs().map(Box::from));
        // permit_mynetworks and every address classification may ask it.
        waits |= list.has_remote();
    }
    remote.sort();
    remote.dedup();
    p.wants_name = wants_name;
    p.waits = waits;
    p.remote_tables = remote;
}

/// Every name in the map must be implemented here, by the session, be a declared class, or be
/// user-defined: not a Postfix name, and referred to as `$name` somewhere in the configuration
/// (`user_defined`). A made-up name nothing refers to stays an error (Postfix only warns
/// "unused parameter", but a typo in a security setting must not pass silently); a real
/// Postfix parameter relayguard does not implement stays refused even when referred to, since
/// setting it would mean more to Postfix than a macro.
pub(crate) fn check_names(
    params: &ParamMap,
    errors: &mut Vec<PolicyError>,
    classes: &[String],
    others: &[&str],
    user_defined: &BTreeSet<String>,
) {
    let names: Vec<(String, Origin)> = params
        .iter()
        .map(|(n, v)| (n.to_string(), v.origin.clone()))
        .collect();
    for (name, origin) in names {
        if PARAMETERS.contains(&name.as_str())
            || others.contains(&name.as_str())
            || classes.contains(&name)
            || user_defined.contains(&name)
        {
            continue;
        }
        let candidates = PARAMETERS
            .iter()
            .chain(others)
            .copied()
            .chain(classes.iter().map(String::as_str));
        if POSTFIX_NAMES.binary_search(&name.as_str()).is_ok() {
            let hint = Hint::nearest(&name, candidates);
            let hint = hint.0.map(|h| format!("relayguard does not implement it; {h}")).unwrap_or_else(|| "relayguard does not implement it; remove it or configure it on the upstream MTA".into());
            errors.push(PolicyError::NotImplemented {
                name,
                origin,
                hint: Hint::text(hint),
            });
        } else {
            let hint = Hint::nearest(&name, candidates);
            let hint = match hint.0 {
                Some(_) => hint,
                None if !classes.is_empty() => {
                    Hint::text("a restriction class must be listed in smtpd_restriction_classes")
                }
                None => Hint::text(format!(
                    "no value refers to it as ${name}; Postfix would warn: unused parameter"
                )),
            };
            errors.push(PolicyError::UnknownParameter { name, origin, hint });
        }
    }
}

/// Every `$name` a value needs must name something: a parameter in the map, a Postfix
/// parameter (`is_builtin`: one with a built-in value, or computed from the host), or one
/// implemented elsewhere in relayguard. Postfix would expand anything else to nothing.
/// A `$` that starts no name stops Postfix at start-up, so it is refused too.
/// Parameters whose `$name`s are filled in per reply (rbl_reply_maps templates too), not
/// from main.cf: Postfix reads them raw.
const RAW_PARAMETERS: &[&str] = &["default_rbl_reply"];

pub(crate) fn check_references(
    params: &ParamMap,
    others: &[&str],
    is_builtin: impl Fn(&str) -> bool,
    errors: &mut Vec<PolicyError>,
) {
    for (parameter, pv) in params.iter() {
        if RAW_PARAMETERS.contains(&parameter) {
            continue;
        }
        let refs = match references(&pv.value) {
            Ok(refs) => refs,
            Err(why) => {
                errors.push(PolicyError::BadValue {
                    name: parameter.to_string(),
                    origin: pv.origin.clone(),
                    why,
                    hint: Hint::none(),
                });
                continue;
            }
        };
        for (name, needed) in refs {
            let defined = params.get(name).is_some()
                || others.contains(&name)
                || POSTFIX_NAMES.binary_search(&name).is_ok()
                || is_builtin(name);
            if needed && !defined {
                errors.push(PolicyError::UndefinedParameter {
                    name: name.to_string(),
                    parameter: parameter.to_string(),
                    origin: pv.origin.clone(),
                    hint: Hint::nearest(name, params.iter().map(|(n, _)| n)),
                });
            }
        }
    }
}

/// The names that values in `maps` refer to with `$` and that Postfix does not know itself:
/// the admin's own parameters, such as `office_nets` in `mynetworks = $office_nets`.
pub(crate) fn user_defined<'a>(maps: impl IntoIterator<Item = &'a ParamMap>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for map in maps {
        for (parameter, pv) in map.iter() {
            if RAW_PARAMETERS.contains(&parameter) {
                continue;
            }
            // A value with a `$` error is reported by check_references.
            for (name, _) in references(&pv.value).unwrap_or_default() {
                if POSTFIX_NAMES.binary_search(&name).is_err() {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}
