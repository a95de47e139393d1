//! The names mysql_table(5), pgsql_table(5) and sqlite_table(5) share, read from a
//! [`CfFile`] with Postfix's defaults, and the `hosts` syntax of each database.
//!
//! Nothing here connects; the password is kept as a [`Password`].

use std::fmt;
use std::path::PathBuf;

use crate::lookup::cf::{CfFile, Password};
use crate::lookup::domain::DomainList;
use crate::lookup::template::Templates;

/// Where one `hosts` entry points.
#[derive(Clone, PartialEq, Eq)]
pub enum HostAddr {
    /// `unix:/path` (MySQL: the socket; PostgreSQL: the socket's directory).
    Unix(PathBuf),
    /// `host`, `host:port`, `inet:host:port`; `None` is the database's default port.
    Inet { host: String, port: Option<u16> },
    /// PostgreSQL's `postgresql://...` connection URI, which may hold a password.
    Uri(Password),
    /// SQLite's `dbpath`.
    File(PathBuf),
}

impl HostAddr {
    pub(crate) fn is_unix(&self) -> bool {
        matches!(self, HostAddr::Unix(_))
    }

    /// mysql host_init(): `unix:/path`, else `[inet:]host[:port]`; `localhost` means the
    /// default UNIX socket, as libmysqlclient takes it.
    fn mysql(spec: &str) -> Result<HostAddr, String> {
        if let Some(path) = spec.strip_prefix("unix:") {
            return Ok(HostAddr::Unix(path.into()));
        }
        let (host, port) = host_port(spec.strip_prefix("inet:").unwrap_or(spec))?;
        if host.eq_ignore_ascii_case("localhost") {
            return Ok(HostAddr::Unix(MYSQL_DEFAULT_SOCKET.into()));
        }
        Ok(HostAddr::Inet { host, port })
    }

    /// pgsql host_init(): `postgresql:...` as a whole; else after an optional `unix:` or
    /// `inet:`, a leading `/` means a socket directory and anything else `host[:port]`.
    fn pgsql(spec: &str) -> Result<HostAddr, String> {
        if spec.starts_with("postgresql:") {
            return Ok(HostAddr::Uri(Password::new(spec.to_string())));
        }
        let rest = spec
            .strip_prefix("unix:")
            .or_else(|| spec.strip_prefix("inet:"))
            .unwrap_or(spec);
        if rest.is_empty() || rest.starts_with('/') {
            return Ok(HostAddr::Unix(rest.into()));
        }
        let (host, port) = host_port(rest)?;
        Ok(HostAddr::Inet { host, port })
    }
}

/// mysql_table(5) names for features relayguard's MySQL client does not have.
const MYSQL_UNSUPPORTED: &[&str] = &[
    "option_file",
    "tls_key_file",
    "tls_cert_file",
    "tls_CAfile",
    "tls_CApath",
    "tls_ciphers",
    "tls_verify_cert",
];

/// Debian's libmysqlclient default socket (MYSQL_UNIX_ADDR).
const MYSQL_DEFAULT_SOCKET: &str = "/run/mysqld/mysqld.sock";

/// split_at_right(':') and a numeric port (relayguard does not read /etc/services).
fn host_port(text: &str) -> Result<(String, Option<u16>), String> {
    match text.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("bad port in host `{text}`"))?;
            Ok((host.to_string(), Some(port)))
        }
        None => Ok((text.to_string(), None)),
    }
}

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            HostAddr::Inet { host, port: None } => write!(f, "inet:{host}"),
            HostAddr::Inet {
                host,
                port: Some(p),
            } => write!(f, "inet:{host}:{p}"),
            // The URI may carry user:password@; show only what follows the last '@'.
            HostAddr::Uri(uri) => {
                let text = uri.expose();
                match text.rsplit_once('@') {
                    Some((_, rest)) => write!(f, "postgresql://<redacted>@{rest}"),
                    None => f.write_str(text),
                }
            }
            HostAddr::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl fmt::Debug for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Which database's rules apply where the three differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    Mysql,
    Pgsql,
    Sqlite,
}

/// One SQL table's configuration, checked at open.
#[derive(Debug)]
pub struct SqlConfig {
    pub hosts: Vec<HostAddr>,
    pub user: String,
    pub password: Password,
    pub dbname: String,
    pub templates: Templates,
    pub domain: Option<DomainList>,
    pub expansion_limit: usize,
}

