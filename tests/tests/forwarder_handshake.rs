//! What a kernel client sees of its destination through a forwarder that dials first
//! (`tun_forward`, `tun_forward_smol`): `connect()` fails as it would against the destination
//! itself (refused, unreachable, timed out), so Happy Eyeballs falls back; a connected UDP socket
//! hears "port unreachable"; black-holed destinations do not stall other connections; and a
//! server with a small listen backlog gives no client timeouts.
//!
//! Every test runs the forwarder as a process in a namespace of its own, with
//! `--redirect 127.0.0.1 --redirect ::1`: IPv4 flows go to 127.0.0.1, IPv6 flows to ::1, so a
//! server on one family and not the other makes one address open and the other refused.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use netstack_tests::forwarder::{
    black_hole, closed_port, counter, echo_server, http_server, ForwarderProcess,
};
use netstack_tests::{tun_forward_binary, tun_forward_smol_binary};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// Kills a helper process (the HTTP server) when the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Tests that load the machine (hundreds of connections, wrk) run alone ([`exclusive`]), the
/// others side by side ([`shared`]): a timing-sensitive check must not fail because the other
/// tests of this file took the CPU.
static LOAD: RwLock<()> = RwLock::new(());

/// Taken by a test that may run beside the others.
fn shared() -> RwLockReadGuard<'static, ()> {
    LOAD.read().unwrap_or_else(|e| e.into_inner())
}

/// Taken by a test that must run alone.
fn exclusive() -> RwLockWriteGuard<'static, ()> {
    LOAD.write().unwrap_or_else(|e| e.into_inner())
}

/// IPv4 flows to 127.0.0.1, IPv6 flows to ::1.
const REDIRECTS: [&str; 4] = ["--redirect", "127.0.0.1", "--redirect", "::1"];

/// Runs `test(fwd)` on a tokio runtime in a new namespace with the forwarder at `binary`
/// started with [`REDIRECTS`] and `extra`; then stops it and returns its counters.
fn with_forwarder<F, Fut>(
    binary: fn() -> PathBuf,
    extra: &'static [&'static str],
    test: F,
) -> String
where
    F: FnOnce(u32) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let args = REDIRECTS.iter().chain(extra).copied().collect();
    ForwarderProcess::run_in_new_netns(binary(), args, move |pid| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(test(pid));
    })
}

/// The address of `port` through the forwarder: IPv4 (to 127.0.0.1) or IPv6 (to ::1).
fn via(v6: bool, port: u16) -> SocketAddr {
    if v6 {
        SocketAddr::new("fd00::10".parse().unwrap(), port)
    } else {
        SocketAddr::new("198.19.0.10".parse().unwrap(), port)
    }
}

/// `connect()` to `to`, with the time it took (bounded by 20 s).
async fn timed_connect(to: SocketAddr) -> (io::Result<TcpStream>, Duration) {
    let started = Instant::now();
    let r = timeout(Duration::from_secs(20), TcpStream::connect(to))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
    (r, started.elapsed())
}

/// One echo round trip of a line over `stream`.
async fn echo_line(stream: &mut TcpStream, line: &str) -> io::Result<()> {
    let (r, mut w) = stream.split();
    w.write_all(line.as_bytes()).await?;
    let mut got = String::new();
    BufReader::new(r).read_line(&mut got).await?;
    if got == line {
        Ok(())
    } else {
        Err(io::Error::other(format!("echoed {got:?} for {line:?}")))
    }
}

fn closed_port_fails_at_connect_with_econnrefused(binary: fn() -> PathBuf) {
    let stderr = with_forwarder(binary, &[], |_| async {
        for v6 in [false, true] {
            let port = closed_port(if v6 { "::1" } else { "127.0.0.1" });
            let (r, took) = timed_connect(via(v6, port)).await;
            let e = r.expect_err("connect() to a closed port must fail");
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "v6 {v6}: {e}");
            assert!(
                took < Duration::from_secs(1),
                "v6 {v6}: refused after {took:?}"
            );
        }
    });
    assert_eq!(counter(&stderr, "dials:", "refused "), 2, "{stderr}");
    assert_eq!(
        counter(&stderr, "tcp:", "refused by the application "),
        2,
        "{stderr}"
    );
}

#[test]
fn tun_forward_connect_to_a_closed_port_fails_with_econnrefused_within_1_s() {
    let _load = shared();
    closed_port_fails_at_connect_with_econnrefused(tun_forward_binary);
}

