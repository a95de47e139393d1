//! `check`, the explain tool: runs a scripted session through the same engine offline and
//! prints, stage by stage, the reply the client would get and which rule decided.

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use crate::config::{self, ListenerSnapshot, TlsLevel};
use crate::lookup::Lookups;
use crate::net::resolve::NameResolver;
use crate::policy::{Client, FactRequest, NameStatus};
use crate::session::phase::Rules;
use crate::session::trace::{trace, trace_fetching, Script, StepTrace, Trace};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The client's IP address.
    #[arg(long)]
    pub client: IpAddr,
    /// The client's forward-confirmed name (default: unknown, as without DNS).
    #[arg(long)]
    pub client_name: Option<String>,
    /// The HELO/EHLO name the client gives (none: no HELO is sent).
    #[arg(long)]
    pub helo: Option<String>,
    /// Send HELO instead of EHLO.
    #[arg(long)]
    pub no_esmtp: bool,
    /// Authenticate as this user (the password is assumed right: the upstream judges it).
    #[arg(long)]
    pub login: Option<String>,
    /// The session is TLS-protected (after STARTTLS, or on an implicit-TLS listener).
    #[arg(long)]
    pub tls: bool,
    /// The listener whose policy applies (default: the first one).
    #[arg(long)]
    pub listener: Option<String>,
    /// MAIL FROM address (`""` for the null sender).
    #[arg(long)]
    pub from: String,
    /// RCPT TO addresses, in order.
    #[arg(long = "rcpt", required = true)]
    pub rcpts: Vec<String>,
    /// Also send DATA and end the message.
    #[arg(long)]
    pub data: bool,
    /// Print the stable JSON form (documented in README.md).
    #[arg(long)]
    pub json: bool,
}

pub fn check(config_path: &Path, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let snapshot = match config::load(config_path) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let listener = match &args.listener {
        Some(name) => snapshot
            .listener(name)
            .with_context(|| format!("no listener named `{name}`"))?,
        None => match snapshot.listeners.first() {
            Some(l) => l,
            None => bail!("the config has no listener"),
        },
    };
    let name = args.client_name.clone().unwrap_or_else(|| "unknown".into());
    let status = if args.client_name.is_some() {
        NameStatus::Ok
    } else {
        NameStatus::Permanent
    };
    let client = Client {
        addr: args.client,
        port: 0,
        name: name.clone(),
        reverse_name: name,
        name_status: status,
        reverse_status: status,
    };
    let tls = args.tls || listener.smtpd.tls_level == TlsLevel::Wrapper;
    let mut script = Script::new(client);
    script.helo = args.helo.clone();
    script.esmtp = !args.no_esmtp;
    script.login = args.login.clone();
    script.tls = tls;
    script.listener = listener.name.clone();
    script.sender = Some(args.from.clone());
    script.recipients = args.rcpts.clone();
    script.data = args.data;
    let rules = Rules::of(&listener.smtpd, listener.tls.is_some());
    let mut trace = if listener.policy.can_wait() {
        // The lookups are real: the same resolver and deadlines as a running relayguard.
        let resolver = NameResolver::from_settings(&snapshot.dns)
            .map_err(|e| eprintln!("warning: {e}; DNS lookups will fail"))
            .ok();
        let tables = match snapshot.open_tables(None) {
            Ok(t) => t,
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                return Ok(ExitCode::from(2));
            }
        };
        let lookups = Lookups::with_tables(resolver, tables);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut fetch = |needs: &[FactRequest]| runtime.block_on(lookups.fetch(needs));
        trace_fetching(&listener.policy, &rules, &script, &mut fetch)
    } else {
        trace(&listener.policy, &rules, &script)
    };
    greet_with_banner(listener, &mut trace);
    if rules.tls_required && !tls {
        explain_tls_first(listener, &mut trace);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&trace)?);
    } else {
        print!("{}", render(&trace));
    }
    let refused = trace.steps.iter().any(|s| !s.accepted);
    Ok(if refused {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The session greets with the listener's own banner (smtpd_banner), not the engine's default.
fn greet_with_banner(listener: &ListenerSnapshot, trace: &mut Trace) {
    if let Some(connect) = trace
        .steps
        .first_mut()
        .filter(|s| s.stage == "CONNECT" && s.accepted)
    {
        connect.reply = (&crate::smtp::Reply::plain(220, listener.smtpd.banner.clone())).into();
    }
}

/// Says why a step got 530 on a listener that requires STARTTLS first, and how to trace the
/// session after it.
fn explain_tls_first(listener: &ListenerSnapshot, trace: &mut Trace) {
    let must_starttls = crate::smtp::replies::must_issue_starttls();
    for step in trace
        .steps
        .iter_mut()
        .filter(|s| s.reply.line == must_starttls.to_string())
    {
        step.remark = Some(format!(
            "listener `{}` requires STARTTLS first (use --tls)",
            listener.name
        ));
    }
}

fn render(trace: &Trace) -> String {
    let mut out = format!(
        "client {} on listener {} (smtpd_delay_reject = {}); AUTH offered in EHLO: {}\n",
        trace.client,
        trace.listener,
        if trace.smtpd_delay_reject {
            "yes"
        } else {
            "no"
        },
        if trace.auth_offered { "yes" } else { "no" }
    );
    for step in &trace.steps {
        out.push_str(&render_step(step));
    }
    out
}

fn render_step(step: &StepTrace) -> String {
    let mut out = format!(
        "{:<15} {:<40} -> {}\n",
        step.stage, step.command, step.reply.line
    );
    for list in &step.lists {
        let why = list
            .reason
            .as_ref()
            .map(|r| format!(": {}", r.describe()))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:>17}{} -> {}{why}\n",
            "", list.parameter, list.verdict
        ));
    }
    if let Some(reason) = &step.reason {
        out.push_str(&format!(
            "{:>17}decided by {}: {}\n",
            "",
            reason.parameter,
            reason.describe()
        ));
    }
    for lookup in &step.lookups {
        out.push_str(&format!(
            "{:>17}lookup {} -> {} ({:.1} ms{})\n",
            "",
            lookup.request,
            lookup.answer,
            lookup.elapsed_ms,
            if lookup.cached { ", cached" } else { "" }
        ));
    }
    for note in &step.notes {
        out.push_str(&format!(
            "{:>17}logged: {}: {}\n",
            "", note.action, note.text
        ));
    }
    if let Some(remark) = &step.remark {
        out.push_str(&format!("{:>17}({remark})\n", ""));
    }
    out
}
