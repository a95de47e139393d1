//! End-to-end load harness: the same workloads straight to a sink (baseline), through HAProxy
//! in TCP mode (an L4 splice that parses nothing), and through relayguard in each way it tells
//! the upstream the client (XCLIENT, the mode users run; PROXY v2; none), in one run.
//!
//! `cargo bench --bench load` runs the full set (about 15 minutes; `LOAD_QUICK=1` for a
//! short run; `LOAD_ONLY=many,throughput` for some rows: one, many, policy, throughput, idle, big,
//! latency, scale (which also draws docs/bench/scale.png in a full run, `LOAD_PLOT=file`
//! elsewhere); `LOAD_RELAYGUARD=path` to measure another build; `LOAD_UPSTREAM='open_ahead =
//! "ehlo"'` for more `[upstream]` lines, `;`-separated) and prints a markdown table of
//! absolute numbers and relayguard/haproxy ratios. Every row runs against the bench's own sink
//! (sink.rs), which answers XCLIENT with 220 and reads a PROXY v2 header as Postfix does;
//! Postfix's smtp-sink cannot stand in (it offers XCLIENT without ADDR and answers it 250).
//! Ratios are reported, never asserted; a measurement that fails (a refused message, a
//! process that would not start) fails the run. Under `cargo test --all-targets` (no `--bench`
//! argument) it runs a smoke pass with tiny counts so that CI proves the harness still works.
//! Everything runs on 127.0.0.1; every process is started here and killed by PID.

#[path = "../../tests/support/mod.rs"]
mod support;

mod plot;
mod policy;
mod procs;
mod scale;
mod sink;
mod workloads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::relayguard::{Identity, Relayguard};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Haproxy,
    Relayguard(Identity),
}

/// The columns of every row: the sink alone, the splice, relayguard in each identity mode.
const PATHS: [Path; 5] = [
    Path::Direct,
    Path::Haproxy,
    Path::Relayguard(Identity::Xclient),
    Path::Relayguard(Identity::ProxyV2),
    Path::Relayguard(Identity::None),
];
const COLUMNS: [&str; 5] = ["direct", "haproxy", "rg xclient", "rg proxy-v2", "rg none"];
/// The relayguard columns, each compared with HAProxy's.
const RG: std::ops::Range<usize> = 2..5;
type Cells = [Cell; 5];

/// Counts for one run; every loop in the workloads is bounded by these and by `limit`.
struct Sizes {
    name: &'static str,
    one_per_conn: u32,
    many_per_conn: u32,
    tp_sessions: usize,
    tp_messages: usize,
    tp_size: usize,
    idle: usize,
    big: usize,
    latency_runs: usize,
    limit: Duration,
    scale: scale::ScaleSizes,
}

const FULL: Sizes = Sizes {
    name: "full",
    one_per_conn: 20_000,
    many_per_conn: 100_000,
    tp_sessions: 2,
    tp_messages: 30,
    tp_size: 10 << 20,
    idle: 2_000,
    big: 100 << 20,
    latency_runs: 2_000,
    limit: Duration::from_secs(120),
    scale: scale::ScaleSizes {
        idle: &[100, 1_000, 3_000, 9_000, 10_000],
        // 10,000 busy sessions need 20,000 descriptors in each proxy: more than this machine's
        // hard limit, which a container's root cannot raise.
        busy: &[100, 1_000, 3_000, 9_000],
        busy_per_session: 4,
        busy_min_messages: 10_000,
        workers: &[1, 2, 4],
        rounds: 3,
    },
};

const QUICK: Sizes = Sizes {
    name: "quick",
    one_per_conn: 2_000,
    many_per_conn: 10_000,
    tp_sessions: 2,
    tp_messages: 2,
    tp_size: 10 << 20,
    idle: 2_000,
    big: 100 << 20,
    latency_runs: 100,
    limit: Duration::from_secs(60),
    scale: scale::ScaleSizes {
        idle: &[100, 1_000, 9_000, 10_000],
        busy: &[100, 1_000, 9_000],
        busy_per_session: 2,
        busy_min_messages: 4_000,
        workers: &[1, 2, 4],
        rounds: 1,
    },
};

