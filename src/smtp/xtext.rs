//! RFC 3461 section 4 xtext: the encoding of XCLIENT values and of DSN parameters.
//!
//! Pure functions over bytes; the only allocation is the output the caller asked for.

/// Why a string is not valid xtext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XtextError {
    /// A byte outside `!`..=`~`, or a bare `=`, at this offset.
    #[error("invalid xtext character at offset {0}")]
    BadChar(usize),
    /// A `+` at this offset not followed by two hex digits.
    #[error("invalid xtext escape at offset {0}")]
    BadEscape(usize),
}

/// True when `byte` stands for itself in xtext ("xchar": `!` to `~` except `+` and `=`).
pub fn is_xchar(byte: u8) -> bool {
    (33..=126).contains(&byte) && byte != b'+' && byte != b'='
}

/// The length of `input` once encoded, so a caller can check a limit before encoding.
pub fn encoded_len(input: &[u8]) -> usize {
    input.iter().map(|&b| if is_xchar(b) { 1 } else { 3 }).sum()
}

/// Appends the xtext form of `input` to `out`: xchars as themselves, every other byte as `+HH`
/// with upper-case hex.
pub fn encode_into(input: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = input;
    // Runs of xchars (ASCII, so always one str) are copied whole: most values are one run.
    while !rest.is_empty() {
        let run = rest
            .iter()
            .position(|&b| !is_xchar(b))
            .unwrap_or(rest.len());
        if let Ok(text) = std::str::from_utf8(&rest[..run]) {
            out.push_str(text);
        }
        let Some((&byte, after)) = rest[run..].split_first() else {
            break;
        };
        out.push('+');
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        rest = after;
    }
}

/// The xtext form of `input`.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::new();
    encode_into(input, &mut out);
    out
}

/// Decodes xtext. `+hh` with lower-case hex is accepted too (RFC 3461 asks senders for upper
/// case; being liberal here costs nothing).
pub fn decode(input: &[u8]) -> Result<Vec<u8>, XtextError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&byte) = input.get(i) {
        if byte == b'+' {
            let hi = input.get(i + 1).copied().and_then(hex_value);
            let lo = input.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(XtextError::BadEscape(i)),
            }
            i += 3;
        } else if is_xchar(byte) {
            out.push(byte);
            i += 1;
        } else {
            return Err(XtextError::BadChar(i));
        }
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_the_postfix_examples() {
        // XCLIENT_README / postfix-semantics 12.1: `mail.example.com` needs no escape, a
        // space does; `+` and `=` always do.
        assert_eq!(encode(b"mail.example.com"), "mail.example.com");
        assert_eq!(encode(b"h x"), "h+20x");
        assert_eq!(encode(b"a+b=c"), "a+2Bb+3Dc");
        assert_eq!(encode(b"[UNAVAILABLE]"), "[UNAVAILABLE]");
        assert_eq!(encode(b"IPV6:2001:db8::1"), "IPV6:2001:db8::1");
        assert_eq!(encode(b"\r\n\x00\x7f"), "+0D+0A+00+7F");
        assert_eq!(encode("é".as_bytes()), "+C3+A9");
        assert_eq!(encode(b""), "");
        assert_eq!(encoded_len(b"h x"), 5);
    }

    #[test]
    fn every_byte_has_the_right_form() {
        for byte in 0..=255u8 {
            let encoded = encode(&[byte]);
            if (33..=126).contains(&byte) && byte != b'+' && byte != b'=' {
                assert_eq!(encoded.as_bytes(), [byte]);
            } else {
                assert_eq!(encoded, format!("+{byte:02X}"));
            }
        }
    }

    #[test]
    fn decodes_and_refuses() {
        assert_eq!(decode(b"h+20x").unwrap(), b"h x");
        assert_eq!(decode(b"mail+2eexample").unwrap(), b"mail.example");
        assert_eq!(decode(b"a b"), Err(XtextError::BadChar(1)));
        assert_eq!(decode(b"a=b"), Err(XtextError::BadChar(1)));
        assert_eq!(decode(b"ab+2"), Err(XtextError::BadEscape(2)));
        assert_eq!(decode(b"+G0"), Err(XtextError::BadEscape(0)));
        assert_eq!(decode(b"x+"), Err(XtextError::BadEscape(1)));
        assert_eq!(decode("é".as_bytes()), Err(XtextError::BadChar(0)));
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let encoded = encode(&input);
            prop_assert_eq!(encoded.len(), encoded_len(&input));
            prop_assert!(encoded.bytes().all(|b| is_xchar(b) || b == b'+'));
            prop_assert_eq!(decode(encoded.as_bytes()).unwrap(), input);
        }

        #[test]
        fn decode_never_panics(input in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(&input);
        }
    }
}
