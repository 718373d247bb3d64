//! Results of `cargo xtask bench` and their rendering: Markdown tables, JSON and an SVG chart.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::json;

/// How a subject is run.
pub enum SubjectKind {
    /// A TUN forwarder with `tun_forward`'s command line (binary path).
    Tun(PathBuf),
    /// The relay glue on a kernel listening socket (binary path).
    KernelRelay(PathBuf),
    /// The packet copier between two TUN devices (binary path).
    Floor(PathBuf),
    /// iperf3 straight over loopback.
    Loopback,
}

/// One benchmarked path.
pub struct Subject {
    /// Short key (`--only`, JSON).
    pub key: &'static str,
    /// Display name.
    pub name: &'static str,
    /// How it runs.
    pub kind: SubjectKind,
}

/// The iperf3 test of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client → server (the stack receives).
    Up,
    /// Server → client (`-R`; the stack sends).
    Down,
    /// Eight parallel upload streams (`-P 8`).
    Parallel8,
}

impl Direction {
    /// All tests, in table order.
    pub const ALL: [Direction; 3] = [Direction::Up, Direction::Down, Direction::Parallel8];

    /// Column label.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down (-R)",
            Direction::Parallel8 => "8 streams (-P 8)",
        }
    }
}

/// One subject × MTU × test.
#[derive(Debug)]
pub struct Cell {
    /// Subject key.
    pub subject: String,
    /// MTU of the path.
    pub mtu: u32,
    /// Test.
    pub direction: Direction,
    /// Gbit/s of each run.
    pub gbps: Vec<f64>,
    /// Sender retransmissions of each run (as iperf3 reports them).
    pub retransmits: Vec<Option<u64>>,
    /// CPU seconds of the relay process per GB (1e9 bytes) of payload.
    pub cpu_s_per_gb: Option<f64>,
    /// Peak RSS (VmHWM) of the relay process.
    pub peak_rss_kib: Option<u64>,
    /// Failure or remark.
    pub note: String,
}

impl Cell {
    /// An empty cell.
    pub fn new(subject: &str, mtu: u32, direction: Direction) -> Cell {
        Cell {
            subject: subject.to_string(),
            mtu,
            direction,
            gbps: Vec::new(),
            retransmits: Vec::new(),
            cpu_s_per_gb: None,
            peak_rss_kib: None,
            note: String::new(),
        }
    }

    /// A cell that could not be measured.
    pub fn failed(subject: &str, mtu: u32, direction: Direction, why: String) -> Cell {
        Cell {
            note: format!("FAILED: {why}"),
            ..Cell::new(subject, mtu, direction)
        }
    }

    /// (median, min, max) Gbit/s.
    pub fn stats(&self) -> Option<(f64, f64, f64)> {
        stats(&self.gbps)
    }

    /// Median retransmissions.
    pub fn median_retransmits(&self) -> Option<u64> {
        let mut r: Vec<u64> = self.retransmits.iter().flatten().copied().collect();
        if r.is_empty() {
            return None;
        }
        r.sort_unstable();
        Some(r[r.len() / 2])
    }

    /// One-line summary for progress output.
    pub fn summary(&self) -> String {
        match self.stats() {
            Some((med, lo, hi)) => format!(
                "{med:.2} Gbit/s [{lo:.2}–{hi:.2}], retr {}, CPU {} s/GB, peak RSS {} {}",
                opt(self.median_retransmits()),
                self.cpu_s_per_gb
                    .map(|c| format!("{c:.2}"))
                    .unwrap_or("—".into()),
                mib(self.peak_rss_kib),
                self.note
            ),
            None => self.note.clone(),
        }
    }
}

/// Connection-rate result.
#[derive(Debug)]
pub struct RateResult {
    /// Subject key.
    pub subject: String,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Completed connections per second.
    pub per_second: Option<f64>,
    /// Failed attempts.
    pub errors: u64,
    /// Remark or failure.
    pub note: String,
}

