//! Postfix cipher grades and cipher exclusions (smtpd_tls_[mandatory_]ciphers and
//! smtpd_tls_[mandatory_]exclude_ciphers) against the suites rustls has.
//!
//! Postfix hands exclusions to OpenSSL's cipher list, which governs TLS 1.2 and older only;
//! TLS 1.3 suites are configured apart and no exclusion touches them. The same here: an
//! exclusion removes matching TLS 1.2 suites, as `openssl ciphers -tls1_2 NAME` matches them.

use tokio_rustls::rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};

/// A Postfix cipher grade. Every grade but `null` includes all of rustls' suites (they are
/// all "high"); `null` asks for suites without encryption, which rustls has none of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grade {
    Export,
    Low,
    Medium,
    High,
    Null,
}

impl Grade {
    /// tls_cipher_grade: the names are case-sensitive, as in Postfix.
    pub fn named(name: &str) -> Option<Grade> {
        Some(match name {
            "export" => Grade::Export,
            "low" => Grade::Low,
            "medium" => Grade::Medium,
            "high" => Grade::High,
            "null" => Grade::Null,
            _ => return None,
        })
    }
}

/// The OpenSSL name of each TLS 1.2 suite rustls has, and the OpenSSL aliases that match it
/// (from `openssl ciphers -s -tls1_2 ALIAS` with OpenSSL 3.0).
const TLS12: &[(CipherSuite, &str, &[&str])] = &[
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        &["aECDSA", "ECDSA", "AES256", "AES", "AESGCM"],
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        &["aECDSA", "ECDSA", "AES128", "AES", "AESGCM"],
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        &["aECDSA", "ECDSA", "CHACHA20"],
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-AES256-GCM-SHA384",
        &["aRSA", "AES256", "AES", "AESGCM"],
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256",
        &["aRSA", "AES128", "AES", "AESGCM"],
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-CHACHA20-POLY1305",
        &["aRSA", "CHACHA20"],
    ),
];

/// Aliases every TLS 1.2 suite of rustls matches.
const EVERY_SUITE: &[&str] = &[
    "ALL", "DEFAULT", "HIGH", "TLSv1.2", "ECDHE", "EECDH", "kECDHE", "kEECDH", "ECDH",
];

/// OpenSSL names of things rustls never offers: excluding them changes nothing.
const NEVER_OFFERED: &[&str] = &[
    "3DES",
    "ADH",
    "AECDH",
    "AEAD",
    "ARIA",
    "ARIA128",
    "ARIA256",
    "AESCCM",
    "AESCCM8",
    "CAMELLIA",
    "CAMELLIA128",
    "CAMELLIA256",
    "CCM",
    "CCM8",
    "DES",
    "DH",
    "DHE",
    "DSS",
    "EDH",
    "EXP",
    "EXPORT",
    "EXPORT40",
    "EXPORT56",
    "GOST89MAC",
    "GOST94",
    "IDEA",
    "LOW",
    "MD5",
    "MEDIUM",
    "NULL",
    "PSK",
    "RC2",
    "RC4",
    "RSA",
    "SEED",
    "SHA",
    "SHA1",
    "SHA256",
    "SHA384",
    "SRP",
    "SSLv3",
    "TLSv1",
    "TLSv1.0",
    "aDSS",
    "aGOST",
    "aNULL",
    "aPSK",
    "aSRP",
    "eNULL",
    "kDHE",
    "kEDH",
    "kGOST",
    "kPSK",
    "kDHEPSK",
    "kECDHEPSK",
    "kRSA",
    "kRSAPSK",
    "kSRP",
    "COMPLEMENTOFALL",
    "COMPLEMENTOFDEFAULT",
];

/// Whether one OpenSSL cipher-string element (`AES128`, `ECDHE+AESGCM`, a suite name)
/// matches this TLS 1.2 suite; `None` when an element is not a name OpenSSL knows.
fn matches(element: &str, name: &str, aliases: &[&str]) -> Option<bool> {
    let mut all = true;
    for part in element.split('+') {
        let known = EVERY_SUITE.contains(&part)
            || NEVER_OFFERED.contains(&part)
            || TLS12
                .iter()
                .any(|(_, n, a)| *n == part || a.contains(&part));
        if !known {
            return None;
        }
        all &= part == name || aliases.contains(&part) || EVERY_SUITE.contains(&part);
    }
    Some(all)
}

/// Removes the suites a Postfix exclusion list names from `suites`; returns the elements
/// that are no OpenSSL name at all (the caller warns).
pub fn exclude<'a>(suites: &mut Vec<SupportedCipherSuite>, list: &'a str) -> Vec<&'a str> {
    let mut unknown = Vec::new();
    for element in list
        .split([',', ' ', '\t', '\n', ':'])
        .filter(|e| !e.is_empty())
    {
        // OpenSSL's prefixes (!, -, +) all mean "away with it" in an exclusion list.
        let element = element.trim_start_matches(['!', '-', '+']);
        let mut known = true;
        suites.retain(|s| {
            let Some((_, name, aliases)) = TLS12.iter().find(|(id, ..)| *id == s.suite()) else {
                return true; // TLS 1.3: outside the cipher list, as in OpenSSL
            };
            match matches(element, name, aliases) {
                Some(hit) => !hit,
                None => {
                    known = false;
                    true
                }
            }
        });
        if !known {
            unknown.push(element);
        }
    }
    unknown
}

/// The versions in `versions` that have a suite left in `suites`.
pub fn usable_versions(
    versions: Vec<&'static SupportedProtocolVersion>,
    suites: &[SupportedCipherSuite],
) -> Vec<&'static SupportedProtocolVersion> {
    versions
        .into_iter()
        .filter(|v| suites.iter().any(|s| s.version() == *v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(list: &str) -> (Vec<String>, Vec<&str>) {
        let mut suites = crate::net::tls_server::all_suites().to_vec();
        let unknown = exclude(&mut suites, list);
        let names = suites.iter().map(|s| format!("{:?}", s.suite())).collect();
        (names, unknown)
    }

    #[test]
    fn exclusions_touch_tls12_suites_only() {
        let (names, unknown) = left("CHACHA20");
        assert!(unknown.is_empty());
        assert!(!names
            .iter()
            .any(|n| n.starts_with("TLS_ECDHE") && n.contains("CHACHA")));
        assert!(names.contains(&"TLS13_CHACHA20_POLY1305_SHA256".to_owned()));
        assert_eq!(left("AES128, AES256").0.len(), 5);
        assert_eq!(left("ECDHE-RSA-AES128-GCM-SHA256").0.len(), 8);
        assert_eq!(left("ECDHE+AES128").0.len(), 7);
        assert_eq!(left("HIGH").0.len(), 3);
    }

    #[test]
    fn names_rustls_never_has_are_silent_and_others_are_reported() {
        let (names, unknown) = left("aNULL, eNULL, EXPORT, DES, RC4, MD5, 3DES, !SHA1");
        assert_eq!((names.len(), unknown), (9, vec![]));
        assert_eq!(left("FOO, AES128").1, vec!["FOO"]);
    }
}
