//! `cargo xtask bench`: throughput, CPU, memory and connection-rate benchmark of netstack
//! against its peers, through a TUN device, inside private network namespaces.
//!
//! Every TUN subject gets a fresh namespace per cell (MTU × test): the subject creates `tun0`,
//! the kernel gets `198.18.0.1/15` on it, an `iperf3` client connects to `198.19.0.10:5201`, the
//! subject terminates TCP and relays (same glue for every subject) to the `iperf3` server on
//! `127.0.0.1:5201` in the same namespace. References: the same relay on a kernel socket (the
//! ceiling), a packet copier between two TUN devices in two namespaces (the floor) and kernel
//! loopback. Connection tests (setup rate, a reconnect storm of 256 flows, idle connections)
//! relay to an echo server the same way. The same paths carry UDP (iperf3 `-u`), and UDP request/response tests
//! (`bench_udp.rs`) measure echo round trips and DNS queries to dnsmasq through each subject.
//! One subject, a forwarder on gVisor's netstack, is written in Go (`bench_go.rs` builds it).
//! See `BENCHMARKS.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::bench_env::{
    apt_install, cpu_seconds, exec_in_bounded, install_sigint_handler, ip, raise_nofile,
    run_output, status_kib, Sandbox, INTERRUPTED,
};
use crate::bench_report::{
    self, Cell, Direction, IdleResult, RateResult, Results, StormResult, Subject, SubjectKind,
};

#[path = "bench_go.rs"]
mod go;
#[path = "bench_udp.rs"]
mod udp;

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs per cell (median and spread are taken over them).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// One run of 2 s per cell, shorter rate test, fewer idle connections.
    #[arg(long)]
    quick: bool,
    /// Only run these subjects (comma-separated keys: netstack, netstack-device-thread,
    /// netstack-smol, netstack-smol-threads, netstack-smoltcp, ipstack, gvisor, kernel-relay,
    /// tun-floor, loopback; and
    /// netstack-baseline, another build of tun_forward named by $NETSTACK_BENCH_BASELINE;
    /// netstack-baseline-b, a third one named by $NETSTACK_BENCH_BASELINE_B).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// MTUs to test.
    #[arg(long, value_delimiter = ',', default_values_t = [1500u32, 65000])]
    mtu: Vec<u32>,
    /// Idle connections for the idle test (default: 10000 if `tun_forward` has
    /// `--max-connections`, else 4000, under the stack's default cap of 4096).
    #[arg(long)]
    idle: Option<usize>,
    /// Skip the connection tests (connection rate, reconnect storm, idle connections).
    #[arg(long)]
    no_conn_tests: bool,
    /// Skip the reconnect storm (256 flows reconnecting in a loop, 64 KiB echoed each).
    #[arg(long)]
    no_storm: bool,
    /// Skip the idle-connection test (its 10,000 connections take a while to open).
    #[arg(long)]
    no_idle: bool,
    /// Skip the multi-core scaling test (netstack, 8 streams, 1 and 2 runtime worker
    /// threads).
    #[arg(long)]
    no_scaling: bool,
    /// Skip the TCP throughput cells.
    #[arg(long)]
    no_tcp: bool,
    /// Skip the UDP cells, the UDP latency and the DNS tests.
    #[arg(long)]
    no_udp: bool,
    /// Alternate the subjects run by run (each run restarts its subject) instead of measuring
    /// one subject's runs back to back: load that comes and goes on the machine then spreads
    /// over every subject instead of landing on one.
    #[arg(long)]
    interleave: bool,
    /// Offered rate (iperf3 `-b`) of the paced UDP cells, the same for every subject.
    #[arg(long, default_value = "300M")]
    udp_rate: String,
}

/// Port of the iperf3 server in every namespace.
const IPERF_PORT: u16 = 5201;
/// Port of the kernel relay.
const RELAY_PORT: u16 = 5202;
/// Port of the echo server of the connection tests.
const ECHO_PORT: u16 = 7000;
/// Port of the kernel relay in front of the echo server.
const ECHO_RELAY_PORT: u16 = 7001;
/// How long a subject may take to print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the idle-connection test lets its connections sit idle before the second RSS
/// reading: longer than `tun_forward`'s default `--idle-trim` (2 s).
const IDLE_SETTLE: Duration = Duration::from_secs(5);

/// Concurrent flows of the reconnect storm (issue 13: "a storm of 256 reconnecting flows stays
/// ≤ 64 MiB").
const STORM_FLOWS: usize = 256;
/// Bytes each storm connection writes and reads back: enough to fill a relay's buffers.
const STORM_BYTES: usize = 64 << 10;

/// Runtime worker threads of the multi-core scaling test.
const SCALING_WORKERS: [usize; 2] = [1, 2];

/// Environment variable naming another build of `tun_forward` to measure beside this one (a
/// before/after comparison): subject `netstack-baseline`.
const BASELINE_ENV: &str = "NETSTACK_BENCH_BASELINE";

