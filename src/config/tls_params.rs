//! Postfix's smtpd_tls_* parameters, as pasted into `[policy]` or a listener's overrides,
//! turned into the listener's TLS server: keys and certificates, protocol versions, cipher
//! suites, client certificates, and the security level with its legacy spellings.
//!
//! rustls has TLS 1.2 and 1.3 and only AEAD suites with forward secrecy, so Postfix settings
//! that limit what OpenSSL offers are honoured where rustls has the thing, accepted where
//! rustls never has it anyway, and refused (with why) where nothing would be left.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::{self, ServerConfig, SupportedProtocolVersion};

use super::file::TlsFile;
use super::load::ConfigError;
use super::settings::TlsLevel;
use super::tls_ciphers::{self, Grade};
use crate::net::client_cert::{ClientCertCheck, Digest};
use crate::net::tls_server::{self, ServerKeys, ServerTlsSpec};
use crate::policy::{Origin, ParamMap, ParamValue, PolicyWarning};

/// The smtpd_tls_* parameter names this module implements (beside `settings::PARAMETERS`).
pub const PARAMETERS: &[&str] = &[
    "smtpd_enforce_tls",
    "smtpd_tls_CAfile",
    "smtpd_tls_ask_ccert",
    "smtpd_tls_cert_file",
    "smtpd_tls_chain_files",
    "smtpd_tls_ciphers",
    "smtpd_tls_exclude_ciphers",
    "smtpd_tls_fingerprint_digest",
    "smtpd_tls_key_file",
    "smtpd_tls_mandatory_ciphers",
    "smtpd_tls_mandatory_exclude_ciphers",
    "smtpd_tls_mandatory_protocols",
    "smtpd_tls_protocols",
    "smtpd_tls_req_ccert",
    "smtpd_tls_wrappermode",
    "smtpd_use_tls",
    super::tls_sni::PARAMETER,
];

/// A listener's TLS server, compiled.
pub struct ListenerTls {
    pub config: Arc<ServerConfig>,
    pub client_certs: Option<Arc<ClientCertCheck>>,
    /// tls_server_sni_maps' names, when the listener has any.
    pub sni: Option<tls_server::SniNames>,
}

fn set<'a>(params: &'a ParamMap, name: &str) -> Option<&'a ParamValue> {
    params.get(name).filter(|v| !v.value.trim().is_empty())
}

fn yes(params: &ParamMap, name: &str, errors: &mut Vec<ConfigError>) -> bool {
    let Some(v) = params.get(name) else {
        return false;
    };
    match v.value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" => true,
        "no" | "false" | "" => false,
        _ => {
            errors.push(ConfigError::bad_value(
                name,
                v,
                format!("`{}` is not yes or no", v.value),
            ));
            false
        }
    }
}

/// Whether the parameters name server keys of their own (then `[tls]` is not needed).
pub fn has_keys(params: &ParamMap) -> bool {
    set(params, "smtpd_tls_chain_files").is_some()
        || set(params, "smtpd_tls_cert_file").is_some_and(|v| v.value.trim() != "none")
}

/// smtpd.c's level: smtpd_tls_wrappermode wins, then smtpd_tls_security_level, then the
/// legacy smtpd_enforce_tls / smtpd_use_tls, then the role's default.
pub fn security_level(
    params: &ParamMap,
    default: TlsLevel,
    errors: &mut Vec<ConfigError>,
) -> TlsLevel {
    let expanded = params.expanded();
    let params = &expanded;
    if yes(params, "smtpd_tls_wrappermode", errors) {
        return TlsLevel::Wrapper;
    }
    if let Some(v) = set(params, "smtpd_tls_security_level") {
        return match v.value.trim() {
            "none" => TlsLevel::None,
            "may" => TlsLevel::May,
            // smtpd.c: "unsupported TLS level, using encrypt" (warned in `compile`).
            "encrypt" | "fingerprint" | "verify" | "secure" => TlsLevel::Encrypt,
            other => {
                errors.push(ConfigError::bad_value(
                    "smtpd_tls_security_level",
                    v,
                    format!("`{other}` is not one of none, may, encrypt"),
                ));
                default
            }
        };
    }
    let legacy = params.get("smtpd_enforce_tls").is_some() || params.get("smtpd_use_tls").is_some();
    if legacy {
        if yes(params, "smtpd_enforce_tls", errors) {
            return TlsLevel::Encrypt;
        }
        return if yes(params, "smtpd_use_tls", errors) {
            TlsLevel::May
        } else {
            TlsLevel::None
        };
    }
    match params.get("smtpd_tls_security_level") {
        Some(_) => TlsLevel::None,
        None => default,
    }
}

