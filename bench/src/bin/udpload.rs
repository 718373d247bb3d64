//! `udpload`: UDP load for the latency and DNS benchmarks.
//!
//! ```text
//! udpload echo --listen 127.0.0.1:7007
//! udpload latency --target 198.19.0.7:7007 --count 20000 [--size 64]
//! udpload dns --target 198.19.0.53:53 --seconds 5 --concurrency 32 [--name bench.test]
//! ```
//!
//! * `echo`: a UDP echo server (the upstream of the relayed flows); prints `ready`.
//! * `latency`: one flow; sends a datagram, waits for its echo, `--count` times (after
//!   waiting up to 5 s for a first echo, while the path comes up). A datagram not echoed
//!   within 1 s is counted as lost. Prints `sent=N lost=L p50_us=.. p99_us=.. max_us=..`.
//! * `dns`: `--concurrency` clients, each on its own socket (its own flow) with one A query
//!   for `--name` outstanding at a time, for `--seconds`. A query not answered within 1 s is
//!   counted as lost; an answer with another id, an error code or no answer record as bad.
//!   Prints `answered=N lost=L bad=B seconds=S`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::net::UdpSocket;

/// Command line of `udpload`.
#[derive(Parser, Debug)]
#[command(about = "UDP echo server, request/response latency and DNS query load")]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Mode,
}

/// The modes of `udpload`.
#[derive(Subcommand, Debug)]
enum Mode {
    /// UDP echo server.
    Echo {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Request/response round trips of one datagram.
    Latency {
        /// Echo server (through the subject).
        #[arg(long)]
        target: SocketAddr,
        /// Round trips to measure.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Payload bytes per datagram.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Concurrent DNS queries for a bounded time.
    Dns {
        /// DNS server (through the subject).
        #[arg(long)]
        target: SocketAddr,
        /// How long to run.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Clients, each with one query outstanding.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Name to ask for (type A).
        #[arg(long, default_value = "bench.test")]
        name: String,
    },
}

/// How long a request waits for its response before it counts as lost.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for the first response while the path comes up.
const WARM_UP: Duration = Duration::from_secs(5);

/// A UDP socket bound to an ephemeral port of `target`'s family and connected to it.
async fn client_socket(target: SocketAddr) -> std::io::Result<UdpSocket> {
    let bind: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(target).await?;
    Ok(socket)
}

/// Sends `request` and waits up to `timeout` for a datagram accepted by `accept`; returns the
/// round-trip time and the length of the accepted datagram (in `buf`).
async fn round_trip(
    socket: &UdpSocket,
    request: &[u8],
    buf: &mut [u8],
    timeout: Duration,
    accept: impl Fn(&[u8]) -> bool,
) -> Option<(Duration, usize)> {
    let start = Instant::now();
    // A refused send (ICMP error of an earlier datagram) is one more lost request.
    socket.send(request).await.ok()?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, socket.recv(buf)).await {
            Ok(Ok(n)) if accept(&buf[..n]) => return Some((start.elapsed(), n)),
            // A late reply to an earlier request, or an ICMP error: keep waiting.
            Ok(_) => {}
            Err(_elapsed) => return None,
        }
    }
}

/// Waits up to [`WARM_UP`] for a first response to `request`.
async fn warm_up(
    socket: &UdpSocket,
    request: &[u8],
    buf: &mut [u8],
    accept: impl Fn(&[u8]) -> bool,
) -> std::io::Result<()> {
    let deadline = Instant::now() + WARM_UP;
    while Instant::now() < deadline {
        if round_trip(socket, request, buf, Duration::from_millis(200), &accept)
            .await
            .is_some()
        {
            return Ok(());
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no response within {WARM_UP:?}"),
    ))
}

/// The `q`-quantile of sorted `v` (nearest rank).
fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// `udpload latency`.
async fn latency(target: SocketAddr, count: usize, size: usize) -> std::io::Result<()> {
    let socket = client_socket(target).await?;
    let mut request = vec![0u8; size.max(8)];
    let mut buf = vec![0u8; 65536];
    request[..8].copy_from_slice(&u64::MAX.to_be_bytes());
    let warm = request.clone();
    warm_up(&socket, &warm, &mut buf, |r| r == warm.as_slice()).await?;
    let mut rtts = Vec::with_capacity(count);
    let mut lost = 0usize;
    for i in 0..count as u64 {
        // Each request carries its sequence number, so a late echo is not taken for it.
        request[..8].copy_from_slice(&i.to_be_bytes());
        let seq = i.to_be_bytes();
        match round_trip(&socket, &request, &mut buf, REPLY_TIMEOUT, |r| {
            r.len() >= 8 && r[..8] == seq
        })
        .await
        {
            Some((rtt, _)) => rtts.push(rtt),
            None => lost += 1,
        }
    }
    rtts.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "sent={count} lost={lost} p50_us={:.1} p99_us={:.1} max_us={:.1}",
        us(quantile(&rtts, 0.50)),
        us(quantile(&rtts, 0.99)),
        us(rtts.last().copied().unwrap_or_default())
    );
    Ok(())
}