/// Environment variable naming a third build of `tun_forward` (comparing two candidate
/// changes against a baseline in one run): subject `netstack-baseline-b`.
const BASELINE_B_ENV: &str = "NETSTACK_BENCH_BASELINE_B";

/// The subjects, in table order.
fn subjects(release: &Path) -> Vec<Subject> {
    let tun = |key, name, bin: &str| Subject {
        key,
        name,
        kind: SubjectKind::Tun(release.join(bin)),
        args: Vec::new(),
    };
    let baseline = std::env::var_os(BASELINE_ENV).map(|path| Subject {
        key: "netstack-baseline",
        name: "netstack, baseline build (NETSTACK_BENCH_BASELINE)",
        kind: SubjectKind::Tun(PathBuf::from(path)),
        args: Vec::new(),
    });
    let baseline_b = std::env::var_os(BASELINE_B_ENV).map(|path| Subject {
        key: "netstack-baseline-b",
        name: "netstack, second baseline build (NETSTACK_BENCH_BASELINE_B)",
        kind: SubjectKind::Tun(PathBuf::from(path)),
        args: Vec::new(),
    });
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut subjects = vec![
        Subject {
            key: "kernel-relay",
            name: "kernel-terminated relay (ceiling)",
            kind: SubjectKind::KernelRelay(release.join("kernel_relay")),
            args: Vec::new(),
        },
        tun("netstack", "netstack (tun_forward)", "tun_forward"),
        Subject {
            args: vec!["--device-thread".into()],
            ..tun(
                "netstack-device-thread",
                "netstack, device + UDP thread (tun_forward --device-thread)",
                "tun_forward",
            )
        },
        tun(
            "netstack-smol",
            "netstack, one thread (tun_forward_smol)",
            "tun_forward_smol",
        ),
        Subject {
            args: vec!["--threads".into(), cores.to_string()],
            ..tun(
                "netstack-smol-threads",
                "netstack, async-io on every core (tun_forward_smol --threads N)",
                "tun_forward_smol",
            )
        },
        tun(
            "netstack-smoltcp",
            "netstack-smoltcp 0.2.4",
            "fwd_netstack_smoltcp",
        ),
        tun("ipstack", "ipstack 1.0.1", "fwd_ipstack"),
        tun(
            "gvisor",
            "gVisor netstack (tun2socks settings)",
            go::GVISOR_BINARY,
        ),
        Subject {
            key: "tun-floor",
            name: "TUN floor (2 TUN legs, no TCP)",
            kind: SubjectKind::Floor(release.join("tun_floor")),
            args: Vec::new(),
        },
        Subject {
            key: "loopback",
            name: "kernel loopback (direct)",
            kind: SubjectKind::Loopback,
            args: Vec::new(),
        },
    ];
    for extra in [baseline_b, baseline].into_iter().flatten() {
        subjects.insert(2, extra);
    }
    subjects
}

