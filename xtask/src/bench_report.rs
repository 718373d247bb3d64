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
    /// Arguments a TUN forwarder gets after `tun_forward`'s common ones.
    pub args: Vec<String>,
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
    /// UDP client → server at an unlimited rate (`-u -b 0 -l 1400`).
    UdpUp,
    /// UDP server → client at an unlimited rate (`-u -b 0 -l 1400 -R`).
    UdpDown,
    /// UDP client → server at a fixed offered rate (`-u -b RATE -l 1400`), the same for every
    /// subject.
    UdpUpPaced,
    /// UDP server → client at a fixed offered rate (`-u -b RATE -l 1400 -R`).
    UdpDownPaced,
}

impl Direction {
    /// The TCP tests, in table order.
    pub const ALL: [Direction; 3] = [Direction::Up, Direction::Down, Direction::Parallel8];
    /// The UDP tests, in table order.
    pub const UDP: [Direction; 4] = [
        Direction::UdpUp,
        Direction::UdpDown,
        Direction::UdpUpPaced,
        Direction::UdpDownPaced,
    ];

    /// Column label.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down (-R)",
            Direction::Parallel8 => "8 streams (-P 8)",
            Direction::UdpUp => "UDP up",
            Direction::UdpDown => "UDP down (-R)",
            Direction::UdpUpPaced => "UDP up, paced",
            Direction::UdpDownPaced => "UDP down (-R), paced",
        }
    }

    /// Whether this is a UDP test.
    pub fn is_udp(self) -> bool {
        Direction::UDP.contains(&self)
    }

    /// The iperf3 options of the test (besides host, port, duration and `-J`); `udp_rate` is
    /// the `-b` of the paced UDP tests.
    pub fn iperf_args(self, udp_rate: &str) -> Vec<String> {
        let udp = |rate: &str, reverse: bool| {
            let mut a: Vec<String> = ["-u", "-b", rate, "-l", "1400"].map(String::from).to_vec();
            if reverse {
                a.push("-R".into());
            }
            a
        };
        match self {
            Direction::Up => Vec::new(),
            Direction::Down => vec!["-R".into()],
            Direction::Parallel8 => vec!["-P".into(), "8".into()],
            Direction::UdpUp => udp("0", false),
            Direction::UdpDown => udp("0", true),
            Direction::UdpUpPaced => udp(udp_rate, false),
            Direction::UdpDownPaced => udp(udp_rate, true),
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
    /// Sender retransmissions of each run (as iperf3 reports them; TCP).
    pub retransmits: Vec<Option<u64>>,
    /// Gbit/s the sender sent in each run (UDP: the offered load).
    pub offered_gbps: Vec<f64>,
    /// Datagrams lost of each run, in % of those sent (UDP, as the receiver counted them).
    pub loss_percent: Vec<Option<f64>>,
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
            offered_gbps: Vec::new(),
            loss_percent: Vec::new(),
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

    /// Median datagram loss in %.
    pub fn median_loss(&self) -> Option<f64> {
        let v: Vec<f64> = self.loss_percent.iter().flatten().copied().collect();
        stats(&v).map(|s| s.0)
    }

    /// Median offered Gbit/s.
    pub fn median_offered(&self) -> Option<f64> {
        stats(&self.offered_gbps).map(|s| s.0)
    }

    /// One-line summary for progress output.
    pub fn summary(&self) -> String {
        let loss = match self.median_loss() {
            Some(l) => format!(
                ", offered {} Gbit/s, loss {l:.1} %",
                self.median_offered()
                    .map(|o| format!("{o:.2}"))
                    .unwrap_or("—".into())
            ),
            None => String::new(),
        };
        match self.stats() {
            Some((med, lo, hi)) => format!(
                "{med:.2} Gbit/s [{lo:.2}–{hi:.2}]{loss}, retr {}, CPU {} s/GB, peak RSS {} {}",
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

/// Reconnect-storm result (`connload storm`): flows that connect, echo `bytes` and close in a
/// loop.
#[derive(Debug, Default)]
pub struct StormResult {
    /// Subject key.
    pub subject: String,
    /// Concurrent flows.
    pub flows: usize,
    /// Bytes each connection wrote and read back.
    pub bytes: usize,
    /// How long the storm ran, until its last connection ended.
    pub seconds: f64,
    /// Connections echoed completely (none if the storm could not run).
    pub connections: Option<u64>,
    /// Failed attempts (connect, echo, timeouts).
    pub errors: u64,
    /// Peak RSS (VmHWM) of the relay process after the storm.
    pub peak_rss_kib: Option<u64>,
    /// RSS (VmRSS) of the relay process when the storm ended.
    pub end_rss_kib: Option<u64>,
    /// Remark or failure.
    pub note: String,
}

impl StormResult {
    /// Completed connections per second.
    pub fn per_second(&self) -> Option<f64> {
        self.connections
            .filter(|_| self.seconds > 0.0)
            .map(|n| n as f64 / self.seconds)
    }
}

/// Issue 13's bound on `tun_forward`'s peak RSS in the reconnect storm: 64 MiB.
const STORM_PEAK_RSS_TARGET_KIB: u64 = 64 << 10;

/// Round trips of one datagram through a subject to a UDP echo server (`udpload latency`).
#[derive(Debug, Default, Clone)]
pub struct LatencyStats {
    /// Round trips attempted.
    pub sent: u64,
    /// Requests without an echo within 1 s.
    pub lost: u64,
    /// Median round trip, µs.
    pub p50_us: f64,
    /// 99th percentile round trip, µs.
    pub p99_us: f64,
    /// Slowest round trip, µs.
    pub max_us: f64,
}

/// DNS queries through a subject to dnsmasq (`udpload dns`).
#[derive(Debug, Default, Clone)]
pub struct DnsStats {
    /// Concurrent clients (one flow and one outstanding query each).
    pub concurrency: usize,
    /// Queries answered with an A record.
    pub answered: u64,
    /// Queries without a response within 1 s.
    pub lost: u64,
    /// Responses with an error or no answer.
    pub bad: u64,
    /// Duration of the load.
    pub seconds: f64,
}

/// UDP request/response results of one subject.
#[derive(Debug, Default)]
pub struct UdpServiceResult {
    /// Subject key.
    pub subject: String,
    /// Echo round trips.
    pub latency: Option<LatencyStats>,
    /// DNS queries.
    pub dns: Option<DnsStats>,
    /// Peak RSS of the relay process (none for loopback).
    pub peak_rss_kib: Option<u64>,
    /// Failures or remarks.
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
    /// RSS with them open, 0.5 s after the last one was verified.
    pub rss_idle_kib: Option<u64>,
    /// RSS with them open after they sat idle for 5 s more (longer than
    /// `tun_forward`'s default `--idle-trim` of 2 s), before the bulk transfer.
    pub rss_idle_settled_kib: Option<u64>,
    /// Page tables of the relay (`VmPTE`) at the same moment: memory RSS does not show, which
    /// grows with the number of buffers ever touched and their spacing.
    pub pte_idle_settled_kib: Option<u64>,
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
    /// Offered rate (`iperf3 -b`) of the paced UDP tests.
    pub udp_rate: String,
    /// Throughput cells.
    pub cells: Vec<Cell>,
    /// Connection-rate results.
    pub rates: Vec<RateResult>,
    /// Reconnect-storm results.
    pub storms: Vec<StormResult>,
    /// Idle-connection result.
    pub idle: Option<IdleResult>,
    /// Multi-core scaling: (runtime worker threads, 8-stream cell of netstack).
    pub scaling: Vec<(usize, Cell)>,
    /// UDP latency and DNS results.
    pub udp_services: Vec<UdpServiceResult>,
    /// Subjects that could not be run: (key, display name, why).
    pub skipped: Vec<(String, String, String)>,
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

/// Subjects with a cell of one of `tests` in the results, in table order.
fn present<'a>(
    results: &Results,
    subjects: &'a [Subject],
    tests: &[Direction],
) -> Vec<&'a Subject> {
    subjects
        .iter()
        .filter(|s| {
            results
                .cells
                .iter()
                .any(|c| c.subject == s.key && tests.contains(&c.direction))
        })
        .collect()
}

/// Median Gbit/s with the [min–max] spread when there was more than one run.
fn gbps_text(c: Option<&Cell>, runs: usize) -> String {
    match c.and_then(Cell::stats) {
        Some((med, lo, hi)) if runs > 1 => format!("{med:.2} [{lo:.2}–{hi:.2}]"),
        Some((med, _, _)) => format!("{med:.2}"),
        None => "failed".into(),
    }
}

/// An optional figure with `digits` decimals, or a dash.
fn num(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "—".into())
}

/// Header and rule of a table with a row per subject and a column per MTU × test (and a
/// column `extra` after each of those).
fn matrix_header(mtus: &[u32], tests: &[Direction], extra: Option<&str>) -> String {
    let mut header = String::from("| path |");
    let mut rule = String::from("|---|");
    for &mtu in mtus {
        for d in tests {
            let _ = write!(header, " MTU {mtu} {} |", d.label());
            rule.push_str("---|");
            if let Some(extra) = extra {
                let _ = write!(header, " {extra} |");
                rule.push_str("---|");
            }
        }
    }
    format!("{header}\n{rule}\n")
}

/// A note as one table cell.
fn cell_text(note: &str) -> String {
    note.replace('|', "/").replace('\n', " ")
}

/// The UDP sections: delivered throughput and loss per cell, then latency and DNS.
fn udp_markdown(md: &mut String, results: &Results, subjects: &[Subject]) {
    let shown = present(results, subjects, &Direction::UDP);
    if !shown.is_empty() {
        let _ = writeln!(
            md,
            "\n## UDP throughput (iperf3 -u -l 1400: delivered Gbit/s, median of {} run(s) of {} s, \
             and datagram loss; unlimited rate -b 0, and paced: -b {} for every subject)\n",
            results.runs, results.seconds, results.udp_rate
        );
        md.push_str(&matrix_header(&results.mtus, &Direction::UDP, Some("loss")));
        for s in &shown {
            let _ = write!(md, "| {} |", s.name);
            for &mtu in &results.mtus {
                for d in Direction::UDP {
                    let c = results.cell(s.key, mtu, d);
                    let loss = c.and_then(Cell::median_loss);
                    let _ = write!(
                        md,
                        " {} | {} |",
                        gbps_text(c, results.runs),
                        loss.map(|l| format!("{l:.1} %")).unwrap_or("—".into())
                    );
                }
            }
            md.push('\n');
        }
        let _ = writeln!(
            md,
            "\n## Per UDP cell: offered load, loss, CPU and memory of the relay process\n\n\
             | path | MTU | test | offered Gbit/s | delivered Gbit/s | loss % (median) | \
             CPU s per GB delivered | peak RSS | note |\n\
             |---|---|---|---|---|---|---|---|---|"
        );
        for s in &shown {
            for c in results
                .cells
                .iter()
                .filter(|c| c.subject == s.key && c.direction.is_udp())
            {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    s.name,
                    c.mtu,
                    c.direction.label(),
                    num(c.median_offered(), 2),
                    num(c.stats().map(|s| s.0), 2),
                    num(c.median_loss(), 1),
                    num(c.cpu_s_per_gb, 2),
                    mib(c.peak_rss_kib),
                    cell_text(&c.note)
                );
            }
        }
    }
    if !results.udp_services.is_empty() {
        let _ = writeln!(
            md,
            "\n## UDP request/response (MTU 1500): echo round trips and DNS queries\n\n\
             | path | echo round trips | lost | p50 µs | p99 µs | max µs | \
             DNS queries/s | DNS clients | DNS lost / bad | peak RSS | note |\n\
             |---|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in &results.udp_services {
            let l = r.latency.as_ref();
            let d = r.dns.as_ref();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                name(subjects, &r.subject),
                l.map(|l| l.sent.to_string()).unwrap_or("—".into()),
                l.map(|l| l.lost.to_string()).unwrap_or("—".into()),
                num(l.map(|l| l.p50_us), 1),
                num(l.map(|l| l.p99_us), 1),
                num(l.map(|l| l.max_us), 0),
                num(d.map(|d| d.answered as f64 / d.seconds.max(1e-9)), 0),
                d.map(|d| d.concurrency.to_string()).unwrap_or("—".into()),
                d.map(|d| format!("{} / {}", d.lost, d.bad))
                    .unwrap_or("—".into()),
                mib(r.peak_rss_kib),
                cell_text(&r.note)
            );
        }
    }
}

/// The TCP sections: throughput per cell, then retransmissions, CPU and memory.
fn tcp_markdown(md: &mut String, results: &Results, subjects: &[Subject]) {
    let _ = writeln!(
        md,
        "## Throughput (Gbit/s, median of {} run(s) of {} s; [min–max] when more than one)\n",
        results.runs, results.seconds
    );
    md.push_str(&matrix_header(&results.mtus, &Direction::ALL, None));
    for s in present(results, subjects, &Direction::ALL) {
        let _ = write!(md, "| {} |", s.name);
        for &mtu in &results.mtus {
            for d in Direction::ALL {
                let text = gbps_text(results.cell(s.key, mtu, d), results.runs);
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
    for s in present(results, subjects, &Direction::ALL) {
        for c in results
            .cells
            .iter()
            .filter(|c| c.subject == s.key && !c.direction.is_udp())
        {
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
                cell_text(&c.note)
            );
        }
    }
}

/// The reconnect-storm table and whether `tun_forward` stayed within issue 13's bound.
fn storm_markdown(md: &mut String, results: &Results, subjects: &[Subject]) {
    let Some(first) = results.storms.first() else {
        return;
    };
    let _ = writeln!(
        md,
        "\n## Reconnect storm: {} flows (each in a loop: connect, echo {} KiB, close; MTU 1500)\n\n\
         | path | connections/s | failed attempts | peak RSS | RSS at the end | note |\n\
         |---|---|---|---|---|---|",
        first.flows,
        first.bytes >> 10
    );
    for r in &results.storms {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            name(subjects, &r.subject),
            r.per_second()
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "failed".into()),
            r.errors,
            mib(r.peak_rss_kib),
            mib(r.end_rss_kib),
            cell_text(&r.note)
        );
    }
    let verdict = match results.storms.iter().find(|r| r.subject == "netstack") {
        Some(StormResult {
            peak_rss_kib: Some(peak),
            connections: Some(_),
            ..
        }) => {
            let met = *peak <= STORM_PEAK_RSS_TARGET_KIB;
            format!(
                "**{}** ({} peak)",
                if met { "met" } else { "missed" },
                mib(Some(*peak))
            )
        }
        Some(_) => "not measured (the storm failed)".into(),
        None => "not measured (netstack not selected)".into(),
    };
    let _ = writeln!(
        md,
        "\nTarget (issue 13): `tun_forward`'s peak RSS in the storm ≤ {}: {verdict}.",
        mib(Some(STORM_PEAK_RSS_TARGET_KIB))
    );
}

/// The Markdown report.
pub fn markdown(results: &Results, subjects: &[Subject]) -> String {
    let mut md = String::new();
    if !present(results, subjects, &Direction::ALL).is_empty() {
        tcp_markdown(&mut md, results, subjects);
    }
    udp_markdown(&mut md, results, subjects);

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
                cell_text(&r.note)
            );
        }
    }

    storm_markdown(&mut md, results, subjects);

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
             upload Gbit/s without | RSS before | RSS with idle, at once | RSS with idle, \
             after 5 s | page tables then (VmPTE) | peak RSS | note |\n\
             |---|---|---|---|---|---|---|---|---|---|\n\
             | {} | {} / {} / {} | {up} | {base} | {} | {} | {} | {} | {} | {} |",
            name(subjects, &i.subject),
            i.requested,
            i.held,
            i.failed,
            mib(i.rss_before_kib),
            mib(i.rss_idle_kib),
            mib(i.rss_idle_settled_kib),
            mib(i.pte_idle_settled_kib),
            mib(i.peak_rss_kib),
            cell_text(&i.note)
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
                cell_text(&c.note)
            );
        }
    }
    if !results.skipped.is_empty() {
        let _ = writeln!(md, "\n## Subjects that could not be run\n");
        for (_, subject, why) in &results.skipped {
            let _ = writeln!(md, "* {subject}: {}", why.replace('\n', " "));
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
                "offered_gbps": c.offered_gbps, "loss_percent": c.loss_percent,
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
    let storms: Vec<_> = results
        .storms
        .iter()
        .map(|r| {
            json!({
                "subject": r.subject, "flows": r.flows, "bytes": r.bytes, "seconds": r.seconds,
                "connections": r.connections, "per_second": r.per_second(), "errors": r.errors,
                "peak_rss_kib": r.peak_rss_kib, "end_rss_kib": r.end_rss_kib,
                "peak_rss_target_kib": STORM_PEAK_RSS_TARGET_KIB, "note": r.note,
            })
        })
        .collect();
    let idle = results.idle.as_ref().map(|i| {
        json!({
            "subject": i.subject, "requested": i.requested, "held": i.held, "failed": i.failed,
            "rss_before_kib": i.rss_before_kib, "rss_idle_kib": i.rss_idle_kib,
            "rss_idle_settled_kib": i.rss_idle_settled_kib,
            "pte_idle_settled_kib": i.pte_idle_settled_kib,
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
    let udp_services: Vec<_> = results
        .udp_services
        .iter()
        .map(|r| {
            json!({
                "subject": r.subject,
                "latency": r.latency.as_ref().map(|l| json!({
                    "sent": l.sent, "lost": l.lost, "p50_us": l.p50_us, "p99_us": l.p99_us,
                    "max_us": l.max_us,
                })),
                "dns": r.dns.as_ref().map(|d| json!({
                    "concurrency": d.concurrency, "answered": d.answered, "lost": d.lost,
                    "bad": d.bad, "seconds": d.seconds,
                })),
                "peak_rss_kib": r.peak_rss_kib, "note": r.note,
            })
        })
        .collect();
    let skipped: Vec<_> = results
        .skipped
        .iter()
        .map(|(key, _, why)| json!({ "subject": key, "why": why }))
        .collect();
    let doc = json!({
        "machine": results.machine, "command": results.command,
        "seconds": results.seconds, "runs": results.runs,
        "cells": cells, "connection_rate": rates, "reconnect_storm": storms, "idle": idle, "scaling": scaling,
        "udp_services": udp_services, "skipped": skipped,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Bar colours, one per subject: as many as there are subjects, so that no two subjects of a
/// chart share one (with seven, the eighth subject, gVisor's, took the kernel relay's grey).
pub(crate) const COLOURS: [&str; 12] = [
    "#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#bcbd22", "#8c564b",
    "#e377c2", "#17becf", "#393b79", "#000000",
];

/// Geometry of the chart.
const LEFT: f64 = 60.0;
/// Right margin.
const RIGHT: f64 = 20.0;
/// Height of one panel's plot area.
const PLOT_H: f64 = 300.0;
/// Width of one bar slot.
const BAR: f64 = 14.0;

/// One panel of the chart: bars of median Gbit/s per (MTU, test) group for every subject of
/// `legend` that has the cell, whiskers for min–max; starts at `top_y`, returns its bottom.
fn svg_panel(
    s: &mut String,
    results: &Results,
    legend: &[&Subject],
    tests: &[Direction],
    title: &str,
    top_y: f64,
) -> f64 {
    let groups: Vec<(u32, Direction)> = results
        .mtus
        .iter()
        .flat_map(|&m| tests.iter().map(move |&d| (m, d)))
        .collect();
    let max = results
        .cells
        .iter()
        .filter(|c| tests.contains(&c.direction))
        .filter_map(|c| c.stats().map(|s| s.2))
        .fold(0.0f64, f64::max);
    // Round the scale up to 1, 2 or 5 times a power of ten.
    let magnitude = 10f64.powf(max.max(0.1).log10().floor());
    let step = [0.2, 0.5, 1.0, 2.0]
        .into_iter()
        .map(|f| f * magnitude)
        .find(|st| max / st <= 5.0)
        .unwrap_or(2.0 * magnitude);
    let top = step * (max / step).ceil().max(1.0);
    let plot_top = top_y + 30.0;
    let group_w = BAR * legend.len().max(1) as f64 + 24.0;
    let width = LEFT + RIGHT + group_w * groups.len() as f64;
    let y = |v: f64| plot_top + PLOT_H * (1.0 - v / top);
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"14\">{title}</text>",
        top_y + 16.0
    );
    let mut tick = 0.0;
    while tick <= top + 1e-9 {
        let ty = y(tick);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            width - RIGHT,
            LEFT - 6.0,
            ty + 4.0,
            if step < 1.0 {
                format!("{tick:.1}")
            } else {
                format!("{tick:.0}")
            }
        );
        tick += step;
    }
    for (g, (mtu, d)) in groups.iter().enumerate() {
        let gx = LEFT + group_w * g as f64 + 12.0;
        for (i, subj) in legend.iter().enumerate() {
            let Some(cell) = results.cell(subj.key, *mtu, *d) else {
                continue;
            };
            let Some((med, lo, hi)) = cell.stats() else {
                continue;
            };
            let x = gx + BAR * i as f64;
            let loss = cell
                .median_loss()
                .map(|l| format!(", {l:.1} % lost"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\">\
                 <title>{}: {med:.2} Gbit/s{loss}</title></rect>",
                y(med),
                BAR - 2.0,
                plot_top + PLOT_H - y(med),
                COLOURS[i % COLOURS.len()],
                subj.name
            );
            if hi > lo {
                let cx = x + (BAR - 2.0) / 2.0;
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
            plot_top + PLOT_H + 16.0,
            plot_top + PLOT_H + 30.0,
            d.label()
        );
    }
    plot_top + PLOT_H + 44.0
}

/// Grouped bar charts of median Gbit/s per cell, with min–max whiskers: TCP relay throughput,
/// then UDP delivered throughput (with the loss in each bar's tooltip), then the legend.
pub fn svg(results: &Results, subjects: &[Subject]) -> String {
    let all_tests: Vec<Direction> = Direction::ALL.into_iter().chain(Direction::UDP).collect();
    let legend = present(results, subjects, &all_tests);
    let group_w = BAR * legend.len().max(1) as f64 + 24.0;
    let groups = results.mtus.len() * Direction::ALL.len().max(Direction::UDP.len());
    let width = LEFT + RIGHT + group_w * groups as f64;
    let mut body = String::new();
    let mut bottom = 10.0;
    let spread = format!(
        "Gbit/s, median; whiskers: min–max of {} run(s) of {} s",
        results.runs, results.seconds
    );
    if !present(results, subjects, &Direction::ALL).is_empty() {
        let title = format!("TCP relay throughput through a TUN device ({spread})");
        bottom = svg_panel(&mut body, results, &legend, &Direction::ALL, &title, bottom);
    }
    if !present(results, subjects, &Direction::UDP).is_empty() {
        let title = format!(
            "UDP through a TUN device, 1,400-byte datagrams, unlimited and paced at {}: \
             delivered ({spread})",
            results.udp_rate
        );
        bottom = svg_panel(&mut body, results, &legend, &Direction::UDP, &title, bottom);
    }
    for (i, subj) in legend.iter().enumerate() {
        let ly = bottom + 20.0 * i as f64;
        let _ = writeln!(
            body,
            "<rect x=\"{LEFT}\" y=\"{ly:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            COLOURS[i % COLOURS.len()],
            LEFT + 18.0,
            ly + 10.0,
            subj.name
        );
    }
    let height = bottom + 20.0 * legend.len() as f64 + 10.0;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects() -> Vec<Subject> {
        ["netstack", "kernel-relay"]
            .into_iter()
            .map(|key| Subject {
                key,
                name: key,
                kind: SubjectKind::Loopback,
                args: Vec::new(),
            })
            .collect()
    }

    fn udp_cell(subject: &str, direction: Direction, gbps: f64, loss: f64) -> Cell {
        let mut c = Cell::new(subject, 1500, direction);
        c.gbps.push(gbps);
        c.offered_gbps.push(1.0);
        c.loss_percent.push(Some(loss));
        c
    }

    fn udp_results() -> Results {
        Results {
            runs: 1,
            seconds: 2,
            mtus: vec![1500],
            udp_rate: "300M".into(),
            cells: vec![
                udp_cell("netstack", Direction::UdpUp, 0.5, 12.5),
                udp_cell("kernel-relay", Direction::UdpUp, 0.25, 40.0),
            ],
            udp_services: vec![UdpServiceResult {
                subject: "netstack".into(),
                latency: Some(LatencyStats {
                    sent: 100,
                    lost: 1,
                    p50_us: 40.0,
                    p99_us: 90.0,
                    max_us: 400.0,
                }),
                dns: Some(DnsStats {
                    concurrency: 32,
                    answered: 20_000,
                    lost: 2,
                    bad: 0,
                    seconds: 2.0,
                }),
                ..UdpServiceResult::default()
            }],
            skipped: vec![("gvisor".into(), "gVisor".into(), "no Go".into())],
            ..Results::default()
        }
    }

    #[test]
    fn udp_only_results_give_udp_tables_and_no_tcp_table() {
        let md = markdown(&udp_results(), &subjects());
        assert!(!md.contains("## Throughput"), "{md}");
        assert!(
            md.contains("| netstack | 0.50 | 12.5 % | failed | — |"),
            "{md}"
        );
        assert!(md.contains("| kernel-relay | 0.25 | 40.0 % |"), "{md}");
        assert!(
            md.contains("| netstack | 100 | 1 | 40.0 | 90.0 | 400 | 10000 | 32 | 2 / 0 |"),
            "{md}"
        );
        assert!(md.contains("* gVisor: no Go"), "{md}");
    }

    #[test]
    fn the_chart_has_a_udp_panel_with_the_loss_in_the_tooltip() {
        let svg = svg(&udp_results(), &subjects());
        assert!(svg.contains("paced at 300M"), "{svg}");
        assert!(!svg.contains("TCP relay throughput"), "{svg}");
        assert!(svg.contains("netstack: 0.50 Gbit/s, 12.5 % lost"), "{svg}");
    }

    fn storm(subject: &str, peak_mib: u64) -> StormResult {
        StormResult {
            subject: subject.into(),
            flows: 256,
            bytes: 64 << 10,
            seconds: 2.0,
            connections: Some(3000),
            errors: 0,
            peak_rss_kib: Some(peak_mib << 10),
            end_rss_kib: Some(8 << 10),
            note: String::new(),
        }
    }

    #[test]
    fn storm_table_says_whether_tun_forward_met_the_rss_target() {
        let met = Results {
            storms: vec![storm("kernel-relay", 100), storm("netstack", 20)],
            ..Results::default()
        };
        let md = markdown(&met, &subjects());
        assert!(md.contains("## Reconnect storm: 256 flows"), "{md}");
        assert!(
            md.contains("| netstack | 1500 | 0 | 20.0 MiB | 8.0 MiB |  |"),
            "{md}"
        );
        assert!(md.contains("≤ 64.0 MiB: **met** (20.0 MiB peak)"), "{md}");
        assert!(json(&met).contains("\"per_second\": 1500.0"));

        let missed = Results {
            storms: vec![storm("netstack", 65)],
            ..Results::default()
        };
        assert!(markdown(&missed, &subjects()).contains("**missed** (65.0 MiB peak)"));
        let absent = Results {
            storms: vec![storm("kernel-relay", 10)],
            ..Results::default()
        };
        assert!(markdown(&absent, &subjects()).contains("not measured (netstack not selected)"));
    }

    #[test]
    fn udp_tests_pass_the_rate_only_when_paced() {
        assert_eq!(
            Direction::UdpUp.iperf_args("300M"),
            ["-u", "-b", "0", "-l", "1400"]
        );
        assert_eq!(
            Direction::UdpDownPaced.iperf_args("300M"),
            ["-u", "-b", "300M", "-l", "1400", "-R"]
        );
        assert!(Direction::ALL.iter().all(|d| !d.is_udp()));
    }
}
