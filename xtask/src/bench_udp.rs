//! UDP request/response tests of `cargo xtask bench`: round trips of one datagram to a UDP
//! echo server and DNS queries to dnsmasq, through each subject (MTU 1500), both servers on
//! `127.0.0.1` in the subject's namespace (`udpload` is the client and the echo server).
//!
//! | subject | echo target | DNS target |
//! |---|---|---|
//! | TUN subjects | `198.19.0.7:7007` → `127.0.0.1:7007` | `198.19.0.53:53` → `127.0.0.1:53` |
//! | kernel relay (`--udp`) | `127.0.0.1:7008` → `127.0.0.1:7007` | `127.0.0.1:5353` → `127.0.0.1:53` |
//! | loopback | `127.0.0.1:7007` | `127.0.0.1:53` |

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{start_ready, start_tun_subject};
use crate::bench_env::{apt_install, exec_in_bounded, status_kib, Sandbox};
use crate::bench_report::{DnsStats, LatencyStats, Subject, SubjectKind, UdpServiceResult};

/// Port of the UDP echo server.
const UDP_ECHO_PORT: u16 = 7007;
/// Port of the kernel relay in front of the echo server.
const UDP_ECHO_RELAY_PORT: u16 = 7008;
/// Port of dnsmasq.
const DNS_PORT: u16 = 53;
/// Port of the kernel relay in front of dnsmasq.
const DNS_RELAY_PORT: u16 = 5353;
/// The name dnsmasq answers (from its own configuration, no upstream).
const DNS_NAME: &str = "bench.test";

/// Parameters of the UDP request/response tests.
#[derive(Debug, Clone)]
pub struct ServiceArgs {
    /// Echo round trips.
    pub latency_count: usize,
    /// Duration of the DNS load.
    pub dns_seconds: f64,
    /// DNS clients, one query outstanding each.
    pub dns_concurrency: usize,
    /// The dnsmasq binary, if there is one.
    pub dnsmasq: Option<PathBuf>,
}

/// Finds dnsmasq (Debian's dnsmasq-base), installing it with apt-get if missing.
pub fn ensure_dnsmasq() -> Result<PathBuf, String> {
    let find = || {
        ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    };
    if let Some(path) = find() {
        return Ok(path);
    }
    apt_install(&["dnsmasq-base"])?;
    find().ok_or_else(|| "dnsmasq not found after installing dnsmasq-base".into())
}

/// Starts dnsmasq in `ns` on `127.0.0.1:53`, answering [`DNS_NAME`] from its configuration
/// (no upstream servers, no hosts file, no cache misses, no logging). It prints no `ready`:
/// the DNS client waits for its first answer.
fn start_dnsmasq(sandbox: &mut Sandbox, ns: &str, binary: &Path) -> Result<(), String> {
    let args = [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-negcache",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--port=53",
        "--pid-file=",
        "--user=root",
        "--address=/bench.test/198.18.0.99",
    ]
    .map(String::from);
    sandbox.spawn(ns, "dnsmasq", binary, &args).map(|_| ())
}

