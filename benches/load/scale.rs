//! The cost at scale: memory per idle session and the message rate from 100 to 10,000
//! concurrent sessions, and the message rate against worker threads, for HAProxy and relayguard
//! (xclient) in the same run; as table rows, and as the PNG the README shows (plot.rs).

use std::net::SocketAddr;

use crate::plot::{Curve, Panel};
use crate::{idle_pss, rate_row, Cells, Ctx, Rate, Row, Sizes, COLUMNS};

/// The points of a run's scale section.
pub struct ScaleSizes {
    /// Idle sessions held open at once.
    pub idle: &'static [usize],
    /// Sessions smtp-source keeps busy at once.
    pub busy: &'static [usize],
    /// Messages per busy session (`-d`: over one connection each), at least.
    pub busy_per_session: u32,
    /// Messages per busy point, at least: a few hundred are over before the rate settles.
    pub busy_min_messages: u32,
    /// Worker threads of each proxy, for the one-message-per-connection workload.
    pub workers: &'static [usize],
    /// Rounds per point, the median reported.
    pub rounds: usize,
}

const DIRECT: usize = 0;
const HAPROXY: usize = 1;
const XCLIENT: usize = 2;

/// Whether `n` sessions fit in `nofile` descriptors for column `path`: a proxy holds two per
/// busy session (client and upstream), HAProxy two per idle one too, relayguard one per idle
/// session (its upstream leg waits for MAIL); the bench holds the client ends of idle sessions
/// and the sink ends of every upstream leg.
fn fits(n: usize, path: usize, busy: bool, nofile: u64) -> bool {
    let per_session = if busy || path != XCLIENT { 2 } else { 1 };
    (per_session * n + 500) as u64 <= nofile
}

/// Runs the section; `nofile` is the open-files limit every process here runs with (HAProxy
/// refuses to start with a `maxconn` it cannot cover).
pub async fn run(
    sizes: &Sizes,
    ctx: &mut Ctx,
    sink: SocketAddr,
    nofile: u64,
) -> (Vec<Row>, Vec<Panel>) {
    let scale = &sizes.scale;
    let left_out = |n: usize, paths: &[usize], busy: bool| -> String {
        let out: Vec<&str> = paths
            .iter()
            .filter(|&&i| !fits(n, i, busy, nofile))
            .map(|&i| COLUMNS[i])
            .collect();
        if out.is_empty() {
            String::new()
        } else {
            format!(" ({} not run: {nofile} open files allowed)", out.join(", "))
        }
    };
    let mut rows = Vec::new();
    let mut idle = Vec::new();
    for &n in scale.idle {
        let mut cells: Cells = std::array::from_fn(|_| None);
        for i in [HAPROXY, XCLIENT]
            .into_iter()
            .filter(|&i| fits(n, i, false, nofile))
        {
            let r = match ctx.front(crate::PATHS[i], sink) {
                Ok(f) => idle_pss(&f, n).await,
                Err(e) => Err(e),
            };
            cells[i] = Some(r);
        }
        idle.push((n, cells.clone()));
        rows.push(Row {
            label: format!(
                "scale: {n} idle sessions after EHLO: PSS per session{}",
                left_out(n, &[HAPROXY, XCLIENT], false)
            ),
            unit: "KiB",
            cells,
            compare: crate::Compare::Ratio,
            target: "(plot)",
        });
    }

    let mut busy = Vec::new();
    let busy_paths = [DIRECT, HAPROXY, XCLIENT];
    for &n in scale.busy {
        if !busy_paths.iter().all(|&i| fits(n, i, true, nofile)) {
            eprintln!(
                "load: {n} busy sessions not run{}",
                left_out(n, &busy_paths, true)
            );
            continue;
        }
        let sessions = u32::try_from(n).unwrap_or(u32::MAX);
        let rate = Rate {
            sessions,
            count: sessions
                .saturating_mul(scale.busy_per_session)
                .max(scale.busy_min_messages),
            per_conn: false,
            rounds: scale.rounds,
            limit: sizes.limit,
        };
        let label = format!(
            "scale: {n} busy sessions, 5 KB, {}+ msgs each",
            scale.busy_per_session
        );
        let [r, cpu] = rate_row(
            ctx,
            sink,
            &rate,
            &[DIRECT, HAPROXY, XCLIENT],
            &label,
            "(plot)",
        );
        busy.push((n, r.cells.clone()));
        rows.extend([r, cpu]);
    }

    let mut threads = Vec::new();
    for &w in scale.workers {
        ctx.threads = Some(w);
        // Half the one-message row's count: every worker count is another set of rounds.
        let rate = Rate {
            rounds: scale.rounds,
            ..Rate::twenty_sessions(sizes.one_per_conn / 2, true, sizes.limit)
        };
        let label = format!("scale: {w} worker thread(s), 5 KB, 1 msg/connection, 20 sessions");
        let [r, cpu] = rate_row(ctx, sink, &rate, &[HAPROXY, XCLIENT], &label, "(plot)");
        threads.push((w, r.cells.clone()));
        rows.extend([r, cpu]);
    }
    ctx.threads = None;

    let panels = vec![
        Panel {
            title: "Memory per idle session (PSS)".into(),
            x: "idle sessions after EHLO",
            y: "KiB per session",
            log_x: true,
            curves: curves(&idle, &[HAPROXY, XCLIENT]),
        },
        Panel {
            title: "Message rate, sessions busy at once".into(),
            x: "concurrent sessions (5 KB messages)",
            y: "messages/s",
            log_x: true,
            curves: curves(&busy, &[DIRECT, HAPROXY, XCLIENT]),
        },
        Panel {
            title: "Message rate against worker threads".into(),
            x: "worker threads (HAProxy nbthread)",
            y: "messages/s, 1 msg/connection",
            log_x: false,
            curves: curves(&threads, &[HAPROXY, XCLIENT]),
        },
    ];
    (rows, panels)
}

/// One curve per column in `paths`, through the points measured without error.
fn curves(points: &[(usize, Cells)], paths: &[usize]) -> Vec<Curve> {
    paths
        .iter()
        .map(|&i| Curve {
            name: COLUMNS[i],
            points: points
                .iter()
                .filter_map(|(x, cells)| match &cells[i] {
                    Some(Ok(v)) => Some((*x as f64, *v)),
                    _ => None,
                })
                .collect(),
        })
        .collect()
}
