//! Runs a whole scripted session (connect, HELO, AUTH, MAIL, each RCPT, DATA) offline, as the
//! live session does: each command line through the same parser, the same [`phase::admit`]
//! rules and the same policy engine, recording stage by stage the reply and why. The library
//! side of `relayguard check`; no I/O.
//!
//! The replies for accepted commands are Postfix's fixed texts; where the upstream has the last
//! word (AUTH success, the final `250 ... queued as`), the trace says so instead of inventing it.

use serde::Serialize;

use super::phase::{self, Dialogue, Phase, Rules};
use crate::policy::{
    Client, Decision, FactCache, FactRequest, Facts, Fetched, ListTrace, Note, Outcome, Policy,
    Reason, SessionFacts, Stage, TransactionState,
};
use crate::smtp::command::{parse, Command};
use crate::smtp::Reply;

/// What the client does, in order.
#[derive(Clone, Debug)]
pub struct Script {
    pub client: Client,
    /// HELO/EHLO argument; `None` sends no HELO.
    pub helo: Option<String>,
    /// EHLO rather than HELO.
    pub esmtp: bool,
    /// AUTH as this user (the password is assumed right; the upstream judges it).
    pub login: Option<String>,
    pub tls: bool,
    pub listener: String,
    /// MAIL FROM (`""` for the null sender); `None` sends no MAIL.
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    /// Send DATA (and a message) after the recipients.
    pub data: bool,
    pub improper_pipelining: bool,
}

impl Script {
    pub fn new(client: Client) -> Self {
        Script {
            client,
            helo: None,
            esmtp: true,
            login: None,
            tls: false,
            listener: "smtp".into(),
            sender: None,
            recipients: Vec::new(),
            data: false,
            improper_pipelining: false,
        }
    }
}

/// A reply in parts, as JSON shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceReply {
    pub code: u16,
    pub enhanced: Option<String>,
    pub text: String,
    /// The line as the client sees it.
    pub line: String,
}

impl From<&Reply> for TraceReply {
    fn from(r: &Reply) -> Self {
        TraceReply {
            code: r.code,
            enhanced: r.enhanced.map(|e| e.to_string()),
            text: r.text().to_string(),
            line: r.to_string(),
        }
    }
}

/// One command of the scripted session.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepTrace {
    /// `CONNECT`, `EHLO`, `AUTH`, `MAIL`, `RCPT`, `DATA`, `END-OF-MESSAGE`.
    pub stage: &'static str,
    /// The command as sent (`RCPT TO:<u@example.com>`).
    pub command: String,
    pub reply: TraceReply,
    pub accepted: bool,
    /// The restriction lists evaluated for this command (empty when smtpd_delay_reject = yes
    /// postpones them to RCPT).
    pub lists: Vec<ListTrace>,
    pub reason: Option<Reason>,
    pub notes: Vec<Note>,
    /// The reply closes the connection (421/521); nothing after it is sent.
    pub closes: bool,
    /// Where the real reply comes from the upstream, a remark saying so.
    pub remark: Option<String>,
    /// The remote lookups this command made (DNS, tables, policy services), in order.
    pub lookups: Vec<LookupTrace>,
}

/// One remote lookup: what was asked, what came back, and what it cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LookupTrace {
    /// `DNS A 2.0.0.127.zen.test`.
    pub request: String,
    /// `127.0.0.2`, `NXDOMAIN`, `temporary failure: ...`.
    pub answer: String,
    pub elapsed_ms: f64,
    /// Answered from a cache rather than by the server.
    pub cached: bool,
}

impl From<&Fetched> for LookupTrace {
    fn from(f: &Fetched) -> Self {
        LookupTrace {
            request: f.request.describe(),
            answer: f.answer.describe(),
            elapsed_ms: f.elapsed.as_secs_f64() * 1000.0,
            cached: f.cached,
        }
    }
}

/// What a stage's evaluation left: the decision, the lists' verdicts and the facts fetched.
type Explained = (Decision, Vec<ListTrace>, FactCache);

/// The whole explanation; stable JSON for `relayguard check --json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trace {
    /// `NAME[ADDR]`.
    pub client: String,
    pub listener: String,
    /// Whether EHLO would list AUTH for this client.
    pub auth_offered: bool,
    pub smtpd_delay_reject: bool,
    pub steps: Vec<StepTrace>,
}