/// Idle-connection result.
#[derive(Debug, Default)]
pub struct IdleResult {
    /// Subject key.
    pub subject: String,
    /// Idle connections asked for.
    pub requested: usize,
    /// Idle connections established (verified by an echo).
    pub held: usize,
    /// Idle connections that failed.
    pub failed: usize,
    /// RSS before opening them.
    pub rss_before_kib: Option<u64>,
    /// RSS with them open, before the bulk transfer.
    pub rss_idle_kib: Option<u64>,
    /// Peak RSS after the bulk transfer.
    pub peak_rss_kib: Option<u64>,
    /// Upload Gbit/s of each run with them open.
    pub gbps: Vec<f64>,
    /// Remark or failure.
    pub note: String,
}

/// Everything one `cargo xtask bench` measured.
#[derive(Default)]
pub struct Results {
    /// Machine description.
    pub machine: String,
    /// Arguments of the command.
    pub command: String,
    /// Seconds per iperf3 run.
    pub seconds: u64,
    /// Runs per cell.
    pub runs: usize,
    /// MTUs tested.
    pub mtus: Vec<u32>,
    /// Throughput cells.
    pub cells: Vec<Cell>,
    /// Connection-rate results.
    pub rates: Vec<RateResult>,
    /// Idle-connection result.
    pub idle: Option<IdleResult>,
    /// Multi-core scaling: (runtime worker threads, 8-stream cell of netstack).
    pub scaling: Vec<(usize, Cell)>,
}

impl Results {
    /// The cell of `subject` × `mtu` × `direction`.
    fn cell(&self, subject: &str, mtu: u32, direction: Direction) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.subject == subject && c.mtu == mtu && c.direction == direction)
    }
}

/// (median, min, max) of `v`.
fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some((median, s[0], s[n - 1]))
}

/// `Some(n)` as text, `None` as a dash.
fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "—".into())
}

/// KiB as MiB text.
fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "—".into())
}

/// Display name of a subject key.
fn name<'a>(subjects: &'a [Subject], key: &'a str) -> &'a str {
    subjects
        .iter()
        .find(|s| s.key == key)
        .map_or(key, |s| s.name)
}

/// Subject keys present in the results, in table order.
fn present<'a>(results: &Results, subjects: &'a [Subject]) -> Vec<&'a Subject> {
    subjects
        .iter()
        .filter(|s| results.cells.iter().any(|c| c.subject == s.key))
        .collect()
}

