//! The SMTP wire format, sans I/O: commands, replies, capabilities and the DATA terminator.
//!
//! Nothing here reads a socket, starts a task, reads a clock or logs. Callers hand in bytes and
//! get values back; "need more input" is a normal return, never an error.

pub mod command;
pub mod dot;
pub mod ehlo;
pub mod ehlo_mask;
pub mod line;
pub mod replies;
pub mod reply;
pub mod response;
pub mod sasl;
pub mod sasl_mechanisms;
pub mod xtext;

pub use command::{parse, Command, CommandError};
pub use dot::{DotMode, DotScanner, Scan, Violation};
pub use ehlo::{Capabilities, Offer};
pub use line::{next_line, LineFramer, LineScan};
pub use reply::{EnhancedStatus, Reply};
pub use response::{parse_reply, ReplyError};

/// STYLE 2: `smtp/` imports no async runtime, opens no socket, reads no clock and logs nothing.
#[cfg(test)]
mod guard {
    use std::path::Path;

    fn sources(dir: &Path, found: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.push((path.display().to_string(), text));
            }
        }
    }

    #[test]
    fn stays_sans_io() {
        // Spelled in pieces so that this file does not match itself.
        let banned = [
            concat!("tok", "io"),
            concat!("std::", "net"),
            concat!("Instant::", "now"),
            concat!("SystemTime::", "now"),
            concat!("trac", "ing::"),
            concat!("print", "ln!"),
        ];
        let mut files = Vec::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/smtp"),
            &mut files,
        );
        assert!(files.len() > 5);
        for (path, text) in files {
            for needle in banned {
                assert!(!text.contains(needle), "{path} uses {needle}");
            }
        }
    }
}
