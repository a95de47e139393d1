//! `import-postfix`: main.cf (and master.cf) -> the equivalent relayguard config, and an account
//! of every line: carried (maybe rewritten), left to the MTA, not a front-proxy concern, or a
//! control relayguard cannot enforce (a loud warning), as TOML comments or as `--json`.
//!
//! Reads files and prints; what a name is lives in `import_classes`, which services become
//! listeners in `import_master`, value rewriting in `import_rewrite`, the text in `import_render`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::import_classes::{classify, classify_restriction, Class};
use super::import_master::{self, MasterPlan};
use super::import_render;
use super::import_rewrite::rewrite;
use super::import_tables::TableScan;
use crate::config::settings;
use crate::policy::main_cf::{parse_main_cf, parse_master_cf, MasterService};
use crate::policy::{self, ParamMap, ParamValue};

pub fn import(main_cf: &Path, master_cf: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    // Absolute, so errors in the imported config name the file wherever it is checked from.
    let main_cf = std::path::absolute(main_cf).unwrap_or_else(|_| main_cf.to_owned());
    let master_cf = master_cf.map(|m| std::path::absolute(m).unwrap_or_else(|_| m.to_owned()));
    let text = std::fs::read_to_string(&main_cf)
        .with_context(|| format!("reading {}", main_cf.display()))?;
    let params = parse_main_cf(&text, &main_cf)?;
    let services = match &master_cf {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse_master_cf(&text, path)?
        }
        None => Vec::new(),
    };
    let import = Import::build(&params, &services, &main_cf, master_cf.as_deref());
    let text = if json {
        serde_json::to_string_pretty(&import.report())? + "\n"
    } else {
        import_render::toml(&import)
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("writing the output")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// What import did with one main.cf parameter, master.cf `-o`, or restriction word.
#[derive(Debug, Serialize)]
pub struct Line {
    pub name: String,
    pub value: String,
    pub file: String,
    pub line: usize,
    pub class: Class,
    pub why: String,
    /// For `upstream`: the line to keep on the MTA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_on_mta: Option<String>,
    /// For a master.cf `-o`: the listener it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// For a restriction word taken out of a carried list: the word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restriction: Option<String>,
    /// For an access-table entry (`name` is the restriction list, `value` the entry): the table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

/// A value written into `[policy]` or `[listener.policy]`, with the line it came from.
#[derive(Debug)]
pub struct Carried {
    pub name: String,
    pub value: String,
    pub line: usize,
    /// What import changed, for the comment above it.
    pub notes: Vec<String>,
}

/// A listener to write: the master.cf plan and its carried overrides.
#[derive(Debug)]
pub struct Listener {
    pub plan: import_master::FrontListener,
    pub policy: Vec<Carried>,
}

#[derive(Debug)]
pub struct Import {
    pub main_cf: PathBuf,
    pub master_cf: Option<PathBuf>,
    pub lines: Vec<Line>,
    pub policy: Vec<Carried>,
    pub tls: Option<(String, String)>,
    pub listeners: Vec<Listener>,
    pub left_out: Vec<import_master::LeftOut>,
    /// The MTA's new private smtpd port (loopback).
    pub upstream_port: u16,
    /// Lines to change on the MTA.
    pub mta: Vec<String>,
    /// Tables whose queued-message entries the MTA applies (`[tables] mta_actions`).
    pub mta_tables: Vec<String>,
}

/// TLS files relayguard takes in its own `[tls]` table.
const TLS_FILES: [&str; 3] = [
    "smtpd_tls_cert_file",
    "smtpd_tls_key_file",
    "smtpd_tls_chain_files",
];

/// main.cf names import turns into listener settings when a listener uses them.
const PROXY_PARAMETERS: [&str; 2] = [
    "smtpd_upstream_proxy_protocol",
    "postscreen_upstream_proxy_protocol",
];

/// Whether any entry of a list value names a remote table.
fn names_remote_table(value: &str) -> bool {
    value
        .split([',', ' ', '\t', '\n'])
        .any(crate::policy::names_remote_table)
}

impl Import {
    pub fn build(
        params: &ParamMap,
        services: &[MasterService],
        main_cf: &Path,
        master_cf: Option<&Path>,
    ) -> Import {
        let classes = policy::restriction_class_names(params);
        let user_defined = policy::user_defined_parameters(
            std::iter::once(params).chain(services.iter().map(|s| &s.overrides)),
        );
        let is_carried = |name: &str| {
            policy::PARAMETERS.contains(&name)
                || settings::PARAMETERS.contains(&name)
                || crate::limits::anvil::PARAMETERS.contains(&name)
                || (crate::postscreen::PARAMETERS.contains(&name)
                    && !crate::postscreen::DEEP_TESTS.contains(&name)
                    && !name.starts_with("postscreen_cache_"))
                // The key files go to the [tls] table (TLS_FILES), not the policy.
                || (crate::config::tls_params::PARAMETERS.contains(&name)
                    && !TLS_FILES.contains(&name))
                || classes.iter().any(|c| c == name)
                || user_defined.contains(name)
        };
        let is_list = |name: &str| {
            name.ends_with("_restrictions")
                || classes.iter().any(|c| c == name)
                || user_defined.contains(name)
        };
        let plan: MasterPlan = import_master::plan(services, params);
        let any_proxy = plan.listeners.iter().any(|l| l.proxy_protocol);
        let mut lines = Vec::new();
        let mut policy = Vec::new();
        if params.value("compatibility_level").is_none() {
            // Postfix 3.7 runs an unset level as 0 (relay_domains = $mydestination, no
            // smtpd_relay_restrictions, ...); relayguard's own default is 3.6.
            policy.push(Carried {
                name: "compatibility_level".into(),
                value: "0".into(),
                line: 0,
                notes: vec!["not set in main.cf: Postfix's built-in level".into()],
            });
        }
        for (name, pv) in params.iter() {
            let from = Origin::main(pv);
            if TLS_FILES.contains(&name) {
                lines.push(from.line(name, Class::Carried, "into [tls]"));
            } else if PROXY_PARAMETERS.contains(&name) && any_proxy {
                lines.push(from.line(name, Class::Carried, "into the listener's proxy_protocol"));
            } else if name == "postscreen_access_list" && names_remote_table(&pv.value) {
                lines.push(from.line(
                    name,
                    Class::CannotEnforce,
                    "it names a table served by another program, and relayguard's postscreen judges before the greeting without waiting on one: move those entries into cidr: or texthash: tables",
                ));
            } else if is_carried(name) {
                let r = rewrite(&pv.value, is_list(name), &is_carried, params, main_cf);
                lines.extend(removed_lines(&from, name, &r.removed, None));
                lines.push(from.line(name, Class::Carried, &r.expanded.join("; ")));
                policy.push(carried(name, pv, r));
            } else {
                lines.push(from.classified(name, None));
            }
        }
        let mut listeners = Vec::new();
        for l in plan.listeners {
            let mut carried_here = Vec::new();
            for (name, pv) in l.overrides.iter() {
                let from = Origin::master(pv);
                if l.consumed.contains(&name) {
                    lines.push(from.line(name, Class::Carried, "into the listener's settings"));
                } else if is_carried(name) {
                    let r = rewrite(&pv.value, is_list(name), &is_carried, params, main_cf);
                    lines.extend(removed_lines(&from, name, &r.removed, Some(&l.name)));
                    let mut line = from.line(name, Class::Carried, &r.expanded.join("; "));
                    line.listener = Some(l.name.clone());
                    lines.push(line);
                    carried_here.push(carried(name, pv, r));
                } else {
                    lines.push(from.classified(name, Some(&l.name)));
                }
            }
            for (name, pv) in l.other_overrides.iter() {
                if !l.consumed.contains(&name) {
                    lines.push(Origin::master(pv).classified(name, Some(&l.name)));
                }
            }
            listeners.push(Listener {
                plan: l,
                policy: carried_here,
            });
        }
        let mut scan = TableScan::default();
        for c in policy.iter().filter(|c| is_list(&c.name)) {
            let origin = params
                .get(&c.name)
                .map(|pv| pv.origin.clone())
                .unwrap_or_default();
            scan.add_list(&c.name, &c.value, &origin, params);
        }
        for l in &listeners {
            let overlaid = params.overlaid(&l.plan.overrides);
            for c in l.policy.iter().filter(|c| is_list(&c.name)) {
                let origin = l
                    .plan
                    .overrides
                    .get(&c.name)
                    .map(|pv| pv.origin.clone())
                    .unwrap_or_default();
                scan.add_list(&c.name, &c.value, &origin, &overlaid);
            }
        }
        lines.extend(table_lines(&scan));
        let upstream_port = (10025..)
            .find(|p| {
                !plan.taken_ports.contains(p)
                    && !listeners
                        .iter()
                        .any(|l| l.plan.address.ends_with(&format!(":{p}")))
            })
            .unwrap_or(10025);
        let mut import = Import {
            main_cf: main_cf.to_owned(),
            master_cf: master_cf.map(Path::to_owned),
            lines,
            policy,
            tls: tls_files(params),
            listeners,
            left_out: plan.left_out,
            upstream_port,
            mta: Vec::new(),
            mta_tables: scan.mta_tables,
        };
        import.mta = import_render::mta_changes(&import, params);
        import
    }

    fn report(&self) -> Report<'_> {
        Report {
            main_cf: &self.main_cf,
            master_cf: self.master_cf.as_deref(),
            warnings: self
                .lines
                .iter()
                .filter(|l| l.class == Class::CannotEnforce)
                .collect(),
            lines: &self.lines,
            listeners: self
                .listeners
                .iter()
                .map(|l| ListenerReport {
                    name: &l.plan.name,
                    address: &l.plan.address,
                    role: l.plan.role,
                    proxy_protocol: l.plan.proxy_protocol,
                    note: &l.plan.note,
                })
                .collect(),
            left_out: &self.left_out,
            upstream: format!("127.0.0.1:{}", self.upstream_port),
            mta: &self.mta,
            config: import_render::toml(self),
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    main_cf: &'a Path,
    master_cf: Option<&'a Path>,
    /// The controls relayguard cannot enforce, also in `lines`.
    warnings: Vec<&'a Line>,
    lines: &'a [Line],
    listeners: Vec<ListenerReport<'a>>,
    left_out: &'a [import_master::LeftOut],
    upstream: String,
    mta: &'a [String],
    config: String,
}

#[derive(Serialize)]
struct ListenerReport<'a> {
    name: &'a str,
    address: &'a str,
    role: &'a str,
    proxy_protocol: bool,
    note: &'a str,
}

/// Where one value was written, to build its [`Line`].
struct Origin<'a> {
    pv: &'a ParamValue,
    /// main.cf lines are kept on the MTA as `name = value`, master.cf ones as `-o name=value`.
    master: bool,
}

impl<'a> Origin<'a> {
    fn main(pv: &'a ParamValue) -> Self {
        Origin { pv, master: false }
    }

    fn master(pv: &'a ParamValue) -> Self {
        Origin { pv, master: true }
    }

    fn keep(&self, name: &str) -> String {
        if self.master {
            format!("-o {name}={}", self.pv.value)
        } else {
            format!("{name} = {}", self.pv.value)
        }
    }

    fn line(&self, name: &str, class: Class, why: &str) -> Line {
        Line {
            name: name.to_owned(),
            value: self.pv.value.clone(),
            file: self.pv.origin.file.display().to_string(),
            line: self.pv.origin.line,
            class,
            why: why.to_owned(),
            keep_on_mta: None,
            listener: None,
            restriction: None,
            table: None,
        }
    }

    fn classified(&self, name: &str, listener: Option<&str>) -> Line {
        let (class, why) = classify(name);
        let mut line = self.line(name, class, why);
        line.keep_on_mta = (class == Class::Upstream).then(|| self.keep(name));
        line.listener = listener.map(str::to_owned);
        line
    }
}

fn removed_lines(
    from: &Origin<'_>,
    name: &str,
    removed: &[super::import_rewrite::Removed],
    listener: Option<&str>,
) -> Vec<Line> {
    removed
        .iter()
        .map(|r| {
            let first = r.word.split_whitespace().next().unwrap_or(&r.word);
            let (class, why) = classify_restriction(first);
            let mut line = from.line(
                name,
                class,
                &format!("`{}` taken out of the list: {why}", r.word),
            );
            line.restriction = Some(r.word.clone());
            line.listener = listener.map(str::to_owned);
            line.keep_on_mta = (class == Class::Upstream).then(|| from.keep(name));
            line
        })
        .collect()
}

/// The queued-message entries of carried tables: left to the MTA, or refused (DISCARD).
fn table_lines(scan: &TableScan) -> Vec<Line> {
    let left = scan.left_to_mta.iter().map(|e| (e, Class::Upstream, format!("{} acts on the queued message: relayguard answers DUNNO, as Postfix does, and from now on only the MTA, which keeps this restriction, applies it", e.action)));
    let refused = scan.refused.iter().map(|e| (e, Class::CannotEnforce, "DISCARD decides (it accepts the recipient and skips every later restriction): relayguard refuses this table until the entry moves to a table only the MTA reads".to_owned()));
    left.chain(refused)
        .map(|(e, class, why)| Line {
            name: e.parameter.clone(),
            value: format!("{} {}", e.key, e.value),
            file: e.file.display().to_string(),
            line: e.line,
            class,
            why,
            keep_on_mta: Some(format!("{} (with {})", e.parameter, e.table)),
            listener: None,
            restriction: None,
            table: Some(e.table.clone()),
        })
        .collect()
}

fn carried(name: &str, pv: &ParamValue, r: super::import_rewrite::Rewritten) -> Carried {
    let mut notes: Vec<String> = r
        .removed
        .iter()
        .map(|w| format!("`{}` taken out (see above)", w.word))
        .collect();
    notes.extend(r.expanded);
    Carried {
        name: name.to_owned(),
        value: r.value,
        line: pv.origin.line,
        notes,
    }
}

/// The certificate and key for `[tls]`: smtpd_tls_chain_files (key first, then certificates,
/// as Postfix reads them) or smtpd_tls_cert_file/key_file.
fn tls_files(params: &ParamMap) -> Option<(String, String)> {
    if let Some(files) = params.value("smtpd_tls_chain_files") {
        let files: Vec<&str> = files.split([',', ' ']).filter(|s| !s.is_empty()).collect();
        return match files.as_slice() {
            [key, cert, ..] if key.contains("key") => Some((cert.to_string(), key.to_string())),
            [cert, key, ..] => Some((cert.to_string(), key.to_string())),
            _ => None,
        };
    }
    Some((
        params.value("smtpd_tls_cert_file")?.to_owned(),
        params.value("smtpd_tls_key_file")?.to_owned(),
    ))
}