/// Runs the benchmark.
pub fn run_bench(mut args: BenchArgs) -> Result<(), String> {
    if !super::is_root() {
        return Err("`cargo xtask bench` must run as root (network namespaces, TUN)".into());
    }
    if args.quick {
        args.seconds = 2;
        args.runs = 1;
    }
    ensure_tools()?;
    let nofile = raise_nofile()?;
    eprintln!("==> open-file limit: {nofile}");
    install_sigint_handler();
    let release = build()?;
    let wanted = |key: &str| args.only.is_empty() || args.only.iter().any(|o| o == key);
    let gvisor = if wanted("gvisor") {
        go::build_gvisor(&release)
    } else {
        Err("not selected".into())
    };
    let dnsmasq = if args.no_udp {
        None
    } else {
        udp::ensure_dnsmasq()
            .map_err(|e| eprintln!("==> DNS test skipped: {e}"))
            .ok()
    };
    let out_dir = super::target_dir().join("bench");
    let log_dir = out_dir.join("logs");
    // Logs of an earlier run would be confusing next to this one's.
    let _ = std::fs::remove_dir_all(&log_dir);
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| format!("creating {}: {e}", log_dir.display()))?;

    let max_conn_flag = has_flag(&release.join("tun_forward"), "--max-connections");
    let idle = args.idle.unwrap_or(match (max_conn_flag, args.quick) {
        (true, false) => 10_000,
        (true, true) => 2_000,
        (false, _) => 4_000,
    });

    let mut results = Results {
        machine: machine_description(),
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        seconds: args.seconds,
        runs: args.runs,
        mtus: args.mtu.clone(),
        udp_rate: args.udp_rate.clone(),
        ..Results::default()
    };
    let all = subjects(&release);
    let mut selected: Vec<&Subject> = all.iter().filter(|s| wanted(s.key)).collect();
    if let Err(why) = &gvisor {
        if wanted("gvisor") {
            eprintln!("==> gVisor subject skipped: {why}");
            let name = all
                .iter()
                .find(|s| s.key == "gvisor")
                .map_or("", |s| s.name);
            results
                .skipped
                .push(("gvisor".into(), name.into(), why.clone()));
        }
        selected.retain(|s| s.key != "gvisor");
    }

    let mut tests: Vec<Direction> = Vec::new();
    if !args.no_tcp {
        tests.extend(Direction::ALL);
    }
    if !args.no_udp {
        tests.extend(Direction::UDP);
    }
    let mut sandbox = Sandbox::new(&log_dir);
    if args.interleave {
        results
            .cells
            .extend(interleaved_cells(&mut sandbox, &selected, &tests, &args)?);
    } else {
        for subject in &selected {
            for &mtu in &args.mtu {
                for &direction in &tests {
                    check_interrupted()?;
                    eprintln!(
                        "==> {} | MTU {mtu} | {} | {} x {} s",
                        subject.name,
                        direction.label(),
                        args.runs,
                        args.seconds
                    );
                    let cell = measure_cell(&mut sandbox, subject, mtu, direction, &args);
                    eprintln!("    {}", cell.summary());
                    results.cells.push(cell);
                }
            }
        }
    }

    if !args.no_scaling {
        if let Some(subject) = selected.iter().find(|s| s.key == "netstack") {
            // The same 8-stream cell with the tokio runtime limited to 1, then 2 worker
            // threads (tokio reads TOKIO_WORKER_THREADS; the default is one per core).
            for workers in SCALING_WORKERS {
                for &mtu in &args.mtu {
                    check_interrupted()?;
                    eprintln!(
                        "==> {} | MTU {mtu} | 8 streams (-P 8) | {workers} worker thread(s)",
                        subject.name
                    );
                    sandbox.env = vec![("TOKIO_WORKER_THREADS".into(), workers.to_string())];
                    let direction = Direction::Parallel8;
                    let cell = match throughput_cell(&mut sandbox, subject, mtu, direction, &args) {
                        Ok(cell) => cell,
                        Err(e) => Cell::failed(subject.key, mtu, direction, e),
                    };
                    sandbox.env.clear();
                    sandbox.clear();
                    eprintln!("    {}", cell.summary());
                    results.scaling.push((workers, cell));
                }
            }
        }
    }

    if !args.no_udp {
        let service = udp::ServiceArgs {
            latency_count: if args.quick { 5_000 } else { 20_000 },
            dns_seconds: args.seconds as f64,
            dns_concurrency: 32,
            dnsmasq: dnsmasq.clone(),
        };
        for subject in &selected {
            if matches!(subject.kind, SubjectKind::Floor(_)) {
                continue;
            }
            check_interrupted()?;
            eprintln!(
                "==> {} | UDP echo round trips and DNS queries (MTU 1500)",
                subject.name
            );
            let r = udp::udp_services(&mut sandbox, subject, &release, &service);
            sandbox.clear();
            eprintln!("    {r:?}");
            results.udp_services.push(r);
        }
    }

    if !args.no_conn_tests {
        let rate_seconds = if args.quick { 2.0 } else { 5.0 };
        for subject in &selected {
            if matches!(subject.kind, SubjectKind::Floor(_) | SubjectKind::Loopback) {
                continue;
            }
            for concurrency in [1usize, 32] {
                check_interrupted()?;
                eprintln!(
                    "==> {} | connection rate, {concurrency} at a time, {rate_seconds} s",
                    subject.name
                );
                let r = connection_rate(&mut sandbox, subject, concurrency, rate_seconds, &release)
                    .unwrap_or_else(|e| RateResult {
                        subject: subject.key.to_string(),
                        concurrency,
                        per_second: None,
                        errors: 0,
                        note: e,
                    });
                sandbox.clear();
                eprintln!("    {r:?}");
                results.rates.push(r);
            }
        }
        if !args.no_storm {
            let storm_seconds = if args.quick { 2.0 } else { 10.0 };
            for subject in &selected {
                if matches!(subject.kind, SubjectKind::Floor(_) | SubjectKind::Loopback) {
                    continue;
                }
                check_interrupted()?;
                eprintln!(
                    "==> {} | reconnect storm, {STORM_FLOWS} flows x {} KiB, {storm_seconds} s",
                    subject.name,
                    STORM_BYTES >> 10
                );
                let r = storm_test(&mut sandbox, subject, storm_seconds, &release).unwrap_or_else(
                    |e| StormResult {
                        subject: subject.key.to_string(),
                        flows: STORM_FLOWS,
                        bytes: STORM_BYTES,
                        note: e,
                        ..StormResult::default()
                    },
                );
                sandbox.clear();
                eprintln!("    {r:?}");
                results.storms.push(r);
            }
        }
        if let Some(subject) = selected
            .iter()
            .find(|s| s.key == "netstack" && !args.no_idle)
        {
            check_interrupted()?;
            eprintln!(
                "==> {} | {idle} idle connections + bulk upload",
                subject.name
            );
            let r = idle_test(&mut sandbox, subject, idle, max_conn_flag, &args, &release)
                .unwrap_or_else(|e| IdleResult {
                    subject: subject.key.to_string(),
                    requested: idle,
                    note: e,
                    ..IdleResult::default()
                });
            sandbox.clear();
            eprintln!("    {r:?}");
            results.idle = Some(r);
        }
    }
    drop(sandbox);

    let markdown = bench_report::markdown(&results, &all);
    println!("{markdown}");
    let write = |name: &str, text: &str| {
        let path = out_dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
        Ok::<(), String>(())
    };
    write("results.md", &markdown)?;
    write("results.json", &bench_report::json(&results))?;
    write("throughput.svg", &bench_report::svg(&results, &all))?;
    Ok(())
}

