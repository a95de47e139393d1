//! Reads messages delivered into a Maildir (`new/` and `cur/`) and the headers tests assert on.
//!
//! Only as much RFC 5322 as the tests need: header fields up to the first empty line, folded
//! lines unfolded. Bodies are left as bytes.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::process::POLL;

/// A Maildir directory (the one holding `new/`, `cur/`, `tmp/`).
#[derive(Clone, Debug)]
pub struct Maildir {
    path: PathBuf,
}

/// One delivered message file.
#[derive(Clone, Debug)]
pub struct Message {
    pub path: PathBuf,
    pub raw: Vec<u8>,
}

impl Maildir {
    pub fn new(path: impl Into<PathBuf>) -> Maildir {
        Maildir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every message in `new/` and `cur/`, oldest first (by modification time, then name; a
    /// Maildir name starts with the delivery time in seconds). Empty if the Maildir does not
    /// exist yet: Postfix creates it on the first delivery.
    pub fn messages(&self) -> Vec<Message> {
        let mut found = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = fs::read_dir(self.path.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let mtime = entry.metadata().and_then(|m| m.modified()).ok();
                if let Ok(raw) = fs::read(&path) {
                    found.push((
                        mtime,
                        path.file_name().map(|n| n.to_owned()),
                        Message { path, raw },
                    ));
                }
            }
        }
        found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        found.into_iter().map(|(_, _, m)| m).collect()
    }

    /// Waits until at least `n` messages are there and returns them all; panics on timeout
    /// with the count seen.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.messages();
            if now.len() >= n {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "Maildir {}: {} message(s) after {timeout:?}, wanted {n}",
                self.path.display(),
                now.len()
            );
            sleep(POLL);
        }
    }

    /// Waits for the first message whose raw text contains `needle` (a Subject, a Message-ID).
    pub fn wait_for_containing(&self, needle: &str, timeout: Duration) -> Message {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self
                .messages()
                .into_iter()
                .find(|m| m.text().contains(needle))
            {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "Maildir {}: no message containing {needle:?} after {timeout:?}",
                self.path.display()
            );
            sleep(POLL);
        }
    }
}

impl Message {
    /// The whole message as text (lossy: bodies may hold 8-bit bytes).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// Header fields in order, names as written, values unfolded (CRLF + WSP becomes one space
    /// as in RFC 5322 section 2.2.3, leading blanks of the value dropped).
    pub fn headers(&self) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(self.header_block()).into_owned();
        let mut out: Vec<(String, String)> = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = out.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim_start());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                out.push((name.to_owned(), value.trim_start().to_owned()));
            }
        }
        out
    }

    /// Every value of a header field, case-insensitive name, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// The first value of a header field.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }

    /// `Received:` fields, newest (topmost) first.
    pub fn received(&self) -> Vec<String> {
        self.header_all("Received")
    }

    pub fn subject(&self) -> Option<String> {
        self.header("Subject")
    }

    /// The bytes after the empty line that ends the header.
    pub fn body(&self) -> &[u8] {
        let head = self.header_block().len();
        let rest = &self.raw[head..];
        rest.strip_prefix(b"\r\n")
            .or_else(|| rest.strip_prefix(b"\n"))
            .unwrap_or(rest)
    }

    fn header_block(&self) -> &[u8] {
        let raw = &self.raw;
        let end = [&b"\r\n\r\n"[..], b"\n\n"]
            .iter()
            .filter_map(|sep| {
                raw.windows(sep.len())
                    .position(|w| w == *sep)
                    .map(|p| p + sep.len() / 2)
            })
            .min()
            .unwrap_or(raw.len());
        &raw[..end]
    }
}
