//! Access tables in carried restriction lists that hold queued-message actions (HOLD, FILTER,
//! REDIRECT, BCC, PREPEND, DISCARD): which tables import leaves those entries of to the MTA
//! (`[tables] mta_actions`), and which entries the admin must hear about.
//!
//! Opens the tables the way the loader will, to read their entries; decides nothing about
//! the rest of the table, which relayguard carries as it is.

use std::path::PathBuf;

use crate::policy::{self, Origin, ParamMap, Table};

/// Message actions whose Postfix verdict is DUNNO: relayguard answers the same and the MTA,
/// which keeps the restriction, applies them.
const LEFT_TO_MTA: [&str; 5] = ["HOLD", "FILTER", "REDIRECT", "BCC", "PREPEND"];

/// One table entry with a queued-message action.
#[derive(Debug)]
pub struct MessageEntry {
    pub table: String,
    pub key: String,
    pub value: String,
    pub action: String,
    pub file: PathBuf,
    pub line: usize,
    /// The restriction parameter that names the table.
    pub parameter: String,
}

/// What the scan found across the carried lists.
#[derive(Debug, Default)]
pub struct TableScan {
    /// Tables for `[tables] mta_actions`: every message action in them is one the MTA applies.
    pub mta_tables: Vec<String>,
    /// Entries whose action the MTA applies from now on (relayguard answers DUNNO).
    pub left_to_mta: Vec<MessageEntry>,
    /// DISCARD entries: they decide, so relayguard keeps refusing their table.
    pub refused: Vec<MessageEntry>,
}

impl TableScan {
    /// Reads the tables `value` (a carried restriction list of `parameter`, written at
    /// `origin`) names, `$name`s expanded against `params` as the loader will.
    pub fn add_list(&mut self, parameter: &str, value: &str, origin: &Origin, params: &ParamMap) {
        let expanded = policy::expand(value, &|n| params.value(n).map(str::to_owned));
        let tokens = policy::split_list(&expanded);
        let mut after_policy_service = false;
        for t in tokens {
            // check_policy_service's argument is a server, not a table.
            let skip = std::mem::replace(
                &mut after_policy_service,
                t.eq_ignore_ascii_case("check_policy_service"),
            );
            if skip || !t.contains(':') || self.seen(t) {
                continue;
            }
            // A table that does not open is the loader's to report, at its line.
            let Ok((table, _)) = Table::load(t, origin) else {
                continue;
            };
            self.add_table(parameter, &table);
        }
    }

    fn seen(&self, spec: &str) -> bool {
        self.mta_tables.iter().any(|t| t == spec)
            || self.refused.iter().any(|e| e.table == spec)
            || self.left_to_mta.iter().any(|e| e.table == spec)
    }

    fn add_table(&mut self, parameter: &str, table: &Table) {
        let mut left = Vec::new();
        let mut refused = Vec::new();
        for e in table.entries() {
            let action = e
                .value
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let entry = MessageEntry {
                table: table.spec().to_owned(),
                key: e.key.to_owned(),
                value: e.value.to_owned(),
                action: action.clone(),
                file: e.origin.file.clone(),
                line: e.origin.line,
                parameter: parameter.to_owned(),
            };
            if LEFT_TO_MTA.contains(&action.as_str()) {
                left.push(entry);
            } else if action == "DISCARD" {
                refused.push(entry);
            }
        }
        if !left.is_empty() {
            self.mta_tables.push(table.spec().to_owned());
        }
        self.left_to_mta.extend(left);
        self.refused.extend(refused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_entries_the_mta_keeps() {
        let dir = std::env::temp_dir().join(format!("rg-import-tables-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("senders"),
            "spam@x.test HOLD look at it\nok@x.test OK\ncopy@x.test BCC audit@x.test\n",
        )
        .unwrap();
        std::fs::write(dir.join("drops"), "gone@x.test DISCARD\n").unwrap();
        let params = crate::policy::main_cf::parse_main_cf(
            &format!("tables = {}\n", dir.display()),
            &dir.join("main.cf"),
        )
        .unwrap();
        let mut scan = TableScan::default();
        let origin = Origin {
            file: dir.join("main.cf"),
            line: 2,
        };
        scan.add_list(
            "smtpd_sender_restrictions",
            "check_sender_access texthash:$tables/senders, check_policy_service inet:127.0.0.1:1, check_sender_access texthash:$tables/drops, check_sender_access texthash:$tables/senders",
            &origin,
            &params,
        );
        let spec = format!("texthash:{}/senders", dir.display());
        assert_eq!(scan.mta_tables, [spec]);
        let keys: Vec<(&str, &str, usize)> = scan
            .left_to_mta
            .iter()
            .map(|e| (e.key.as_str(), e.action.as_str(), e.line))
            .collect();
        assert_eq!(
            keys,
            [("spam@x.test", "HOLD", 1), ("copy@x.test", "BCC", 3)]
        );
        assert_eq!(scan.refused.len(), 1);
        assert_eq!(scan.refused[0].key, "gone@x.test");
    }
}
