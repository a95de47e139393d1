//! Observability edges: log output and time formatting.

pub mod log;
pub mod time;
