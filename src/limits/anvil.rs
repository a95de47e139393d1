//! anvil(8)'s per-client limits as smtpd(8) applies them: what is counted, when a count is
//! over its limit, and the reply and warning Postfix gives then.
//!
//! Counts are per listener (anvil's service) and per [`super::ClientKey`]. A count includes
//! the event being judged, and a limit is exceeded when the count is greater than it, as in
//! smtpd.c (`rate > var_smtpd_cmail_limit`); 0 turns a limit off.

use std::time::Duration;

use crate::smtp::Reply;

/// The events anvil counts for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// A connection, judged by both smtpd_client_connection_count_limit (concurrent) and
    /// smtpd_client_connection_rate_limit.
    Connect,
    /// A MAIL command (smtpd_client_message_rate_limit).
    Message,
    /// A RCPT command (smtpd_client_recipient_rate_limit).
    Recipient,
    /// An AUTH command (smtpd_client_auth_rate_limit).
    Auth,
}

impl Event {
    /// Every rate counter, in the order stores keep them.
    pub const RATES: [Event; 4] = [
        Event::Connect,
        Event::Message,
        Event::Recipient,
        Event::Auth,
    ];

    /// A short stable name, for store keys and log fields.
    pub fn name(self) -> &'static str {
        match self {
            Event::Connect => "conn",
            Event::Message => "mail",
            Event::Recipient => "rcpt",
            Event::Auth => "auth",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One listener's anvil limits, compiled from its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnvilLimits {
    /// smtpd_client_connection_count_limit (Postfix's default: 50).
    pub connection_count: u32,
    /// smtpd_client_connection_rate_limit, per time unit.
    pub connection_rate: u32,
    /// smtpd_client_message_rate_limit.
    pub message_rate: u32,
    /// smtpd_client_recipient_rate_limit.
    pub recipient_rate: u32,
    /// smtpd_client_auth_rate_limit.
    pub auth_rate: u32,
    /// anvil_rate_time_unit (60s).
    pub time_unit: Duration,
}

/// The Postfix parameters [`AnvilLimits`] reads.
pub const PARAMETERS: &[&str] = &[
    "smtpd_client_connection_count_limit",
    "smtpd_client_connection_rate_limit",
    "smtpd_client_message_rate_limit",
    "smtpd_client_recipient_rate_limit",
    "smtpd_client_auth_rate_limit",
    "anvil_rate_time_unit",
];

impl Default for AnvilLimits {
    fn default() -> Self {
        AnvilLimits {
            connection_count: 50,
            connection_rate: 0,
            message_rate: 0,
            recipient_rate: 0,
            auth_rate: 0,
            time_unit: Duration::from_secs(60),
        }
    }
}

/// A limit a client went over: which, the count anvil reported, and the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    ConnectionCount { count: u32, limit: u32 },
    ConnectionRate { rate: u32, limit: u32 },
    MessageRate { rate: u32, limit: u32 },
    RecipientRate { rate: u32, limit: u32 },
    AuthRate { rate: u32, limit: u32 },
}

impl AnvilLimits {
    /// Whether any limit is on: with none, sessions need not count anything.
    pub fn any(&self) -> bool {
        self.connection_count > 0 || self.counts_rates()
    }

    /// Whether any rate limit is on.
    pub fn counts_rates(&self) -> bool {
        Event::RATES.iter().any(|e| self.rate_limit(*e) > 0)
    }

    /// The rate limit for `event` (0: off).
    pub fn rate_limit(&self, event: Event) -> u32 {
        match event {
            Event::Connect => self.connection_rate,
            Event::Message => self.message_rate,
            Event::Recipient => self.recipient_rate,
            Event::Auth => self.auth_rate,
        }
    }

    /// Judges a connection: `count` concurrent sessions and `rate` connections in the
    /// window, both including this one. Concurrency is judged first, as in smtpd.c.
    pub fn judge_connect(&self, count: u32, rate: u32) -> Option<Exceeded> {
        if self.connection_count > 0 && count > self.connection_count {
            return Some(Exceeded::ConnectionCount {
                count,
                limit: self.connection_count,
            });
        }
        let limit = self.connection_rate;
        (limit > 0 && rate > limit).then_some(Exceeded::ConnectionRate { rate, limit })
    }

    /// Judges a MAIL, RCPT or AUTH whose rate (this one included) is `rate`.
    pub fn judge(&self, event: Event, rate: u32) -> Option<Exceeded> {
        let limit = self.rate_limit(event);
        if limit == 0 || rate <= limit {
            return None;
        }
        Some(match event {
            Event::Connect => Exceeded::ConnectionRate { rate, limit },
            Event::Message => Exceeded::MessageRate { rate, limit },
            Event::Recipient => Exceeded::RecipientRate { rate, limit },
            Event::Auth => Exceeded::AuthRate { rate, limit },
        })
    }
}