/// The Markdown report.
pub fn markdown(results: &Results, subjects: &[Subject]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Throughput (Gbit/s, median of {} run(s) of {} s; [min–max] when more than one)\n",
        results.runs, results.seconds
    );
    let mut header = String::from("| path |");
    let mut rule = String::from("|---|");
    for &mtu in &results.mtus {
        for d in Direction::ALL {
            let _ = write!(header, " MTU {mtu} {} |", d.label());
            rule.push_str("---|");
        }
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for s in present(results, subjects) {
        let _ = write!(md, "| {} |", s.name);
        for &mtu in &results.mtus {
            for d in Direction::ALL {
                let text = match results.cell(s.key, mtu, d).and_then(Cell::stats) {
                    Some((med, lo, hi)) if results.runs > 1 => {
                        format!("{med:.2} [{lo:.2}–{hi:.2}]")
                    }
                    Some((med, _, _)) => format!("{med:.2}"),
                    None => "failed".into(),
                };
                let _ = write!(md, " {text} |");
            }
        }
        md.push('\n');
    }

    let _ = writeln!(
        md,
        "\n## Per cell: retransmissions, CPU and memory of the relay process\n\n\
         | path | MTU | test | Gbit/s | retransmits (median) | CPU s per GB | peak RSS | note |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for s in present(results, subjects) {
        for c in results.cells.iter().filter(|c| c.subject == s.key) {
            let gbps = c
                .stats()
                .map(|(m, _, _)| format!("{m:.2}"))
                .unwrap_or_else(|| "failed".into());
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                c.mtu,
                c.direction.label(),
                gbps,
                opt(c.median_retransmits()),
                c.cpu_s_per_gb
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "—".into()),
                mib(c.peak_rss_kib),
                c.note.replace('|', "/").replace('\n', " ")
            );
        }
    }

    if !results.rates.is_empty() {
        let _ = writeln!(
            md,
            "\n## Connection setup rate (connect, 1-byte echo, close; MTU 1500)\n\n\
             | path | concurrent clients | connections/s | failed attempts | note |\n\
             |---|---|---|---|---|"
        );
        for r in &results.rates {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                name(subjects, &r.subject),
                r.concurrency,
                r.per_second
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or_else(|| "failed".into()),
                r.errors,
                r.note.replace('|', "/").replace('\n', " ")
            );
        }
    }

    if let Some(i) = &results.idle {
        let up = stats(&i.gbps)
            .map(|(m, lo, hi)| format!("{m:.2} [{lo:.2}–{hi:.2}]"))
            .unwrap_or_else(|| "failed".into());
        let base = results
            .cell(&i.subject, 1500, Direction::Up)
            .and_then(Cell::stats)
            .map(|(m, _, _)| format!("{m:.2}"))
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            md,
            "\n## Bulk upload with idle connections open (MTU 1500)\n\n\
             | path | idle connections asked / held / failed | upload Gbit/s with them | \
             upload Gbit/s without | RSS before | RSS with idle | peak RSS | note |\n\
             |---|---|---|---|---|---|---|---|\n\
             | {} | {} / {} / {} | {up} | {base} | {} | {} | {} | {} |",
            name(subjects, &i.subject),
            i.requested,
            i.held,
            i.failed,
            mib(i.rss_before_kib),
            mib(i.rss_idle_kib),
            mib(i.peak_rss_kib),
            i.note.replace('|', "/").replace('\n', " ")
        );
    }
    if !results.scaling.is_empty() {
        let _ = writeln!(
            md,
            "\n## Multi-core scaling (8 streams, -P 8; tun_forward's runtime limited with \
             TOKIO_WORKER_THREADS)\n\n\
             | path | MTU | worker threads | Gbit/s | CPU s per GB | × 1 worker | note |\n\
             |---|---|---|---|---|---|---|"
        );
        for (workers, c) in &results.scaling {
            let one = results
                .scaling
                .iter()
                .find(|(w, o)| *w == 1 && o.mtu == c.mtu)
                .and_then(|(_, o)| o.stats());
            let ratio = match (c.stats(), one) {
                (Some((m, _, _)), Some((base, _, _))) if base > 0.0 => format!("{:.2}", m / base),
                _ => "—".into(),
            };
            let gbps = match c.stats() {
                Some((m, lo, hi)) if results.runs > 1 => format!("{m:.2} [{lo:.2}–{hi:.2}]"),
                Some((m, _, _)) => format!("{m:.2}"),
                None => "failed".into(),
            };
            let cpu = c
                .cpu_s_per_gb
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "—".into());
            let _ = writeln!(
                md,
                "| {} | {} | {workers} | {gbps} | {cpu} | {ratio} | {} |",
                name(subjects, &c.subject),
                c.mtu,
                c.note.replace('|', "/").replace('\n', " ")
            );
        }
    }
    let _ = writeln!(
        md,
        "\n## Machine\n\n```text\n{}\n```\n\nCommand: `cargo xtask {}`",
        results.machine, results.command
    );
    md
}