/// A DNS query (recursion desired) for the A record of `name`, with id `id`.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Whether `r` answers query `id`: a response with that id, no error and an answer record.
fn dns_answers(r: &[u8], id: u16) -> bool {
    r.len() >= 12
        && r[..2] == id.to_be_bytes()
        && r[2] & 0x80 != 0
        && r[3] & 0x0f == 0
        && u16::from_be_bytes([r[6], r[7]]) > 0
}

/// Whether `r` is a response to query `id`, good or bad.
fn dns_response_to(r: &[u8], id: u16) -> bool {
    r.len() >= 12 && r[..2] == id.to_be_bytes() && r[2] & 0x80 != 0
}

/// `udpload dns`.
async fn dns(
    target: SocketAddr,
    seconds: f64,
    concurrency: usize,
    name: String,
) -> std::io::Result<()> {
    // The server and the path must answer before the clock starts.
    {
        let socket = client_socket(target).await?;
        let mut buf = vec![0u8; 4096];
        let q = dns_query(0, &name);
        warm_up(&socket, &q, &mut buf, |r| dns_answers(r, 0)).await?;
    }
    let answered = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut clients = Vec::new();
    for c in 0..concurrency.max(1) {
        let (answered, lost, bad, name) =
            (answered.clone(), lost.clone(), bad.clone(), name.clone());
        clients.push(tokio::spawn(async move {
            let socket = client_socket(target).await?;
            let mut buf = vec![0u8; 4096];
            let mut id = (c as u16).wrapping_mul(2039);
            while Instant::now() < deadline {
                id = id.wrapping_add(1);
                let q = dns_query(id, &name);
                let reply = round_trip(&socket, &q, &mut buf, REPLY_TIMEOUT, |r| {
                    dns_response_to(r, id)
                })
                .await;
                let counter = match reply {
                    Some((_, n)) if dns_answers(&buf[..n], id) => &answered,
                    Some(_) => &bad,
                    None => &lost,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), std::io::Error>(())
        }));
    }
    for client in clients {
        client.await.map_err(std::io::Error::other)??;
    }
    println!(
        "answered={} lost={} bad={} seconds={:.3}",
        answered.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed),
        bad.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `udpload echo`: echoes every datagram to its sender until killed.
async fn echo(listen: SocketAddr) -> std::io::Result<()> {
    let socket = UdpSocket::bind(listen).await?;
    println!("ready");
    let mut buf = vec![0u8; 65536];
    loop {
        // An error is an ICMP error for an earlier reply: nothing to do.
        if let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    }
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    // One round trip at a time needs one thread (and no hand-offs between threads in the
    // measured time); the servers and the DNS clients use every core.
    let runtime = match cli.command {
        Mode::Latency { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()?;
    runtime.block_on(async {
        match cli.command {
            Mode::Echo { listen } => {
                tokio::select! {
                    r = echo(listen) => r,
                    r = netstack_bench::cli::shutdown_signal() => r,
                }
            }
            Mode::Latency {
                target,
                count,
                size,
            } => latency(target, count, size).await,
            Mode::Dns {
                target,
                seconds,
                concurrency,
                name,
            } => dns(target, seconds, concurrency, name).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_query_is_a_standard_a_query() {
        let q = dns_query(0x1234, "bench.test");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], b"\x05bench\x04test\x00\x00\x01\x00\x01");
    }

    #[test]
    fn only_a_response_with_the_id_no_error_and_an_answer_counts() {
        let mut r = dns_query(7, "bench.test");
        assert!(!dns_response_to(&r, 7), "a query is not a response");
        r[2] |= 0x80;
        assert!(dns_response_to(&r, 7));
        assert!(!dns_answers(&r, 7), "no answer record");
        r[7] = 1;
        assert!(dns_answers(&r, 7));
        assert!(!dns_answers(&r, 8), "another id");
        r[3] |= 3;
        assert!(!dns_answers(&r, 7), "NXDOMAIN");
        assert!(!dns_response_to(&r[..11], 7), "truncated header");
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(quantile(&v, 0.50), Duration::from_micros(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_micros(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_micros(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
