//! Finds the end of a DATA body in a byte stream and judges its line endings (SMTP smuggling);
//! holds BDAT chunk content to the same line rules.
//!
//! The only end of data is `<CR><LF>.<CR><LF>` (the body starts right after the DATA line's
//! CRLF, so `.<CR><LF>` first is an empty message). Every other CR/LF form around a dot
//! (`\n.\n`, `\r.\r`, `\r\n.\n`, `\n.\r\n`, ...) is something a lenient upstream might take for
//! the end, so in `Reject` mode it is a violation and nothing from it on is handed out; in
//! `Normalize` mode bare CR and bare LF become CRLF and a dot that would then start a line is
//! stuffed, so the upstream still sees exactly one end.
//!
//! Does not read sockets, allocate per byte, or undo dot-stuffing: in `Reject` mode the body goes
//! to the upstream exactly as the client stuffed it, as ranges of the caller's own buffer.
//! State is O(1) whatever the input.
//!
//! BDAT content ([`DotScanner::chunks`]) has no terminator and no dot-stuffing: chunk
//! boundaries are invisible to the line rules (a CR ending one chunk and the LF starting the
//! next are a CRLF, a line's length counts across chunks), and [`DotScanner::finish`] closes
//! the message. For an upstream without CHUNKING the same pass stuffs dots and appends the
//! `.<CR><LF>`, so the chunks become a DATA body.

use memchr::{memchr2, memchr3};

use super::replies;
use super::reply::Reply;

/// RFC 5321 4.5.3.1.6: a text line is at most 1000 octets including CRLF.
pub const BODY_LINE_MAX: usize = 998;

/// What to do with bare CR and bare LF in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DotMode {
    /// Refuse the message (Postfix `smtpd_forbid_bare_newline = reject`, but for CR too).
    #[default]
    Reject,
    /// Rewrite bare CR and bare LF as CRLF (Postfix `normalize`), stuffing a dot that would then
    /// begin a line. The rewritten body goes into the caller's `Vec`.
    Normalize,
}

/// Why a body is refused. The first one found is kept; the scanner stops handing out bytes at
/// it and goes on consuming the client's input to the real end so the session stays in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Violation {
    /// An LF not preceded by CR (`Reject` mode only).
    BareLf,
    /// A CR not followed by LF (`Reject` mode only).
    BareCr,
    /// A NUL anywhere in the body. Refused in both modes: RFC 5322 forbids it, and C-string
    /// MTAs truncate a line at NUL, so `.<NUL>junk<CR><LF>` reads to them as a lone dot, a fake
    /// end of data. Refusing every NUL is also cheaper than tracking the ones next to a dot.
    Nul,
    /// A line longer than the scanner's limit (998 octets without CRLF by default), both modes.
    LineTooLong,
    /// More body bytes than the size limit given to [`DotScanner::with_size_limit`].
    TooBig,
}

impl Violation {
    /// The one reply the session gives after the client's real end of data.
    pub fn reply(&self, host: &str) -> Reply {
        match self {
            Violation::BareLf => replies::bare_lf(host),
            Violation::BareCr => replies::bare_cr(host),
            Violation::Nul => replies::nul_in_body(host),
            Violation::LineTooLong => replies::body_line_too_long(host),
            Violation::TooBig => replies::message_file_too_big(),
        }
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// DATA: dot-stuffed by the client, ended by `<CR><LF>.<CR><LF>`.
    Dot,
    /// BDAT: counted chunks, taken as they are. `stuff`: the output is for a DATA upstream,
    /// so a dot beginning a line is doubled and `finish` appends the end of data.
    Chunks { stuff: bool },
}

/// The result of one [`DotScanner::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of the input the scanner has dealt with; drop them from the buffer. Anything after
    /// them stays: the command after the end of data, or (when `end` is false) a final CR whose
    /// meaning depends on the next byte, to be scanned again together with the next read.
    /// Chunk framing consumes every byte.
    pub consumed: usize,
    /// `Reject` mode: `input[..forward]` goes to the upstream as is. Always 0 where the output
    /// is written out (`Normalize` mode, chunk framing): the bytes to send were
    /// appended to `out`. So a caller may always send `input[..forward]` and then `out`. Never
    /// contains a byte of or after a violation.
    pub forward: usize,
    /// The real `<CR><LF>.<CR><LF>` was found: `consumed` ends right after it, and the forwarded
    /// bytes (when there is no violation) end with its `.<CR><LF>`.
    pub end: bool,
    /// The first violation in this message, reported from the scan that found it on, before any
    /// byte of it was handed out. When set, the upstream has a partial body and must not get the
    /// end of data: the session closes that upstream connection.
    pub violation: Option<Violation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line; `after_crlf` is false when the previous line end was a bare CR
    /// or LF rewritten in `Normalize` mode.
    LineStart {
        after_crlf: bool,
    },
    /// A `.` at the start of a line that followed a real CRLF. In `Normalize` mode it has not
    /// been written yet: what follows decides whether it is the end, stuffing, or data.
    Dot,
    /// Inside a line.
    Mid,
    /// Chunk framing: a CR ended the input. It is consumed but not handed out (the bytes after
    /// a chunk are the next command, so it cannot wait in the caller's buffer); the next byte,
    /// or `finish`, judges it.
    Cr,
    End,
}