fn step(stage: &'static str, command: String, reply: Reply, d: Option<Explained>) -> StepTrace {
    let (accepted, lists, reason, notes, lookups) = match d {
        Some((d, lists, answers)) => (
            d.outcome == Outcome::Accept,
            lists,
            d.reason,
            d.notes,
            answers.fetched().iter().map(LookupTrace::from).collect(),
        ),
        None => (reply.code < 400, Vec::new(), None, Vec::new(), Vec::new()),
    };
    StepTrace {
        stage,
        command,
        closes: reply.closes_connection(),
        reply: TraceReply::from(&reply),
        accepted,
        lists,
        reason,
        notes,
        remark: None,
        lookups,
    }
}

fn facts_of<'a>(
    s: &'a Script,
    helo: Option<&'a str>,
    login: Option<&'a str>,
    sender: Option<&'a str>,
    recipient: Option<&'a str>,
) -> Facts<'a> {
    Facts {
        client: &s.client,
        helo,
        esmtp: s.esmtp,
        login,
        tls: s.tls,
        sender,
        recipient,
        listener: &s.listener,
        improper_pipelining: s.improper_pipelining,
        session: SessionFacts {
            recipients: &s.recipients,
            ..SessionFacts::default()
        },
    }
}

fn reply_of(d: &Decision, ok: Reply) -> Reply {
    match &d.outcome {
        Outcome::Accept => ok,
        Outcome::Reject(r) => r.clone(),
    }
}

/// The command line `line` as the session takes it, in the session's order: parsed, refused
/// after a connect-stage reject (`smtpd_delay_reject = no`), then judged by the phase rules in
/// `dialogue`. `Err` is the client's reply when any of them refuses it.
fn admitted<'a>(
    rules: &Rules,
    dialogue: &Dialogue,
    state: &TransactionState,
    line: &'a str,
) -> Result<Command<'a>, Reply> {
    let command = parse(line.as_bytes()).map_err(|e| e.reply())?;
    if let Some(denied) = state.access_denied() {
        return Err(denied);
    }
    phase::admit(rules, dialogue, &command)
        .and_then(|()| phase::admit_path(rules, &command, line.as_bytes()))
        .map_err(|r| r.reply)?;
    Ok(command)
}

/// Runs `script` through [`phase::admit`] and [`Policy::explain`] as a session would, with
/// the same smtpd_delay_reject behaviour, and returns what the client would see and why. A
/// fact from the network is not fetched: it is answered as a temporary lookup failure.
pub fn trace(policy: &Policy, rules: &Rules, script: &Script) -> Trace {
    trace_fetching(policy, rules, script, &mut |_| Vec::new())
}

