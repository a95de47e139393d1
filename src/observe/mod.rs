//! Observability edges: log output, printable log text, time formatting, metrics and the
//! admin HTTP listener that serves them.

pub mod admin_http;
pub mod log;
pub mod log_batch;
pub mod metrics;
pub mod printable;
pub mod time;
