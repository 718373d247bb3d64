//! The `tun_forward` example as a real process, against kernel clients and a kernel server in a
//! private network namespace: the product's command line, exactly as users run it.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netstack_tests::fd_handover::hand_over;
use netstack_tests::fixture::assert_same_bytes;
use netstack_tests::forwarder::{echo_server, ForwarderProcess};
use netstack_tests::{
    configure_kernel_side, enter_new_netns, ip, pattern, tun_forward_binary,
    tun_forward_smol_binary, Tun,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Kills a helper process (dnsmasq) when the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const LIMIT: Duration = Duration::from_secs(120);

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

/// Relays `len` bytes each way through a forwarder redirecting to 127.0.0.1, once over IPv4
/// and once over IPv6, with a kernel echo server on 127.0.0.1:9000 (on a runtime of its own,
/// in the calling thread's namespace).
fn echo_v4_and_v6(len: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        echo_server("127.0.0.1:9000".parse().unwrap()).await;
        timeout(LIMIT, async {
            echo_through("198.19.0.10:9000".parse().unwrap(), pattern(1, len)).await;
            echo_through("[fd00::10]:9000".parse().unwrap(), pattern(2, len)).await;
        })
        .await
        .expect("relay timed out");
    });
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
        let mut cmd = Command::new(binary());
        cmd.args(["--tun", "tunf", "--mtu", &mtu.to_string()])
            .args(["--redirect", "127.0.0.1"])
            .args(extra);
        let fwd = ForwarderProcess::spawn_ready(cmd);
        configure_kernel_side("tunf").unwrap();

        echo_v4_and_v6(len);
        let (status, stderr) = fwd.interrupt();
        assert!(
            status.success(),
            "tun_forward exited with {status}: {stderr}"
        );
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

/// The device read (and the UDP relay) on a thread of their own, the TCP relays on tokio's
/// workers: the stack is fed from one thread and drained from others.
#[test]
fn tun_forward_with_a_device_thread_relays_v4_and_v6_at_mtu_1500() {
    forward_round_trip(
        tun_forward_binary,
        1500,
        16 << 20,
        &["--device-thread"],
        Segments::LargerThanMtu,
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
        Segments::LargerThanMtu,
    );
}

#[test]
fn tun_forward_smol_without_offloads_relays_v4_and_v6_at_mtu_1500() {
    forward_round_trip(
        tun_forward_smol_binary,
        1500,
        16 << 20,
        &["--no-offload"],
        Segments::WithinMtu,
    );
}

/// `--threads 2`: the shared async-io executor on two threads with netstack-smol's `Send`
/// stack, and two runner groups, so that the groups' runners and the relays move between
/// threads.
#[test]
fn tun_forward_smol_on_two_threads_relays_v4_and_v6_at_mtu_1500() {
    forward_round_trip(
        tun_forward_smol_binary,
        1500,
        16 << 20,
        &["--threads", "2", "--runners", "2"],
        Segments::LargerThanMtu,
    );
}

