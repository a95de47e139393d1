//! Host name and address syntax as Postfix judges it: valid_hostname(), valid_hostaddr(),
//! valid_ipv4_hostaddr() and valid_ipv6_hostaddr() (`src/util/valid_hostname.c`) and
//! valid_mailhost_addr() (`src/global/valid_mailhost_addr.c`).
//!
//! Only syntax, no lookups. The rules are Postfix's, not the RFCs' or the Rust parsers':
//! `01.2.3.4` is an address, `0.1.2.3` is not, and `1:2:3` passes as IPv6, because the
//! restrictions built on them must answer a HELO exactly as smtpd does.

/// Postfix's valid_hostname: labels of letters, digits, `-` and `_`, not starting or ending in
/// `-`, at most 63 characters each and 255 in all, and not all-numeric. One trailing dot is
/// allowed here (smtpd cuts it before asking, see [`truncate_dot`]).
pub fn valid_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let mut non_numeric = false;
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return false;
        }
        for b in label.bytes() {
            if b.is_ascii_alphabetic() || b == b'-' || b == b'_' {
                non_numeric = true;
            } else if !b.is_ascii_digit() {
                return false;
            }
        }
    }
    non_numeric
}

/// smtpd_check.c dup_if_truncate: one trailing dot is cut, but not from `..`.
pub(crate) fn truncate_dot(name: &str) -> &str {
    match name.strip_suffix('.') {
        Some(cut) if !cut.is_empty() && !cut.ends_with('.') => cut,
        _ => name,
    }
}

/// Postfix's valid_hostaddr: IPv6 syntax when the text has a `:`, dotted-quad otherwise.
pub(crate) fn valid_hostaddr(addr: &str) -> bool {
    if addr.is_empty() {
        return false;
    }
    if addr.contains(':') {
        valid_ipv6_hostaddr(addr)
    } else {
        valid_ipv4_hostaddr(addr)
    }
}

/// Postfix's valid_mailhost_addr: the inside of an address literal, `IPv6:` (any case) then
/// IPv6 syntax, or else dotted-quad (so `::1` without the tag is refused).
pub(crate) fn valid_mailhost_addr(addr: &str) -> bool {
    match addr.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => {
            addr.get(5..).is_some_and(valid_ipv6_hostaddr)
        }
        _ => valid_ipv4_hostaddr(addr),
    }
}

/// smtpd_check.c reject_invalid_hostaddr on a HELO that starts with `[`: the brackets come off
/// only when there is something between them and the last one closes; otherwise the text is
/// judged whole (and so fails).
pub(crate) fn valid_helo_literal(helo: &str) -> bool {
    let inner = match helo.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) if !inner.is_empty() => inner,
        _ => helo,
    };
    valid_mailhost_addr(inner)
}

/// Postfix's valid_ipv4_hostaddr: exactly four decimal octets of at most 255 each (leading
/// zeros allowed), no empty octet, no trailing dot, and a zero first octet only in `0.0.0.0`.
pub(crate) fn valid_ipv4_hostaddr(addr: &str) -> bool {
    let octets: Vec<&str> = addr.split('.').collect();
    if octets.len() != 4 {
        return false;
    }
    for o in &octets {
        if o.is_empty() || !o.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        // Digit by digit as Postfix does, so a long run of zeros is still 0.
        let mut value = 0u32;
        for b in o.bytes() {
            value = value * 10 + u32::from(b - b'0');
            if value > 255 {
                return false;
            }
        }
    }
    let first_is_zero = octets.first().is_some_and(|o| o.bytes().all(|b| b == b'0'));
    !first_is_zero || addr.bytes().all(|b| b == b'0' || b == b'.')
}