/// Compiles the TLS server of a listener at `level`. `pair` is its `[tls]` table (its own
/// or the global one); `dir` anchors relative paths; `listener_error` places an error on the
/// listener's line when no parameter is to blame.
pub fn compile(
    params: &ParamMap,
    level: TlsLevel,
    pair: Option<&TlsFile>,
    dir: &Path,
    listener_error: &dyn Fn(String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<PolicyWarning>,
) -> Option<ListenerTls> {
    let expanded = params.expanded();
    let params = &expanded;
    let mut warn = |name: &str, origin: &Origin, message: String, fix: &str| {
        warnings.push(PolicyWarning::new(name, origin, message, fix.into()));
    };
    if let Some(v) = set(params, "smtpd_tls_security_level") {
        let l = v.value.trim();
        if matches!(l, "fingerprint" | "verify" | "secure") {
            warn(
                "smtpd_tls_security_level",
                &v.origin,
                format!("unsupported TLS level \"{l}\", using \"encrypt\" (as Postfix does)"),
                "smtpd_tls_security_level = encrypt",
            );
        }
    }
    if level == TlsLevel::None {
        return None;
    }
    // smtpd.c: wrapper mode and encrypt use the mandatory protocols, ciphers and exclusions.
    let enforce = matches!(level, TlsLevel::Encrypt | TlsLevel::Wrapper);
    let (proto_name, grade_name) = if enforce {
        (
            "smtpd_tls_mandatory_protocols",
            "smtpd_tls_mandatory_ciphers",
        )
    } else {
        ("smtpd_tls_protocols", "smtpd_tls_ciphers")
    };
    let versions = match params.get(proto_name) {
        None => tls_server::all_versions().to_vec(),
        Some(v) => match protocols(&v.value) {
            Ok(p) => {
                if !p.old.is_empty() {
                    warn(
                        proto_name,
                        &v.origin,
                        format!(
                            "`{}` also allows {}, which rustls cannot offer; only TLSv1.2 and TLSv1.3 are used",
                            v.value.trim(),
                            p.old.join(", ")
                        ),
                        ">=TLSv1.2",
                    );
                }
                if p.versions.is_empty() {
                    errors.push(ConfigError::bad_value(
                        proto_name,
                        v,
                        format!(
                            "`{}` leaves neither TLSv1.2 nor TLSv1.3, the only versions rustls has",
                            v.value.trim()
                        ),
                    ));
                    return None;
                }
                p.versions
            }
            Err(why) => {
                errors.push(ConfigError::bad_value(proto_name, v, why));
                return None;
            }
        },
    };
    if let Some(v) = params.get(grade_name) {
        match Grade::named(v.value.trim()) {
            Some(Grade::Null) => {
                errors.push(ConfigError::bad_value(
                    grade_name,
                    v,
                    "`null` asks for ciphers without encryption; rustls has none".into(),
                ));
                return None;
            }
            Some(_) => {}
            None => {
                errors.push(ConfigError::bad_value(
                    grade_name,
                    v,
                    format!(
                        "invalid cipher grade `{}`: use export, low, medium, high or null",
                        v.value.trim()
                    ),
                ));
                return None;
            }
        }
    }
    let mut exclusions = vec!["smtpd_tls_exclude_ciphers"];
    if enforce {
        exclusions.push("smtpd_tls_mandatory_exclude_ciphers");
    }
    let mut suites = tls_server::all_suites().to_vec();
    for name in exclusions {
        let Some(v) = set(params, name) else { continue };
        let unknown = tls_ciphers::exclude(&mut suites, &v.value);
        if !unknown.is_empty() {
            warn(
                name,
                &v.origin,
                format!(
                    "`{}` is not a cipher name OpenSSL knows; nothing excluded for it",
                    unknown.join("`, `")
                ),
                "name OpenSSL ciphers, e.g. CHACHA20, AES128, ECDHE-RSA-AES128-GCM-SHA256",
            );
        }
    }
    let versions = tls_ciphers::usable_versions(versions, &suites);
    if versions.is_empty() {
        let v = set(params, "smtpd_tls_exclude_ciphers")
            .or_else(|| set(params, "smtpd_tls_mandatory_exclude_ciphers"));
        if let Some(v) = v {
            errors.push(ConfigError::bad_value(
                "smtpd_tls_exclude_ciphers",
                v,
                "the cipher exclusions leave no suite for the allowed protocol versions".into(),
            ));
        }
        return None;
    }
    let required = yes(params, "smtpd_tls_req_ccert", errors);
    if required && !enforce {
        if let Some(v) = params.get("smtpd_tls_req_ccert") {
            warn(
                "smtpd_tls_req_ccert",
                &v.origin,
                "Can't require client certs unless TLS is required".into(),
                "smtpd_tls_security_level = encrypt",
            );
        }
    }
    let client_certs = client_certs(params, dir, required && enforce, errors)?;
    let keys = keys(params, pair, dir, &mut warn)?;
    let key_param = ["smtpd_tls_chain_files", "smtpd_tls_cert_file"]
        .into_iter()
        .find_map(|n| set(params, n).map(|v| (n, v)));
    let sni = super::tls_sni::entries(params, dir, errors, warnings)?;
    let spec = ServerTlsSpec {
        keys,
        versions,
        suites,
        client_certs: client_certs.clone(),
        sni,
    };
    match tls_server::build(&spec) {
        Ok((config, sni)) => Some(ListenerTls {
            config,
            client_certs,
            sni,
        }),
        Err(e) => {
            errors.push(match key_param {
                Some((name, v)) => ConfigError::bad_value(name, v, e.to_string()),
                None => listener_error(e.to_string()),
            });
            None
        }
    }
}

/// Which keys the server has: smtpd_tls_chain_files, else smtpd_tls_cert_file (its key in
/// smtpd_tls_key_file, which defaults to the same file), else the `[tls]` pair.
fn keys(
    params: &ParamMap,
    pair: Option<&TlsFile>,
    dir: &Path,
    warn: &mut dyn FnMut(&str, &Origin, String, &str),
) -> Option<ServerKeys> {
    let cert = set(params, "smtpd_tls_cert_file").filter(|v| v.value.trim() != "none");
    if let Some(chains) = set(params, "smtpd_tls_chain_files") {
        if let Some(c) = cert {
            warn(
                "smtpd_tls_cert_file",
                &c.origin,
                "Both smtpd_tls_chain_files and smtpd_tls_cert_file are non-empty; the legacy parameters will be ignored".into(),
                "remove smtpd_tls_cert_file and smtpd_tls_key_file",
            );
        }
        let files = chains
            .value
            .split([',', ' ', '\t', '\n'])
            .filter(|f| !f.is_empty())
            .map(|f| dir.join(f))
            .collect();
        return Some(ServerKeys::Chains(files));
    }
    if let Some(c) = cert {
        let cert = dir.join(c.value.trim());
        let key = set(params, "smtpd_tls_key_file")
            .map(|k| dir.join(k.value.trim()))
            .unwrap_or_else(|| cert.clone());
        return Some(if key == cert {
            ServerKeys::Mixed(cert)
        } else {
            ServerKeys::Pair { cert, key }
        });
    }
    pair.map(|t| ServerKeys::Pair {
        cert: dir.join(&t.cert),
        key: dir.join(&t.key),
    })
}

/// smtpd_tls_ask_ccert (implied by a `required` certificate): the CA names of
/// smtpd_tls_CAfile and the fingerprint digest.
fn client_certs(
    params: &ParamMap,
    dir: &Path,
    required: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<Option<Arc<ClientCertCheck>>> {
    let digest = match params.get("smtpd_tls_fingerprint_digest") {
        None => Digest::Sha256,
        Some(v) => match Digest::named(&v.value) {
            Some(d) => d,
            None => {
                errors.push(ConfigError::bad_value(
                    "smtpd_tls_fingerprint_digest",
                    v,
                    format!(
                        "`{}`: relayguard computes sha256 (the 3.6+ default), sha1, sha384 or sha512; md5 is not available",
                        v.value.trim()
                    ),
                ));
                return None;
            }
        },
    };
    if !yes(params, "smtpd_tls_ask_ccert", errors) && !required {
        return Some(None);
    }
    let roots = match set(params, "smtpd_tls_CAfile") {
        None => None,
        Some(v) => match crate::net::tls::roots_from_file(&dir.join(v.value.trim())) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(ConfigError::bad_value("smtpd_tls_CAfile", v, e.to_string()));
                return None;
            }
        },
    };
    match ClientCertCheck::new(roots, digest, required) {
        Ok(check) => Some(Some(Arc::new(check))),
        Err(e) => {
            let v = params
                .get("smtpd_tls_CAfile")
                .or(params.get("smtpd_tls_ask_ccert"));
            if let Some(v) = v {
                errors.push(ConfigError::bad_value("smtpd_tls_CAfile", v, e.to_string()));
            }
            None
        }
    }
}