#[test]
fn tun_forward_smol_relays_v4_and_v6_at_mtu_65000() {
    forward_round_trip(tun_forward_smol_binary, 65000, 16 << 20, &[], Segments::Any);
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

/// Starts the forwarder at `binary` in a new namespace with `--redirect 127.0.0.1` and `extra`.
fn start_redirecting(binary: fn() -> PathBuf, extra: &[&str]) -> ForwarderProcess {
    let args = [&["--redirect", "127.0.0.1"][..], extra].concat();
    ForwarderProcess::start_in_new_netns(&binary(), &args)
}

/// DNS over UDP (v4 and v6) and ping through the forwarder at `binary`, started with
/// `--redirect 127.0.0.1` and `extra`.
fn dig_and_ping(binary: fn() -> PathBuf, extra: &'static [&'static str]) {
    std::thread::spawn(move || {
        let fwd = start_redirecting(binary, extra);
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
        let _dns = KillOnDrop(dns);
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
    dig_and_ping(tun_forward_binary, &[]);
}

#[test]
fn tun_forward_with_a_device_thread_answers_dig_and_ping() {
    dig_and_ping(tun_forward_binary, &["--device-thread"]);
}

#[test]
fn tun_forward_smol_answers_dig_and_ping() {
    dig_and_ping(tun_forward_smol_binary, &[]);
}

/// `--icmp forward`: a ping through the forwarder at `binary` is answered only if its real
/// destination answers.
fn icmp_forward_reports_the_real_result(binary: fn() -> PathBuf) {
    for (redirect, expect_reply) in [("127.0.0.1", true), ("192.0.2.1", false)] {
        std::thread::spawn(move || {
            // 192.0.2.1 has no route inside the test namespace: the real ping fails at once,
            // so the stack must not pretend it answered.
            let fwd = ForwarderProcess::start_in_new_netns(
                &binary(),
                &["--redirect", redirect, "--icmp", "forward"],
            );
            let (ok, _) = run("ping", &["-c", "2", "-i", "0.2", "-W", "3", "198.19.0.10"]);
            assert_eq!(ok, expect_reply, "ping via --icmp forward to {redirect}");
            drop(fwd);
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    }
}

#[test]
fn tun_forward_icmp_forward_reports_the_real_result() {
    icmp_forward_reports_the_real_result(tun_forward_binary);
}

#[test]
fn tun_forward_smol_icmp_forward_reports_the_real_result() {
    icmp_forward_reports_the_real_result(tun_forward_smol_binary);
}

/// Deleting the forwarder's interface under it makes its device reads fail (`EBADFD`): the
/// forwarder must say so and exit with status 1 instead of living on without a device.
fn exits_when_its_interface_is_deleted(
    binary: fn() -> PathBuf,
    name: &'static str,
    extra: &'static [&'static str],
) {
    std::thread::spawn(move || {
        let fwd = start_redirecting(binary, extra);
        // It forwards before the deletion: the exit below is the deletion's doing.
        echo_v4_and_v6(64 << 10);
        ip(&["link", "del", "tunf"]).unwrap();
        let (status, stderr) = fwd.wait_exit(Duration::from_secs(10), "its interface was deleted");
        assert_eq!(
            status.code(),
            Some(1),
            "{name} exited with {status}: {stderr}"
        );
        let said = format!("{name}: reading TUN device tunf failed");
        assert!(stderr.contains(&said), "expected {said:?} in: {stderr}");
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

#[test]
fn tun_forward_exits_non_zero_when_its_interface_is_deleted() {
    exits_when_its_interface_is_deleted(tun_forward_binary, "tun_forward", &[]);
}

/// The same with the device read on a thread of its own, on a registration of its own (a
/// duplicate of the descriptor, on that thread's reactor): the deletion must reach it too.
#[test]
fn tun_forward_with_a_device_thread_exits_non_zero_when_its_interface_is_deleted() {
    exits_when_its_interface_is_deleted(tun_forward_binary, "tun_forward", &["--device-thread"]);
}

#[test]
fn tun_forward_smol_exits_non_zero_when_its_interface_is_deleted() {
    exits_when_its_interface_is_deleted(tun_forward_smol_binary, "tun_forward_smol", &[]);
}

/// The device comes from the test, as Android's VpnService hands one to an app: the test opens
/// TUN device `tunh` itself and hands its descriptor to the forwarder (`--tun-fd`) under a
/// seccomp filter that kills the forwarder if it ever closes it (see
/// `netstack_tests::fd_handover`). The forwarder relays through it and exits normally on
/// SIGINT, so it never closed the descriptor; afterwards the test's own descriptor still
/// drives the device: the interface exists and a datagram the kernel routes into it is read.
fn drives_a_handed_over_fd(binary: fn() -> PathBuf) {
    std::thread::spawn(move || {
        enter_new_netns().expect("new network namespace");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tun = {
            let _reactor = runtime.enter();
            Tun::create("tunh", 1500).expect("create tunh")
        };
        let fd = tun.as_raw_fd();
        let mut cmd = Command::new(binary());
        cmd.args(["--tun-fd", &fd.to_string(), "--mtu", "1500"])
            .args(["--redirect", "127.0.0.1"]);
        hand_over(&mut cmd, fd);
        let fwd = ForwarderProcess::spawn_ready(cmd);
        configure_kernel_side("tunh").unwrap();
        echo_v4_and_v6(1 << 20);

        let (status, stderr) = fwd.interrupt();
        assert_ne!(
            status.signal(),
            Some(libc::SIGSYS),
            "the forwarder closed the descriptor it was handed: {stderr}"
        );
        assert!(
            status.success(),
            "the forwarder exited with {status}: {stderr}"
        );
        assert!(
            stderr.contains("accepted 2"),
            "expected two relayed flows: {stderr}"
        );

        ip(&["link", "show", "tunh"]).expect("the interface outlives the forwarder");
        runtime.block_on(async {
            let sock = std::net::UdpSocket::bind("198.18.0.1:0").unwrap();
            sock.send_to(b"still mine", "198.19.0.77:9999").unwrap();
            let mut buf = vec![0u8; 2048];
            let arrived = timeout(Duration::from_secs(5), async {
                loop {
                    let n = tun.recv(&mut buf).await.expect("reading the test's own fd");
                    // Skip what else the kernel sends (IPv6 neighbour discovery, MLD).
                    if n > 28 && buf[0] >> 4 == 4 && buf[9] == 17 {
                        return buf[28..n].to_vec();
                    }
                }
            })
            .await
            .expect("no datagram on the test's own descriptor within 5 s");
            assert_eq!(arrived, b"still mine");
        });
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

#[test]
fn tun_forward_drives_a_handed_over_fd_and_never_closes_it() {
    drives_a_handed_over_fd(tun_forward_binary);
}

#[test]
fn tun_forward_smol_drives_a_handed_over_fd_and_never_closes_it() {
    drives_a_handed_over_fd(tun_forward_smol_binary);
}