#[test]
fn tun_forward_smol_connect_to_a_closed_port_fails_with_econnrefused_within_1_s() {
    let _load = shared();
    closed_port_fails_at_connect_with_econnrefused(tun_forward_smol_binary);
}

/// Each way a dial fails reaches the client's `connect()` as the errno the destination itself
/// would have caused:
///
/// | upstream                          | the forwarder answers       | client errno   |
/// |-----------------------------------|-----------------------------|----------------|
/// | refused (nothing listens)         | RST                         | `ECONNREFUSED` |
/// | no route (`2001:2::1`, no route)  | ICMPv6 no route             | `ENETUNREACH`  |
/// | silent (SYNs dropped), 1 s timeout| ICMP host unreachable       | `EHOSTUNREACH` |
/// | connects                          | SYN-ACK                     | (connected)    |
fn each_dial_failure_reaches_the_client_as_its_errno(binary: fn() -> PathBuf) {
    // IPv6 flows to 2001:2::1 (no route in the namespace), IPv4 flows to 127.0.0.1.
    let stderr = std::thread::spawn(move || {
        let args = [
            "--redirect",
            "127.0.0.1",
            "--redirect",
            "2001:2::1",
            "--dial-timeout",
            "1",
        ];
        let fwd = ForwarderProcess::start_in_new_netns(&binary(), &args);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let open = echo_server("127.0.0.1:0".parse().unwrap()).await.port();
            let (hole, _filler) = black_hole("127.0.0.1:0".parse().unwrap());
            let silent = hole.local_addr().unwrap().port();
            let refused = closed_port("127.0.0.1");
            let table: [(&str, SocketAddr, Option<i32>); 4] = [
                ("refused", via(false, refused), Some(libc::ECONNREFUSED)),
                ("no route", via(true, 80), Some(libc::ENETUNREACH)),
                ("silent", via(false, silent), Some(libc::EHOSTUNREACH)),
                ("open", via(false, open), None),
            ];
            for (what, to, errno) in table {
                let (r, took) = timed_connect(to).await;
                match (r, errno) {
                    (Ok(mut s), None) => echo_line(&mut s, "hi\n").await.expect("echo"),
                    (Err(e), Some(errno)) => {
                        assert_eq!(e.raw_os_error(), Some(errno), "{what}: {e}");
                    }
                    (r, errno) => panic!("{what}: got {r:?}, expected errno {errno:?}"),
                }
                // The dial timeout (1 s) bounds every answer; the client retransmits its SYN
                // once meanwhile at most.
                assert!(
                    took < Duration::from_secs(3),
                    "{what}: answered after {took:?}"
                );
            }
        });
        drop(runtime);
        let (status, stderr) = fwd.interrupt();
        assert!(status.success(), "{stderr}");
        stderr
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert_eq!(counter(&stderr, "dials:", "timed out "), 1, "{stderr}");
    assert_eq!(counter(&stderr, "dials:", "unreachable "), 1, "{stderr}");
}

#[test]
fn tun_forward_each_dial_failure_reaches_the_client_as_its_errno() {
    let _load = shared();
    each_dial_failure_reaches_the_client_as_its_errno(tun_forward_binary);
}

#[test]
fn tun_forward_smol_each_dial_failure_reaches_the_client_as_its_errno() {
    let _load = shared();
    each_dial_failure_reaches_the_client_as_its_errno(tun_forward_smol_binary);
}

/// What the IPv6 destination of [`happy_eyeballs`] does with the forwarder's dial.
#[derive(Clone, Copy)]
enum Ipv6Upstream {
    /// Nothing listens there: the dial is refused at once.
    Closed,
    /// A black hole (every SYN dropped): the dial fails when the forwarder's dial timeout runs
    /// out.
    BlackHoled,
}

