//! `connload`: load for the connection-setup, reconnect-storm and idle-connection benchmarks.
//!
//! ```text
//! connload serve --listen 127.0.0.1:7000
//! connload rate --base 198.19.0.0 --port 7000 --seconds 3 --concurrency 1
//! connload storm --base 198.19.0.0 --port 7000 --seconds 10 --flows 256 --bytes 65536
//! connload hold --target 198.19.0.10:7000 --count 10000 --seconds 120
//! ```
//!
//! * `serve`: an echo server (the upstream of the relayed connections).
//! * `rate`: opens short connections for `--seconds` from `--concurrency` workers; each
//!   connects to the next address of `--base`'s /16, sends one byte, waits for its echo and
//!   closes. Prints `connections=N errors=E seconds=S` (rotating destinations keeps the client's
//!   TIME-WAIT entries from exhausting its ports).
//! * `storm`: `--flows` tasks, each in a loop for `--seconds`: connect to the next address of
//!   `--base`'s /16 (rotating as `rate` does), write `--bytes` and read them back while writing,
//!   check them, close, reconnect. Every connection carries a full window of data, so a relay's
//!   per-connection buffers fill and are freed over and over. Prints
//!   `connections=N errors=E seconds=S` (connections echoed completely; failed attempts); the
//!   first error goes to stderr.
//! * `hold`: opens `--count` connections (each verified with one echoed byte), prints
//!   `held N failed F`, then keeps them open, idle, for `--seconds` or until SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Command line of `connload`.
#[derive(Parser, Debug)]
#[command(about = "Connection-rate and idle-connection load")]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Mode,
}

/// The modes of `connload`.
#[derive(Subcommand, Debug)]
enum Mode {
    /// Echo server.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Short connections (connect, 1-byte echo, close) for a bounded time.
    Rate {
        /// Base of the /16 of destination addresses (IPv4).
        #[arg(long)]
        base: Ipv4Addr,
        /// Destination port.
        #[arg(long)]
        port: u16,
        /// How long to run.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Number of concurrent workers.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
    },
    /// Flows that reconnect in a loop, each connection echoing `--bytes`, for a bounded time.
    Storm {
        /// Base of the /16 of destination addresses (IPv4).
        #[arg(long)]
        base: Ipv4Addr,
        /// Destination port.
        #[arg(long)]
        port: u16,
        /// How long to run (connections under way then are finished, within their timeouts).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Number of concurrent flows.
        #[arg(long, default_value_t = 256)]
        flows: usize,
        /// Bytes each connection writes and reads back.
        #[arg(long, default_value_t = 64 << 10)]
        bytes: usize,
    },
    /// Opens idle connections and keeps them open.
    Hold {
        /// Destination.
        #[arg(long)]
        target: SocketAddr,
        /// Number of connections.
        #[arg(long)]
        count: usize,
        /// How long to keep them open at most.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
    },
}

/// Timeout of one connection attempt or echo.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// Timeout of one storm connection's echo of `--bytes` (after connecting): generous, since
/// hundreds of flows share the path.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause of a storm flow after a failed attempt, so that a refusing path is not hammered and
/// the error count stays a count of attempts a client would make.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The `i`-th destination of `base`'s /16: host part 1..=65534, skipping .0 and .255 of each
/// /24, so that successive connections have different addresses.
fn rotating_target(base: Ipv4Addr, port: u16, i: u64) -> SocketAddr {
    let base = u32::from(base) & 0xffff_0000;
    let host = (i % 254 + 1) as u32 | ((((i / 254) % 254) + 1) as u32) << 8;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(base | host)), port)
}

/// Connects to `target`, sends one byte and waits for its echo.
async fn open_verified(target: SocketAddr) -> std::io::Result<TcpStream> {
    let step = async {
        let mut s = TcpStream::connect(target).await?;
        s.set_nodelay(true)?;
        s.write_all(b"x").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        Ok(s)
    };
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// One storm connection: connects to `target`, writes `data` while reading it back, checks the
/// echo and closes.
async fn echo_exchange(target: SocketAddr, data: &[u8], back: &mut [u8]) -> std::io::Result<()> {
    let mut s = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    s.set_nodelay(true)?;
    let exchange = async {
        let (mut rd, mut wr) = s.split();
        // Written and read at once: an echo of more than the socket buffers would otherwise
        // stall with both sides' send buffers full.
        tokio::try_join!(wr.write_all(data), rd.read_exact(back))?;
        if back != data {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "echo differs from what was sent",
            ));
        }
        Ok(())
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "echo timed out"))?
}

/// Echoes everything on `s` until EOF.
async fn echo(mut s: TcpStream) {
    let mut buf = vec![0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    match Cli::parse().command {
        Mode::Serve { listen } => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            println!("ready");
            loop {
                match listener.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(echo(s));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }
        Mode::Rate {
            base,
            port,
            seconds,
            concurrency,
        } => {
            let next = Arc::new(AtomicU64::new(0));
            let ok = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let deadline = start + Duration::from_secs_f64(seconds);
            let mut workers = Vec::new();
            for _ in 0..concurrency.max(1) {
                let (next, ok, failed) = (next.clone(), ok.clone(), failed.clone());
                workers.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        match open_verified(rotating_target(base, port, i)).await {
                            Ok(s) => {
                                drop(s);
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }));
            }
            for w in workers {
                let _ = w.await;
            }
            println!(
                "connections={} errors={} seconds={:.3}",
                ok.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Mode::Storm {
            base,
            port,
            seconds,
            flows,
            bytes,
        } => {
            let next = Arc::new(AtomicU64::new(0));
            let ok = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            let first_error = Arc::new(std::sync::Mutex::new(None::<std::io::Error>));
            // A pattern that a shifted or truncated echo does not reproduce.
            let data: Arc<[u8]> = (0..bytes).map(|i| (i % 251) as u8).collect();
            let start = Instant::now();
            let deadline = start + Duration::from_secs_f64(seconds);
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..flows.max(1) {
                let (next, ok, failed) = (next.clone(), ok.clone(), failed.clone());
                let (first_error, data) = (first_error.clone(), data.clone());
                tasks.spawn(async move {
                    let mut back = vec![0u8; data.len()];
                    while Instant::now() < deadline {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        match echo_exchange(rotating_target(base, port, i), &data, &mut back).await
                        {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                if let Ok(mut first) = first_error.lock() {
                                    first.get_or_insert(e);
                                }
                                tokio::time::sleep(RETRY_PAUSE).await;
                            }
                        }
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
            if let Some(e) = first_error.lock().ok().and_then(|mut f| f.take()) {
                eprintln!("first error: {e}");
            }
            println!(
                "connections={} errors={} seconds={:.3}",
                ok.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Mode::Hold {
            target,
            count,
            seconds,
        } => {
            let mut held = Vec::with_capacity(count);
            let mut failed = 0usize;
            let mut pending = tokio::task::JoinSet::new();
            let mut started = 0usize;
            // At most 64 handshakes in flight.
            while started < count || !pending.is_empty() {
                while started < count && pending.len() < 64 {
                    pending.spawn(open_verified(target));
                    started += 1;
                }
                match pending.join_next().await {
                    Some(Ok(Ok(s))) => held.push(s),
                    Some(_) => failed += 1,
                    None => break,
                }
            }
            println!("held {} failed {failed}", held.len());
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
                r = netstack_bench::cli::shutdown_signal() => r?,
            }
            drop(held);
            Ok(())
        }
    }
}
