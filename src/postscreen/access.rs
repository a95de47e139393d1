//! postscreen_access_list as Postfix's server_acl.c reads it: `permit_mynetworks`, `permit`,
//! `reject`, `dunno` and `type:table` (whose values are lists of the same words, one level
//! deep), first decision wins.
//!
//! Tables are opened at load and must be in memory (cidr, texthash, inline, ...): the list is
//! judged before the greeting, where nothing may wait on a remote table.

use std::net::IpAddr;
use std::sync::Arc;

use super::PostscreenError;
use crate::policy::{NetList, ParamValue, Table};

#[derive(Debug)]
enum Entry {
    Permit,
    Reject,
    Dunno,
    PermitMynetworks,
    Table(Arc<Table>),
}

/// A compiled postscreen_access_list.
#[derive(Debug, Default)]
pub struct AccessList {
    entries: Vec<Entry>,
}

/// What the list says about a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclVerdict {
    /// Permanently allowlisted: no tests.
    Permit,
    /// Permanently denylisted: postscreen_denylist_action applies.
    Reject,
    /// No decision: the tests run.
    Dunno,
    /// A table value the list cannot use (warned about): the rest of the list is ignored and
    /// the tests run.
    Error,
}

impl AccessList {
    /// Compiles the list as written at `value`; an unknown word is refused here, where
    /// Postfix would warn about it at every connection.
    pub fn compile(value: &ParamValue) -> Result<AccessList, PostscreenError> {
        let mut entries = Vec::new();
        for word in words(&value.value) {
            let entry = match word.to_ascii_lowercase().as_str() {
                "permit" => Entry::Permit,
                "reject" => Entry::Reject,
                "dunno" => Entry::Dunno,
                "permit_mynetworks" => Entry::PermitMynetworks,
                _ if word.contains(':') => {
                    let (table, _warnings) = Table::load(word, &value.origin)?;
                    if table.is_remote() {
                        return Err(PostscreenError::bad(
                            "postscreen_access_list",
                            value,
                            format!("`{word}`: postscreen judges clients before the greeting, where relayguard does not wait on a remote table; use cidr, texthash or inline"),
                        ));
                    }
                    Entry::Table(Arc::new(table))
                }
                _ => {
                    return Err(PostscreenError::bad(
                        "postscreen_access_list",
                        value,
                        format!("unknown command: {word}: use permit_mynetworks, permit, reject, dunno or a type:table"),
                    ))
                }
            };
            entries.push(entry);
        }
        Ok(AccessList { entries })
    }

    /// Judges `addr`; `mynetworks` is the listener's (for `permit_mynetworks`). What Postfix
    /// would warn about on the way is pushed to `warnings`, worded as it does.
    pub fn evaluate(
        &self,
        addr: IpAddr,
        mynetworks: &NetList,
        warnings: &mut Vec<String>,
    ) -> AclVerdict {
        let addr = addr.to_canonical();
        let key = addr.to_string();
        for entry in &self.entries {
            match entry {
                Entry::Permit => return AclVerdict::Permit,
                Entry::Reject => return AclVerdict::Reject,
                Entry::Dunno => return AclVerdict::Dunno,
                Entry::PermitMynetworks => {
                    if is_mynetworks(mynetworks, addr) {
                        return AclVerdict::Permit;
                    }
                }
                Entry::Table(table) => {
                    let Some(found) = table.lookup(&key) else {
                        continue;
                    };
                    match evaluate_value(table.spec(), &found, addr, mynetworks, warnings) {
                        AclVerdict::Dunno => {}
                        decided => return decided,
                    }
                }
            }
        }
        AclVerdict::Dunno
    }
}

/// addr_match_list: addresses and networks only; postscreen knows no client names.
fn is_mynetworks(mynetworks: &NetList, addr: IpAddr) -> bool {
    mynetworks.match_client("", addr).is_match()
}

/// A table's value, read as a list of the simple words; a table in it is not allowed
/// (server_acl_parse with a table as origin).
fn evaluate_value(
    table: &str,
    value: &str,
    addr: IpAddr,
    mynetworks: &NetList,
    warnings: &mut Vec<String>,
) -> AclVerdict {
    for word in words(value) {
        match word.to_ascii_lowercase().as_str() {
            "permit" => return AclVerdict::Permit,
            "reject" => return AclVerdict::Reject,
            "dunno" => return AclVerdict::Dunno,
            "permit_mynetworks" => {
                if is_mynetworks(mynetworks, addr) {
                    return AclVerdict::Permit;
                }
            }
            _ if word.contains(':') => {
                warnings.push(format!(
                    "table {table}: lookup result \"{word}\" is not allowed -- ignoring remainder of access list"
                ));
                return AclVerdict::Dunno;
            }
            _ => {
                warnings.push(format!(
                    "{table}: unknown command: {word} -- ignoring the remainder of this access list"
                ));
                return AclVerdict::Error;
            }
        }
    }
    AclVerdict::Dunno
}

/// The words of a list, split at commas and white space as Postfix's mystrtokq does (a
/// `{...}` group, such as inline table rules, stays one word).
fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = None;
    for (i, c) in text.char_indices() {
        let separator = depth == 0 && (c == ',' || c.is_whitespace());
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if separator {
            if let Some(s) = start.take() {
                out.push(&text[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}
