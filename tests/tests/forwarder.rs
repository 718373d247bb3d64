//! The `tun_forward` example as a real process, against kernel clients and a kernel server in a
//! private network namespace: the product's command line, exactly as users run it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use netstack_tests::fixture::assert_same_bytes;
use netstack_tests::{enter_new_netns, ip, pattern, tun_forward_binary, tun_forward_smol_binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(120);

/// Kills the forwarder if the test fails before stopping it.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A kernel echo server on loopback: the relay's target.
async fn kernel_echo_server(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).await.expect("bind echo server");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
}

async fn echo_through(addr: SocketAddr, data: Vec<u8>) {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect through tun_forward");
    let (mut r, mut w) = stream.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.expect("write");
        w.shutdown().await.expect("shutdown");
    });
    let mut got = Vec::with_capacity(data.len());
    r.read_to_end(&mut got).await.expect("read");
    writer.await.unwrap();
    assert_same_bytes(&got, &data, &format!("echo via {addr}"));
}

/// What the packet sizes through the forwarder must show.
#[derive(Clone, Copy)]
enum Segments {
    /// Not checked.
    Any,
    /// TUN offloads on: the stack received and sent TCP segments larger than the MTU on
    /// average (the kernel's TSO super-segments in, the stack's GSO ones out).
    LargerThanMtu,
    /// No packet exceeded the MTU on average (offloads off).
    WithinMtu,
}

/// Starts `BINARY --tun tunf --mtu MTU --redirect 127.0.0.1 EXTRA...` (`tun_forward` or
/// `tun_forward_smol`) in a new namespace, relays `len` bytes each way over IPv4 and IPv6,
/// stops it with SIGINT and checks its exit and its packet counters.
fn forward_round_trip(
    binary: fn() -> PathBuf,
    mtu: u32,
    len: usize,
    extra: &'static [&'static str],
    segments: Segments,
) {
    std::thread::spawn(move || {
        enter_new_netns().expect("new network namespace");
        let binary = binary();
        let child = Command::new(&binary)
            .args(["--tun", "tunf", "--mtu", &mtu.to_string()])
            .args(["--redirect", "127.0.0.1"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tun_forward");
        let mut guard = ChildGuard(Some(child));
        let child = guard.0.as_mut().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("tun_forward printed nothing")
            .unwrap();
        assert_eq!(first, "ready");
        ip(&["addr", "add", "198.18.0.1/15", "dev", "tunf"]).unwrap();
        ip(&["-6", "addr", "add", "fd00::1/64", "dev", "tunf", "nodad"]).unwrap();
        ip(&["link", "set", "tunf", "up"]).unwrap();

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            kernel_echo_server("127.0.0.1:9000".parse().unwrap()).await;
            timeout(LIMIT, async {
                echo_through("198.19.0.10:9000".parse().unwrap(), pattern(1, len)).await;
                echo_through("[fd00::10]:9000".parse().unwrap(), pattern(2, len)).await;
            })
            .await
            .expect("relay timed out");
        });

        let pid = i32::try_from(child.id()).unwrap();
        // Signal only the process this test started.
        let status = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut child = guard.0.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait().map(|s| (s, child)));
        });
        let (status, mut child) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("tun_forward did not exit on SIGINT")
            .unwrap();
        assert!(status.success(), "tun_forward exited with {status}");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(stderr.contains("packets: in"), "counters missing: {stderr}");
        assert!(
            stderr.contains("accepted 2"),
            "expected two relayed flows: {stderr}"
        );
        let (avg_in, avg_out) = average_packet_sizes(&stderr);
        let mtu = f64::from(mtu);
        match segments {
            Segments::Any => {}
            Segments::LargerThanMtu => assert!(
                avg_in > mtu && avg_out > mtu,
                "offloads on: average packet in {avg_in:.0}, out {avg_out:.0} bytes, MTU {mtu}"
            ),
            Segments::WithinMtu => assert!(
                avg_in <= mtu && avg_out <= mtu,
                "offloads off: average packet in {avg_in:.0}, out {avg_out:.0} bytes, MTU {mtu}"
            ),
        }
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

/// Average packet size in and out from the `packets: in N (B bytes), out M (C bytes)` line of
/// the forwarder's counters.
fn average_packet_sizes(stderr: &str) -> (f64, f64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("packets: in "))
        .unwrap_or_else(|| panic!("no packet counters in: {stderr}"));
    let numbers: Vec<f64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    let [packets_in, bytes_in, packets_out, bytes_out, ..] = numbers[..] else {
        panic!("unexpected counters line: {line}")
    };
    (bytes_in / packets_in, bytes_out / packets_out)
}