const SMOKE: Sizes = Sizes {
    name: "smoke (cargo test)",
    one_per_conn: 100,
    many_per_conn: 400,
    tp_sessions: 1,
    tp_messages: 1,
    tp_size: 1 << 20,
    idle: 50,
    big: 5 << 20,
    latency_runs: 20,
    limit: Duration::from_secs(30),
    scale: scale::ScaleSizes {
        idle: &[20, 50],
        busy: &[20, 50],
        busy_per_session: 2,
        busy_min_messages: 0,
        workers: &[1, 2],
        rounds: 1,
    },
};

/// A front end for one path; holds its process so it is killed when dropped.
struct Front {
    addr: SocketAddr,
    pid: Option<u32>,
    _haproxy: Option<procs::Proc>,
    _relayguard: Option<Relayguard>,
}

struct Ctx {
    binary: PathBuf,
    /// `[upstream] warm_connections` for the next relayguard started.
    warm: usize,
    /// The restrictions of the next relayguard started, when not the plain relay check.
    policy: Option<policy::PolicyFixture>,
    /// Worker threads of the next proxies started (HAProxy's nbthread, relayguard's `[limits]
    /// workers`); each one's default (one per core) when unset.
    threads: Option<usize>,
    haproxy_maxconn: usize,
    /// The open-files limit this process and its children run with.
    nofile: u64,
    relayguard_unavailable: Option<String>,
    /// `LOAD_ONLY`: the row keys to run; all when unset.
    only: Option<Vec<String>>,
}

impl Ctx {
    fn wants(&self, row: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k == row))
    }

    fn front(&mut self, path: Path, sink: SocketAddr) -> Result<Front, String> {
        match path {
            Path::Direct => Ok(Front {
                addr: sink,
                pid: None,
                _haproxy: None,
                _relayguard: None,
            }),
            Path::Haproxy => {
                let p = procs::haproxy(sink, self.haproxy_maxconn, self.threads)?;
                Ok(Front {
                    addr: p.addr,
                    pid: Some(p.pid()),
                    _haproxy: Some(p),
                    _relayguard: None,
                })
            }
            Path::Relayguard(identity) => {
                if let Some(why) = &self.relayguard_unavailable {
                    return Err(why.clone());
                }
                let policy = self.policy.as_ref();
                let threads = self.threads;
                match procs::relayguard(&self.binary, sink, self.warm, identity, policy, threads) {
                    Ok(rg) => Ok(Front {
                        addr: rg.addr("smtp"),
                        pid: rg.pid(),
                        _haproxy: None,
                        _relayguard: Some(rg),
                    }),
                    Err(e) => {
                        eprintln!("relayguard did not start:\n{e}");
                        let why = "not available".to_string();
                        self.relayguard_unavailable = Some(why.clone());
                        Err(why)
                    }
                }
            }
        }
    }
}

type Cell = Option<Result<f64, String>>;

/// Message-rate and throughput rows run this many rounds per path and report the median: with
/// three, one disturbed round in two decided a row, and the one-message row swung 0.85-1.01.
const RATE_ROUNDS: usize = 5;
/// `warm_connections` for the second relayguard in the latency rows.
const WARM: usize = 2;

/// The median of the samples, or the first error.
fn median(samples: Vec<Result<f64, String>>) -> Result<f64, String> {
    let mut values = samples.into_iter().collect::<Result<Vec<f64>, String>>()?;
    values.sort_by(|a, b| a.total_cmp(b));
    values
        .get(values.len() / 2)
        .copied()
        .ok_or_else(|| "no sample".to_string())
}

/// How a row's relayguard cells are set against HAProxy's.
#[derive(Clone, Copy)]
enum Compare {
    /// value / haproxy's value.
    Ratio,
    /// (value - direct) / (haproxy - direct): what each proxy adds to the path.
    Added,
}

/// One table row: a value per path (None where the path has no meaning), and how to compare.
struct Row {
    label: String,
    unit: &'static str,
    cells: Cells,
    compare: Compare,
    target: &'static str,
}

