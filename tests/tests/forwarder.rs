//! The `tun_forward` example as a real process, against kernel clients and a kernel server in a
//! private network namespace: the product's command line, exactly as users run it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use netstack_tests::fixture::assert_same_bytes;
use netstack_tests::{enter_new_netns, ip, pattern, tun_forward_binary};
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

/// Starts `tun_forward --tun tunf --mtu MTU --redirect 127.0.0.1` in a new namespace, relays
/// `len` bytes each way over IPv4 and IPv6, stops it with SIGINT and checks its exit.
fn forward_round_trip(mtu: u32, len: usize) {
    std::thread::spawn(move || {
        enter_new_netns().expect("new network namespace");
        let binary = tun_forward_binary();
        let child = Command::new(&binary)
            .args(["--tun", "tunf", "--mtu", &mtu.to_string()])
            .args(["--redirect", "127.0.0.1"])
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
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

#[test]
fn tun_forward_relays_v4_and_v6_at_mtu_1500() {
    forward_round_trip(1500, 16 << 20);
}

#[test]
fn tun_forward_relays_v4_and_v6_at_mtu_65000() {
    forward_round_trip(65000, 16 << 20);
}
