//! The scanner's fast lane: where a CPU has AVX2, a 64-byte block of a body is judged at once
//! from bit masks of its CR, LF, NUL and dot bytes, instead of one `memchr3` per line.
//!
//! A block passes only when the byte-wise scanner would walk through it without a decision:
//! every CR directly followed by LF inside the block, every LF directly after a CR, no NUL, no
//! dot beginning a line, no line over the limit. Anything else is left to the byte-wise path,
//! which stays the only place where a body is refused or ended.

/// Which bytes of a 64-byte block are CR, LF, NUL and `.` (bit `n` for byte `n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Masks {
    pub cr: u64,
    pub lf: u64,
    pub nul: u64,
    pub dot: u64,
}

/// Where a run of passed blocks left the line: at a line start, or inside a line of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LineAt {
    pub at_start: bool,
    pub len: usize,
}

/// Judges one block that starts at `line` (a line start after CRLF, or inside a line). `Some`
/// with the line position after the block when it passes.
#[inline(always)]
pub(super) fn pass(m: Masks, line: LineAt, max_line: usize) -> Option<LineAt> {
    let starts = (m.lf << 1) | u64::from(line.at_start);
    let paired = m.cr >> 63 == 0 && m.lf == m.cr << 1;
    if m.nul != 0 || !paired || m.dot & starts != 0 {
        return None;
    }
    let base = if line.at_start { 0 } else { line.len };
    if m.lf == 0 {
        return (base + 64 <= max_line).then_some(LineAt {
            at_start: false,
            len: base + 64,
        });
    }
    // `paired` puts a CR right before the first LF, so `first` is at least 1.
    let first = m.lf.trailing_zeros() as usize;
    if base + first - 1 > max_line {
        return None;
    }
    // Lines wholly inside the block are under 64 octets; the caller's limit is at least that.
    let last = 63 - m.lf.leading_zeros() as usize;
    Some(LineAt {
        at_start: last == 63,
        len: 63 - last,
    })
}

/// Walks the whole blocks of `input[start..end]` while each one passes, from the line
/// position `line`; returns where it stopped and the line position there. Where this CPU has
/// no AVX2 nothing is walked (the byte-wise path is as fast there).
pub(super) fn skip(
    input: &[u8],
    start: usize,
    end: usize,
    line: LineAt,
    max_line: usize,
) -> (usize, LineAt) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked above).
            return unsafe { avx2::skip(input, start, end, line, max_line) };
        }
    }
    let _ = (input, end, max_line);
    (start, line)
}

/// Whether [`skip`] walks blocks on this CPU.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    };

    use super::{LineAt, Masks};

    /// Bit `n` set where byte `n` of the 64 in `lo`, `hi` is `byte`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn mask(lo: __m256i, hi: __m256i, byte: u8) -> u64 {
        let needle = _mm256_set1_epi8(byte as i8);
        let low = _mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, needle)) as u32;
        let high = _mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, needle)) as u32;
        u64::from(low) | (u64::from(high) << 32)
    }

    /// The loop of [`super::skip`], compiled for AVX2 as a whole: the masks and the judgement
    /// of each block inline into it, with no call and no feature check per block.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn skip(
        input: &[u8],
        mut i: usize,
        end: usize,
        mut line: LineAt,
        max_line: usize,
    ) -> (usize, LineAt) {
        let end = end.min(input.len());
        while let Some(block) = input.get(i..end).and_then(|rest| rest.first_chunk::<64>()) {
            // SAFETY: the caller vouches for AVX2, as this function's own contract.
            let Some(next) = super::pass(unsafe { masks(block) }, line, max_line) else {
                break;
            };
            line = next;
            i += 64;
        }
        (i, line)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn masks(block: &[u8; 64]) -> Masks {
        // SAFETY: both loads read 32 bytes inside the 64-byte array; loadu needs no alignment.
        let (lo, hi) = unsafe {
            (
                _mm256_loadu_si256(block.as_ptr().cast::<__m256i>()),
                _mm256_loadu_si256(block.as_ptr().add(32).cast::<__m256i>()),
            )
        };
        Masks {
            cr: mask(lo, hi, b'\r'),
            lf: mask(lo, hi, b'\n'),
            nul: mask(lo, hi, 0),
            dot: mask(lo, hi, b'.'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_masks(block: &[u8; 64]) -> Masks {
        let bits = |c: u8| {
            block
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == c)
                .fold(0u64, |m, (i, _)| m | 1 << i)
        };
        Masks {
            cr: bits(b'\r'),
            lf: bits(b'\n'),
            nul: bits(0),
            dot: bits(b'.'),
        }
    }

    #[test]
    fn masks_match_a_byte_by_byte_count() {
        let mut block = [b'x'; 64];
        for (i, b) in block.iter_mut().enumerate() {
            *b = [b'\r', b'\n', 0, b'.', b'a', 0xff][i * 7 % 6];
        }
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: AVX2 is present (`available`).
            assert_eq!(unsafe { avx2::masks(&block) }, scalar_masks(&block));
        }
    }

    #[test]
    fn a_clean_block_passes_and_tracks_the_line() {
        let mut block = [b'x'; 64];
        block[10] = b'\r';
        block[11] = b'\n';
        let m = scalar_masks(&block);
        let start = LineAt {
            at_start: true,
            len: 0,
        };
        assert_eq!(
            pass(m, start, 998),
            Some(LineAt {
                at_start: false,
                len: 52
            })
        );
        // A dot after the CRLF begins a line: left to the byte-wise path.
        block[12] = b'.';
        assert_eq!(pass(scalar_masks(&block), start, 998), None);
        // A bare LF, and a CR whose LF is in the next block.
        let mut bare = [b'x'; 64];
        bare[5] = b'\n';
        assert_eq!(pass(scalar_masks(&bare), start, 998), None);
        let mut split = [b'x'; 64];
        split[63] = b'\r';
        assert_eq!(pass(scalar_masks(&split), start, 998), None);
        // The line so far plus this block's text must fit the limit.
        let inside = LineAt {
            at_start: false,
            len: 990,
        };
        assert_eq!(pass(scalar_masks(&[b'x'; 64]), inside, 998), None);
    }

    /// `skip` is the fast lane's only way in: on an AVX2 CPU it must walk clean blocks (or the
    /// lane silently becomes the byte-wise path), stop before the block that needs a decision,
    /// and never walk past `end`.
    #[test]
    fn skip_walks_clean_blocks_up_to_a_decision_or_the_end() {
        if !available() {
            return;
        }
        let line = [&[b'x'; 38][..], b"\r\n"].concat();
        let mut body = line.repeat(32);
        let start = LineAt {
            at_start: true,
            len: 0,
        };
        let whole = body.len() / 64 * 64;
        let (walked, after) = skip(&body, 0, body.len(), start, 998);
        assert_eq!(walked, whole);
        // 1280 bytes is 32 whole lines: the walk ends on a line start.
        assert_eq!(after, start);
        assert_eq!(skip(&body, 0, 200, start, 998).0, 192);
        // A line begun by a dot, in the fourth block, leaves that block to the byte-wise path.
        body[200] = b'.';
        assert_eq!(skip(&body, 0, body.len(), start, 998).0, 192);
    }
}