/// The versions a protocol list allows, and the older ones it would allow that rustls lacks.
struct Protocols {
    versions: Vec<&'static SupportedProtocolVersion>,
    old: Vec<&'static str>,
}

/// tls_misc.c tls_proto_mask_lims: `!NAME` excludes, a bare NAME includes (then everything
/// not included is excluded), `>=V` and `<=V` bound by name or hex number.
fn protocols(list: &str) -> Result<Protocols, String> {
    const NAMES: &[(&str, u16)] = &[
        ("SSLv2", 0x0002),
        ("SSLv3", 0x0300),
        ("TLSv1", 0x0301),
        ("TLSv1.1", 0x0302),
        ("TLSv1.2", 0x0303),
        ("TLSv1.3", 0x0304),
    ];
    let version = |tok: &str| -> Result<u16, String> {
        if tok == "None" {
            return Ok(0);
        }
        if let Some(&(_, v)) = NAMES.iter().find(|(n, _)| *n == tok) {
            return Ok(v);
        }
        let hex = tok.trim_start_matches("0x");
        u16::from_str_radix(hex, 16)
            .map_err(|_| format!("`{tok}` is not a TLS protocol name or hex version"))
    };
    let (mut floor, mut ceiling) = (0u16, 0u16);
    let (mut include, mut exclude) = (Vec::new(), Vec::new());
    for tok in list
        .split([',', ' ', '\t', '\n', ':'])
        .filter(|t| !t.is_empty())
    {
        if let Some(v) = tok.strip_prefix(">=") {
            floor = version(v)?;
        } else if let Some(v) = tok.strip_prefix("<=") {
            ceiling = version(v)?;
        } else {
            let (name, list) = match tok.strip_prefix('!') {
                Some(n) => (n, &mut exclude),
                None => (tok, &mut include),
            };
            let Some(&(_, v)) = NAMES.iter().find(|(n, _)| *n == name) else {
                return Err(format!(
                    "`{name}` is not one of SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3"
                ));
            };
            list.push(v);
        }
    }
    let allowed = |v: u16| {
        !exclude.contains(&v)
            && (include.is_empty() || include.contains(&v))
            && (floor == 0 || v >= floor)
            && (ceiling == 0 || v <= ceiling)
    };
    let old = NAMES
        .iter()
        .filter(|(n, v)| n.starts_with("TLSv1") && *v < 0x0303 && allowed(*v))
        .map(|(n, _)| *n)
        .collect();
    let versions = [
        (0x0304, &rustls::version::TLS13),
        (0x0303, &rustls::version::TLS12),
    ]
    .into_iter()
    .filter(|(v, _)| allowed(*v))
    .map(|(_, s)| s)
    .collect();
    Ok(Protocols { versions, old })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> (Vec<String>, Vec<&'static str>) {
        let p = protocols(list).unwrap();
        let v = p
            .versions
            .iter()
            .map(|v| format!("{:?}", v.version))
            .collect();
        (v, p.old)
    }

    #[test]
    fn both_protocol_syntaxes() {
        let both = vec!["TLSv1_3".to_owned(), "TLSv1_2".to_owned()];
        assert_eq!(names(">=TLSv1.2"), (both.clone(), vec![]));
        assert_eq!(names(">=TLSv1.2, <=TLSv1.3"), (both.clone(), vec![]));
        assert_eq!(
            names("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1"),
            (both.clone(), vec![])
        );
        assert_eq!(
            names("!SSLv2, !SSLv3"),
            (both.clone(), vec!["TLSv1", "TLSv1.1"])
        );
        assert_eq!(names(">=TLSv1"), (both, vec!["TLSv1", "TLSv1.1"]));
        assert_eq!(
            names("<=TLSv1.2"),
            (vec!["TLSv1_2".into()], vec!["TLSv1", "TLSv1.1"])
        );
        assert_eq!(names(">=0x0304"), (vec!["TLSv1_3".into()], vec![]));
        assert_eq!(names("TLSv1.3"), (vec!["TLSv1_3".into()], vec![]));
        assert_eq!(names("!TLSv1.2:!TLSv1.3").0, Vec::<String>::new());
        assert_eq!(names("<=TLSv1.1").0, Vec::<String>::new());
        assert!(protocols("TLSv1.4").is_err());
        assert!(protocols(">=bogus").is_err());
    }
}
