//! Numbers in decimal without the formatter: reply codes, SIZE= values and log counts are
//! written on every relayed command, where `write!` costs more than the digits.

/// The most digits a `u64` has.
pub const DIGITS_MAX: usize = 20;

/// `n`'s decimal digits, without leading zeros, in the end of `buf`.
pub fn decimal(n: u64, buf: &mut [u8; DIGITS_MAX]) -> &[u8] {
    let mut at = buf.len();
    let mut rest = n;
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &buf[at..]
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; DIGITS_MAX]));
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn digits_read_as_std_writes_them(n: u64) {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            proptest::prop_assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn the_edges() {
        assert_eq!(decimal(0, &mut [0; DIGITS_MAX]), b"0");
        assert_eq!(
            decimal(u64::MAX, &mut [0; DIGITS_MAX]),
            b"18446744073709551615"
        );
    }
}
