//! tracing-subscriber setup. The `postfix` format writes syslog-shaped lines
//! (`Nov 24 06:33:22 mx postfix/smtpd[4242]: connect from ...`) that fail2ban's stock postfix
//! filters match; `text` is tracing's own format with all fields, for debugging; `json` is one
//! object per line (the message, the Postfix tag where there is one, the session's span fields),
//! for log shippers that index fields.

use std::fmt;
use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use super::printable::PrintableWriter;
use super::time::Civil;
use crate::config::file::LogFormat;

/// Installs the global subscriber, writing to stderr (batched on workers, see
/// [`log_batch`](super::log_batch)). `RUST_LOG` overrides the level.
pub fn init(format: LogFormat, host: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: escape codes in a file break every tool that reads it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(super::log_batch::StderrLines);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Postfix => {
            let format = PostfixFormat {
                host: short_host(host),
                pid: super::process_id(),
            };
            let installed = builder.event_format(format.clone()).try_init();
            if installed.is_ok() {
                let _ = POSTFIX.set(format);
            }
            installed
        }
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// Postfix's maillog_file uses the first label of myhostname.
fn short_host(host: &str) -> String {
    host.split('.').next().unwrap_or(host).to_owned()
}

#[derive(Clone)]
struct PostfixFormat {
    host: String,
    pid: u32,
}

impl PostfixFormat {
    /// Every line's opening, `Nov 24 06:33:22 mx `.
    fn stamp(&self, out: &mut impl fmt::Write) -> fmt::Result {
        syslog_now(|now| write!(out, "{now} {} ", self.host))
    }

    /// The line [`FormatEvent::format_event`] writes for an event with a `tag` field.
    fn tagged_line(&self, line: &mut String, tag: &str, text: fmt::Arguments<'_>) {
        // Writing to a String cannot fail.
        let _ = self.stamp(line);
        let mut out = PrintableWriter(line);
        let _ = write!(out, "{tag}[{}]: ", self.pid);
        let _ = fmt::write(&mut out, text);
        out.0.push('\n');
    }
}

/// The installed `postfix` format, for [`write_tagged`]; unset under the other formats.
static POSTFIX: std::sync::OnceLock<PostfixFormat> = std::sync::OnceLock::new();

/// Writes a tagged line as the `postfix` format's subscriber would (stamp, host, tag, pid,
/// control characters as `?`), straight to the line batch: a relayed message logs three such
/// lines, and tracing's event dispatch and two field visits per line were most of their cost.
/// The caller checks that tracing would log the line. Returns false, having written nothing,
/// under another format.
pub fn write_tagged(tag: &str, text: fmt::Arguments<'_>) -> bool {
    use std::io::Write as _;
    /// A line longer than this (a long pending-input dump) gives its buffer back.
    const LINE_KEPT: usize = 4096;
    thread_local! {
        static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    let Some(format) = POSTFIX.get() else {
        return false;
    };
    LINE.with(|kept| {
        // A line written while another is being put together (its text's Display logging)
        // gets a buffer of its own rather than a panic.
        let mut own = String::new();
        let mut borrowed = kept.try_borrow_mut();
        let line = match borrowed.as_deref_mut() {
            Ok(line) => line,
            Err(_) => &mut own,
        };
        line.clear();
        format.tagged_line(line, tag, text);
        // Nowhere to report a failed log write to, as with the subscriber's.
        let _ = super::log_batch::StderrLines.write_all(line.as_bytes());
        if line.capacity() > LINE_KEPT {
            *line = String::new();
        }
    });
    true
}

/// Writes an event's fields straight into the line, in two passes over them: the first opens
/// the line with the tag (a Postfix-shaped line) or relayguard's own name, the second writes
/// the message and appends any other fields. A line is written for every message relayed, so
/// nothing here allocates on that path but the rare extra fields.
struct LineWriter<'w, 'f> {
    writer: &'w mut Writer<'f>,
    opening: bool,
    pid: u32,
    opened: bool,
    rest: String,
    result: fmt::Result,
}

impl LineWriter<'_, '_> {
    /// Writes `args` [`Printable`](super::printable::Printable): whatever a field or message
    /// carries, the line ends only where this writer ends it.
    fn write(&mut self, args: fmt::Arguments<'_>) {
        let result = fmt::write(&mut PrintableWriter(&mut *self.writer), args);
        self.result = self.result.and(result);
    }
}

impl Visit for LineWriter<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match (self.opening, field.name()) {
            (true, "tag") if !self.opened => {
                self.opened = true;
                let pid = self.pid;
                self.write(format_args!("{value:?}[{pid}]: "));
            }
            (false, "message") => self.write(format_args!("{value:?}")),
            (false, "tag") | (true, _) => {}
            (false, name) => {
                use std::fmt::Write as _;
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

impl<S, N> FormatEvent<S, N> for PostfixFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let stamp = self.stamp(&mut writer);
        let mut line = LineWriter {
            writer: &mut writer,
            opening: true,
            pid: self.pid,
            opened: false,
            rest: String::new(),
            result: stamp,
        };
        event.record(&mut line);
        if !line.opened {
            let level = match *event.metadata().level() {
                Level::ERROR => "error: ",
                Level::WARN => "warning: ",
                _ => "",
            };
            let pid = line.pid;
            line.write(format_args!("relayguard[{pid}]: {level}"));
        }
        line.opening = false;
        event.record(&mut line);
        let rest = std::mem::take(&mut line.rest);
        line.write(format_args!("{rest}"));
        line.result.and(writeln!(writer))
    }
}

/// Calls `f` with the current second in syslog form, formatted once per second per thread.
fn syslog_now<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static STAMP: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    STAMP.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = Civil::from_unix(secs as i64).syslog();
        }
        f(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn tagged_lines_read_as_postfix_and_own_lines_carry_their_fields() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(PostfixFormat {
                host: "mx".into(),
                pid: 42,
            })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let tag = "postfix/submission/smtpd";
            tracing::info!(tag = %tag, "connect from {}", "unknown[192.0.2.1]");
            tracing::warn!(upstream = %"refused", "upstream failed for {}", "x[192.0.2.2]");
            tracing::warn!(upstream = %"a\r\nb", "untagged {}", "c\nd");
        });
        let text = String::from_utf8(out.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().map(|l| &l[16..]).collect();
        assert_eq!(
            lines,
            [
                "mx postfix/submission/smtpd[42]: connect from unknown[192.0.2.1]",
                "mx relayguard[42]: warning: upstream failed for x[192.0.2.2] upstream=refused",
                "mx relayguard[42]: warning: untagged c?d upstream=a??b",
            ]
        );
        // The stamp: `Nov 24 06:33:22 `.
        assert!(text.as_bytes().get(15) == Some(&b' '), "{text}");
    }

    #[test]
    fn a_line_logged_while_another_is_written_does_not_panic() {
        struct LogsWhileShown;
        impl fmt::Display for LogsWhileShown {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                assert!(write_tagged("postfix/smtpd", format_args!("inner")));
                f.write_str("outer")
            }
        }
        let _ = POSTFIX.set(PostfixFormat {
            host: "mx".into(),
            pid: 42,
        });
        assert!(write_tagged(
            "postfix/smtpd",
            format_args!("{}", LogsWhileShown)
        ));
    }

    #[test]
    fn a_tagged_line_written_directly_reads_as_the_subscriber_writes_it() {
        let format = PostfixFormat {
            host: "mx".into(),
            pid: 42,
        };
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(format.clone())
            .finish();
        let tag = "postfix/submission/smtpd";
        let client = "unknown[192.0.2.1]\r\nDec  1 00:00:00 mx postfix/smtpd[1]: forged\u{85}";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(tag = %tag, "{}", format_args!("connect from {client}"));
        });
        let mut direct = String::new();
        format.tagged_line(&mut direct, tag, format_args!("connect from {client}"));
        let through = String::from_utf8(out.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        // Past the stamp (the two may straddle a second).
        assert_eq!(direct.get(16..), through.get(16..), "{through}");
        assert_eq!(
            direct.get(16..),
            Some("mx postfix/submission/smtpd[42]: connect from unknown[192.0.2.1]??Dec  1 00:00:00 mx postfix/smtpd[1]: forged?\n")
        );
    }
}
