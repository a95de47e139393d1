//! The SMTP wire format, sans I/O: commands, replies, capabilities and the DATA terminator.
//!
//! Nothing here reads a socket, starts a task, reads a clock or logs. Callers hand in bytes and
//! get values back; "need more input" is a normal return, never an error.

pub mod command;
pub mod dot;
pub mod ehlo;
pub mod line;
pub mod replies;
pub mod reply;
pub mod response;
pub mod sasl;

pub use command::{parse, Command, CommandError};
pub use dot::{DotMode, DotScanner, Scan, Violation};
pub use ehlo::{Capabilities, Offer};
pub use line::{next_line, LineFramer, LineScan};
pub use reply::{EnhancedStatus, Reply};
pub use response::{parse_reply, ReplyError};
