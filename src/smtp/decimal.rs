//! Numbers in decimal without the formatter: reply codes and SIZE= values are written on
//! every relayed command, where `write!` costs more than the digits. itoa does the digits.

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
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
        let mut out = Vec::new();
        push_decimal(&mut out, 0u16);
        push_decimal(&mut out, u64::MAX);
        assert_eq!(out, b"018446744073709551615");
    }
}
