//! postscreen's words and records: its replies, the pieces of its log lines (escaped input,
//! delays as format_tv writes them) and the pass-cache entry a session leaves behind.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use crate::limits::Millis;
use crate::smtp::Reply;
use crate::state::PostscreenPass;

/// `[addr]:port`, as postscreen names a client.
pub fn client(addr: IpAddr, port: u16) -> String {
    format!("[{}]:{port}", addr.to_canonical())
}

/// `ALLOWLISTED`, `DENYLISTED`, or with respectful_logging = no the older words.
pub fn listed(respectful: bool, allowed: bool) -> &'static str {
    match (respectful, allowed) {
        (true, true) => "ALLOWLISTED",
        (true, false) => "DENYLISTED",
        (false, true) => "WHITELISTED",
        (false, false) => "BLACKLISTED",
    }
}

/// The permanently denylisted client's reply: 521 (drop) or 550 (enforce).
pub fn denylisted_reply(code: u16) -> Reply {
    Reply::new(code, (5, 3, 2), "Service currently unavailable")
}

/// The pregreeting client's reply: 521 (drop) or 550 (enforce).
pub fn pregreet_reply(code: u16) -> Reply {
    Reply::new(code, (5, 5, 1), "Protocol error")
}

/// The DNSBL-listed client's reply, naming the site of the largest weight that listed it
/// (`(null)` when none did, as C's printf shows it, with a threshold of 0 or less).
pub fn dnsbl_reply(code: u16, addr: IpAddr, site: Option<&str>) -> Reply {
    Reply::new(
        code,
        (5, 7, 1),
        format!(
            "Service unavailable; client [{}] blocked using {}",
            addr.to_canonical(),
            site.unwrap_or("(null)")
        ),
    )
}

/// soft_bounce as psc_send_reply applies it: a 5 in the code or the enhanced status becomes 4.
pub fn soften(mut reply: Reply) -> Reply {
    if (500..600).contains(&reply.code) {
        reply.code -= 100;
    }
    if let Some(e) = reply.enhanced.as_mut().filter(|e| e.class == 5) {
        e.class = 4;
    }
    reply
}

/// Bytes as Postfix's escape() shows them: printable ASCII as is (a backslash doubled),
/// `\a \b \f \n \r \t \v`, anything else as a three-digit octal escape.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x0b => out.push_str("\\v"),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out
}

/// A delay as format_tv() writes it with postscreen's 2 significant digits and
/// delay_logging_resolution_limit's default of 2 decimals: `0.53`, `1.2`, `12`, `0`.
pub fn delay(elapsed: Duration) -> String {
    const MILLION: u64 = 1_000_000;
    const WIDTH: u64 = 100;
    let mut sec = elapsed.as_secs();
    let mut usec = u64::from(elapsed.subsec_micros());
    let mut ures = MILLION / 100;
    if sec > 0 {
        let mut n = 1;
        while sec >= n && n <= WIDTH / 10 {
            n *= 10;
        }
        ures = (MILLION / WIDTH) * n;
    }
    if ures > 1 {
        usec += ures / 2;
        if usec >= MILLION {
            sec += 1;
            usec -= MILLION;
        }
    }
    let mut out = sec.to_string();
    if usec >= ures {
        out.push('.');
        let (mut rem, mut n) = (usec, MILLION / 10);
        while rem >= ures && n > 0 {
            out.push(char::from(b'0' + (rem / n) as u8));
            rem %= n;
            n /= 10;
        }
    }
    out
}

/// `PREGREET 11 after 0.01 from [addr]:port: EHLO x\r\n`: the input already there, escaped,
/// its first 100 characters.
pub fn pregreet_line(input: &[u8], elapsed: Duration, who: &str) -> String {
    let shown = escape(input);
    let cut = shown
        .char_indices()
        .nth(100)
        .map_or(shown.as_str(), |(i, _)| &shown[..i]);
    format!(
        "PREGREET {} after {} from {who}: {cut}",
        input.len(),
        delay(elapsed)
    )
}

/// The cache entry after a session: the old entry with the tests passed now renewed.
pub fn renewed(
    cached: Option<PostscreenPass>,
    pregreet: Option<Millis>,
    dnsbl: Option<Millis>,
) -> PostscreenPass {
    let mut pass = cached.unwrap_or_default();
    if pregreet.is_some() {
        pass.pregreet = pregreet;
    }
    if dnsbl.is_some() {
        pass.dnsbl = dnsbl;
    }
    pass
}

/// psc_allowlist_non_dnsbl: a client allowlisted by its DNS score has passed every other test
/// until `until`, or later where it had already passed one for longer.
pub fn allowlisted(mut pass: PostscreenPass, until: Millis) -> PostscreenPass {
    for test in [
        &mut pass.pregreet,
        &mut pass.pipelining,
        &mut pass.non_smtp,
        &mut pass.bare_newline,
    ] {
        *test = Some(test.map_or(until, |t| t.max(until)));
    }
    pass
}