impl Row {
    /// Relayguard column `i` against HAProxy, as the row compares.
    fn ratio(&self, i: usize) -> Cell {
        let added = |c: &Cell| match (c, &self.cells[0]) {
            (Some(Ok(v)), Some(Ok(d))) => Some(Ok(v - d)),
            (Some(Err(e)), _) | (_, Some(Err(e))) => Some(Err(e.clone())),
            _ => None,
        };
        match self.compare {
            Compare::Ratio => ratio(&self.cells[i], &self.cells[1]),
            Compare::Added => ratio(&added(&self.cells[i]), &added(&self.cells[1])),
        }
    }
}

fn ratio(rg: &Cell, ha: &Cell) -> Cell {
    match (rg, ha) {
        (Some(Ok(r)), Some(Ok(h))) if *h != 0.0 => Some(Ok(r / h)),
        (Some(Err(e)), _) | (_, Some(Err(e))) => Some(Err(e.clone())),
        _ => None,
    }
}

async fn run(sizes: &Sizes, ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let fast = sink::start().await?;

    for (key, label, count, per_conn, target) in [
        (
            "one",
            "5 KB, 1 msg/connection, 20 sessions",
            sizes.one_per_conn,
            true,
            ">= 1.0",
        ),
        (
            "many",
            "5 KB, many msgs/connection, 20 sessions",
            sizes.many_per_conn,
            false,
            ">= 1.0",
        ),
    ] {
        if ctx.wants(key) {
            let rate = Rate::twenty_sessions(count, per_conn, sizes.limit);
            rows.extend(rate_row(ctx, fast.addr, &rate, &ALL, label, target));
        }
    }
    if ctx.wants("policy") {
        rows.extend(policy_rows(sizes, ctx, fast.addr)?);
    }

    if ctx.wants("throughput") {
        rows.extend(throughput_rows(sizes, ctx, &fast).await);
    }
    if ctx.wants("idle") {
        rows.push(idle_row(sizes, ctx, &fast).await);
    }
    if ctx.wants("big") {
        rows.push(big_row(sizes, ctx, &fast).await);
    }
    if ctx.wants("latency") {
        rows.extend(latency_rows(sizes, ctx, fast.addr).await);
    }
    if ctx.wants("scale") {
        let nofile = ctx.nofile;
        let (scale_rows, panels) = scale::run(sizes, ctx, fast.addr, nofile).await;
        rows.extend(scale_rows);
        rows.push(plot_row(sizes, &panels));
    }
    Ok(rows)
}

/// Draws the scale plot: the full run's into docs/bench/scale.png (the README shows it), a
/// shorter run's beside the bench's other scratch files; `LOAD_PLOT` names another file. The
/// row fails if the PNG could not be written.
fn plot_row(sizes: &Sizes, panels: &[plot::Panel]) -> Row {
    let out = match std::env::var_os("LOAD_PLOT") {
        Some(p) => PathBuf::from(p),
        None if std::ptr::eq(sizes, &FULL) => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/bench/scale.png")
        }
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scale.png"),
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let caption = format!(
        "relayguard (xclient) and HAProxy (TCP splice) on {cores} cores, shared with the \
         client (smtp-source) and the sink ({} run)",
        sizes.name
    );
    let drawn = plot::draw(&out, &caption, panels);
    let mut cells: Cells = std::array::from_fn(|_| None);
    cells[2] = Some(drawn.map(|()| 1.0));
    Row {
        label: format!("scale plot written to {}", out.display()),
        unit: "",
        cells,
        compare: Compare::Ratio,
        target: "(file)",
    }
}

/// One smtp-source workload of a rate row.
struct Rate {
    /// Sessions smtp-source keeps open at once (`-s`).
    sessions: u32,
    count: u32,
    per_conn: bool,
    rounds: usize,
    limit: Duration,
}