/// Postfix's valid_ipv6_hostaddr: hex fields of at most four digits between `:`s, at least two
/// and at most seven `:`, one `::` at most, no empty first or last field outside a `::`, and
/// an IPv4 tail allowed after the second to sixth `:`. It does not count the fields, so
/// `1:2:3` passes, as it does in Postfix.
pub(crate) fn valid_ipv6_hostaddr(addr: &str) -> bool {
    let bytes = addr.as_bytes();
    let mut colons = 0usize;
    // The `:` count at which `::` was seen (0: not yet).
    let mut null_field = 0usize;
    // Length of the hex run just read (0 right after a `:`).
    let mut run = 0usize;
    let mut i = 0usize;
    loop {
        match bytes.get(i) {
            None => {
                if colons < 2 {
                    return false;
                }
                // An empty last field is only the tail of a `::`.
                return run > 0 || null_field + 1 == colons;
            }
            Some(b'.') => {
                if !(2..=6).contains(&colons) {
                    return false;
                }
                return addr.get(i - run..).is_some_and(valid_ipv4_hostaddr);
            }
            Some(b':') => {
                // A leading single `:` (`:1::`) is an empty first field.
                if colons == 0
                    && run == 0
                    && bytes.get(i + 1).is_some_and(u8::is_ascii_alphanumeric)
                {
                    return false;
                }
                colons += 1;
                if colons > 7 {
                    return false;
                }
                i += 1;
                run = 0;
                if bytes.get(i) == Some(&b':') {
                    if null_field > 0 {
                        return false;
                    }
                    null_field = colons;
                }
            }
            Some(_) => {
                run = bytes[i..]
                    .iter()
                    .take_while(|b| b.is_ascii_hexdigit())
                    .count();
                if run == 0 || run > 4 {
                    return false;
                }
                i += run;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(valid_hostname("host.example."));
        assert!(valid_hostname("nodots"));
        assert!(!valid_hostname("bad_helo!"));
        assert!(!valid_hostname("1.2.3.4"));
        assert!(!valid_hostname("a..b"));
        assert!(!valid_hostname("-a.b"));
        assert!(!valid_hostname("a-.b"));
        assert!(valid_hostname("a-b_c.example"));
        assert!(!valid_hostname(""));
        assert!(!valid_hostname(&format!("{}.example", "a".repeat(64))));
        assert_eq!(truncate_dot("a.b."), "a.b");
        assert_eq!(truncate_dot("a.b.."), "a.b..");
        assert_eq!(truncate_dot("."), ".");
    }

    #[test]
    fn ipv4_as_postfix() {
        for good in [
            "1.2.3.4",
            "01.2.3.4",
            "0.0.0.0",
            "000.0.0.0",
            "255.255.255.255",
        ] {
            assert!(valid_ipv4_hostaddr(good), "{good}");
        }
        for bad in [
            "321.255.255.255",
            "0.255.255.255",
            "00.1.2.3",
            "1.2.3.321",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3.4",
            ".1.2.3.4",
            "1.2.3.4.",
            "1.2.3.4.5.",
            "1.2.3.a",
            "",
        ] {
            assert!(!valid_ipv4_hostaddr(bad), "{bad}");
        }
    }

    #[test]
    fn ipv6_as_postfix() {
        for good in [
            "::1",
            "::",
            "1::",
            "2001:db8::1",
            "1:2:3",
            "1:2:3:4:5:6:7:8",
            "::ffff:1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
        ] {
            assert!(valid_ipv6_hostaddr(good), "{good}");
        }
        for bad in [
            "1:2",
            "1:2:",
            ":1:2:3",
            "1::2::3",
            "1:2:3:4:5:6:7:8:9",
            "12345::1",
            "1:2:3:4:5:6:7:1.2.3.4",
            "::ffff:1.2.3.256",
            "1.2.3.4",
            "g::1",
        ] {
            assert!(!valid_ipv6_hostaddr(bad), "{bad}");
        }
    }

    #[test]
    fn helo_literals() {
        assert!(valid_helo_literal("[1.2.3.4]"));
        assert!(valid_helo_literal("[IPv6:::1]"));
        assert!(valid_helo_literal("[ipv6:::1]"));
        assert!(!valid_helo_literal("[::1]"));
        assert!(!valid_helo_literal("[]"));
        assert!(!valid_helo_literal("[1.2.3.4"));
        assert!(!valid_helo_literal("[IPv6:1.2.3.4]"));
    }
}
