//! The client-certificate restrictions: permit_tls_clientcerts (relay_clientcerts),
//! permit_tls_all_clientcerts and check_ccert_access, judged on the certificate facts the
//! session recorded after the handshake (smtpd_check.c permit_tls_clientcerts and
//! check_ccert_access).

use std::sync::Arc;

use super::access::VoiceKind;
use super::eval::{Eval, Verdict};
use super::lookup::{Answer, Stop};
use super::restriction::{ListContext, Restriction};
use super::table::Table;
use super::text::Lower;
use super::{Hint, Origin, PolicyError, Reason};

/// The certificate a TLS client presented, as the session describes it to the policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// It chains to a certificate of smtpd_tls_CAfile (Postfix's TLS_CERT_IS_TRUSTED).
    pub verified: bool,
    /// smtpd_tls_fingerprint_digest of the certificate, `AB:CD:...`.
    pub fingerprint: String,
    /// The same digest of its SubjectPublicKeyInfo.
    pub pubkey_fingerprint: String,
    /// The subject's and issuer's commonName, empty when there is none.
    pub subject_cn: String,
    pub issuer_cn: String,
}

/// What check_ccert_access looks up, in its search order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SearchKey {
    CertFingerprint,
    PubkeyFingerprint,
    /// Named by Postfix 3.7 but not looked up there: `451 4.3.5 Server configuration error`.
    Unsupported(&'static str),
}

#[derive(Clone, Debug)]
pub(crate) enum CertRestriction {
    /// permit_tls_clientcerts, with relay_clientcerts (none when it is empty).
    PermitListed(Option<Arc<Table>>),
    /// permit_tls_all_clientcerts: any verified certificate, else (as smtpd_check.c falls
    /// through) a listed one.
    PermitAll(Option<Arc<Table>>),
    /// check_ccert_access TABLE, or `{ TABLE, { search_order = ... } }`.
    Access {
        table: Arc<Table>,
        order: Vec<SearchKey>,
    },
}

impl CertRestriction {
    pub(crate) fn name(&self) -> String {
        match self {
            CertRestriction::PermitListed(_) => "permit_tls_clientcerts".into(),
            CertRestriction::PermitAll(_) => "permit_tls_all_clientcerts".into(),
            CertRestriction::Access { table, .. } => {
                format!("check_ccert_access {}", table.spec())
            }
        }
    }

    pub(crate) fn waits(&self) -> bool {
        match self {
            CertRestriction::PermitListed(t) | CertRestriction::PermitAll(t) => {
                t.as_ref().is_some_and(|t| t.is_remote())
            }
            CertRestriction::Access { table, .. } => table.is_remote(),
        }
    }
}

/// Parses the client-certificate restrictions at `tokens[*i - 1]` (`lower`); `None` when
/// `lower` is none of them.
pub(crate) fn parse(
    param: &str,
    lower: &str,
    tokens: &[&str],
    i: &mut usize,
    origin: &Origin,
    cx: &mut ListContext<'_, '_>,
) -> Option<Option<Restriction>> {
    let wrap = |c| Some(Some(Restriction::ClientCert(Box::new(c))));
    match lower {
        "permit_tls_clientcerts" => {
            return wrap(CertRestriction::PermitListed(cx.relay_clientcerts.clone()))
        }
        "permit_tls_all_clientcerts" => {
            return wrap(CertRestriction::PermitAll(cx.relay_clientcerts.clone()))
        }
        "check_ccert_access" => {}
        _ => return None,
    }
    let mut refuse = |why: String| {
        cx.errors.push(PolicyError::UnknownRestriction {
            name: param.to_string(),
            origin: origin.clone(),
            restriction: "check_ccert_access".into(),
            hint: Hint::text(why),
        });
        Some(None)
    };
    let Some(arg) = tokens.get(*i) else {
        return refuse("`check_ccert_access` needs a table argument".into());
    };
    *i += 1;
    let (spec, order) = match search_order(arg) {
        Ok(parsed) => parsed,
        Err(why) => return refuse(format!("`check_ccert_access {arg}`: {why}")),
    };
    match (cx.open)(spec, origin) {
        Ok(table) => wrap(CertRestriction::Access { table, order }),
        Err(e) => {
            cx.errors.push(e);
            Some(None)
        }
    }
}