impl Rate {
    /// The 5 KB workload of the message-rate rows: 20 sessions, [`RATE_ROUNDS`] rounds.
    fn twenty_sessions(count: u32, per_conn: bool, limit: Duration) -> Rate {
        Rate {
            sessions: 20,
            count,
            per_conn,
            rounds: RATE_ROUNDS,
            limit,
        }
    }
}

/// Every column of a row.
const ALL: [usize; 5] = [0, 1, 2, 3, 4];
/// HAProxy and relayguard in xclient mode: the columns of the cost-of-policy rows.
const SPLICE_AND_XCLIENT: [usize; 2] = [1, 2];

/// A message-rate row over the columns `paths`, each the median of `rate.rounds` rounds run
/// in rotating order (each run leaves thousands of sockets in TIME_WAIT, and a fixed order
/// would always make the same path pay for it); and the proxy's CPU time per message in the
/// same runs, all its threads counted.
fn rate_row(
    ctx: &mut Ctx,
    sink: SocketAddr,
    rate: &Rate,
    paths: &[usize],
    label: &str,
    target: &'static str,
) -> [Row; 2] {
    let mut rates: [Vec<Result<f64, String>>; 5] = std::array::from_fn(|_| Vec::new());
    let mut cpu: [Vec<Result<f64, String>>; 5] = std::array::from_fn(|_| Vec::new());
    for round in 0..rate.rounds {
        for k in 0..paths.len() {
            let i = paths[(k + round) % paths.len()];
            let f = match ctx.front(PATHS[i], sink) {
                Ok(f) => f,
                Err(e) => {
                    rates[i].push(Err(e.clone()));
                    cpu[i].push(Err(e));
                    continue;
                }
            };
            let before = f.pid.map(procs::cpu_micros);
            let r = workloads::smtp_source(
                f.addr,
                rate.sessions,
                rate.count,
                rate.per_conn,
                rate.limit,
            );
            if let (Some(before), Some(pid), Ok(_)) = (before, f.pid, &r) {
                let used = procs::cpu_micros(pid).and_then(|a| Ok(a - before?));
                cpu[i].push(used.map(|us| us / f64::from(rate.count)));
            }
            rates[i].push(r.map(|d| f64::from(rate.count) / d.as_secs_f64()));
        }
    }
    let cells = |samples: &mut [Vec<Result<f64, String>>; 5]| -> Cells {
        std::array::from_fn(|i| {
            let s = std::mem::take(&mut samples[i]);
            (!s.is_empty()).then(|| median(s))
        })
    };
    [
        Row {
            label: format!("{label} ({} msgs)", rate.count),
            unit: "msgs/s",
            cells: cells(&mut rates),
            compare: Compare::Ratio,
            target,
        },
        Row {
            label: format!("{label}: proxy CPU per message"),
            unit: "us",
            cells: cells(&mut cpu),
            compare: Compare::Ratio,
            target: "(reported)",
        },
    ]
}

/// The one-message row again with a realistic MX policy in relayguard, then with a DNSBL
/// lookup added; HAProxy beside it in the same rounds. The DNSBL row also shows how often
/// dnsmasq was asked: once per relayguard started, when the resolver's cache answers.
fn policy_rows(sizes: &Sizes, ctx: &mut Ctx, sink: SocketAddr) -> Result<Vec<Row>, String> {
    let rate = Rate::twenty_sessions(sizes.one_per_conn, true, sizes.limit);
    let mx = format!(
        "5 KB, 1 msg/connection, 20 sessions, MX policy ({}-entry cidr client table \
         ending in a restriction class, 2 regexp tables)",
        policy::CIDR_ENTRIES
    );
    ctx.policy = Some(policy::mx()?);
    let [plain, _] = rate_row(ctx, sink, &rate, &SPLICE_AND_XCLIENT, &mx, ">= 0.9");
    ctx.policy = Some(policy::mx_with_dnsbl()?);
    let [mut dnsbl, _] = rate_row(
        ctx,
        sink,
        &rate,
        &SPLICE_AND_XCLIENT,
        &format!("{mx} + reject_rbl_client, cached"),
        ">= 0.9",
    );
    let fixture = ctx.policy.take();
    let asked = fixture
        .as_ref()
        .and_then(|f| f.dnsbl_queries())
        .unwrap_or(0);
    let messages = u64::from(rate.count) * rate.rounds as u64;
    dnsbl.label = format!("{}; dnsmasq asked {asked} times", dnsbl.label);
    // More than a few queries per relayguard started: the cache did not answer.
    if asked as u64 > 4 * rate.rounds as u64 {
        dnsbl.cells[2] = Some(Err(format!(
            "dnsmasq asked {asked} times for {messages} messages: not answered from the cache"
        )));
    }
    Ok(vec![plain, dnsbl])
}

