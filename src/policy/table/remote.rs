//! Table types another program serves (socketmap, tcp, SQL, LDAP): how Postfix's dictionary for each
//! treats lookup keys, and the name checks its open function makes. No data lives here; the
//! edge's registry (`crate::lookup::registry`) opens the backend that asks the server.

/// How Postfix's dictionary for a remote type treats keys, so the lookup orders send what it
/// would send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RemoteKeys {
    /// DICT_FLAG_PATTERN: only the first, full key of each lookup order (dict_sockmap.c and
    /// dict_tcp.c set it: "Don't look up parent domains or network superblocks").
    pub(crate) pattern: bool,
    /// Whether smtpd's access maps (DICT_FLAG_FOLD_FIX) fold the key: only for fixed-key
    /// types. socketmap and tcp fold only under DICT_FLAG_FOLD_MUL, which access maps do not
    /// set, so a HELO or client name reaches them in the case the client wrote it.
    pub(crate) folded: bool,
}

/// Table types served by another program: the policy names them, the edge's registry
/// (`crate::lookup::registry`) opens a backend for each.
const REMOTE_TYPES: &[(&str, RemoteKeys)] = &[
    (
        "socketmap",
        RemoteKeys {
            pattern: true,
            folded: false,
        },
    ),
    (
        "tcp",
        RemoteKeys {
            pattern: true,
            folded: false,
        },
    ),
    // The SQL and LDAP tables are fixed-key tables (db_common_dict_partial() is always 0 in
    // 3.7: "Breaks recipient_delimiter"), so they get the whole lookup order, folded.
    ("mysql", SQL_KEYS),
    ("pgsql", SQL_KEYS),
    ("sqlite", SQL_KEYS),
    ("ldap", SQL_KEYS),
];

const SQL_KEYS: RemoteKeys = RemoteKeys {
    pattern: false,
    folded: true,
};

/// How `ty` (lower case) treats keys, if it is a remote type.
pub(crate) fn keys(ty: &str) -> Option<RemoteKeys> {
    REMOTE_TYPES.iter().find(|(t, _)| *t == ty).map(|(_, k)| *k)
}

/// Checks `name` (what follows `ty:`) and returns how the type treats keys.
pub(crate) fn open(ty: &str, name: &str) -> Result<RemoteKeys, String> {
    let keys = keys(ty).ok_or_else(|| format!("`{ty}` is not a remote table type"))?;
    check_name(ty, name)?;
    Ok(keys)
}

/// The name checks Postfix's open functions make (dict_sockmap_open, dict_tcp_open); the
/// edge's backend checks the rest when it opens.
fn check_name(ty: &str, name: &str) -> Result<(), String> {
    let hostport = |s: &str| {
        s.rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    };
    match ty {
        "socketmap" => {
            let (server, map) = name
                .rsplit_once(':')
                .filter(|(_, m)| !m.is_empty())
                .ok_or("socketmap requires server:socketmap argument")?;
            match server.split_once(':') {
                Some(("inet", hp)) if hostport(hp) => Ok(()),
                Some(("unix", path)) if !path.is_empty() => Ok(()),
                _ => Err(format!("socketmap server `{server}` is neither inet:host:port nor unix:/path (map `{map}`)")),
            }
        }
        "tcp" if hostport(name.strip_prefix("inet:").unwrap_or(name)) => Ok(()),
        "tcp" => Err(format!("tcp table `{name}` is not host:port")),
        _ => Ok(()),
    }
}
