//! tracing-subscriber setup. The `postfix` format writes syslog-shaped lines
//! (`Nov 24 06:33:22 mx postfix/smtpd[4242]: connect from ...`) that fail2ban's stock postfix
//! filters match; `text` is tracing's own format with all fields, for debugging.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use super::time::Civil;

/// Installs the global subscriber, writing to stderr. `RUST_LOG` overrides the level.
pub fn init(format: &str, host: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        "text" => builder.try_init(),
        _ => builder
            .event_format(PostfixFormat {
                host: short_host(host),
                pid: std::process::id(),
            })
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// Postfix's maillog_file uses the first label of myhostname.
fn short_host(host: &str) -> String {
    host.split('.').next().unwrap_or(host).to_owned()
}

struct PostfixFormat {
    host: String,
    pid: u32,
}

#[derive(Default)]
struct Fields {
    message: String,
    tag: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "tag" => self.tag = Some(value.to_owned()),
            name => self.rest.push_str(&format!(" {name}={value}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "tag" => self.tag = Some(format!("{value:?}")),
            name => self.rest.push_str(&format!(" {name}={value:?}")),
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
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = Civil::now().syslog();
        match fields.tag {
            // A Postfix-shaped event: the message is the whole line, as smtpd would log it.
            Some(tag) => writeln!(
                writer,
                "{now} {} {tag}[{}]: {}",
                self.host, self.pid, fields.message
            ),
            None => {
                let level = match *event.metadata().level() {
                    Level::ERROR => "error: ",
                    Level::WARN => "warning: ",
                    _ => "",
                };
                writeln!(
                    writer,
                    "{now} {} relayguard[{}]: {level}{}{}",
                    self.host, self.pid, fields.message, fields.rest
                )
            }
        }
    }
}
