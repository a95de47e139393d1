//! Observability edges: log output, printable log text, time and address formatting, metrics
//! and the admin HTTP listener that serves them, and the process id that logs and ids name.

pub mod admin_http;
pub mod ip_text;
pub mod log;
pub mod log_batch;
pub mod metrics;
pub mod printable;
pub mod stack_text;
pub mod time;

/// This process's id, read once: `std::process::id()` is a system call each time, and every
/// transaction's instance id names the process.
pub fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cached_process_id_is_this_process_s() {
        assert_eq!(super::process_id(), std::process::id());
        assert_eq!(super::process_id(), super::process_id());
    }
}