impl SqlConfig {
    /// Reads the names `flavor`'s dict_*.c reads, with its defaults; the error names the file
    /// and, where one name is at fault, its line.
    pub(crate) fn read(cf: &CfFile, flavor: Flavor) -> Result<SqlConfig, String> {
        if flavor == Flavor::Mysql {
            // Silently connecting without the TLS or option file the admin asked for would
            // send the password in clear or to another server: refuse the table instead.
            for name in MYSQL_UNSUPPORTED {
                if cf.opt_str(name).is_some_and(|v| !v.is_empty() && v != "no") {
                    return Err(format!(
                        "{}: {name} is not supported by relayguard",
                        cf.at(name)
                    ));
                }
            }
        }
        let (hosts, dbname) = match flavor {
            Flavor::Sqlite => {
                let path = cf.str("dbpath", "", 1)?;
                (vec![HostAddr::File(path.into())], String::new())
            }
            _ => {
                let written = cf.str("hosts", "", 0)?;
                let mut hosts = Vec::new();
                for spec in written.split([',', ' ', '\t', '\r', '\n']) {
                    if spec.is_empty() {
                        continue;
                    }
                    let host = match flavor {
                        Flavor::Mysql => HostAddr::mysql(spec),
                        _ => HostAddr::pgsql(spec),
                    };
                    hosts.push(host.map_err(|why| format!("{}: hosts: {why}", cf.at("hosts")))?);
                }
                if hosts.is_empty() {
                    // Both default to "localhost" when no hosts are given.
                    let localhost = match flavor {
                        Flavor::Mysql => HostAddr::mysql("localhost"),
                        _ => HostAddr::pgsql("localhost"),
                    };
                    hosts.push(localhost?);
                }
                (hosts, cf.str("dbname", "", 1)?)
            }
        };
        let query = match cf.opt_str("query") {
            Some(q) => q,
            None => legacy_query(cf, flavor)?,
        };
        let result_format = cf.str("result_format", "%s", 1)?;
        let templates = Templates::new(&query, &result_format).map_err(|why| {
            let at = if why.starts_with("Invalid query") {
                cf.at("query")
            } else {
                cf.at("result_format")
            };
            format!("{at}: {why}")
        })?;
        let domain = match cf.opt_str("domain").filter(|d| !d.trim().is_empty()) {
            Some(list) => Some(DomainList::parse(&list, cf.path(), &cf.at("domain"))?),
            None => None,
        };
        let limit = cf.int("expansion_limit", 0, 0)?;
        Ok(SqlConfig {
            hosts,
            user: cf.str("user", "", 0)?,
            password: cf.password("password"),
            dbname,
            templates,
            domain,
            expansion_limit: usize::try_from(limit).unwrap_or(0),
        })
    }
}

/// db_common_sql_build_query(): the query before `query` existed, from `table`,
/// `select_field`, `where_field` and `additional_conditions` (PostgreSQL also has
/// `select_function`).
fn legacy_query(cf: &CfFile, flavor: Flavor) -> Result<String, String> {
    if flavor == Flavor::Pgsql {
        if let Some(f) = cf.opt_str("select_function") {
            return Ok(format!("SELECT {f}('%s')"));
        }
    }
    let need = |name: &str| {
        cf.str(name, "", 1).map_err(|_| {
            format!(
                "{}: neither 'query' nor '{name}' is defined",
                cf.path().display()
            )
        })
    };
    let table = need("table")?;
    let select = need("select_field")?;
    let where_field = need("where_field")?;
    let more = cf.str("additional_conditions", "", 0)?;
    Ok(format!(
        "SELECT {select} FROM {table} WHERE {where_field}='%s' {more}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn read(text: &str, flavor: Flavor) -> Result<SqlConfig, String> {
        SqlConfig::read(&CfFile::parse(text, Path::new("/t.cf")).unwrap(), flavor)
    }

    #[test]
    fn mysql_hosts() {
        let c = read(
            "hosts = unix:/s.sock inet:db.example:3307, other, localhost\ndbname = d\nquery = %s\n",
            Flavor::Mysql,
        )
        .unwrap();
        let shown: Vec<String> = c.hosts.iter().map(|h| h.to_string()).collect();
        assert_eq!(
            shown,
            [
                "unix:/s.sock",
                "inet:db.example:3307",
                "inet:other",
                "unix:/run/mysqld/mysqld.sock"
            ]
        );
    }

    #[test]
    fn pgsql_hosts_and_uri_password() {
        let c = read(
            "hosts = /run/pg, inet:db:5433, postgresql://u:s3cret@h/db\ndbname = d\nquery = %s\n",
            Flavor::Pgsql,
        )
        .unwrap();
        let shown = format!("{:?}", c.hosts);
        assert_eq!(
            shown,
            "[unix:/run/pg, inet:db:5433, postgresql://<redacted>@h/db]"
        );
    }

    #[test]
    fn legacy_query_and_errors() {
        let c = read(
            "dbname = d\ntable = t\nselect_field = v\nwhere_field = k\nadditional_conditions = AND on = 1\npassword = s3cret\n",
            Flavor::Mysql,
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = read("dbname = d\nquery = %q\n", Flavor::Mysql).unwrap_err();
        assert_eq!(e, "/t.cf:2: Invalid query template: %q");
        let e = read("query = %s\n", Flavor::Pgsql).unwrap_err();
        assert_eq!(e, "/t.cf: bad string length 0 < 1: dbname = ");
        let e = read(
            "dbname = d\nquery = %s\ntls_CAfile = /ca.pem\n",
            Flavor::Mysql,
        )
        .unwrap_err();
        assert_eq!(e, "/t.cf:3: tls_CAfile is not supported by relayguard");
        let e = read("dbname = d\n", Flavor::Mysql).unwrap_err();
        assert_eq!(e, "/t.cf: neither 'query' nor 'table' is defined");
    }
}