/// `curl --resolve web.test:PORT:[fd00::10],198.19.0.10`: the server listens on IPv4 only, so
/// the IPv6 address does not answer (`v6` says how). Dialing first, the failure reaches curl's
/// `connect()` and its Happy Eyeballs falls back to IPv4; accepting first, curl is "connected"
/// over IPv6 and then reset (exit 56), and never tries IPv4.
fn happy_eyeballs(
    binary: fn() -> PathBuf,
    extra: &'static [&'static str],
    v6: Ipv6Upstream,
) -> (i32, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    with_forwarder(binary, extra, move |_| async move {
        let port = http_server("127.0.0.1:0".parse().unwrap(), "hello")
            .await
            .port();
        let _hole = match v6 {
            Ipv6Upstream::Closed => None,
            Ipv6Upstream::BlackHoled => Some(black_hole(format!("[::1]:{port}").parse().unwrap())),
        };
        let resolve = format!("web.test:{port}:[fd00::10],198.19.0.10");
        let url = format!("http://web.test:{port}/");
        let out = tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["-sS", "--max-time", "10", "--resolve", &resolve])
                // IPv4 only once IPv6 failed (not after the usual 200 ms): a fallback is then
                // the refusal's doing, whatever the machine's load.
                .args(["--happy-eyeballs-timeout-ms", "5000"])
                .args(["-w", " via %{remote_ip}", &url])
                .stdin(Stdio::null())
                .output()
                .expect("curl must be installed")
        })
        .await
        .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        tx.send((code, text)).unwrap();
    });
    rx.recv().unwrap()
}

fn happy_eyeballs_falls_back_to_ipv4(
    binary: fn() -> PathBuf,
    extra: &'static [&'static str],
    v6: Ipv6Upstream,
) {
    let (code, out) = happy_eyeballs(binary, extra, v6);
    assert_eq!(code, 0, "curl failed: {out}");
    assert_eq!(out, "hello via 198.19.0.10", "curl's output");
}

#[test]
fn tun_forward_dual_stack_client_falls_back_from_refused_ipv6_to_ipv4() {
    let _load = shared();
    happy_eyeballs_falls_back_to_ipv4(tun_forward_binary, &[], Ipv6Upstream::Closed);
}

#[test]
fn tun_forward_smol_dual_stack_client_falls_back_from_refused_ipv6_to_ipv4() {
    let _load = shared();
    happy_eyeballs_falls_back_to_ipv4(tun_forward_smol_binary, &[], Ipv6Upstream::Closed);
}

/// The dial timeout of the pair below: long enough for curl to see its IPv6 connection
/// established (accepting first) and send its request before the reset, short against curl's
/// Happy Eyeballs timeout (5 s).
const SLOW_FAILURE: &[&str] = &["--dial-timeout", "1"];

#[test]
fn tun_forward_dual_stack_client_falls_back_from_black_holed_ipv6_to_ipv4() {
    let _load = shared();
    happy_eyeballs_falls_back_to_ipv4(tun_forward_binary, SLOW_FAILURE, Ipv6Upstream::BlackHoled);
}

/// The same client through `--accept-first` fails: the case dialing first fixes, and proof
/// that the tests above can fail. Its IPv6 destination is black-holed, not closed: a refusal
/// reaches the forwarder within microseconds, and its reset then sometimes reaches the client
/// before curl has looked at its connection, which curl takes for a failed `connect()` and
/// falls back (a race this test lost one time in four with a closed port). A dial that fails
/// after a second resets an established connection on which curl has sent its request.
#[test]
fn tun_forward_accept_first_breaks_the_dual_stack_fallback() {
    let _load = shared();
    let extra = &["--accept-first", "--dial-timeout", "1"];
    let (code, out) = happy_eyeballs(tun_forward_binary, extra, Ipv6Upstream::BlackHoled);
    assert_ne!(code, 0, "curl succeeded accepting first: {out}");
    assert!(!out.contains("hello"), "{out}");
}

/// A connected UDP socket sending to a closed port through the forwarder gets ECONNREFUSED,
/// for every datagram, over IPv4 and IPv6, from the ICMP port unreachable the forwarder passes
/// back.
fn connected_udp_to_a_closed_port_gets_econnrefused(
    binary: fn() -> PathBuf,
    extra: &'static [&'static str],
) {
    let stderr = with_forwarder(binary, extra, |_| async {
        for v6 in [false, true] {
            let port = closed_port(if v6 { "::1" } else { "127.0.0.1" });
            let bind = if v6 { "[::]:0" } else { "0.0.0.0:0" };
            let socket = UdpSocket::bind(bind).await.unwrap();
            socket.connect(via(v6, port)).await.unwrap();
            // The first datagram opens the flow (its task sends it); the second goes out
            // from the flow table directly: each is refused.
            for attempt in 0..2 {
                socket.send(b"anyone?").await.unwrap();
                let mut buf = [0u8; 64];
                let got = timeout(Duration::from_secs(5), socket.recv(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("v6 {v6}, {attempt}: no answer within 5 s"));
                let e = got.expect_err("a closed port answers with an error");
                assert_eq!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused,
                    "v6 {v6}, {attempt}: {e}"
                );
            }
        }
    });
    assert_eq!(counter(&stderr, "udp relay:", "flows "), 2, "{stderr}");
    assert_eq!(counter(&stderr, "udp relay:", "refused "), 4, "{stderr}");
}