/// [`trace`], fetching the facts the policy needs from the network with `fetch`.
pub fn trace_fetching(
    policy: &Policy,
    rules: &Rules,
    script: &Script,
    fetch: &mut dyn FnMut(&[FactRequest]) -> Vec<Fetched>,
) -> Trace {
    let mut explain = |stage, facts: &Facts<'_>, state: &mut TransactionState| {
        policy.explain_fetching(stage, facts, state, fetch)
    };
    let mut state = TransactionState::default();
    let mut steps: Vec<StepTrace> = Vec::new();
    let mut helo: Option<&str> = None;
    let mut login: Option<&str> = None;
    let mut dialogue = Dialogue {
        tls: script.tls,
        ..Dialogue::default()
    };
    let facts = |helo, login, sender, rcpt| facts_of(script, helo, login, sender, rcpt);
    let base = facts(None, None, None, None);
    let mut trace = Trace {
        client: format!(
            "{}[{}]",
            script.client.name,
            script.client.addr.to_canonical()
        ),
        listener: script.listener.clone(),
        auth_offered: policy.offers_auth(&base) && (script.tls || !rules.tls_required),
        smtpd_delay_reject: policy.delay_reject,
        steps: Vec::new(),
    };
    let done = |steps: &Vec<StepTrace>| steps.last().is_some_and(|s| s.closes);

    let d = explain(Stage::Connect, &base, &mut state);
    let greeting = Reply::plain(220, format!("{} ESMTP", policy.myhostname));
    steps.push(step(
        "CONNECT",
        "(connect)".into(),
        reply_of(&d.0, greeting),
        Some(d),
    ));

    if let (Some(h), false) = (script.helo.as_deref(), done(&steps)) {
        let verb = if script.esmtp { "EHLO" } else { "HELO" };
        let cmd = format!("{verb} {h}");
        match admitted(rules, &dialogue, &state, &cmd) {
            Err(r) => steps.push(step(verb, cmd, r, None)),
            Ok(_) => {
                let d = explain(Stage::Helo, &facts(Some(h), None, None, None), &mut state);
                if d.0.outcome == Outcome::Accept {
                    helo = Some(h);
                    dialogue.helo = true;
                }
                let ok = Reply::plain(250, policy.myhostname.to_string());
                steps.push(step(verb, cmd, reply_of(&d.0, ok), Some(d)));
            }
        }
    }
    if let (Some(user), false) = (script.login.as_deref(), done(&steps)) {
        let f = facts(helo, None, None, None);
        let admission = admitted(rules, &dialogue, &state, "AUTH PLAIN").map(|_| ());
        let mut s = match (admission, policy.check_auth(&f)) {
            (Err(r), _) => step("AUTH", "AUTH".into(), r, None),
            (Ok(()), Err(refusal)) => {
                let mut s = step("AUTH", "AUTH".into(), refusal.reply.clone(), None);
                s.reason = Some(refusal.reason.clone());
                s
            }
            (Ok(()), Ok(())) => {
                login = Some(user);
                dialogue.authenticated = true;
                let mut s = step(
                    "AUTH",
                    "AUTH".into(),
                    Reply::new(235, (2, 7, 0), "Authentication successful"),
                    None,
                );
                s.remark = Some("relayed to the upstream, which checks the password".into());
                s
            }
        };
        s.command = format!("AUTH (as {user})");
        steps.push(s);
    }
    if let (Some(sender), false) = (script.sender.as_deref(), done(&steps)) {
        let cmd = format!("MAIL FROM:<{sender}>");
        match admitted(rules, &dialogue, &state, &cmd) {
            Err(r) => steps.push(step("MAIL", cmd, r, None)),
            Ok(_) => {
                let d = explain(
                    Stage::Mail,
                    &facts(helo, login, Some(sender), None),
                    &mut state,
                );
                if d.0.outcome == Outcome::Accept {
                    dialogue.phase = Phase::ExpectRcpt { recipients: 0 };
                }
                let ok = Reply::new(250, (2, 1, 0), "Ok");
                steps.push(step("MAIL", cmd, reply_of(&d.0, ok), Some(d)));
            }
        }
    }
    for rcpt in &script.recipients {
        if done(&steps) {
            break;
        }
        let cmd = format!("RCPT TO:<{rcpt}>");
        let to = match admitted(rules, &dialogue, &state, &cmd) {
            Err(r) => {
                steps.push(step("RCPT", cmd, r, None));
                continue;
            }
            Ok(Command::Rcpt { to, .. }) => to.to_owned(),
            Ok(_) => continue,
        };
        let d = explain(
            Stage::Rcpt,
            &facts_of(script, helo, login, script.sender.as_deref(), Some(&to)),
            &mut state,
        );
        if let (Outcome::Accept, Phase::ExpectRcpt { recipients }) = (&d.0.outcome, dialogue.phase)
        {
            dialogue.phase = Phase::ExpectRcpt {
                recipients: recipients + 1,
            };
        }
        let ok = Reply::new(250, (2, 1, 5), "Ok");
        steps.push(step("RCPT", cmd, reply_of(&d.0, ok), Some(d)));
    }
    if script.data && !done(&steps) {
        let f = facts(helo, login, script.sender.as_deref(), None);
        match admitted(rules, &dialogue, &state, "DATA") {
            Err(r) => steps.push(step("DATA", "DATA".into(), r, None)),
            Ok(_) => {
                let d = explain(Stage::Data, &f, &mut state);
                let ok = d.0.outcome == Outcome::Accept;
                let go_ahead = Reply::plain(354, "End data with <CR><LF>.<CR><LF>");
                steps.push(step(
                    "DATA",
                    "DATA".into(),
                    reply_of(&d.0, go_ahead),
                    Some(d),
                ));
                if ok && !done(&steps) {
                    let d = explain(Stage::EndOfData, &f, &mut state);
                    let mut s = step(
                        "END-OF-MESSAGE",
                        ".".into(),
                        reply_of(&d.0, Reply::new(250, (2, 0, 0), "Ok: queued")),
                        Some(d),
                    );
                    if s.accepted {
                        s.remark = Some("the final reply is the upstream's".into());
                    }
                    steps.push(s);
                }
            }
        }
    }
    trace.steps = steps;
    trace
}