async fn throughput_rows(sizes: &Sizes, ctx: &mut Ctx, fast: &sink::Sink) -> [Row; 2] {
    // Rounds in rotating order, median per path, as for the message rates: a run of a few
    // hundred milliseconds is at the mercy of whatever else the two cores are doing.
    let mut samples: [Vec<Result<f64, String>>; 5] = std::array::from_fn(|_| Vec::new());
    let mut cpu: [Vec<Result<f64, String>>; 5] = std::array::from_fn(|_| Vec::new());
    for round in 0..RATE_ROUNDS {
        for k in 0..PATHS.len() {
            let i = (k + round) % PATHS.len();
            let (rate, used) = throughput(sizes, ctx, PATHS[i], fast).await;
            samples[i].push(rate);
            if let Some(used) = used {
                cpu[i].push(used);
            }
        }
    }
    let label = format!(
        "{} MB messages, {} session(s) x {} (fast sink)",
        sizes.tp_size >> 20,
        sizes.tp_sessions,
        sizes.tp_messages
    );
    [
        Row {
            label: label.clone(),
            unit: "MiB/s",
            cells: samples.map(|s| Some(median(s))),
            compare: Compare::Ratio,
            target: ">= 1.14",
        },
        Row {
            label: format!("{label}: proxy CPU per MiB"),
            unit: "us",
            cells: cpu.map(|s| (!s.is_empty()).then(|| median(s))),
            compare: Compare::Ratio,
            target: "(reported)",
        },
    ]
}

async fn idle_row(sizes: &Sizes, ctx: &mut Ctx, fast: &sink::Sink) -> Row {
    let n = sizes.idle;
    let cells = per_proxy(ctx, fast, async |f: Front| idle_pss(&f, n).await).await;
    Row {
        label: format!("{n} idle sessions after EHLO: PSS per session"),
        unit: "KiB",
        cells,
        compare: Compare::Ratio,
        target: "rg <= 3.3 KiB",
    }
}

async fn big_row(sizes: &Sizes, ctx: &mut Ctx, fast: &sink::Sink) -> Row {
    let size = sizes.big;
    let cells = per_proxy(ctx, fast, async |f: Front| big_message_rise(&f, size).await).await;
    Row {
        label: format!("one {} MB message: peak memory rise (VmHWM)", size >> 20),
        unit: "MiB",
        cells,
        compare: Compare::Ratio,
        target: "rg < 8 MiB",
    }
}

/// One measurement of each proxy (HAProxy, relayguard) in front of the fast sink; the direct
/// path has no process to measure.
async fn per_proxy(
    ctx: &mut Ctx,
    fast: &sink::Sink,
    measure: impl AsyncFn(Front) -> Result<f64, String>,
) -> Cells {
    let mut cells: Cells = std::array::from_fn(|_| None);
    for (i, path) in PATHS.iter().enumerate().skip(1) {
        let r = match ctx.front(*path, fast.addr) {
            Ok(f) => measure(f).await,
            Err(e) => Err(e),
        };
        cells[i] = Some(r);
    }
    cells
}

