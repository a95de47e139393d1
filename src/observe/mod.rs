//! Observability edges: log output, printable log text, and time formatting.

pub mod log;
pub mod printable;
pub mod time;