/// map_search.c: `type:table`, or `{ type:table, { search_order = a, b } }` (commas optional).
fn search_order(arg: &str) -> Result<(&str, Vec<SearchKey>), String> {
    let default = vec![SearchKey::CertFingerprint, SearchKey::PubkeyFingerprint];
    let Some(inner) = arg.strip_prefix('{').and_then(|a| a.strip_suffix('}')) else {
        return Ok((arg, default));
    };
    let inner = inner.trim();
    let (spec, rest) = match inner.find(['{', ',', ' ', '\t']) {
        Some(at) => (
            &inner[..at],
            inner[at..].trim_start_matches([',', ' ', '\t']),
        ),
        None => (inner, ""),
    };
    if rest.is_empty() {
        return Ok((spec, default));
    }
    let attr = rest
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or("expected `{ search_order = ... }` after the table")?;
    let (name, value) = attr
        .split_once('=')
        .ok_or("expected `search_order = ...`")?;
    if name.trim() != "search_order" {
        return Err(format!("unknown attribute `{}`", name.trim()));
    }
    let mut order = Vec::new();
    for word in value.split([',', ' ', '\t']).filter(|w| !w.is_empty()) {
        let key = match word {
            "cert_fingerprint" => SearchKey::CertFingerprint,
            "pubkey_fingerprint" => SearchKey::PubkeyFingerprint,
            "issuer_cn" => SearchKey::Unsupported("issuer_cn"),
            "subject_cn" => SearchKey::Unsupported("subject_cn"),
            other => return Err(format!("unknown search type `{other}`")),
        };
        if order.contains(&key) {
            return Err(format!("duplicate search type `{word}`"));
        }
        order.push(key);
    }
    Ok((spec, order))
}

impl<'f> Eval<'_, 'f> {
    pub(crate) fn client_cert(&mut self, r: &Restriction, c: &CertRestriction) -> Verdict {
        let Some(cert) = self.facts.session.client_cert.filter(|_| self.facts.tls) else {
            return Verdict::Dunno;
        };
        match c {
            CertRestriction::PermitAll(_) if cert.verified => Verdict::Ok(self.reason(r)),
            // The fingerprints are looked up whether or not the CA is trusted (smtpd_check.c:
            // "it is OK if the issuing CA is not trusted"), for both restrictions.
            CertRestriction::PermitAll(None) | CertRestriction::PermitListed(None) => {
                Verdict::Dunno
            }
            CertRestriction::PermitListed(Some(table))
            | CertRestriction::PermitAll(Some(table)) => {
                for key in [&cert.fingerprint, &cert.pubkey_fingerprint] {
                    match self.cert_key(table, key) {
                        Answer::Found(value) => {
                            let reason = Reason {
                                table: Some(table.spec().to_string()),
                                key: Some(key.clone()),
                                value: Some(value.to_string()),
                                ..self.reason(r)
                            };
                            return Verdict::Ok(reason);
                        }
                        Answer::NotFound => {}
                        Answer::Pending => return Verdict::Pending,
                        Answer::Failed(why) => {
                            // The lookup error is the restriction's result: a 451 4.3.0.
                            let stop = Stop::Failed {
                                key: key.clone(),
                                why,
                            };
                            return self.lookup_stopped(r, VoiceKind::ClientCert, table, stop);
                        }
                    }
                }
                Verdict::Dunno
            }
            CertRestriction::Access { table, order } => {
                for key in order {
                    let text = match key {
                        SearchKey::CertFingerprint => &cert.fingerprint,
                        SearchKey::PubkeyFingerprint => &cert.pubkey_fingerprint,
                        SearchKey::Unsupported(name) => {
                            let why = format!(
                                "check_ccert_access: unexpected action '{name}' in '{}'",
                                table.spec()
                            );
                            return self.config_error(self.reason(r), why);
                        }
                    };
                    let value = match self.cert_key(table, text) {
                        Answer::Found(v) => v.into_owned(),
                        Answer::NotFound => continue,
                        Answer::Pending => return Verdict::Pending,
                        Answer::Failed(why) => {
                            let stop = Stop::Failed {
                                key: text.clone(),
                                why,
                            };
                            return self.lookup_stopped(r, VoiceKind::ClientCert, table, stop);
                        }
                    };
                    let reason = Reason {
                        table: Some(table.spec().to_string()),
                        key: Some(text.clone()),
                        value: Some(value.clone()),
                        ..self.reason(r)
                    };
                    let v = if table.is_remote() {
                        self.live_result(&value, VoiceKind::ClientCert, reason, table.spec())
                    } else {
                        self.table_result(&value, VoiceKind::ClientCert, reason, table.spec())
                    };
                    if !matches!(v, Verdict::Dunno) {
                        return v;
                    }
                }
                Verdict::Dunno
            }
        }
    }

    /// A fingerprint as the table keys it: folded for the tables that fold (maps.c).
    fn cert_key<'a>(&self, table: &'a Table, key: &str) -> Answer<'a>
    where
        'f: 'a,
    {
        let key = if table.folds_keys() {
            Lower::new(key)
        } else {
            Lower::Borrowed(key)
        };
        self.table_get(table, key.as_str())
    }
}

/// The restriction names this file parses, for "did you mean" hints.
pub(crate) const NAMES: [&str; 3] = [
    "permit_tls_clientcerts",
    "permit_tls_all_clientcerts",
    "check_ccert_access",
];
