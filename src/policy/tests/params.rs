//! main.cf's own parameters: names an admin makes up and refers to with `$name`, and
//! references to names that exist nowhere.

use super::*;

const BASE: &str = "myhostname = mx.relayguard.test\nmydestination = local.test\n";

/// Postfix takes any name that a value refers to (`mynetworks = $office_nets`), in each of
/// its three spellings.
#[test]
fn user_defined_parameters_are_accepted() {
    for reference in ["$office_nets", "${office_nets}", "$(office_nets)"] {
        let p = policy(
            "userdef",
            &format!("{BASE}office_nets = 192.0.2.0/24\nmynetworks = 127.0.0.0/8, {reference}\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"),
            &[],
        );
        assert_eq!(
            rcpt(&p, &who("192.0.2.9"), "u@elsewhere.example"),
            "250 2.1.5 Ok",
            "{reference}"
        );
        assert_eq!(
            rcpt(&p, &who("198.51.100.9"), "u@elsewhere.example"),
            "554 5.7.1 <u@elsewhere.example>: Relay access denied",
            "{reference}"
        );
    }
    // A user-defined parameter may itself refer to another one.
    let p = policy(
        "userdef2",
        &format!("{BASE}mynetworks = 127.0.0.0/8\nmy_checks = check_sender_access inline:{{{{bad@s.test = REJECT no}}}}\nmy_sender_checks = $my_checks, permit\nsmtpd_sender_restrictions = $my_sender_checks\n"),
        &[],
    );
    assert_eq!(
        rcpt(&p, &who("192.0.2.9").from("bad@s.test"), "u@local.test"),
        "554 5.7.1 <bad@s.test>: Sender address rejected: no"
    );
}

/// A reference to a name that is neither set nor a Postfix parameter used to expand to
/// nothing, so the whole sender check vanished; now it is refused, with file and line.
#[test]
fn undefined_references_are_errors() {
    let dir = scratch("undef");
    let main = dir.join("main.cf");
    let e = errors(
        "undef",
        &format!("{BASE}my_sender_check = reject_non_fqdn_sender\nsmtpd_sender_restrictions = $my_sender_checks\n"),
    );
    assert!(
        e.contains(&format!(
            "{}:4: `smtpd_sender_restrictions` refers to `$my_sender_checks`, which is defined nowhere (did you mean `my_sender_check`?)",
            main.display()
        )),
        "{e:?}"
    );
    for spelling in ["${nowhere}", "$(nowhere)", "x $nowhere y"] {
        let e = errors(
            "undef2",
            &format!("{BASE}smtpd_sender_restrictions = {spelling}\n"),
        );
        assert!(
            e.iter().any(|l| l.contains(
                ":3: `smtpd_sender_restrictions` refers to `$nowhere`, which is defined nowhere"
            )),
            "{spelling}: {e:?}"
        );
    }
    // Postfix parameters have built-in values; `${name:text}` asks whether name is set.
    policy(
        "undef3",
        &format!("{BASE}mynetworks = 127.0.0.0/8 ${{not_set_here:192.0.2.0/24}}\nsmtpd_sender_restrictions = check_sender_access inline:{{{{$myhostname = OK}}}}\nrelay_domains = $virtual_alias_maps\n"),
        &[],
    );
    // A lone `$` stops Postfix at start-up ("empty macro name").
    let e = errors(
        "undef4",
        &format!("{BASE}smtpd_helo_restrictions = check_helo_access regexp:{{{{/x$/ REJECT}}}}\n"),
    );
    assert!(
        e.iter().any(|l| l
            .contains(":3: bad value for `smtpd_helo_restrictions`: empty macro name after `$`")),
        "{e:?}"
    );
}

/// A made-up name that nothing refers to is still a mistake (Postfix warns "unused
/// parameter"); the hint says so when no known name is near.
#[test]
fn unreferenced_names_stay_unknown() {
    let e = errors(
        "unref",
        &format!("{BASE}office_nets = 192.0.2.0/24\nmynetwork = 10.0.0.0/8\n"),
    );
    assert!(
        e.iter().any(|l| l.ends_with(":3: unknown parameter `office_nets` (no value refers to it as $office_nets; Postfix would warn: unused parameter)")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.ends_with(":4: unknown parameter `mynetwork` (did you mean `mynetworks`?)")),
        "{e:?}"
    );
}