/// The `key=value` number `name` of a `udpload` output line.
fn field(out: &str, name: &str) -> Option<f64> {
    out.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Runs `udpload args` in `ns` for at most `limit`; returns its stdout.
fn udpload(release: &Path, ns: &str, args: &[String], limit: Duration) -> Result<String, String> {
    let binary = release.join("udpload");
    let (ok, out, err) = exec_in_bounded(ns, &binary.to_string_lossy(), args, limit)?;
    if ok {
        Ok(out)
    } else {
        Err(format!("udpload {}: {}", args[0], err.trim()))
    }
}

/// Echo round trips through the path to `target`.
fn latency(release: &Path, ns: &str, target: &str, count: usize) -> Result<LatencyStats, String> {
    let args = ["latency", "--target", target, "--count", &count.to_string()].map(String::from);
    // 1 s per lost datagram at worst, bounded.
    let limit = Duration::from_secs(60 + count as u64 / 100);
    let out = udpload(release, ns, &args, limit)?;
    let get = |name| field(&out, name).ok_or_else(|| format!("udpload latency: {out:?}"));
    Ok(LatencyStats {
        sent: get("sent")? as u64,
        lost: get("lost")? as u64,
        p50_us: get("p50_us")?,
        p99_us: get("p99_us")?,
        max_us: get("max_us")?,
    })
}

/// DNS queries through the path to `target`.
fn dns(
    release: &Path,
    ns: &str,
    target: &str,
    seconds: f64,
    concurrency: usize,
) -> Result<DnsStats, String> {
    let args = [
        "dns",
        "--target",
        target,
        "--seconds",
        &seconds.to_string(),
        "--concurrency",
        &concurrency.to_string(),
        "--name",
        DNS_NAME,
    ]
    .map(String::from);
    let out = udpload(release, ns, &args, Duration::from_secs_f64(seconds + 30.0))?;
    let get = |name| field(&out, name).ok_or_else(|| format!("udpload dns: {out:?}"));
    Ok(DnsStats {
        concurrency,
        answered: get("answered")? as u64,
        lost: get("lost")? as u64,
        bad: get("bad")? as u64,
        seconds: get("seconds")?,
    })
}

/// Echo round trips and DNS queries through `subject`; failures end up in the note.
pub fn udp_services(
    sandbox: &mut Sandbox,
    subject: &Subject,
    release: &Path,
    args: &ServiceArgs,
) -> UdpServiceResult {
    let mut result = UdpServiceResult {
        subject: subject.key.to_string(),
        ..UdpServiceResult::default()
    };
    if let Err(e) = measure(sandbox, subject, release, args, &mut result) {
        if !result.note.is_empty() {
            result.note.push_str("; ");
        }
        result.note.push_str(&format!("FAILED: {e}"));
    }
    result
}

/// Sets up the servers and `subject`, then runs both tests into `result`.
fn measure(
    sandbox: &mut Sandbox,
    subject: &Subject,
    release: &Path,
    args: &ServiceArgs,
    result: &mut UdpServiceResult,
) -> Result<(), String> {
    let ns = sandbox.netns()?;
    let echo_args = [
        "echo".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{UDP_ECHO_PORT}"),
    ];
    start_ready(
        sandbox,
        &ns,
        "udp-echo",
        &release.join("udpload"),
        &echo_args,
    )?;
    if let Some(dnsmasq) = &args.dnsmasq {
        start_dnsmasq(sandbox, &ns, dnsmasq)?;
    }
    let (echo_target, dns_target, relay) = match &subject.kind {
        SubjectKind::Tun(binary) => {
            let relay = start_tun_subject(sandbox, &ns, subject, binary, 1500, &[])?;
            (
                format!("198.19.0.7:{UDP_ECHO_PORT}"),
                format!("198.19.0.53:{DNS_PORT}"),
                Some(relay),
            )
        }
        SubjectKind::KernelRelay(binary) => {
            let mut relays = Vec::new();
            for (listen, target) in [
                (UDP_ECHO_RELAY_PORT, UDP_ECHO_PORT),
                (DNS_RELAY_PORT, DNS_PORT),
            ] {
                let relay_args = [
                    "--listen".to_string(),
                    format!("127.0.0.1:{listen}"),
                    "--target".into(),
                    format!("127.0.0.1:{target}"),
                    "--udp".into(),
                ];
                relays.push(start_ready(sandbox, &ns, subject.key, binary, &relay_args)?);
            }
            (
                format!("127.0.0.1:{UDP_ECHO_RELAY_PORT}"),
                format!("127.0.0.1:{DNS_RELAY_PORT}"),
                relays.first().copied(),
            )
        }
        SubjectKind::Loopback => (
            format!("127.0.0.1:{UDP_ECHO_PORT}"),
            format!("127.0.0.1:{DNS_PORT}"),
            None,
        ),
        SubjectKind::Floor(_) => return Err("no UDP request/response test for the floor".into()),
    };
    let mut failures = Vec::new();
    match latency(release, &ns, &echo_target, args.latency_count) {
        Ok(l) => result.latency = Some(l),
        Err(e) => failures.push(e),
    }
    if args.dnsmasq.is_some() {
        match dns(
            release,
            &ns,
            &dns_target,
            args.dns_seconds,
            args.dns_concurrency,
        ) {
            Ok(d) => result.dns = Some(d),
            Err(e) => failures.push(e),
        }
    } else {
        result.note = "DNS not measured: no dnsmasq".into();
    }
    if let Some(relay) = relay {
        result.peak_rss_kib = status_kib(sandbox.proc(relay).pid(), "VmHWM");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}
