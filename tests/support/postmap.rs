//! Postfix's own answer for one key of one table, from `postmap -q KEY TYPE:NAME`: the
//! reference the remote-table backends are compared with.
//!
//! postmap prints the value and exits 0 when found, exits 1 silently when not found, and
//! exits 1 with a `fatal:` line when the lookup failed (DICT_ERR_RETRY and the like).

use std::process::Command;

use relayguard::lookup::table::TableReply;

/// Looks `key` up in `spec` (`mysql:/path/x.cf`) with the installed Postfix.
pub fn query(spec: &str, key: &str) -> TableReply {
    let out = Command::new("postmap")
        .args(["-q", key, spec])
        .output()
        .expect("run postmap (Postfix's postfix-mysql/-pgsql/-ldap/-sqlite packages)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            TableReply::Found(stdout.trim_end_matches('\n').to_string())
        }
        Some(1) if !stderr.contains("fatal:") => TableReply::NotFound,
        _ => TableReply::Failed(stderr),
    }
}
