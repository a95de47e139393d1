use super::*;
use proptest::prelude::*;

fn reply_of(line: &str) -> String {
    match parse(line.as_bytes()) {
        Ok(c) => panic!("{line:?} parsed as {c:?}"),
        Err(e) => e.reply().to_string(),
    }
}

fn canonical(line: &str) -> String {
    let mut out = Vec::new();
    parse(line.as_bytes()).unwrap().write_to(&mut out);
    String::from_utf8(out).unwrap()
}

/// Postfix 3.7's replies, checked against a live smtpd (postfix-semantics.md 9.2-9.4, 7.2).
#[test]
fn error_replies_are_postfix_exact() {
    let cases = [
        ("FOO bar", "500 5.5.2 Error: command not recognized"),
        (
            "XCLIENT ADDR=1.2.3.4",
            "500 5.5.2 Error: command not recognized",
        ),
        ("XFORWARD NAME=x", "500 5.5.2 Error: command not recognized"),
        (
            "ETRN example.com",
            "500 5.5.2 Error: command not recognized",
        ),
        ("EXPN staff", "500 5.5.2 Error: command not recognized"),
        ("", "500 5.5.2 Error: bad syntax"),
        ("   ", "500 5.5.2 Error: bad syntax"),
        ("NOOP x\ry", "500 5.5.2 Error: bad syntax"),
        ("MAIL", "501 5.5.4 Syntax: MAIL FROM:<address>"),
        ("MAIL FROM:", "501 5.5.4 Syntax: MAIL FROM:<address>"),
        (
            "MAIL FROM :<a@b.example>",
            "501 5.5.4 Syntax: MAIL FROM:<address>",
        ),
        (
            "MAIL TO:<a@b.example>",
            "501 5.5.4 Syntax: MAIL FROM:<address>",
        ),
        ("MAIL FROM:<a@b", "501 5.1.7 Bad sender address syntax"),
        (
            "MAIL FROM:<a b@c.example>",
            "501 5.1.7 Bad sender address syntax",
        ),
        (
            "MAIL FROM:<a@b.example>SIZE=1",
            "501 5.1.7 Bad sender address syntax",
        ),
        ("RCPT", "501 5.5.4 Syntax: RCPT TO:<address>"),
        ("RCPT TO:", "501 5.5.4 Syntax: RCPT TO:<address>"),
        ("RCPT TO:<>", "501 5.1.3 Bad recipient address syntax"),
        (
            "RCPT TO:<a b@local.test>",
            "501 5.1.3 Bad recipient address syntax",
        ),
        ("RCPT TO:<user@>", "501 5.1.3 Bad recipient address syntax"),
        (
            "MAIL FROM:<a@b.example> FOO=bar",
            "555 5.5.4 Unsupported option: FOO=bar",
        ),
        (
            "RCPT TO:<x@local.test> FOO=1",
            "555 5.5.4 Unsupported option: FOO=1",
        ),
        (
            "RCPT TO:<x@local.test> SIZE=1",
            "555 5.5.4 Unsupported option: SIZE=1",
        ),
        (
            "MAIL FROM:<a@b.example> NOTIFY=NEVER",
            "555 5.5.4 Unsupported option: NOTIFY=NEVER",
        ),
        (
            "MAIL FROM:<a@b.example> BODY=foo",
            "555 5.5.4 Unsupported option: BODY=foo",
        ),
        (
            "MAIL FROM:<a@b.example> SIZE",
            "555 5.5.4 Unsupported option: SIZE",
        ),
        (
            "MAIL FROM:<a@b.example> SMTPUTF8=x",
            "555 5.5.4 Unsupported option: SMTPUTF8=x",
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=abc",
            "501 5.5.4 Bad message size syntax",
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=+1",
            "501 5.5.4 Bad message size syntax",
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=1 SIZE=abc",
            "501 5.5.4 Bad message size syntax",
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=18446744073709551616",
            "552 5.3.4 Message size exceeds file system imposed limit",
        ),
        (
            "MAIL FROM:<a@b.example> RET=foo",
            "501 5.5.4 Bad RET parameter syntax",
        ),
        (
            "MAIL FROM:<a@b.example> RET=FULL RET=HDRS",
            "501 5.5.4 Bad RET parameter syntax",
        ),
        (
            "MAIL FROM:<a@b.example> ENVID=",
            "501 5.5.4 Bad ENVID parameter syntax",
        ),
        (
            "MAIL FROM:<a@b.example> ENVID=a+2",
            "501 5.5.4 Bad ENVID parameter syntax",
        ),
        (
            "MAIL FROM:<a@b.example> ENVID=a ENVID=b",
            "501 5.5.4 Bad ENVID parameter syntax",
        ),
        (
            "MAIL FROM:<a@b.example> AUTH=x AUTH=y",
            "503 5.5.4 Error: multiple AUTH= options",
        ),
        (
            "RCPT TO:<x@local.test> NOTIFY=foo",
            "501 5.5.4 Error: Bad NOTIFY parameter syntax",
        ),
        (
            "RCPT TO:<x@local.test> NOTIFY=NEVER,SUCCESS",
            "501 5.5.4 Error: Bad NOTIFY parameter syntax",
        ),
        (
            "RCPT TO:<x@local.test> NOTIFY=SUCCESS NOTIFY=DELAY",
            "501 5.5.4 Error: Bad NOTIFY parameter syntax",
        ),
        (
            "RCPT TO:<x@local.test> ORCPT=foo",
            "501 5.5.4 Error: Bad ORCPT parameter syntax",
        ),
        (
            "RCPT TO:<x@local.test> ORCPT=;x",
            "501 5.5.4 Error: Bad ORCPT parameter syntax",
        ),
        (
            "RCPT TO:<x@local.test> ORCPT=rfc822;a+zz",
            "501 5.5.4 Error: Bad ORCPT parameter syntax",
        ),
        ("DATA x", "501 5.5.4 Syntax: DATA"),
        ("RSET x", "501 5.5.4 Syntax: RSET"),
        ("VRFY", "501 5.5.4 Syntax: VRFY address [SMTPUTF8]"),
        ("VRFY a b", "501 5.1.3 Bad recipient address syntax"),
        ("AUTH", "501 5.5.4 Syntax: AUTH mechanism"),
        ("AUTH A B C", "501 5.5.4 Syntax: AUTH mechanism"),
        ("STARTTLS x", "501 5.5.4 Syntax: STARTTLS"),
        ("HELO", "501 Syntax: HELO hostname"),
        ("EHLO", "501 Syntax: EHLO hostname"),
        ("EHLO   ", "501 Syntax: EHLO hostname"),
        ("BDAT", "521 5.5.4 Syntax: BDAT count [LAST]"),
        ("BDAT x", "521 5.5.4 Syntax: BDAT count [LAST]"),
        ("BDAT -1", "521 5.5.4 Syntax: BDAT count [LAST]"),
        ("BDAT 1 LASTX", "521 5.5.4 Syntax: BDAT count [LAST]"),
        ("BDAT 1 LAST x", "521 5.5.4 Syntax: BDAT count [LAST]"),
        (
            "BDAT 99999999999999999999999",
            "521 5.5.4 Syntax: BDAT count [LAST]",
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(reply_of(line), expected, "{line:?}");
    }
}

#[test]
fn non_smtp_input_says_goodbye_and_closes() {
    for line in [
        "GET / HTTP/1.0",
        "get /",
        "POST /submit HTTP/1.1",
        "CONNECT mx.example:25 HTTP/1.1",
        "1234 x",
        ".",
        "<html>",
        "Subject: hello",
        "X-Foo:bar",
        "From:<a@b.example>",
    ] {
        let err = parse(line.as_bytes()).unwrap_err();
        assert_eq!(err, CommandError::NonSmtp, "{line:?}");
        assert_eq!(
            err.reply().to_string(),
            "221 2.7.0 Error: I can break rules, too. Goodbye.",
        );
        assert!(err.closes_connection());
    }
    assert!(CommandError::BdatSyntax.closes_connection());
    assert!(!CommandError::Unrecognized.closes_connection());
}

#[test]
fn bad_utf8() {
    let err = parse(b"MAIL FROM:<\xff@b.example>").unwrap_err();
    assert_eq!(err.reply().to_string(), "500 5.5.2 Error: bad UTF-8 syntax");
    // Valid UTF-8 addresses pass (SMTPUTF8).
    assert_eq!(
        parse("MAIL FROM:<\u{e9}@b.example>".as_bytes()).unwrap(),
        Command::Mail {
            from: "\u{e9}@b.example",
            params: MailParams::default()
        }
    );
}

#[test]
fn lenient_address_forms() {
    fn from(line: &str) -> &str {
        match parse(line.as_bytes()).unwrap() {
            Command::Mail { from, .. } => from,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(from("MAIL FROM:<a@b.example>"), "a@b.example");
    assert_eq!(from("MAIL FROM:a@b.example"), "a@b.example");
    assert_eq!(from("MAIL FROM: <a@b.example>"), "a@b.example");
    assert_eq!(from("mail from:<a@b.example>"), "a@b.example");
    assert_eq!(from("MAIL  FROM:<a@b.example>"), "a@b.example");
    assert_eq!(from("MAIL\tFROM:<a@b.example>"), "a@b.example");
    assert_eq!(from("  MAIL FROM:<a@b.example>  "), "a@b.example");
    assert_eq!(from("MAIL FROM:<>"), "");
    assert_eq!(from("MAIL FROM:<@r1,@r2:a@b.example>"), "a@b.example");
    assert_eq!(
        from("MAIL FROM:<\"a>b c\"@b.example>"),
        "\"a>b c\"@b.example"
    );
    assert_eq!(
        canonical("mail from: a@b.example  size=5 body=8bitmime"),
        "MAIL FROM:<a@b.example> SIZE=5 BODY=8BITMIME\r\n"
    );
}

#[test]
fn stricter_than_postfix_where_a_lenient_reading_could_leak_upstream() {
    // Postfix accepts these; relayguard refuses to write them back as an address.
    for line in [
        "MAIL FROM:a@b.example>",
        "MAIL FROM:<<a@b.example>>",
        "MAIL FROM:<a@b.example>>",
        // A second source route after the first: written back as `<@:>` it would be stripped
        // again and read as another address (found by smtp_like_lines_parse_or_fail...).
        "MAIL FROM:@:@:",
        "MAIL FROM:<@a:@b:user@c.example>",
    ] {
        assert_eq!(
            parse(line.as_bytes()),
            Err(CommandError::BadSender),
            "{line}"
        );
    }
    assert_eq!(
        parse(b"RCPT TO:<@a:@b:user@c.example>"),
        Err(CommandError::BadRecipient)
    );
    // One route is dropped, as RFC 5321 has servers do.
    assert_eq!(
        canonical("MAIL FROM:<@a,@b:user@c.example>"),
        "MAIL FROM:<user@c.example>\r\n"
    );
    assert_eq!(
        parse(b"MAIL FROM:<a\x01@b.example>"),
        Err(CommandError::ControlCharacter)
    );
}

#[test]
fn parses_every_command() {
    fn p(l: &str) -> Command<'_> {
        parse(l.as_bytes()).unwrap()
    }
    assert_eq!(p("EHLO client.example"), Command::Ehlo("client.example"));
    assert_eq!(p("helo a b"), Command::Helo("a b"));
    assert_eq!(p("STARTTLS"), Command::StartTls);
    assert_eq!(
        p("AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
        Command::Auth {
            mechanism: "PLAIN",
            initial_response: Some("AGFsaWNlAHNlY3JldA==")
        }
    );
    assert_eq!(
        p("auth login"),
        Command::Auth {
            mechanism: "login",
            initial_response: None
        }
    );
    assert_eq!(
        p("MAIL FROM:<a@b.example> SIZE=123 BODY=7BIT SMTPUTF8 RET=HDRS ENVID=x+2By AUTH=<>"),
        Command::Mail {
            from: "a@b.example",
            params: MailParams {
                size: Some(123),
                body: Some(Body::SevenBit),
                smtputf8: true,
                ret: Some(Ret::Hdrs),
                envid: Some("x+2By"),
                auth: Some("<>"),
            }
        }
    );
    assert_eq!(
        p("RCPT TO:<x@local.test> NOTIFY=failure,delay ORCPT=rfc822;x@local.test"),
        Command::Rcpt {
            to: "x@local.test",
            params: RcptParams {
                notify: Some(Notify {
                    success: false,
                    failure: true,
                    delay: true
                }),
                orcpt: Some("rfc822;x@local.test"),
            }
        }
    );
    assert_eq!(p("DATA"), Command::Data);
    assert_eq!(
        p("BDAT 1000 last"),
        Command::Bdat {
            size: 1000,
            last: true
        }
    );
    assert_eq!(
        p("BDAT 0"),
        Command::Bdat {
            size: 0,
            last: false
        }
    );
    assert_eq!(p("RSET"), Command::Rset);
    assert_eq!(p("NOOP x y"), Command::Noop);
    assert_eq!(p("QUIT x"), Command::Quit);
    assert_eq!(p("VRFY <x@local.test>"), Command::Vrfy("<x@local.test>"));
    assert_eq!(
        p("VRFY x@local.test SMTPUTF8"),
        Command::Vrfy("x@local.test")
    );
    assert_eq!(p("HELP"), Command::Help(None));
    assert_eq!(p("HELP mail"), Command::Help(Some("mail")));
}

#[test]
fn canonical_forms() {
    let cases = [
        ("ehlo  c.example ", "EHLO c.example\r\n"),
        ("mail from:<>", "MAIL FROM:<>\r\n"),
        (
            "RCPT TO:x@local.test notify=never",
            "RCPT TO:<x@local.test> NOTIFY=NEVER\r\n",
        ),
        (
            "RCPT TO:<x@local.test> NOTIFY=delay,success,failure",
            "RCPT TO:<x@local.test> NOTIFY=SUCCESS,FAILURE,DELAY\r\n",
        ),
        ("bdat 12 last", "BDAT 12 LAST\r\n"),
        ("starttls", "STARTTLS\r\n"),
        ("noop whatever", "NOOP\r\n"),
        ("auth plain =", "AUTH plain =\r\n"),
    ];
    for (line, expected) in cases {
        assert_eq!(canonical(line), expected, "{line:?}");
    }
}

#[test]
fn pipelining_group_enders() {
    let ends = |l: &str| parse(l.as_bytes()).unwrap().must_end_group();
    assert!(ends("EHLO x"));
    assert!(ends("DATA"));
    assert!(ends("NOOP"));
    assert!(!ends("MAIL FROM:<>"));
    assert!(!ends("RCPT TO:<a@b>"));
}

fn word() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.-]{1,12}"
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._+-]{1,10}@[a-z0-9.-]{1,10}",
        "\"[a-z <>@]{0,6}\"@[a-z]{1,5}",
        "postmaster",
    ]
}