impl Exceeded {
    /// smtpd's reply; `addr` is the client's address as Postfix prints it.
    pub fn reply(&self, myhostname: &str, addr: &str) -> Reply {
        match self {
            Exceeded::ConnectionCount { .. } | Exceeded::ConnectionRate { .. } => Reply::new(
                421,
                (4, 7, 0),
                format!("{myhostname} Error: too many connections from {addr}"),
            ),
            Exceeded::MessageRate { .. } => {
                Reply::new(450, (4, 7, 1), format!("Error: too much mail from {addr}"))
            }
            Exceeded::RecipientRate { .. } => Reply::new(
                450,
                (4, 7, 1),
                format!("Error: too many recipients from {addr}"),
            ),
            Exceeded::AuthRate { .. } => Reply::new(
                450,
                (4, 7, 1),
                format!("Error: too many AUTH commands from {addr}"),
            ),
        }
    }

    /// smtpd's warning, after `warning: `; `namaddr` is `name[addr]`, `service` the listener.
    pub fn warning(&self, namaddr: &str, service: &str) -> String {
        let (what, n) = match *self {
            Exceeded::ConnectionCount { count, .. } => ("Connection concurrency limit", count),
            Exceeded::ConnectionRate { rate, .. } => ("Connection rate limit", rate),
            Exceeded::MessageRate { rate, .. } => ("Message delivery request rate limit", rate),
            Exceeded::RecipientRate { rate, .. } => ("Recipient address rate limit", rate),
            Exceeded::AuthRate { rate, .. } => ("AUTH command rate limit", rate),
        };
        format!("{what} exceeded: {n} from {namaddr} for service {service}")
    }

    /// A short name for structured log fields and metrics.
    pub fn limit_name(&self) -> &'static str {
        match self {
            Exceeded::ConnectionCount { .. } => "smtpd_client_connection_count_limit",
            Exceeded::ConnectionRate { .. } => "smtpd_client_connection_rate_limit",
            Exceeded::MessageRate { .. } => "smtpd_client_message_rate_limit",
            Exceeded::RecipientRate { .. } => "smtpd_client_recipient_rate_limit",
            Exceeded::AuthRate { .. } => "smtpd_client_auth_rate_limit",
        }
    }

    /// The count and the limit it went over.
    pub fn values(&self) -> (u32, u32) {
        match *self {
            Exceeded::ConnectionCount { count, limit } => (count, limit),
            Exceeded::ConnectionRate { rate, limit }
            | Exceeded::MessageRate { rate, limit }
            | Exceeded::RecipientRate { rate, limit }
            | Exceeded::AuthRate { rate, limit } => (rate, limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_exceeded_past_it_and_zero_is_off() {
        let limits = AnvilLimits {
            connection_count: 2,
            connection_rate: 3,
            message_rate: 1,
            ..AnvilLimits::default()
        };
        assert_eq!(limits.judge_connect(2, 3), None);
        assert_eq!(
            limits.judge_connect(3, 9),
            Some(Exceeded::ConnectionCount { count: 3, limit: 2 }),
            "concurrency is judged first"
        );
        assert_eq!(
            limits.judge_connect(1, 4),
            Some(Exceeded::ConnectionRate { rate: 4, limit: 3 })
        );
        assert_eq!(limits.judge(Event::Message, 1), None);
        assert_eq!(
            limits.judge(Event::Message, 2),
            Some(Exceeded::MessageRate { rate: 2, limit: 1 })
        );
        assert_eq!(limits.judge(Event::Recipient, 1_000_000), None, "off");
        let off = AnvilLimits {
            connection_count: 0,
            ..AnvilLimits::default()
        };
        assert!(!off.any());
        assert!(AnvilLimits::default().any(), "Postfix's 50 concurrent");
    }

    #[test]
    fn replies_and_warnings_are_smtpds() {
        let e = Exceeded::ConnectionRate { rate: 4, limit: 3 };
        assert_eq!(
            e.reply("mx.test", "192.0.2.1").to_string(),
            "421 4.7.0 mx.test Error: too many connections from 192.0.2.1"
        );
        assert_eq!(
            e.warning("unknown[192.0.2.1]", "smtp"),
            "Connection rate limit exceeded: 4 from unknown[192.0.2.1] for service smtp"
        );
        let cases = [
            (
                Exceeded::ConnectionCount {
                    count: 51,
                    limit: 50,
                },
                "421 4.7.0 mx.test Error: too many connections from 192.0.2.1",
                "Connection concurrency limit exceeded: 51 from",
            ),
            (
                Exceeded::MessageRate { rate: 2, limit: 1 },
                "450 4.7.1 Error: too much mail from 192.0.2.1",
                "Message delivery request rate limit exceeded: 2 from",
            ),
            (
                Exceeded::RecipientRate { rate: 2, limit: 1 },
                "450 4.7.1 Error: too many recipients from 192.0.2.1",
                "Recipient address rate limit exceeded: 2 from",
            ),
            (
                Exceeded::AuthRate { rate: 2, limit: 1 },
                "450 4.7.1 Error: too many AUTH commands from 192.0.2.1",
                "AUTH command rate limit exceeded: 2 from",
            ),
        ];
        for (e, reply, warning) in cases {
            assert_eq!(e.reply("mx.test", "192.0.2.1").to_string(), reply);
            assert!(e.warning("x[192.0.2.1]", "smtp").starts_with(warning));
        }
    }
}
