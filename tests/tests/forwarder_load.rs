//! The forwarders under load, with default settings, against kernel clients: 2,000 clients
//! connecting at once all connect; during a 10 s spoofed SYN flood (≥ 50,000 SYN/s, injected
//! into the TUN from inside the namespace) new clients keep connecting, a connection made from
//! a SYN cookie carries a bulk upload at least half as fast as a normal one, and the memory of
//! `tun_forward` stays bounded; a forged-ACK flood creates no connection.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netstack_tests::flood::{flood, FloodKind, FloodReport};
use netstack_tests::forwarder::{
    count_server, counter, echo_server, raise_open_file_limit, ForwarderProcess,
};
use netstack_tests::{pattern, tun_forward_binary, tun_forward_smol_binary};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// These tests load the machine (thousands of connections, floods): one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The forwarder's address for flows to 127.0.0.1:`port` (`--redirect 127.0.0.1`).
fn via(port: u16) -> SocketAddr {
    SocketAddr::new("198.19.0.10".parse().unwrap(), port)
}

/// Connects to `to` and echoes `lines` lines over the connection, one a second.
async fn echoing_client(to: SocketAddr, lines: usize) -> std::io::Result<()> {
    let stream = TcpStream::connect(to).await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    for i in 0..lines {
        let line = format!("line {i}\n");
        w.write_all(line.as_bytes()).await?;
        let mut got = String::new();
        r.read_line(&mut got).await?;
        if got != line {
            return Err(std::io::Error::other(format!("echoed {got:?}")));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// 2,000 clients connect at once through the forwarder at `binary` (default settings: dialing
/// first), and each echoes a line a second for 3 s: every one connects and echoes. (More than
/// the SYN backlog's 256 at once: the rest are answered with SYN cookies and relayed accepting
/// first.)
fn two_thousand_clients_connect_at_once(binary: fn() -> PathBuf) {
    const CLIENTS: usize = 2000;
    let (failed, stderr) = std::thread::spawn(move || {
        let limit = raise_open_file_limit(4 * CLIENTS as u64);
        assert!(limit >= 3 * CLIENTS as u64, "open-file limit {limit}");
        let fwd = ForwarderProcess::start_in_new_netns(&binary(), &["--redirect", "127.0.0.1"]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let failed = runtime.block_on(async {
            let port = echo_server("127.0.0.1:0".parse().unwrap()).await.port();
            let started = Instant::now();
            let clients: Vec<_> = (0..CLIENTS)
                .map(|_| tokio::spawn(echoing_client(via(port), 3)))
                .collect();
            let mut failed = Vec::new();
            for (i, client) in clients.into_iter().enumerate() {
                match timeout(Duration::from_secs(60), client).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => failed.push(format!("client {i}: {e}")),
                    Ok(Err(e)) => failed.push(format!("client {i}: {e}")),
                    Err(_) => failed.push(format!("client {i}: no end within 60 s")),
                }
            }
            eprintln!(
                "{CLIENTS} clients done in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            failed
        });
        drop(runtime);
        let (status, stderr) = fwd.interrupt();
        assert!(status.success(), "{stderr}");
        (failed, stderr)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    eprintln!("{stderr}");
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} clients failed, e.g. {:?}; {stderr}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        counter(&stderr, "tcp:", "accepted "),
        CLIENTS as u64,
        "{stderr}"
    );
}

#[test]
fn tun_forward_2000_clients_connecting_at_once_all_connect() {
    let _serial = serial();
    two_thousand_clients_connect_at_once(tun_forward_binary);
}

#[test]
fn tun_forward_smol_2000_clients_connecting_at_once_all_connect() {
    let _serial = serial();
    two_thousand_clients_connect_at_once(tun_forward_smol_binary);
}

/// Uploads `len` bytes over `stream` to the count server and waits for its count; returns the
/// rate in bytes per second.
async fn upload(mut stream: TcpStream, len: usize) -> f64 {
    let data = pattern(3, len);
    let started = Instant::now();
    stream.write_all(&data).await.expect("upload");
    stream.shutdown().await.expect("shutdown");
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).await.expect("the count");
    assert_eq!(u64::from_be_bytes(count), len as u64, "bytes that arrived");
    len as f64 / started.elapsed().as_secs_f64()
}

/// Connects to `to` and echoes a line; returns how long both took.
async fn connect_and_echo(to: SocketAddr) -> std::io::Result<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(to).await?;
    stream.write_all(b"ping\n").await?;
    let mut got = [0u8; 5];
    stream.read_exact(&mut got).await?;
    if &got != b"ping\n" {
        return Err(std::io::Error::other("wrong echo"));
    }
    Ok(started.elapsed())
}

/// The forwarder at `binary` with default settings (dialing first) under a 10 s flood of spoofed SYNs at
/// 55,000 per second (at least 50,000 must be offered), from 198.18.128.0/17 to the echo
/// server's port:
///
/// - 20 of 20 sequential new connections (one every 450 ms) connect and echo, each within 3 s;
/// - a bulk upload over a connection made during the flood (from a SYN cookie: the backlog is
///   full of spoofed requests) runs at least half as fast as over one made before it;
/// - then 50,000 forged ACKs to random ports create no connection (a forged cookie passes with
///   a chance of 2 × 50,000 / 2^24 = 0.6 %, which the check allows once);
/// - the forwarder's peak RSS stays under 64 MiB.
fn keeps_serving_new_clients_during_a_spoofed_syn_flood(binary: fn() -> PathBuf) {
    const SYN_RATE: u64 = 55_000;
    const FLOOD: Duration = Duration::from_secs(10);
    const FORGED_ACKS: u64 = 50_000;
    const LEGIT: usize = 20;
    const UPLOAD: usize = 64 << 20;
    let (report, stderr) = std::thread::spawn(move || {
        let fwd = ForwarderProcess::start_in_new_netns(&binary(), &["--redirect", "127.0.0.1"]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let report = runtime.block_on(async {
            let echo = echo_server("127.0.0.1:0".parse().unwrap()).await.port();
            let sink = count_server("127.0.0.1:0".parse().unwrap()).await.port();
            let normal = TcpStream::connect(via(sink))
                .await
                .expect("a normal connection");
            let target = SocketAddrV4::new("198.19.0.10".parse().unwrap(), echo);
            // The flood runs on a thread of this namespace.
            let syns = std::thread::spawn(move || {
                flood(
                    FloodKind::Syn,
                    target,
                    SYN_RATE * 10,
                    SYN_RATE,
                    FLOOD + Duration::from_secs(1),
                )
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
            let cookie = timeout(Duration::from_secs(3), TcpStream::connect(via(sink)))
                .await
                .expect("a connection during the flood within 3 s")
                .expect("a connection during the flood");
            let mut times = Vec::new();
            for i in 0..LEGIT {
                let took = timeout(Duration::from_secs(3), connect_and_echo(via(echo)))
                    .await
                    .unwrap_or_else(|_| panic!("connection {i} took over 3 s"))
                    .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                times.push(took);
                tokio::time::sleep(Duration::from_millis(450).saturating_sub(took)).await;
            }
            let syns: FloodReport = tokio::task::spawn_blocking(move || syns.join().unwrap())
                .await
                .unwrap()
                .expect("the SYN flood");
            let acks = tokio::task::spawn_blocking(move || {
                flood(
                    FloodKind::ForgedAck,
                    target,
                    FORGED_ACKS,
                    50_000,
                    Duration::from_secs(5),
                )
            })
            .await
            .unwrap()
            .expect("the forged-ACK flood");
            let peak_rss_mib = fwd.peak_rss_kib() as f64 / 1024.0;
            // Uploads after the floods, so that both compete only with each other's absence.
            let normal_rate = upload(normal, UPLOAD).await;
            let cookie_rate = upload(cookie, UPLOAD).await;
            FloodFigures {
                syns,
                acks,
                times,
                normal_rate,
                cookie_rate,
                peak_rss_mib,
            }
        });
        drop(runtime);
        let (status, stderr) = fwd.interrupt();
        assert!(status.success(), "{stderr}");
        (report, stderr)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let slowest = report.times.iter().max().expect("connections");
    eprintln!(
        "SYN flood: {} SYNs in {:.2} s ({:.0}/s offered); forged ACKs: {} at {:.0}/s; {LEGIT} \
         connections during it, slowest {slowest:?} ({:?}); upload over a cookie connection \
         {:.0} MB/s, over a normal one {:.0} MB/s; peak RSS {:.1} MiB\n{stderr}",
        report.syns.sent,
        report.syns.elapsed.as_secs_f64(),
        report.syns.rate(),
        report.acks.sent,
        report.acks.rate(),
        report.times,
        report.cookie_rate / 1e6,
        report.normal_rate / 1e6,
        report.peak_rss_mib,
    );
    assert!(
        report.syns.rate() >= 50_000.0,
        "offered {:.0} SYN/s",
        report.syns.rate()
    );
    assert!(
        report.syns.elapsed >= FLOOD,
        "the flood lasted {:?}",
        report.syns.elapsed
    );
    assert!(*slowest <= Duration::from_secs(3));
    assert!(
        report.cookie_rate >= 0.5 * report.normal_rate,
        "cookie connection {:.0} MB/s, normal {:.0} MB/s",
        report.cookie_rate / 1e6,
        report.normal_rate / 1e6
    );
    assert!(
        report.peak_rss_mib < 64.0,
        "peak RSS {:.1} MiB",
        report.peak_rss_mib
    );
    // The stack answered the flood with cookies, and the connections made during it (the
    // upload's and the 20) completed from cookies.
    let cookies_sent = counter(&stderr, "tcp:", "syn cookies (sent ");
    assert!(cookies_sent >= 100_000, "{stderr}");
    let accepted_cookies = cookie_counter(&stderr, "accepted ");
    assert!(
        (LEGIT as u64 + 1..=LEGIT as u64 + 2).contains(&accepted_cookies),
        "{accepted_cookies} cookie connections: the {} legitimate ones, and at most one \
         forged ACK: {stderr}",
        LEGIT + 1
    );
    // Every spoofed request the forwarder dialed for and accepted, whose handshake then
    // expired, ended its task (and closed its upstream connection) when it expired.
    let expired = counter(&stderr, "tcp:", "syn expired ");
    assert!(expired > 0, "{stderr}");
    assert!(
        counter(&stderr, "dials:", "handshakes failed after the dial ") >= expired,
        "{stderr}"
    );
    // Most forged ACKs reached the stack and were checked as cookies.
    assert!(
        cookie_counter(&stderr, "invalid ") >= FORGED_ACKS / 2,
        "{stderr}"
    );
}

#[test]
fn tun_forward_keeps_serving_new_clients_during_a_spoofed_syn_flood() {
    let _serial = serial();
    keeps_serving_new_clients_during_a_spoofed_syn_flood(tun_forward_binary);
}

#[test]
fn tun_forward_smol_keeps_serving_new_clients_during_a_spoofed_syn_flood() {
    let _serial = serial();
    keeps_serving_new_clients_during_a_spoofed_syn_flood(tun_forward_smol_binary);
}

/// A counter of the `syn cookies (sent N, accepted N, invalid N)` group.
fn cookie_counter(stderr: &str, label: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("tcp:"))
        .unwrap_or_else(|| panic!("no tcp counters: {stderr}"));
    let group = &line[line.find("syn cookies (").expect("cookie counters")..];
    counter(group, "syn cookies", label)
}

/// What the flood test measured.
struct FloodFigures {
    syns: FloodReport,
    acks: FloodReport,
    times: Vec<Duration>,
    normal_rate: f64,
    cookie_rate: f64,
    peak_rss_mib: f64,
}