/// One cell of `subject`, set up and torn down; a failure becomes a failed cell.
fn measure_cell(
    sandbox: &mut Sandbox,
    subject: &Subject,
    mtu: u32,
    direction: Direction,
    args: &BenchArgs,
) -> Cell {
    let cell = match throughput_cell(sandbox, subject, mtu, direction, args) {
        Ok(cell) => cell,
        Err(e) => Cell::failed(subject.key, mtu, direction, e),
    };
    sandbox.clear();
    cell
}

/// The throughput cells with the subjects alternating run by run (`--interleave`): run `i`
/// of every subject, then run `i + 1`; each subject's runs are merged into its cell.
fn interleaved_cells(
    sandbox: &mut Sandbox,
    selected: &[&Subject],
    tests: &[Direction],
    args: &BenchArgs,
) -> Result<Vec<Cell>, String> {
    let one_run = BenchArgs {
        runs: 1,
        only: Vec::new(),
        mtu: Vec::new(),
        ..args.clone()
    };
    let mut cells = Vec::new();
    for &mtu in &args.mtu {
        for &direction in tests {
            let mut merged: Vec<Cell> = selected
                .iter()
                .map(|s| Cell::new(s.key, mtu, direction))
                .collect();
            let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); selected.len()];
            for run in 0..args.runs {
                for (i, subject) in selected.iter().enumerate() {
                    check_interrupted()?;
                    eprintln!(
                        "==> {} | MTU {mtu} | {} | run {} of {} x {} s (interleaved)",
                        subject.name,
                        direction.label(),
                        run + 1,
                        args.runs,
                        args.seconds
                    );
                    let cell = measure_cell(sandbox, subject, mtu, direction, &one_run);
                    eprintln!("    {}", cell.summary());
                    let into = &mut merged[i];
                    into.gbps.extend(cell.gbps);
                    into.retransmits.extend(cell.retransmits);
                    into.offered_gbps.extend(cell.offered_gbps);
                    into.loss_percent.extend(cell.loss_percent);
                    cpu[i].extend(cell.cpu_s_per_gb);
                    into.peak_rss_kib = into.peak_rss_kib.max(cell.peak_rss_kib);
                    if !cell.note.is_empty() {
                        into.note = cell.note;
                    }
                }
            }
            for (cell, cpu) in merged.iter_mut().zip(cpu) {
                if !cpu.is_empty() {
                    cell.cpu_s_per_gb = Some(cpu.iter().sum::<f64>() / cpu.len() as f64);
                }
            }
            cells.extend(merged);
        }
    }
    Ok(cells)
}

/// Fails if Ctrl-C was pressed.
fn check_interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted (namespaces and processes removed)".into())
    } else {
        Ok(())
    }
}

/// Checks for `ip` and `iperf3`, installing iperf3 with apt-get if missing.
fn ensure_tools() -> Result<(), String> {
    if run_output("ip", &["-V"]).is_err() {
        return Err("`ip` (iproute2) not found".into());
    }
    if run_output("iperf3", &["--version"]).is_err() {
        eprintln!("==> iperf3 missing");
        apt_install(&["iperf3"])?;
    }
    Ok(())
}

/// Builds `tun_forward` and the bench binaries (release); returns the release directory.
fn build() -> Result<PathBuf, String> {
    let builds: [&[&str]; 2] = [
        &[
            "build",
            "--release",
            "-p",
            "netstack-examples",
            "--bin",
            "tun_forward",
            "--bin",
            "tun_forward_smol",
        ],
        &["build", "--release", "-p", "netstack-bench", "--bins"],
    ];
    for args in builds {
        eprintln!("==> cargo {}", args.join(" "));
        let status = Command::new(super::cargo())
            .args(args)
            .current_dir(super::workspace_root())
            .status()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build failed ({status})"));
        }
    }
    let release = super::target_dir().join("release");
    for bin in [
        "tun_forward",
        "tun_forward_smol",
        "fwd_netstack_smoltcp",
        "fwd_ipstack",
        "kernel_relay",
        "tun_floor",
        "connload",
        "udpload",
    ] {
        if !release.join(bin).is_file() {
            return Err(format!(
                "built, but {} is missing",
                release.join(bin).display()
            ));
        }
    }
    Ok(release)
}