/// Scans one DATA body. Create one per message (or [`reset`](Self::reset) it).
#[derive(Debug, Clone)]
pub struct DotScanner {
    mode: DotMode,
    framing: Framing,
    state: State,
    line_len: usize,
    consumed: u64,
    violation: Option<Violation>,
    max_line: usize,
    size_limit: u64,
    /// Whole 64-byte blocks may be judged at once (`blocks`): `Reject` mode, a CPU with the
    /// instructions for it, and a line limit no block can hide a breach of.
    fast_lane: bool,
}

impl DotScanner {
    pub fn new(mode: DotMode) -> Self {
        Self {
            mode,
            framing: Framing::Dot,
            state: State::LineStart { after_crlf: true },
            line_len: 0,
            consumed: 0,
            violation: None,
            max_line: BODY_LINE_MAX,
            size_limit: 0,
            fast_lane: mode == DotMode::Reject && blocks::available(),
        }
    }

    /// Scans the content of a message's BDAT chunks, one after the other, with `mode`'s line
    /// rules. Every byte given is consumed, and the output always goes to `out` (`forward` is
    /// 0): a CR that ends a chunk is held there until the next byte says what it is. With
    /// `stuff` the output is a DATA body for an upstream without CHUNKING: line-start dots
    /// doubled, and [`finish`](Self::finish) adds a final CRLF where the content lacks one and
    /// the `.<CR><LF>`.
    pub fn chunks(mode: DotMode, stuff: bool) -> Self {
        Self {
            framing: Framing::Chunks { stuff },
            ..Self::new(mode)
        }
    }

