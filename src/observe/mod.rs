//! Observability edges: log output, printable log text, time formatting, metrics and the
//! admin HTTP listener that serves them.

pub mod admin_http;
pub mod log;
pub mod log_batch;
pub mod metrics;
pub mod printable;
pub mod time;

/// This process's id, read once: `std::process::id()` is a system call each time, and every
/// transaction's instance id names the process.
pub fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}
