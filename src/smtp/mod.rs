//! The SMTP wire format, sans I/O: commands, replies, capabilities and the DATA terminator.
//!
//! Nothing here reads a socket, starts a task, reads a clock or logs. Callers hand in bytes and
//! get values back; "need more input" is a normal return, never an error.

pub mod command;
pub mod decimal;
pub mod dot;
pub mod ehlo;
pub mod ehlo_mask;
pub mod line;
pub mod received;
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

/// STYLE 2: `smtp/` imports no async runtime, opens no socket, reads no clock and logs nothing;
/// it does not even name the standard network module (its addresses are text).
#[cfg(test)]
#[test]
fn stays_sans_io() {
    let mut words = crate::purity::IO_WORDS.to_vec();
    words.push(concat!("std::", "net"));
    assert!(crate::purity::assert_no_io("smtp", &words) > 5);
}