async fn latency_rows(sizes: &Sizes, ctx: &mut Ctx, sink: SocketAddr) -> Vec<Row> {
    let per_front = latency(sizes, ctx, sink).await;
    let cell = |i: usize, q: usize| -> Cell {
        Some(match &per_front {
            Ok(v) => Ok(if q == 50 { v[i].0 } else { v[i].1 }),
            Err(e) => Err(e.clone()),
        })
    };
    let label = |what: &str| {
        format!(
            "one-message session, one at a time ({} runs): {what}",
            sizes.latency_runs
        )
    };
    let mut rows: Vec<Row> = [
        (50, "p50", "added: rg <= haproxy (<= 1.0)"),
        (99, "p99", "added (reported)"),
    ]
    .into_iter()
    .map(|(q, what, target)| Row {
        label: label(what),
        unit: "us",
        cells: std::array::from_fn(|i| cell(i, q)),
        compare: Compare::Added,
        target,
    })
    .collect();
    // The warm front (the last) in the xclient column.
    rows.push(Row {
        label: label(&format!("p50, warm_connections = {WARM}")),
        unit: "us",
        cells: [cell(0, 50), cell(1, 50), cell(PATHS.len(), 50), None, None],
        compare: Compare::Added,
        target: "added: rg <= haproxy (<= 1.0)",
    });
    rows
}

/// One throughput sample for `path`, checked against what the sink saw, and the proxy's CPU
/// time per MiB in it (all its threads; none for the direct path).
async fn throughput(
    sizes: &Sizes,
    ctx: &mut Ctx,
    path: Path,
    fast: &sink::Sink,
) -> (Result<f64, String>, Option<Result<f64, String>>) {
    let before = fast.messages.load(Ordering::Relaxed);
    let want = (sizes.tp_sessions * sizes.tp_messages) as u64;
    let f = match ctx.front(path, fast.addr) {
        Ok(f) => f,
        // Only a proxy can fail to start: its CPU cell carries the error too.
        Err(e) => return (Err(e.clone()), Some(Err(e))),
    };
    let cpu_before = f.pid.map(procs::cpu_micros);
    let rate =
        workloads::throughput(f.addr, sizes.tp_sessions, sizes.tp_messages, sizes.tp_size).await;
    let mib = (sizes.tp_size * sizes.tp_sessions * sizes.tp_messages) as f64 / f64::from(1 << 20);
    let used = match (cpu_before, f.pid, &rate) {
        (Some(before), Some(pid), Ok(_)) => {
            Some(procs::cpu_micros(pid).and_then(|after| Ok((after - before?) / mib)))
        }
        _ => None,
    };
    // Each 250 the client saw must be a message the sink ended, not a proxy's own.
    let got = fast.messages.load(Ordering::Relaxed) - before;
    let rate = rate.and_then(|v| {
        if got == want {
            Ok(v)
        } else {
            Err(format!("sink got {got} messages, sent {want}"))
        }
    });
    (rate, used)
}

/// (p50, p99) per path. The sessions are interleaved, one per path in rotating order, so a
/// drift in the machine's state (frequency, a neighbour's load) weighs on every path alike.
async fn latency(
    sizes: &Sizes,
    ctx: &mut Ctx,
    sink: SocketAddr,
) -> Result<[(f64, f64); 6], String> {
    let mut fronts = Vec::new();
    for path in PATHS {
        fronts.push(ctx.front(path, sink)?);
    }
    // The last: relayguard (xclient) with upstream connections dialled ahead of need.
    ctx.warm = WARM;
    let warm = ctx.front(Path::Relayguard(Identity::Xclient), sink);
    ctx.warm = 0;
    fronts.push(warm?);
    let mut micros: [Vec<f64>; 6] = std::array::from_fn(|_| Vec::new());
    for run in 0..sizes.latency_runs {
        for k in 0..fronts.len() {
            let i = (k + run) % fronts.len();
            micros[i].push(workloads::session_micros(fronts[i].addr, 5120).await?);
        }
    }
    Ok(micros.map(|mut m| {
        m.sort_by(f64::total_cmp);
        let at = |q: f64| m[((m.len() as f64 * q) as usize).min(m.len() - 1)];
        (at(0.50), at(0.99))
    }))
}