    /// Longest body line, in octets without CRLF; `usize::MAX` turns the check off.
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self.fast_lane &= max_line >= 64;
        self
    }

    /// `message_size_limit` (0 = none): forwarding stops at the first text byte past the limit
    /// (line ends are checked after them, so at most a CRLF and a dot go past).
    pub fn with_size_limit(mut self, limit: u64) -> Self {
        self.size_limit = limit;
        self
    }

    /// Starts over for the next message, keeping mode and limits.
    pub fn reset(&mut self) {
        let framing = self.framing;
        *self = Self::new(self.mode)
            .with_max_line(self.max_line)
            .with_size_limit(self.size_limit);
        self.framing = framing;
    }

    pub fn mode(&self) -> DotMode {
        self.mode
    }

    /// Body octets so far as the client sent them (dot-stuffed, without the final `.<CR><LF>`).
    pub fn body_bytes(&self) -> u64 {
        if self.state == State::End && self.framing == Framing::Dot {
            self.consumed.saturating_sub(3)
        } else {
            self.consumed
        }
    }

    pub fn violation(&self) -> Option<Violation> {
        self.violation
    }

    pub fn is_done(&self) -> bool {
        self.state == State::End
    }

    /// Whether the bytes to forward are written to `out` rather than handed out as ranges.
    fn rewrites(&self) -> bool {
        self.mode == DotMode::Normalize || self.framing != Framing::Dot
    }

    /// Ends a chunked message after its last chunk: a CR left waiting is judged (bare: refused,
    /// or a line end when normalizing), and with `stuff` the end of data is appended to `out`.
    /// Returns the message's violation, if any; nothing is appended after one.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Option<Violation> {
        let Framing::Chunks { stuff } = self.framing else {
            return self.violation;
        };
        if self.state == State::Cr {
            if self.mode == DotMode::Normalize && self.violation.is_none() {
                out.extend_from_slice(b"\r\n");
                self.state = State::LineStart { after_crlf: false };
            } else {
                self.refuse(Violation::BareCr, 0, &mut None, &[], 0, out);
            }
        }
        if stuff && self.violation.is_none() {
            if !matches!(self.state, State::LineStart { .. }) {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b".\r\n");
        }
        self.state = State::End;
        self.violation
    }

    /// Scans the next bytes of the body. See [`Scan`] for what to do with the result. In
    /// `Reject` mode `out` is never touched; in `Normalize` mode the bytes to forward are
    /// appended to it (runs copied whole, never byte by byte).
    pub fn scan(&mut self, input: &[u8], out: &mut Vec<u8>) -> Scan {
        // Two copies of the loop: the check for the fast lane alone cost the byte-wise one 10%.
        if self.fast_lane {
            self.scan_with::<true>(input, out)
        } else {
            self.scan_with::<false>(input, out)
        }
    }

    fn scan_with<const FAST_LANE: bool>(&mut self, input: &[u8], out: &mut Vec<u8>) -> Scan {
        let normalize = self.mode == DotMode::Normalize;
        let rewrites = self.rewrites();
        let chunks = matches!(self.framing, Framing::Chunks { .. });
        let stuff = self.framing == Framing::Chunks { stuff: true };
        let violated_before = self.violation.is_some();
        let mut cut: Option<usize> = None;
        let mut run = 0;
        let mut i = 0;
        while i < input.len() {
            if FAST_LANE && self.violation.is_none() {
                i = self.skip_clean_blocks(input, i);
                if i == input.len() {
                    break;
                }
            }
            // `writing`: the output goes to `out` and nothing has been refused yet; `fixing`:
            // bare line ends are rewritten rather than refused.
            let writing = rewrites && self.violation.is_none();
            let fixing = normalize && self.violation.is_none();
            match self.state {
                State::End => break,
                State::LineStart { .. } if chunks => {
                    // Chunk content is not stuffed; for a DATA upstream, stuff it here.
                    if input[i] == b'.' && stuff && writing {
                        out.extend_from_slice(&input[run..i]);
                        out.push(b'.');
                        run = i;
                    }
                    self.state = State::Mid;
                    self.line_len = 0;
                }
                State::Cr => {
                    if input[i] == b'\n' {
                        if writing {
                            out.push(b'\r');
                        }
                        i += 1;
                        self.state = State::LineStart { after_crlf: true };
                    } else if fixing {
                        out.extend_from_slice(b"\r\n");
                        self.state = State::LineStart { after_crlf: false };
                    } else {
                        self.refuse(Violation::BareCr, i, &mut cut, input, run, out);
                        self.state = State::Mid;
                    }
                }
                State::LineStart { after_crlf } => {
                    if input[i] == b'.' && after_crlf {
                        if writing {
                            out.extend_from_slice(&input[run..i]);
                            run = i + 1;
                        }
                        self.state = State::Dot;
                        self.line_len = 1;
                        i += 1;
                    } else if input[i] == b'.' && writing {
                        // The line was begun by a rewritten bare line end, so the client did not
                        // stuff it: stuff it for the upstream, or `\n.\r\n` would become the end.
                        out.extend_from_slice(&input[run..i]);
                        out.push(b'.');
                        run = i;
                        self.state = State::Mid;
                        self.line_len = 1;
                        i += 1;
                    } else {
                        self.state = State::Mid;
                        self.line_len = 0;
                    }
                }
                State::Dot => match (input[i], input.get(i + 1)) {
                    (b'\r', None) => break,
                    (b'\r', Some(b'\n')) => {
                        if writing {
                            out.extend_from_slice(b".\r\n");
                        }
                        i += 2;
                        run = i;
                        self.state = State::End;
                    }
                    (b'\r' | b'\n', _) if fixing => {
                        // `.` then a bare line end is data, not the end: send it stuffed.
                        out.extend_from_slice(b"..\r\n");
                        i += 1;
                        run = i;
                        self.state = State::LineStart { after_crlf: false };
                    }
                    (b @ (b'\r' | b'\n'), _) => {
                        let v = if b == b'\r' {
                            Violation::BareCr
                        } else {
                            Violation::BareLf
                        };
                        self.refuse(v, i, &mut cut, input, run, out);
                        i += 1;
                        self.state = State::Mid;
                    }
                    _ => {
                        if writing {
                            out.push(b'.');
                            run = i;
                        }
                        self.state = State::Mid;
                    }
                },
                State::Mid => {
                    let rest = &input[i..];
                    let found = if self.violation.is_some() {
                        memchr2(b'\r', b'\n', rest)
                    } else {
                        memchr3(b'\r', b'\n', 0, rest)
                    };
                    let text = found.unwrap_or(rest.len());
                    let room = self
                        .size_limit
                        .saturating_sub(self.consumed.saturating_add(i as u64));
                    if self.violation.is_none() && self.size_limit != 0 && text as u64 > room {
                        let at = i + room as usize;
                        self.refuse(Violation::TooBig, at, &mut cut, input, run, out);
                        i = at;
                        continue;
                    }
                    if self.violation.is_none()
                        && self.line_len.saturating_add(text) > self.max_line
                    {
                        let at = i + self.max_line.saturating_sub(self.line_len);
                        self.refuse(Violation::LineTooLong, at, &mut cut, input, run, out);
                        i = at;
                        continue;
                    }
                    self.line_len += text;
                    i += text;
                    if found.is_none() {
                        break;
                    }
                    match (input[i], input.get(i + 1)) {
                        (b'\r', None) if chunks => {
                            if writing {
                                out.extend_from_slice(&input[run..i]);
                            }
                            i += 1;
                            run = i;
                            self.state = State::Cr;
                            break;
                        }
                        (b'\r', None) => break,
                        (b'\r', Some(b'\n')) => {
                            i += 2;
                            self.state = State::LineStart { after_crlf: true };
                            let total = self.consumed.saturating_add(i as u64);
                            if self.size_limit != 0 && total > self.size_limit {
                                self.refuse(Violation::TooBig, i, &mut cut, input, run, out);
                            }
                        }
                        (b'\r' | b'\n', _) if fixing => {
                            out.extend_from_slice(&input[run..i]);
                            out.extend_from_slice(b"\r\n");
                            i += 1;
                            run = i;
                            self.state = State::LineStart { after_crlf: false };
                        }
                        (b, _) => {
                            let v = match b {
                                b'\r' => Violation::BareCr,
                                b'\n' => Violation::BareLf,
                                _ => Violation::Nul,
                            };
                            self.refuse(v, i, &mut cut, input, run, out);
                            i += 1;
                        }
                    }
                }
            }
        }
        self.consumed = self.consumed.saturating_add(i as u64);
        if self.size_limit != 0 && self.body_bytes() > self.size_limit {
            self.refuse(Violation::TooBig, i, &mut cut, input, run, out);
        }
        if rewrites && self.violation.is_none() {
            out.extend_from_slice(&input[run..i]);
        }
        let forward = match (rewrites, cut) {
            (true, _) => 0,
            (false, Some(at)) => at,
            (false, None) if violated_before => 0,
            (false, None) => i,
        };
        Scan {
            consumed: i,
            forward,
            end: self.state == State::End,
            violation: self.violation,
        }
    }

    /// Walks whole 64-byte blocks from `i` that the byte-wise path would pass without a
    /// decision (see `blocks`), and returns where it stopped; state and line length are what
    /// the byte-wise path would have left.
    fn skip_clean_blocks(&mut self, input: &[u8], start: usize) -> usize {
        let line = match self.state {
            State::LineStart { after_crlf: true } => blocks::LineAt {
                at_start: true,
                len: 0,
            },
            State::Mid => blocks::LineAt {
                at_start: false,
                len: self.line_len,
            },
            _ => return start,
        };
        // No block may cross the size limit: refusing it is the byte-wise path's job.
        let end = match self.size_limit {
            0 => input.len(),
            limit => usize::try_from(limit.saturating_sub(self.consumed)).unwrap_or(usize::MAX),
        };
        let (i, line) = blocks::skip(input, start, end, line, self.max_line);
        if i > start {
            if line.at_start {
                self.state = State::LineStart { after_crlf: true };
            } else {
                self.state = State::Mid;
                self.line_len = line.len;
            }
        }
        i
    }

    /// Records the first violation, at input index `at`: bytes before it may still go out (in
    /// `Normalize` mode they are written now), nothing from it on.
    fn refuse(
        &mut self,
        v: Violation,
        at: usize,
        cut: &mut Option<usize>,
        input: &[u8],
        run: usize,
        out: &mut Vec<u8>,
    ) {
        if self.violation.is_some() {
            return;
        }
        self.violation = Some(v);
        *cut = Some(at);
        if self.rewrites() {
            out.extend_from_slice(input.get(run..at).unwrap_or_default());
        }
    }
}

mod blocks;
#[cfg(test)]
mod chunk_tests;
#[cfg(test)]
mod tests;