#[test]
fn tun_forward_connected_udp_to_a_closed_port_gets_econnrefused() {
    let _load = shared();
    connected_udp_to_a_closed_port_gets_econnrefused(tun_forward_binary, &[]);
}

/// The same with the device read and the UDP relay on a thread of their own: the flow's
/// socket and its errors are on that thread's reactor.
#[test]
fn tun_forward_with_a_device_thread_connected_udp_to_a_closed_port_gets_econnrefused() {
    let _load = shared();
    connected_udp_to_a_closed_port_gets_econnrefused(tun_forward_binary, &["--device-thread"]);
}

#[test]
fn tun_forward_smol_connected_udp_to_a_closed_port_gets_econnrefused() {
    let _load = shared();
    connected_udp_to_a_closed_port_gets_econnrefused(tun_forward_smol_binary, &[]);
}

/// 300 connections to a black-holed destination (every SYN dropped) are more than all the
/// dial permits (256): with the per-destination cap (32) they take only 32, and a connection
/// to another destination still relays at once; the black-holed ones fail when their dial
/// times out. Returns the time the other connection's echo took, and the forwarder's counters.
fn black_holes(binary: fn() -> PathBuf, extra: &'static [&'static str]) -> (Duration, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = with_forwarder(binary, extra, move |_| async move {
        let open = echo_server("127.0.0.1:0".parse().unwrap()).await.port();
        let (hole, _filler) = black_hole("[::1]:0".parse().unwrap());
        let silent = hole.local_addr().unwrap().port();
        let stuck: Vec<_> = (0..300)
            .map(|_| tokio::spawn(timed_connect(via(true, silent))))
            .collect();
        // Let every SYN reach the forwarder and its dials start.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let relayed = async {
            let mut s = TcpStream::connect(via(false, open)).await?;
            echo_line(&mut s, "through\n").await
        };
        let result = timeout(Duration::from_secs(10), relayed).await;
        let took = started.elapsed();
        for client in stuck {
            let (r, _) = client.await.unwrap();
            match r {
                Err(_) => {}
                // A SYN-cookie connection (the backlog was full) is established before its
                // dial; its dial failing resets it, which the client sees on first use.
                Ok(mut s) => assert!(echo_line(&mut s, "x\n").await.is_err()),
            }
        }
        result
            .expect("the other connection never relayed")
            .expect("echo");
        tx.send(took).unwrap();
    });
    (rx.recv().unwrap(), stderr)
}

#[test]
fn tun_forward_black_holed_destinations_do_not_stall_other_dials() {
    let _load = exclusive();
    let (took, stderr) = black_holes(tun_forward_binary, &["--dial-timeout", "3"]);
    assert!(
        took < Duration::from_secs(1),
        "relayed after {took:?}: {stderr}"
    );
    assert!(counter(&stderr, "dials:", "timed out ") >= 250, "{stderr}");
}

#[test]
fn tun_forward_smol_black_holed_destinations_do_not_stall_other_dials() {
    let _load = exclusive();
    let (took, stderr) = black_holes(tun_forward_smol_binary, &["--dial-timeout", "3"]);
    assert!(
        took < Duration::from_secs(1),
        "relayed after {took:?}: {stderr}"
    );
}

/// Without the per-destination cap the black hole takes every permit and the other
/// connection waits for the dial timeout: the case the cap is for (and proof that the test
/// above can fail).
#[test]
fn tun_forward_without_a_per_destination_cap_a_black_hole_stalls_everyone() {
    let _load = exclusive();
    let (took, stderr) = black_holes(
        tun_forward_binary,
        &["--dial-timeout", "2", "--max-dials-per-destination", "256"],
    );
    assert!(
        took >= Duration::from_secs(1),
        "relayed after {took:?}: {stderr}"
    );
}

