//! What `import-postfix` says about a main.cf parameter, master.cf `-o` or restriction word that
//! relayguard does not carry: which of three kinds of thing it is, and why.
//!
//! Data only. Whether a name *is* carried is not decided here but by the implemented sets
//! (`policy::PARAMETERS`, `config::settings::PARAMETERS`), which grow as relayguard does: a name
//! listed below that relayguard has learned is simply carried, and never reaches these tables.

use serde::Serialize;

/// What import did with one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// In the relayguard config (possibly rewritten, as its note says).
    Carried,
    /// Delivery, queue, routing, aliases, local delivery, daemon housekeeping: nothing a
    /// front proxy decides.
    NotFrontProxy,
    /// The MTA behind relayguard still does it, and does it right, because relayguard hands it
    /// the real client (XCLIENT): keep the line on the MTA.
    Upstream,
    /// Postfix decides this at the front, and relayguard cannot: clients are no longer held to it.
    CannotEnforce,
}

/// A name pattern: the whole name, or a prefix.
enum Pattern {
    Exact(&'static str),
    Prefix(&'static str),
}

use Class::{CannotEnforce, NotFrontProxy, Upstream};
use Pattern::{Exact, Prefix};

/// Parameters, first match wins, so exact names come before the prefixes they would also match.
const PARAMETERS: &[(Pattern, Class, &str)] = &[
    // --- The MTA keeps doing these behind relayguard. ---
    // Milters and content filters see the message, which relayguard forwards untouched.
    (Prefix("smtpd_milter"), Upstream, "milters run on the MTA, which receives the message unchanged"),
    (Prefix("non_smtpd_milters"), Upstream, "milters run on the MTA"),
    (Prefix("milter_"), Upstream, "milter settings belong with the milters, on the MTA"),
    (Exact("content_filter"), Upstream, "the after-queue content filter is the MTA's"),
    (Exact("receive_override_options"), Upstream, "the MTA's cleanup options"),
    (Prefix("smtpd_proxy_"), Upstream, "a before-queue filter sits behind the MTA's smtpd"),
    (Exact("header_checks"), Upstream, "header checks run in the MTA's cleanup"),
    (Exact("mime_header_checks"), Upstream, "header checks run in the MTA's cleanup"),
    (Exact("nested_header_checks"), Upstream, "header checks run in the MTA's cleanup"),
    (Exact("body_checks"), Upstream, "body checks run in the MTA's cleanup"),
    (Exact("body_checks_size_limit"), Upstream, "body checks run in the MTA's cleanup"),
    (Prefix("address_verify_"), Upstream, "address verification is the MTA's (reject_unverified_*)"),
    (Prefix("unverified_"), Upstream, "address verification is the MTA's (reject_unverified_*)"),
    // Recipient validation: the MTA answers 550 User unknown at RCPT; relayguard passes that reply.
    (Exact("local_recipient_maps"), Upstream, "the MTA still refuses unknown local users at RCPT"),
    (Exact("relay_recipient_maps"), Upstream, "the MTA still refuses unknown relay recipients at RCPT"),
    (Exact("unknown_local_recipient_reject_code"), Upstream, "the MTA's reply code for unknown users"),
    (Exact("unknown_relay_recipient_reject_code"), Upstream, "the MTA's reply code for unknown relay recipients"),
    (Exact("unknown_virtual_alias_reject_code"), Upstream, "the MTA's reply code for unknown users"),
    (Exact("unknown_virtual_mailbox_reject_code"), Upstream, "the MTA's reply code for unknown users"),
    (Exact("show_user_unknown_table_name"), Upstream, "the MTA's reply text for unknown users"),
    (Prefix("smtpd_reject_unlisted_"), Upstream, "the MTA still refuses unlisted addresses"),
    // relayguard applies anvil's connection, message, recipient and AUTH limits itself (they are
    // carried); the rest of anvil's knobs stay with the MTA. smtpd.c exempts XCLIENT-authorized
    // hosts from its own limits, so the MTA behind relayguard no longer counts per client.
    (Prefix("smtpd_client_"), Upstream, "the MTA's smtpd still reads it; relayguard does not implement this limit"),
    (Prefix("anvil_"), Upstream, "anvil runs beside the MTA's smtpd"),
    // SASL: relayguard relays AUTH to the MTA, which checks the password.
    (Exact("smtpd_sasl_type"), Upstream, "the MTA checks passwords: relayguard relays AUTH to it"),
    (Exact("smtpd_sasl_path"), Upstream, "the MTA checks passwords: relayguard relays AUTH to it"),
    (Exact("smtpd_sasl_service"), Upstream, "the MTA checks passwords: relayguard relays AUTH to it"),
    (Exact("smtpd_sasl_local_domain"), Upstream, "the MTA forms the login name when it checks the password"),
    (Exact("smtpd_sasl_response_limit"), Upstream, "the MTA reads the AUTH exchange"),
    (Exact("smtpd_etrn_restrictions"), Upstream, "ETRN is a queue command, which the MTA answers"),
    (Exact("smtpd_authorized_xclient_hosts"), Upstream, "whom the MTA lets name the client: relayguard, once it fronts the MTA"),
    (Exact("smtpd_authorized_xforward_hosts"), Upstream, "whom the MTA lets forward client facts"),
    (Exact("smtpd_authorized_verp_clients"), Upstream, "VERP is the MTA's delivery business"),
    (Exact("smtpd_expansion_filter"), Upstream, "the MTA's filter for values it expands"),
    (Exact("smtpd_log_access_permit_actions"), Upstream, "logging of the MTA's own decisions"),
    // --- Decided at the front, and relayguard cannot. ---
    (Exact("smtpd_tls_protocols"), CannotEnforce, "which TLS versions clients may use is decided in the handshake relayguard makes"),
    (Exact("smtpd_tls_mandatory_protocols"), CannotEnforce, "which TLS versions clients may use is decided in the handshake relayguard makes"),
    (Exact("smtpd_tls_ciphers"), CannotEnforce, "ciphers are chosen in the handshake relayguard makes"),
    (Exact("smtpd_tls_mandatory_ciphers"), CannotEnforce, "ciphers are chosen in the handshake relayguard makes"),
    (Exact("smtpd_tls_exclude_ciphers"), CannotEnforce, "ciphers are chosen in the handshake relayguard makes"),
    (Exact("smtpd_tls_mandatory_exclude_ciphers"), CannotEnforce, "ciphers are chosen in the handshake relayguard makes"),
    (Exact("smtpd_tls_auth_only"), CannotEnforce, "whether AUTH is offered before TLS is relayguard's EHLO"),
    (Exact("smtpd_tls_req_ccert"), CannotEnforce, "client certificates are asked for in relayguard's handshake"),
    (Exact("smtpd_tls_ask_ccert"), CannotEnforce, "client certificates are asked for in relayguard's handshake"),
    (Exact("smtpd_tls_CAfile"), CannotEnforce, "client certificates are verified in relayguard's handshake"),
    (Exact("smtpd_tls_CApath"), CannotEnforce, "client certificates are verified in relayguard's handshake"),
    (Exact("relay_clientcerts"), CannotEnforce, "client certificates are seen only by relayguard"),
    (Exact("smtpd_sasl_security_options"), CannotEnforce, "which mechanisms are offered is relayguard's EHLO"),
    (Exact("smtpd_sasl_tls_security_options"), CannotEnforce, "which mechanisms are offered is relayguard's EHLO"),
    (Exact("broken_sasl_auth_clients"), CannotEnforce, "the AUTH= line is relayguard's EHLO"),
    (Exact("smtpd_discard_ehlo_keywords"), CannotEnforce, "the EHLO reply is relayguard's"),
    (Exact("smtpd_discard_ehlo_keyword_address_maps"), CannotEnforce, "the EHLO reply is relayguard's"),
    (Exact("smtpd_forbid_unauth_pipelining"), CannotEnforce, "relayguard reads the client's pipelining, the MTA never sees it"),
    (Exact("smtpd_error_sleep_time"), CannotEnforce, "relayguard answers the client's errors itself"),
    (Exact("smtpd_soft_error_limit"), CannotEnforce, "relayguard answers the client's errors itself"),
    (Exact("smtpd_hard_error_limit"), CannotEnforce, "relayguard answers the client's errors itself"),
    (Exact("smtpd_junk_command_limit"), CannotEnforce, "relayguard answers the client's commands itself"),
    (Exact("strict_rfc821_envelopes"), CannotEnforce, "relayguard parses MAIL and RCPT"),
    (Exact("smtpd_reject_footer"), CannotEnforce, "relayguard writes its own refusals"),
    (Exact("smtpd_reject_footer_maps"), CannotEnforce, "relayguard writes its own refusals"),
    // relayguard runs postscreen's tests before the greeting itself (their parameters are
    // carried); the deep protocol tests after it are not postscreen's here, but relayguard's
    // own pipelining, non-SMTP and bare-newline checks apply to every session.
    (Prefix("postscreen_pipelining_"), CannotEnforce, "relayguard's postscreen has no deep protocol tests; smtpd_forbid_unauth_pipelining applies to every session"),
    (Prefix("postscreen_non_smtp_"), CannotEnforce, "relayguard's postscreen has no deep protocol tests; relayguard refuses non-SMTP commands in every session"),
    (Prefix("postscreen_bare_newline_"), CannotEnforce, "relayguard's postscreen has no deep protocol tests; smtpd_forbid_bare_newline applies to every session"),
    (Prefix("postscreen_cache_"), NotFrontProxy, "relayguard keeps postscreen's results in its [state] store"),
    (Prefix("postscreen_"), CannotEnforce, "relayguard's postscreen does not implement this setting"),
    (Prefix("postscreen_"), NotFrontProxy, "postscreen housekeeping; postscreen is not carried yet (abuse control is a later issue)"),
    // Any other smtpd setting shapes the dialogue relayguard now holds.
    (Exact("smtpd_upstream_proxy_timeout"), NotFrontProxy, "relayguard's [limits] handshake_timeout bounds the PROXY header"),
    (Exact("smtpd_starttls_timeout"), NotFrontProxy, "relayguard's [limits] handshake_timeout bounds the TLS handshake"),
    (Exact("smtpd_per_record_deadline"), NotFrontProxy, "relayguard's own timeouts (smtpd_timeout, [limits]) bound each read"),
    (Exact("smtpd_peername_lookup"), NotFrontProxy, "relayguard's [dns] lookups decides whether client names are looked up"),
    (Prefix("smtpd_tls_"), NotFrontProxy, "relayguard's TLS (rustls) manages this itself"),
    (Prefix("smtpd_"), CannotEnforce, "an smtpd dialogue setting relayguard does not implement"),
];

/// Everything else is the MTA's own business, with a reason per family.
const FAMILIES: &[(Pattern, &str)] = &[
    (
        Prefix("alias_"),
        "aliases are expanded by the MTA's local delivery",
    ),
    (Prefix("local_"), "local delivery"),
    (Prefix("virtual_"), "virtual delivery"),
    (Prefix("mailbox_"), "local delivery"),
    (Exact("home_mailbox"), "local delivery"),
    (Exact("mail_spool_directory"), "local delivery"),
    (Exact("luser_relay"), "local delivery"),
    (Exact("fallback_transport"), "local delivery"),
    (Prefix("transport_"), "routing"),
    (Exact("default_transport"), "routing"),
    (Exact("relay_transport"), "routing"),
    (Exact("relayhost"), "routing (outbound mail)"),
    (Prefix("smtp_"), "the MTA's outbound SMTP client"),
    (Prefix("lmtp_"), "the MTA's LMTP client"),
    (Prefix("queue_"), "the queue"),
    (Prefix("maximal_"), "the queue"),
    (Prefix("minimal_"), "the queue"),
    (Prefix("bounce_"), "bounces"),
    (Exact("delay_warning_time"), "the queue"),
    (
        Prefix("canonical_"),
        "address rewriting in the MTA's cleanup",
    ),
    (
        Prefix("sender_canonical_"),
        "address rewriting in the MTA's cleanup",
    ),
    (
        Prefix("recipient_canonical_"),
        "address rewriting in the MTA's cleanup",
    ),
    (
        Prefix("masquerade_"),
        "address rewriting in the MTA's cleanup",
    ),
    (Prefix("sender_dependent_"), "routing"),
    (Exact("relocated_maps"), "routing"),
    (Exact("append_dot_mydomain"), "address rewriting"),
    (Exact("biff"), "local delivery"),
    (
        Prefix("tls_"),
        "the MTA's TLS library settings; relayguard uses rustls",
    ),
    (
        Exact("inet_protocols"),
        "the MTA's own sockets; relayguard listens where [[listener]] says",
    ),
];

/// Why a parameter relayguard does not carry is not carried.
pub fn classify(name: &str) -> (Class, &'static str) {
    if let Some((_, class, why)) = PARAMETERS.iter().find(|(p, _, _)| p.matches(name)) {
        return (*class, why);
    }
    if let Some((_, why)) = FAMILIES.iter().find(|(p, _)| p.matches(name)) {
        return (NotFrontProxy, why);
    }
    if name.ends_with("_destination_recipient_limit")
        || name.ends_with("_destination_concurrency_limit")
    {
        return (NotFrontProxy, "a delivery transport's limit");
    }
    if !crate::policy::is_postfix_parameter(name) {
        return (
            NotFrontProxy,
            "a parameter of your own that nothing carried refers to",
        );
    }
    (
        NotFrontProxy,
        "the MTA's own settings (directories, daemons, delivery)",
    )
}

/// Restriction words relayguard refuses, when import takes them out of a carried list.
const RESTRICTIONS: &[(Pattern, Class, &str)] = &[
    (
        Prefix("reject_unverified_"),
        Upstream,
        "the MTA still probes the address behind XCLIENT",
    ),
    (
        Prefix("reject_unlisted_"),
        Upstream,
        "the MTA still refuses unlisted addresses behind XCLIENT",
    ),
    (
        Exact("reject_multi_recipient_bounce"),
        Upstream,
        "the MTA sees the same envelope and refuses it",
    ),
    (
        Exact("check_etrn_access"),
        Upstream,
        "ETRN is a queue command, which the MTA answers",
    ),
    (Exact("sleep"), NotFrontProxy, "a delay, not a decision"),
];

/// Why a refused restriction word, taken out of a carried list, is (or is not) a loss.
pub fn classify_restriction(word: &str) -> (Class, &'static str) {
    let lower = word.to_ascii_lowercase();
    RESTRICTIONS
        .iter()
        .find(|(p, _, _)| p.matches(&lower))
        .map(|(_, c, why)| (*c, *why))
        .unwrap_or((
            CannotEnforce,
            "it decides at the front and relayguard does not implement it",
        ))
}

impl Pattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            Exact(n) => *n == name,
            Prefix(p) => name.starts_with(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_with_their_reasons() {
        assert_eq!(classify("smtpd_milters").0, Upstream);
        assert_eq!(classify("content_filter").0, Upstream);
        assert_eq!(classify("header_checks").0, Upstream);
        assert_eq!(classify("smtpd_tls_mandatory_protocols").0, CannotEnforce);
        assert_eq!(
            classify("smtpd_tls_session_cache_database").0,
            NotFrontProxy
        );
        assert_eq!(classify("postscreen_dnsbl_sites").0, CannotEnforce);
        assert_eq!(classify("postscreen_cache_map").0, NotFrontProxy);
        assert_eq!(classify("smtpd_upstream_proxy_timeout").0, NotFrontProxy);
        assert_eq!(classify("smtpd_junk_command_limit").0, CannotEnforce);
        assert_eq!(classify("virtual_transport").0, NotFrontProxy);
        assert_eq!(
            classify("dovecot_destination_recipient_limit").0,
            NotFrontProxy
        );
        assert_eq!(classify("queue_directory").0, NotFrontProxy);
        assert_eq!(
            classify("my_own_thing").1,
            "a parameter of your own that nothing carried refers to"
        );
        assert_eq!(
            classify_restriction("reject_unverified_recipient").0,
            Upstream
        );
        assert_eq!(
            classify_restriction("permit_tls_clientcerts").0,
            CannotEnforce
        );
    }
}