/// Whether `binary --help` mentions `flag`.
fn has_flag(binary: &Path, flag: &str) -> bool {
    Command::new(binary)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
        .unwrap_or(false)
}

/// `nproc`, `lscpu | head`, `uname -r`, iperf3 version and load average.
fn machine_description() -> String {
    let sh = |cmd: &str| {
        Command::new("sh")
            .args(["-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
            .unwrap_or_default()
    };
    format!(
        "nproc: {}\nkernel: {}\n{}\nload average at start: {}\n{}",
        sh("nproc"),
        sh("uname -r"),
        sh("iperf3 --version | head -1"),
        sh("cut -d' ' -f1-3 /proc/loadavg"),
        sh("lscpu | head -15"),
    )
}

/// Where the iperf3 client runs and what it connects to.
struct Path2 {
    /// Namespace of the client.
    client_ns: String,
    /// Server address.
    host: String,
    /// Server port.
    port: u16,
    /// The measured relay process, if any (index in the sandbox).
    relay: Option<usize>,
}

/// Starts TUN subject `binary` in `ns` (`--tun tun0 --mtu MTU --redirect 127.0.0.1`, then
/// `extra`), waits for `ready`, gives the kernel side `198.18.0.1/15` and brings `tun0` up;
/// returns the subject's sandbox index. Every flow to 198.19.x.y:P then reaches 127.0.0.1:P.
fn start_tun_subject(
    sandbox: &mut Sandbox,
    ns: &str,
    subject: &Subject,
    binary: &Path,
    mtu: u32,
    extra: &[String],
) -> Result<usize, String> {
    let mut args: Vec<String> = [
        "--tun",
        "tun0",
        "--mtu",
        &mtu.to_string(),
        "--redirect",
        "127.0.0.1",
    ]
    .map(String::from)
    .to_vec();
    args.extend_from_slice(&subject.args);
    args.extend_from_slice(extra);
    let relay = start_ready(sandbox, ns, subject.key, binary, &args)?;
    ip(ns, &["addr", "add", "198.18.0.1/15", "dev", "tun0"])?;
    ip(ns, &["link", "set", "tun0", "up"])?;
    Ok(relay)
}

/// Sets up `subject` at `mtu` for an iperf3 test (with the kernel relay relaying UDP too if
/// `udp`); returns the client's path.
fn setup(sandbox: &mut Sandbox, subject: &Subject, mtu: u32, udp: bool) -> Result<Path2, String> {
    let ns = sandbox.netns()?;
    let iperf = |sandbox: &mut Sandbox, ns: &str, bind: &str| {
        let args = ["-s", "-B", bind, "-p", &IPERF_PORT.to_string()].map(String::from);
        sandbox.spawn(ns, "iperf3-server", Path::new("iperf3"), &args)
    };
    match &subject.kind {
        SubjectKind::Tun(binary) => {
            iperf(sandbox, &ns, "127.0.0.1")?;
            let relay = start_tun_subject(sandbox, &ns, subject, binary, mtu, &[])?;
            Ok(Path2 {
                client_ns: ns,
                host: "198.19.0.10".into(),
                port: IPERF_PORT,
                relay: Some(relay),
            })
        }
        SubjectKind::KernelRelay(binary) => {
            ip(&ns, &["link", "set", "lo", "mtu", &mtu.to_string()])?;
            iperf(sandbox, &ns, "127.0.0.1")?;
            let mut args = vec![
                "--listen".to_string(),
                format!("127.0.0.1:{RELAY_PORT}"),
                "--target".to_string(),
                format!("127.0.0.1:{IPERF_PORT}"),
            ];
            if udp {
                args.push("--udp".into());
            }
            let relay = start_ready(sandbox, &ns, subject.key, binary, &args)?;
            Ok(Path2 {
                client_ns: ns,
                host: "127.0.0.1".into(),
                port: RELAY_PORT,
                relay: Some(relay),
            })
        }
        SubjectKind::Loopback => {
            ip(&ns, &["link", "set", "lo", "mtu", &mtu.to_string()])?;
            iperf(sandbox, &ns, "127.0.0.1")?;
            Ok(Path2 {
                client_ns: ns,
                host: "127.0.0.1".into(),
                port: IPERF_PORT,
                relay: None,
            })
        }
        SubjectKind::Floor(binary) => {
            // Client namespace `ns` (tfa, 198.18.0.1/24) ↔ tun_floor ↔ server namespace (tfb,
            // 198.18.1.1/24). Both devices are created in `ns`; tfb is then moved.
            let server_ns = sandbox.netns()?;
            let args = ["--tun-a", "tfa", "--tun-b", "tfb"].map(String::from);
            let relay = start_ready(sandbox, &ns, subject.key, binary, &args)?;
            let m = mtu.to_string();
            ip(&ns, &["link", "set", "tfb", "netns", &server_ns])?;
            ip(&ns, &["link", "set", "tfa", "mtu", &m, "up"])?;
            ip(&ns, &["addr", "add", "198.18.0.1/24", "dev", "tfa"])?;
            ip(&ns, &["route", "add", "198.18.1.0/24", "dev", "tfa"])?;
            ip(&server_ns, &["link", "set", "tfb", "mtu", &m, "up"])?;
            ip(&server_ns, &["addr", "add", "198.18.1.1/24", "dev", "tfb"])?;
            ip(&server_ns, &["route", "add", "198.18.0.0/24", "dev", "tfb"])?;
            iperf(sandbox, &server_ns, "198.18.1.1")?;
            Ok(Path2 {
                client_ns: ns,
                host: "198.18.1.1".into(),
                port: IPERF_PORT,
                relay: Some(relay),
            })
        }
    }
}

/// Starts a subject and waits for its `ready` line; returns its sandbox index.
fn start_ready(
    sandbox: &mut Sandbox,
    ns: &str,
    name: &str,
    binary: &Path,
    args: &[String],
) -> Result<usize, String> {
    let index = sandbox.spawn(ns, name, binary, args)?;
    sandbox
        .proc(index)
        .wait_line(READY_TIMEOUT, |l| l == "ready")?;
    Ok(index)
}

/// What one iperf3 run measured.
struct IperfRun {
    /// Bits per second received (`end.sum_received.bits_per_second`).
    bps: f64,
    /// Bytes received.
    bytes: u64,
    /// Sender retransmissions (TCP).
    retransmits: Option<u64>,
    /// Bits per second sent (`end.sum_sent.bits_per_second`).
    sent_bps: f64,
    /// Datagrams lost, % of those sent, as the receiver counted (UDP).
    lost_percent: Option<f64>,
}

/// One iperf3 run of `direction` over `path`.
fn iperf_run(
    path: &Path2,
    direction: Direction,
    seconds: u64,
    udp_rate: &str,
) -> Result<IperfRun, String> {
    let mut args = vec![
        "-c".to_string(),
        path.host.clone(),
        "-p".to_string(),
        path.port.to_string(),
        "-t".to_string(),
        seconds.to_string(),
        "-J".to_string(),
    ];
    args.extend(direction.iperf_args(udp_rate));
    let limit = Duration::from_secs(seconds + 30);
    let mut last_error = String::new();
    // The server may need a moment to listen: retry "connection refused" a few times.
    for attempt in 0..5 {
        let (_ok, stdout, stderr) = exec_in_bounded(&path.client_ns, "iperf3", &args, limit)?;
        let json: Value = match serde_json::from_str(&stdout) {
            Ok(v) => v,
            Err(e) => return Err(format!("iperf3 output is not JSON ({e}): {stderr}")),
        };
        if let Some(error) = json.get("error").and_then(Value::as_str) {
            last_error = error.to_string();
            if error.contains("unable to connect") && attempt < 4 {
                std::thread::sleep(Duration::from_millis(300));
                continue;
            }
            return Err(format!("iperf3: {error}"));
        }
        let end = &json["end"];
        let received = &end["sum_received"];
        let bps = received["bits_per_second"]
            .as_f64()
            .ok_or("iperf3 JSON lacks end.sum_received.bits_per_second")?;
        return Ok(IperfRun {
            bps,
            bytes: received["bytes"].as_u64().unwrap_or(0),
            retransmits: end["sum_sent"]["retransmits"].as_u64(),
            sent_bps: end["sum_sent"]["bits_per_second"].as_f64().unwrap_or(0.0),
            lost_percent: if direction.is_udp() {
                received["lost_percent"].as_f64()
            } else {
                None
            },
        });
    }
    Err(format!("iperf3: {last_error}"))
}

/// Measures one cell: `args.runs` iperf3 runs of `subject` at `mtu` in `direction`.
fn throughput_cell(
    sandbox: &mut Sandbox,
    subject: &Subject,
    mtu: u32,
    direction: Direction,
    args: &BenchArgs,
) -> Result<Cell, String> {
    let path = setup(sandbox, subject, mtu, direction.is_udp())?;
    let pid = path.relay.map(|i| sandbox.proc(i).pid());
    let mut cell = Cell::new(subject.key, mtu, direction);
    let mut cpu = 0.0;
    let mut bytes = 0u64;
    for _ in 0..args.runs {
        check_interrupted()?;
        let before = pid.and_then(cpu_seconds);
        let run = iperf_run(&path, direction, args.seconds, &args.udp_rate)?;
        let after = pid.and_then(cpu_seconds);
        if let (Some(b), Some(a)) = (before, after) {
            cpu += a - b;
        }
        bytes += run.bytes;
        cell.gbps.push(run.bps / 1e9);
        cell.retransmits.push(run.retransmits);
        cell.offered_gbps.push(run.sent_bps / 1e9);
        if direction.is_udp() {
            cell.loss_percent.push(run.lost_percent);
        }
        if run.bps < 1e7 {
            cell.note = "a run moved (almost) no data: the connection stalled".into();
        }
    }
    if let Some(pid) = pid {
        if bytes > 0 {
            cell.cpu_s_per_gb = Some(cpu / (bytes as f64 / 1e9));
        }
        cell.peak_rss_kib = status_kib(pid, "VmHWM");
        if cell.peak_rss_kib.is_none() {
            cell.note = "the relay process exited during the test".into();
        }
    }
    Ok(cell)
}

/// Sets up `subject` in front of an echo server; returns (namespace, base address, port, relay
/// index).
fn setup_echo(
    sandbox: &mut Sandbox,
    subject: &Subject,
    release: &Path,
    extra: &[String],
) -> Result<(String, &'static str, u16, usize), String> {
    let ns = sandbox.netns()?;
    // The client rotates destinations; the relay's upstream side may reuse TIME-WAIT ports.
    let _ = crate::bench_env::exec_in(&ns, "sysctl", &["-q", "-w", "net.ipv4.tcp_tw_reuse=1"]);
    let _ = crate::bench_env::exec_in(
        &ns,
        "sysctl",
        &["-q", "-w", "net.ipv4.ip_local_port_range=1024 65000"],
    );
    let echo_args = [
        "serve".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{ECHO_PORT}"),
    ];
    start_ready(
        sandbox,
        &ns,
        "echo-server",
        &release.join("connload"),
        &echo_args,
    )?;
    match &subject.kind {
        SubjectKind::Tun(binary) => {
            let relay = start_tun_subject(sandbox, &ns, subject, binary, 1500, extra)?;
            Ok((ns, "198.19.0.0", ECHO_PORT, relay))
        }
        SubjectKind::KernelRelay(binary) => {
            let args = [
                "--listen".to_string(),
                format!("0.0.0.0:{ECHO_RELAY_PORT}"),
                "--target".to_string(),
                format!("127.0.0.1:{ECHO_PORT}"),
            ];
            let relay = start_ready(sandbox, &ns, subject.key, binary, &args)?;
            Ok((ns, "127.0.0.0", ECHO_RELAY_PORT, relay))
        }
        _ => Err("no connection test for this subject".into()),
    }
}

/// Short connections per second through `subject` (MTU 1500).
fn connection_rate(
    sandbox: &mut Sandbox,
    subject: &Subject,
    concurrency: usize,
    seconds: f64,
    release: &Path,
) -> Result<RateResult, String> {
    let (ns, base, port, relay) = setup_echo(sandbox, subject, release, &[])?;
    let args = [
        "rate".to_string(),
        "--base".into(),
        base.into(),
        "--port".into(),
        port.to_string(),
        "--seconds".into(),
        seconds.to_string(),
        "--concurrency".into(),
        concurrency.to_string(),
    ];
    let limit = Duration::from_secs_f64(seconds + 30.0);
    let binary = release.join("connload");
    let (_ok, out, err) = exec_in_bounded(&ns, &binary.to_string_lossy(), &args, limit)?;
    let Some((ok, errors, secs)) = load_counts(&out) else {
        return Err(format!("connload rate: unexpected output {out:?} {err}"));
    };
    let rss = status_kib(sandbox.proc(relay).pid(), "VmHWM");
    Ok(RateResult {
        subject: subject.key.to_string(),
        concurrency,
        per_second: Some(ok / secs),
        errors: errors as u64,
        note: rss
            .map(|k| format!("peak RSS {:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_default(),
    })
}

/// `connload`'s `connections=N errors=E seconds=S` line as (N, E, S).
fn load_counts(out: &str) -> Option<(f64, f64, f64)> {
    let field = |name: &str| {
        out.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some((field("connections")?, field("errors")?, field("seconds")?))
}

/// A reconnect storm through `subject` (MTU 1500): [`STORM_FLOWS`] flows, each connecting,
/// echoing [`STORM_BYTES`] and closing in a loop for `seconds`; the relay's peak RSS (the
/// memory that per-connection buffers, freed and taken again, leave behind) and RSS at the end.
fn storm_test(
    sandbox: &mut Sandbox,
    subject: &Subject,
    seconds: f64,
    release: &Path,
) -> Result<StormResult, String> {
    let (ns, base, port, relay) = setup_echo(sandbox, subject, release, &[])?;
    let args = [
        "storm".to_string(),
        "--base".into(),
        base.into(),
        "--port".into(),
        port.to_string(),
        "--seconds".into(),
        seconds.to_string(),
        "--flows".into(),
        STORM_FLOWS.to_string(),
        "--bytes".into(),
        STORM_BYTES.to_string(),
    ];
    // The connections under way at the end may take connload's exchange timeout (13 s).
    let limit = Duration::from_secs_f64(seconds + 30.0);
    let binary = release.join("connload");
    let (_ok, out, err) = exec_in_bounded(&ns, &binary.to_string_lossy(), &args, limit)?;
    let Some((ok, errors, secs)) = load_counts(&out) else {
        return Err(format!("connload storm: unexpected output {out:?} {err}"));
    };
    let pid = sandbox.proc(relay).pid();
    let peak_rss_kib = status_kib(pid, "VmHWM");
    let mut note = match peak_rss_kib {
        Some(_) => String::new(),
        None => "the relay process exited during the test".into(),
    };
    if errors > 0.0 {
        if let Some(first) = err.lines().find_map(|l| l.strip_prefix("first error: ")) {
            note = format!("first error: {first}");
        }
    }
    Ok(StormResult {
        subject: subject.key.to_string(),
        flows: STORM_FLOWS,
        bytes: STORM_BYTES,
        seconds: secs,
        connections: Some(ok as u64),
        errors: errors as u64,
        peak_rss_kib,
        end_rss_kib: status_kib(pid, "VmRSS"),
        note,
    })
}

/// Bulk upload with `count` idle connections open through `subject` (MTU 1500).
fn idle_test(
    sandbox: &mut Sandbox,
    subject: &Subject,
    count: usize,
    max_conn_flag: bool,
    args: &BenchArgs,
    release: &Path,
) -> Result<IdleResult, String> {
    let extra = if max_conn_flag {
        vec!["--max-connections".to_string(), (count + 256).to_string()]
    } else {
        Vec::new()
    };
    let (ns, _, _, relay) = setup_echo(sandbox, subject, release, &extra)?;
    let iperf_args = ["-s", "-B", "127.0.0.1", "-p", &IPERF_PORT.to_string()].map(String::from);
    sandbox.spawn(&ns, "iperf3-server", Path::new("iperf3"), &iperf_args)?;
    let pid = sandbox.proc(relay).pid();
    let mut result = IdleResult {
        subject: subject.key.to_string(),
        requested: count,
        rss_before_kib: status_kib(pid, "VmRSS"),
        ..IdleResult::default()
    };
    let hold_seconds = 120 + args.runs as u64 * (args.seconds + 5);
    let hold_args = [
        "hold".to_string(),
        "--target".into(),
        format!("198.19.0.20:{ECHO_PORT}"),
        "--count".into(),
        count.to_string(),
        "--seconds".into(),
        hold_seconds.to_string(),
    ];
    let holder = sandbox.spawn(&ns, "connload-hold", &release.join("connload"), &hold_args)?;
    let line = sandbox
        .proc(holder)
        .wait_line(Duration::from_secs(120), |l| l.starts_with("held "))?;
    let nums: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    result.held = nums.first().copied().unwrap_or(0);
    result.failed = nums.get(1).copied().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(500));
    result.rss_idle_kib = status_kib(pid, "VmRSS");
    // Idle connections are idle for minutes in real use; measure again once they have been
    // idle longer than the forwarder's buffer trim (`--idle-trim`, 2 s by default).
    std::thread::sleep(IDLE_SETTLE);
    result.rss_idle_settled_kib = status_kib(pid, "VmRSS");
    result.pte_idle_settled_kib = status_kib(pid, "VmPTE");
    // Where the memory of the idle connections is: the relay's mappings, for the logs.
    let smaps = super::target_dir()
        .join("bench/logs")
        .join(format!("{}-idle-smaps.txt", subject.key));
    let _ = std::fs::copy(format!("/proc/{pid}/smaps"), smaps);
    let path = Path2 {
        client_ns: ns,
        host: "198.19.0.10".into(),
        port: IPERF_PORT,
        relay: Some(relay),
    };
    for _ in 0..args.runs {
        check_interrupted()?;
        let run = iperf_run(&path, Direction::Up, args.seconds, &args.udp_rate)?;
        result.gbps.push(run.bps / 1e9);
    }
    result.peak_rss_kib = status_kib(pid, "VmHWM");
    if !max_conn_flag {
        result.note = "tun_forward has no --max-connections flag: limited by the default cap \
                       of 4096"
            .into();
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subject_of_one_run_gets_a_colour_of_its_own() {
        // The two baselines come from the environment: count them whether or not it is set.
        let with_baselines = subjects(Path::new("target/release"))
            .iter()
            .filter(|s| !s.key.starts_with("netstack-baseline"))
            .count()
            + 2;
        assert!(
            with_baselines <= bench_report::COLOURS.len(),
            "{with_baselines} subjects, {} colours",
            bench_report::COLOURS.len()
        );
        let mut colours = bench_report::COLOURS.to_vec();
        colours.sort_unstable();
        colours.dedup();
        assert_eq!(
            colours.len(),
            bench_report::COLOURS.len(),
            "a colour is listed twice"
        );
    }
}