/// Python's `http.server` (listen backlog 5, HTTP/1.0: one connection per request) behind the
/// forwarder under `wrk`: dialing first, a connection the server's full backlog delays waits
/// in the client's `connect()`, not in the middle of its request. Then the same `wrk` run
/// against the same server directly (no forwarder: the kernel's own client), as the reference.
/// Returns wrk's two outputs: through the forwarder, and direct.
fn wrk_against_http_server(
    binary: fn() -> PathBuf,
    extra: &'static [&'static str],
) -> (String, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    with_forwarder(binary, extra, move |_| async move {
        let dir = std::env::temp_dir().join(format!("netstack-http-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "hello\n").unwrap();
        let port = closed_port("127.0.0.1");
        let server = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 must be installed");
        let server = KillOnDrop(server);
        // Until it listens.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let wrk = |url: String| {
            tokio::task::spawn_blocking(move || {
                Command::new("wrk")
                    .args(["-t", "2", "-c", "64", "-d", "5s", "--timeout", "2s", &url])
                    .stdin(Stdio::null())
                    .output()
                    .expect("wrk must be installed")
            })
        };
        let through = wrk(format!("http://198.19.0.10:{port}/")).await.unwrap();
        let direct = wrk(format!("http://127.0.0.1:{port}/")).await.unwrap();
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        for out in [&through, &direct] {
            assert!(out.status.success(), "wrk failed: {out:?}");
        }
        let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
        tx.send((text(&through), text(&direct))).unwrap();
    });
    rx.recv().unwrap()
}

/// `wrk`'s request count and timeouts.
fn wrk_figures(out: &str) -> (u64, u64) {
    let requests = out
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output: {out}"));
    // The "Socket errors" line appears only when there were errors.
    let timeouts = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map_or(0, |l| {
            let at = l.find("timeout ").expect("a timeout figure") + "timeout ".len();
            l[at..].trim().parse().expect("a timeout count")
        });
    (requests, timeouts)
}

/// Timeouts the kernel's own client may see in a 5 s `wrk` run against this server, at the
/// least (the test also measures it, and takes the larger). Not zero: by hand, wrk in a
/// namespace against `127.0.0.1` got 5, 3 and 2 timeouts in three 5 s runs, because a full
/// accept queue drops the final ACK of a handshake the client already counts as complete, and
/// the request then waits for the server's SYN-ACK retransmission (1 s, 3 s) — invisible to a
/// client and to a forwarder alike.
const WRK_TIMEOUTS_THE_KERNEL_GETS: u64 = 5;

/// How far the forwarder's count may exceed the kernel's: both come from the same random loss
/// of final ACKs and vary run to run (the kernel 2–5 by hand; the forwarder 6 once in CI against
/// a bound of 5, 0–6 otherwise), so twice the kernel's. The defect this test guards against is
/// far above it: accepting first (`--accept-first`) got 17, 28 and 28 (by hand), each of its
/// clients accepted while the upstream SYN waits.
const WRK_TIMEOUT_FACTOR: u64 = 2;

#[test]
fn tun_forward_small_backlog_http_server_under_wrk_times_out_no_more_than_the_kernel() {
    let _load = exclusive();
    let (out, direct) = wrk_against_http_server(tun_forward_binary, &[]);
    let (requests, timeouts) = wrk_figures(&out);
    let (direct_requests, kernel_timeouts) = wrk_figures(&direct);
    eprintln!(
        "dial first: {requests} requests, {timeouts} timeouts; the kernel alone: \
         {direct_requests} requests, {kernel_timeouts} timeouts\n{out}"
    );
    assert!(requests > 0 && direct_requests > 0, "{out}\n{direct}");
    let bound = WRK_TIMEOUT_FACTOR * kernel_timeouts.max(WRK_TIMEOUTS_THE_KERNEL_GETS);
    assert!(
        timeouts <= bound,
        "{timeouts} timeouts through the forwarder, the kernel alone {kernel_timeouts} \
         (bound {bound}):\n{out}\n{direct}"
    );
}

#[test]
fn wrk_figures_are_read_from_its_output() {
    let clean = "Running 5s test @ http://x/\n  100 requests in 5.00s, 1 KB read\n";
    assert_eq!(wrk_figures(clean), (100, 0));
    let errors = "  7 requests in 5.00s\n  Socket errors: connect 0, read 1, write 0, timeout 3\n";
    assert_eq!(wrk_figures(errors), (7, 3));
}