async fn idle_pss(f: &Front, n: usize) -> Result<f64, String> {
    let pid = f.pid.ok_or("no process")?;
    // Warm up allocator pools and lazy statics before the baseline.
    workloads::hold_idle(f.addr, 10, || Ok(())).await?;
    let before = procs::pss_kib(pid)?;
    let after = workloads::hold_idle(f.addr, n, || procs::pss_kib(pid)).await?;
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

async fn big_message_rise(f: &Front, size: usize) -> Result<f64, String> {
    let pid = f.pid.ok_or("no process")?;
    workloads::throughput(f.addr, 1, 1, 5120).await?;
    let before = procs::hwm_kib(pid)?;
    workloads::throughput(f.addr, 1, 1, size).await?;
    let after = procs::hwm_kib(pid)?;
    Ok(after.saturating_sub(before) as f64 / 1024.0)
}

fn fmt_cell(c: &Cell) -> String {
    match c {
        None => "-".into(),
        Some(Ok(v)) if *v >= 100.0 => format!("{v:.0}"),
        Some(Ok(v)) => format!("{v:.2}"),
        Some(Err(e)) if e == "not available" => "not available".into(),
        Some(Err(e)) => format!("error: {}", e.lines().next().unwrap_or("")),
    }
}

fn print_table(sizes: &Sizes, rows: &[Row], elapsed: Duration) {
    println!(
        "\n### relayguard load run: {} ({:.0} s)\n",
        sizes.name,
        elapsed.as_secs_f64()
    );
    let ratios: Vec<String> = RG
        .map(|i| format!("{}/haproxy", &COLUMNS[i][3..]))
        .collect();
    println!(
        "| workload | unit | {} | {} | target |",
        COLUMNS.join(" | "),
        ratios.join(" | ")
    );
    println!(
        "|---|---|{}{}---|",
        "---:|".repeat(COLUMNS.len()),
        "---:|".repeat(RG.len())
    );
    for r in rows {
        let cells: Vec<String> = r.cells.iter().map(fmt_cell).collect();
        let ratios: Vec<String> = RG
            .map(|i| match r.ratio(i) {
                Some(Ok(v)) => format!("{v:.2}"),
                _ => "-".into(),
            })
            .collect();
        println!(
            "| {} | {} | {} | {} | {} |",
            r.label,
            r.unit,
            cells.join(" | "),
            ratios.join(" | "),
            r.target
        );
    }
    println!(
        "\nRatios are each relayguard column over haproxy's; for latency, (rg - direct) / \
         (haproxy - direct). Sink: the bench's own (sink.rs), for every row."
    );
}

fn main() -> ExitCode {
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes = match (bench, std::env::var_os("LOAD_QUICK").is_some()) {
        (false, _) => &SMOKE,
        (true, true) => &QUICK,
        (true, false) => &FULL,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let nofile = procs::raise_nofile();
    let mut ctx = Ctx {
        // LOAD_RELAYGUARD: another build to measure (an A/B against an older commit).
        binary: std::env::var_os("LOAD_RELAYGUARD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_relayguard"))),
        warm: 0,
        policy: None,
        threads: None,
        // HAProxy needs two descriptors per connection and will not start without them.
        haproxy_maxconn: (sizes.scale.idle.iter().chain(sizes.scale.busy))
            .fold(sizes.idle, |a, b| a.max(*b))
            .saturating_add(200)
            .min((nofile as usize).saturating_sub(400) / 2),
        nofile,
        relayguard_unavailable: None,
        only: std::env::var("LOAD_ONLY")
            .ok()
            .map(|v| v.split(',').map(|k| k.trim().to_owned()).collect()),
    };
    let start = Instant::now();
    match rt.block_on(run(sizes, &mut ctx)) {
        Ok(rows) => {
            print_table(sizes, &rows, start.elapsed());
            // Ratios are never judged here. A measurement that failed is: relayguard may only
            // be "not available" (while it is being written), never wrong.
            let cells = || rows.iter().flat_map(|r| r.cells.iter()).flatten();
            let passed = cells().filter(|c| c.is_ok()).count();
            let skipped = cells()
                .filter(|c| matches!(c, Err(e) if e == "not available"))
                .count();
            let failed = cells().count() - passed - skipped;
            println!("\nload: {passed} passed, {failed} failed, {skipped} skipped");
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}