/// The results as JSON.
pub fn json(results: &Results) -> String {
    let cells: Vec<_> = results
        .cells
        .iter()
        .map(|c| {
            json!({
                "subject": c.subject, "mtu": c.mtu, "test": c.direction.label(),
                "gbps": c.gbps, "retransmits": c.retransmits,
                "cpu_s_per_gb": c.cpu_s_per_gb, "peak_rss_kib": c.peak_rss_kib, "note": c.note,
            })
        })
        .collect();
    let rates: Vec<_> = results
        .rates
        .iter()
        .map(|r| {
            json!({
                "subject": r.subject, "concurrency": r.concurrency,
                "per_second": r.per_second, "errors": r.errors, "note": r.note,
            })
        })
        .collect();
    let idle = results.idle.as_ref().map(|i| {
        json!({
            "subject": i.subject, "requested": i.requested, "held": i.held, "failed": i.failed,
            "rss_before_kib": i.rss_before_kib, "rss_idle_kib": i.rss_idle_kib,
            "peak_rss_kib": i.peak_rss_kib, "gbps": i.gbps, "note": i.note,
        })
    });
    let scaling: Vec<_> = results
        .scaling
        .iter()
        .map(|(workers, c)| {
            json!({
                "subject": c.subject, "mtu": c.mtu, "workers": workers, "gbps": c.gbps,
                "cpu_s_per_gb": c.cpu_s_per_gb, "note": c.note,
            })
        })
        .collect();
    let doc = json!({
        "machine": results.machine, "command": results.command,
        "seconds": results.seconds, "runs": results.runs,
        "cells": cells, "connection_rate": rates, "idle": idle, "scaling": scaling,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Bar colours, one per subject.
const COLOURS: [&str; 6] = [
    "#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#bcbd22",
];

/// A grouped bar chart of median Gbit/s per cell, with min–max whiskers.
pub fn svg(results: &Results, subjects: &[Subject]) -> String {
    let shown = present(results, subjects);
    let groups: Vec<(u32, Direction)> = results
        .mtus
        .iter()
        .flat_map(|&m| Direction::ALL.map(|d| (m, d)))
        .collect();
    let max = results
        .cells
        .iter()
        .filter_map(|c| c.stats().map(|s| s.2))
        .fold(1.0f64, f64::max);
    let top = (max / 5.0).ceil() * 5.0;
    let (left, right, plot_top, plot_h) = (60.0, 20.0, 40.0, 360.0);
    let bar = 14.0;
    let group_w = bar * shown.len().max(1) as f64 + 24.0;
    let width = left + right + group_w * groups.len() as f64;
    let legend_h = 20.0 * shown.len() as f64 + 10.0;
    let height = plot_top + plot_h + 60.0 + legend_h;
    let y = |v: f64| plot_top + plot_h * (1.0 - v / top);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"20\" font-size=\"14\">TCP relay throughput through a TUN device \
         (Gbit/s, median; whiskers: min–max of {} run(s) of {} s)</text>",
        results.runs, results.seconds
    );
    let mut tick = 0.0;
    while tick <= top + 1e-9 {
        let ty = y(tick);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{tick:.0}</text>",
            width - right,
            left - 6.0,
            ty + 4.0
        );
        tick += (top / 5.0).max(1.0);
    }
    for (g, (mtu, d)) in groups.iter().enumerate() {
        let gx = left + group_w * g as f64 + 12.0;
        for (i, subj) in shown.iter().enumerate() {
            let Some((med, lo, hi)) = results.cell(subj.key, *mtu, *d).and_then(Cell::stats) else {
                continue;
            };
            let x = gx + bar * i as f64;
            let colour = COLOURS[i % COLOURS.len()];
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\">\
                 <title>{}: {med:.2} Gbit/s</title></rect>",
                y(med),
                bar - 2.0,
                plot_top + plot_h - y(med),
                subj.name
            );
            if hi > lo {
                let cx = x + (bar - 2.0) / 2.0;
                let _ = writeln!(
                    s,
                    "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>",
                    y(hi),
                    y(lo)
                );
            }
        }
        let label_x = gx + (group_w - 24.0) / 2.0;
        let _ = writeln!(
            s,
            "<text x=\"{label_x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">MTU {mtu}</text>\
             <text x=\"{label_x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            plot_top + plot_h + 16.0,
            plot_top + plot_h + 30.0,
            d.label()
        );
    }
    for (i, subj) in shown.iter().enumerate() {
        let ly = plot_top + plot_h + 50.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{left}\" y=\"{ly:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            COLOURS[i % COLOURS.len()],
            left + 18.0,
            ly + 10.0,
            subj.name
        );
    }
    s.push_str("</svg>\n");
    s
}