#[test]
fn tun_forward_relays_v4_and_v6_at_mtu_1500() {
    forward_round_trip(
        tun_forward_binary,
        1500,
        16 << 20,
        &[],
        Segments::LargerThanMtu,
    );
}

#[test]
fn tun_forward_without_offloads_relays_v4_and_v6_at_mtu_1500() {
    forward_round_trip(
        tun_forward_binary,
        1500,
        16 << 20,
        &["--no-offload"],
        Segments::WithinMtu,
    );
}

#[test]
fn tun_forward_relays_v4_and_v6_at_mtu_65000() {
    forward_round_trip(tun_forward_binary, 65000, 16 << 20, &[], Segments::Any);
}

#[test]
fn tun_forward_smol_relays_v4_and_v6_at_mtu_1500() {
    forward_round_trip(
        tun_forward_smol_binary,
        1500,
        16 << 20,
        &[],
        Segments::WithinMtu,
    );
}

/// `tun_forward` running in the calling thread's (fresh) namespace with the link configured.
struct Forwarder {
    /// Kills the forwarder when the test ends.
    _child: ChildGuard,
}

impl Forwarder {
    /// Enters a new namespace on this thread, starts `tun_forward --tun tunf <args>`, waits
    /// for `ready` and configures the kernel side of the link.
    fn start(args: &[&str]) -> Forwarder {
        Self::start_binary(tun_forward_binary(), args)
    }

    /// As [`Forwarder::start`], for the forwarder binary at `binary`.
    fn start_binary(binary: PathBuf, args: &[&str]) -> Forwarder {
        enter_new_netns().expect("new network namespace");
        let mut child = Command::new(binary)
            .args(["--tun", "tunf"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tun_forward");
        let stdout = child.stdout.take().unwrap();
        let guard = ChildGuard(Some(child));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("no ready")
            .unwrap();
        assert_eq!(first, "ready");
        ip(&["addr", "add", "198.18.0.1/15", "dev", "tunf"]).unwrap();
        ip(&["-6", "addr", "add", "fd00::1/64", "dev", "tunf", "nodad"]).unwrap();
        ip(&["link", "set", "tunf", "up"]).unwrap();
        Forwarder { _child: guard }
    }
}

/// Runs a command in the current namespace and returns (success, stdout).
fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// DNS over UDP (v4 and v6) and ping through the forwarder at `binary`.
fn dig_and_ping(binary: fn() -> PathBuf) {
    std::thread::spawn(move || {
        let fwd = Forwarder::start_binary(binary(), &["--redirect", "127.0.0.1"]);
        let pid_file = format!(
            "/tmp/netstack-test-dnsmasq-{}-{:?}.pid",
            std::process::id(),
            std::thread::current().id()
        );
        let dns = Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts"])
            .args([
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--port=53",
            ])
            .args(["--address=/example.test/198.18.7.7", "--user=root"])
            .arg(format!("--pid-file={pid_file}"))
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq must be installed");
        let _dns = ChildGuard(Some(dns));
        std::thread::sleep(Duration::from_millis(500));
        for server in ["@198.19.0.53", "@fd00::53"] {
            let (ok, out) = run(
                "dig",
                &[server, "example.test", "+short", "+time=2", "+tries=3"],
            );
            assert!(ok, "dig {server} failed");
            assert_eq!(out.trim(), "198.18.7.7", "dig {server}");
        }
        let (ok, _) = run("ping", &["-c", "2", "-i", "0.2", "-W", "1", "198.19.0.10"]);
        assert!(ok, "ping through tun_forward");
        let (ok, _) = run(
            "ping",
            &["-6", "-c", "2", "-i", "0.2", "-W", "1", "fd00::10"],
        );
        assert!(ok, "ping -6 through tun_forward");
        let _ = std::fs::remove_file(&pid_file);
        drop(fwd);
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

#[test]
fn tun_forward_answers_dig_and_ping() {
    dig_and_ping(tun_forward_binary);
}

#[test]
fn tun_forward_smol_answers_dig_and_ping() {
    dig_and_ping(tun_forward_smol_binary);
}

#[test]
fn tun_forward_icmp_forward_reports_the_real_result() {
    for (redirect, expect_reply) in [("127.0.0.1", true), ("192.0.2.1", false)] {
        std::thread::spawn(move || {
            // 192.0.2.1 has no route inside the test namespace: the real ping fails at once,
            // so the stack must not pretend it answered.
            let fwd = Forwarder::start(&["--redirect", redirect, "--icmp", "forward"]);
            let (ok, _) = run("ping", &["-c", "2", "-i", "0.2", "-W", "3", "198.19.0.10"]);
            assert_eq!(ok, expect_reply, "ping via --icmp forward to {redirect}");
            drop(fwd);
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    }
}