fn xtext() -> impl Strategy<Value = String> {
    "([!-*,-<>-~]|\\+[0-9A-F]{2}){1,8}"
}

/// size, body, SMTPUTF8, RET, ENVID, AUTH=.
type RawMailParams = (
    Option<u64>,
    Option<u8>,
    bool,
    Option<bool>,
    Option<String>,
    Option<String>,
);

fn mail_params() -> impl Strategy<Value = RawMailParams> {
    (
        any::<Option<u64>>(),
        prop::option::of(0u8..3),
        any::<bool>(),
        any::<Option<bool>>(),
        prop::option::of(xtext()),
        prop::option::of(xtext()),
    )
}

proptest! {
    #[test]
    fn mail_round_trips(from in prop_oneof![address(), Just(String::new())], p in mail_params()) {
        let (size, body, smtputf8, ret, envid, auth) = p;
        let cmd = Command::Mail {
            from: &from,
            params: MailParams {
                size,
                body: body.map(|b| [Body::SevenBit, Body::EightBitMime, Body::BinaryMime][b as usize]),
                smtputf8,
                ret: ret.map(|full| if full { Ret::Full } else { Ret::Hdrs }),
                envid: envid.as_deref(),
                auth: auth.as_deref(),
            },
        };
        let mut out = Vec::new();
        cmd.write_to(&mut out);
        prop_assert!(out.ends_with(b"\r\n"));
        prop_assert_eq!(parse(&out[..out.len() - 2]), Ok(cmd));
    }

    #[test]
    fn rcpt_round_trips(
        to in address(),
        notify in any::<Option<(bool, bool, bool)>>(),
        orcpt in prop::option::of(xtext()),
    ) {
        let orcpt = orcpt.map(|x| format!("rfc822;{x}"));
        let cmd = Command::Rcpt {
            to: &to,
            params: RcptParams {
                notify: notify.map(|(success, failure, delay)| Notify { success, failure, delay }),
                orcpt: orcpt.as_deref(),
            },
        };
        let mut out = Vec::new();
        cmd.write_to(&mut out);
        prop_assert_eq!(parse(&out[..out.len() - 2]), Ok(cmd));
    }

    #[test]
    fn other_commands_round_trip(
        host in word(),
        mech in "[A-Z0-9-]{1,10}",
        ir in prop::option::of("[A-Za-z0-9+/=]{1,20}"),
        size in any::<u64>(),
        last in any::<bool>(),
        which in 0usize..12,
    ) {
        let cmd = [
            Command::Ehlo(&host),
            Command::Helo(&host),
            Command::StartTls,
            Command::Auth { mechanism: &mech, initial_response: ir.as_deref() },
            Command::Data,
            Command::Bdat { size, last },
            Command::Rset,
            Command::Noop,
            Command::Quit,
            Command::Vrfy(&host),
            Command::Help(None),
            Command::Help(Some(&host)),
        ][which];
        let mut out = Vec::new();
        cmd.write_to(&mut out);
        prop_assert_eq!(parse(&out[..out.len() - 2]), Ok(cmd));
    }

    #[test]
    fn any_bytes_parse_or_fail_without_panic(line in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(cmd) = parse(&line) {
            // Whatever parses is written back as one clean line that parses the same.
            let mut out = Vec::new();
            cmd.write_to(&mut out);
            let body = &out[..out.len() - 2];
            prop_assert!(!body.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
            prop_assert_eq!(parse(body), Ok(cmd));
        }
    }

    #[test]
    fn smtp_like_lines_parse_or_fail_without_panic(
        line in "(MAIL FROM:|RCPT TO:|BDAT |AUTH |VRFY |EHLO )[<>\"@a-z :=,;+0-9\\\\]{0,40}"
    ) {
        if let Ok(cmd) = parse(line.as_bytes()) {
            let mut out = Vec::new();
            cmd.write_to(&mut out);
            prop_assert_eq!(parse(&out[..out.len() - 2]), Ok(cmd));
        }
    }
}

#[test]
fn debug_never_shows_the_auth_initial_response() {
    let cmd = parse(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==").unwrap();
    let shown = format!("{cmd:?}");
    assert_eq!(
        shown,
        "Auth { mechanism: \"PLAIN\", initial_response: Some(\"<redacted>\") }"
    );
    let mail = format!("{:?}", parse(b"MAIL FROM:<a@b.example>").unwrap());
    assert!(mail.starts_with("Mail { from: \"a@b.example\""), "{mail}");
}
