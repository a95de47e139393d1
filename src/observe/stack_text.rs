//! Short text assembled on the stack and written in one piece.
//!
//! A log line's parts pass through the formatter one `write_str` at a time, each through the
//! printable filter; text built of many small parts (a dotted quad, the disconnect line's
//! command counts) is cheaper put together here and handed over once.

/// Up to `N` bytes of ASCII text; what does not fit is dropped (callers size `N` for their
/// longest text).
pub struct StackText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    pub const fn new() -> Self {
        StackText {
            bytes: [0; N],
            len: 0,
        }
    }

    /// Appends one ASCII byte.
    pub fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// Appends ASCII text.
    pub fn push_str(&mut self, text: &str) {
        text.bytes().for_each(|b| self.push(b));
    }

    /// Appends `n` in decimal.
    pub fn push_u32(&mut self, n: u32) {
        self.push_str(itoa::Buffer::new().format(n));
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is pushed, so this is always one str.
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl<const N: usize> Default for StackText<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn numbers_read_as_std_writes_them(n: u32, m: u32) {
            let mut text = StackText::<32>::new();
            text.push_u32(n);
            text.push(b'/');
            text.push_u32(m);
            proptest::prop_assert_eq!(text.as_str(), format!("{n}/{m}"));
        }
    }

    #[test]
    fn text_past_the_size_is_dropped() {
        let mut text = StackText::<4>::new();
        text.push_str("abc");
        text.push_u32(42);
        assert_eq!(text.as_str(), "abc4");
    }
}
