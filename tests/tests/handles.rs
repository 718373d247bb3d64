//! The application's handles against a kernel peer: callbacks that call back into the stack,
//! and many tasks waiting for the same condition (tokio multi-thread flavour; the matrix tests
//! in `matrix.rs` cover runner lifetime and concurrent waiters on every flavour).

#![allow(unsafe_code)] // one `setsockopt`, argued where it is

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use netstack_tests::fixture::{spawn_echo_server, Fixture, STACK_V4};
use netstack_tests::{pattern, run_in_netns, TestNet, KERNEL_V4};
use netstack_tokio::{Config, IpFilter, PacketPort, StackBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

/// A kernel connection to `port` that sends `data`, half-closes and returns the echo.
async fn kernel_echo(port: u16, data: &[u8]) -> Vec<u8> {
    let stream = TcpStream::connect(SocketAddr::new(STACK_V4.into(), port))
        .await
        .expect("connect through the stack");
    let (mut r, mut w) = stream.into_split();
    let write = async {
        w.write_all(data).await.expect("write");
        w.shutdown().await.expect("shutdown");
    };
    let read = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.expect("read");
        got
    };
    futures::join!(write, read).1
}

/// The filter's hook runs before the stack's lock is taken: a hook that reads the stack's
/// counters (it used to deadlock the runner on its own lock) lets traffic through.
#[test]
fn a_filter_hook_may_call_back_into_the_stack() {
    run_in_netns(TestNet::default(), 2, |tun| async move {
        let port: Arc<OnceLock<PacketPort>> = Arc::default();
        let calls = Arc::new(AtomicU64::new(0));
        let filter = {
            let (port, calls) = (port.clone(), calls.clone());
            IpFilter::default().hook(move |_flow| {
                if let Some(port) = port.get() {
                    let _ = port.stats(); // takes the stack lock
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                true
            })
        };
        let fx = Fixture::start(tun, StackBuilder::new(Config::default().filter(filter)));
        let _ = port.set(fx.stack.clone());
        spawn_echo_server(fx.listener);
        let data = pattern(3, 64 * 1024);
        let echo = timeout(LIMIT, kernel_echo(80, &data))
            .await
            .expect("the echo completed: no deadlock in the hook");
        assert_eq!(echo, data);
        assert!(
            calls.load(Ordering::Relaxed) > 10,
            "the hook saw the connection's packets"
        );
    });
}

/// `describe` hands its lines out after releasing the lock: its callback may use the stack.
#[test]
fn describe_callback_may_call_back_into_the_stack() {
    run_in_netns(TestNet::default(), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        let listener = fx.listener;
        let server = tokio::spawn(async move { listener.accept().await.expect("accept").0 });
        let client = TcpStream::connect(SocketAddr::new(STACK_V4.into(), 22))
            .await
            .expect("connect");
        let stream = timeout(LIMIT, server)
            .await
            .expect("accepted")
            .expect("task");
        let mut lines = Vec::new();
        let stack = fx.stack.clone();
        let described = tokio::task::spawn_blocking(move || {
            stack.core().describe(&mut |line| {
                let _ = stack.stats(); // takes the stack lock
                lines.push(line.to_string());
            });
            lines
        });
        let lines = timeout(LIMIT, described)
            .await
            .expect("describe returned: no deadlock in the callback")
            .expect("task");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("Open") && l.contains("ESTABLISHED")),
            "the open connection is described: {lines:#?}"
        );
        drop((client, stream));
    });
}

/// Sets a socket's receive buffer beyond `rmem_max` (`SO_RCVBUFFORCE`; the tests run as root).
fn force_receive_buffer(socket: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a descriptor this socket owns, with a pointer to a c_int that
    // lives for the whole call and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

/// A future that counts how often it is polled.
struct Counted<F> {
    fut: Pin<Box<F>>,
    polls: Arc<AtomicU64>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.fut.as_mut().poll(cx)
    }
}

/// A thousand tasks wait for room in a full egress queue to send a datagram. While the queue
/// stays full none of them is woken (the waiter list used to wake its oldest entry on every
/// registration past 32, so they woke each other in a loop); once the device drains it, every
/// datagram reaches the kernel.
#[test]
fn a_thousand_tasks_waiting_for_egress_room_do_not_spin() {
    const TASKS: u16 = 1000;
    run_in_netns(TestNet::default(), 2, |tun| async move {
        let kernel = UdpSocket::bind(SocketAddr::new(KERNEL_V4.into(), 9999))
            .await
            .expect("kernel socket");
        // Room for every datagram at once (each costs the kernel about 1 KiB of buffer).
        force_receive_buffer(&kernel, 8 << 20);
        let (port, runner, _listener) =
            StackBuilder::new(Config::default().egress_queue(4)).build();
        tokio::spawn(runner);
        let (_recv, send) = port.udp_socket().expect("udp").split();
        // Nothing drains the egress queue yet: four datagrams fill it.
        let polls = Arc::new(AtomicU64::new(0));
        let senders: Vec<_> = (0..TASKS)
            .map(|i| {
                let send = send.clone();
                let src = SocketAddr::new(STACK_V4.into(), 10_000 + i);
                let dst = SocketAddr::new(KERNEL_V4.into(), 9999);
                tokio::spawn(Counted {
                    fut: Box::pin(async move { send.send_to(&i.to_be_bytes(), src, dst).await }),
                    polls: polls.clone(),
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let waiting = polls.load(Ordering::Relaxed);
        assert!(
            waiting <= u64::from(TASKS) + 50,
            "{waiting} polls of {TASKS} waiting tasks in 0.5 s: they are waking each other"
        );
        // The device drains the queue now.
        let (_sink, mut stream) = port.clone().split();
        let pump = tokio::spawn(async move {
            while let Some(packet) = stream.next().await {
                let _ = tun.send(&packet).await;
            }
        });
        let received = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let received = received.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                loop {
                    let (n, _) = kernel.recv_from(&mut buf).await.expect("recv");
                    received
                        .lock()
                        .unwrap()
                        .push(u16::from_be_bytes([buf[0], buf[1]]));
                    assert_eq!(n, 2);
                }
            })
        };
        timeout(LIMIT, async {
            for s in senders {
                s.await.expect("task").expect("sent");
            }
            while received.lock().unwrap().len() < usize::from(TASKS) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} of {TASKS} datagrams arrived",
                received.lock().unwrap().len()
            )
        });
        let mut got = received.lock().unwrap().clone();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), usize::from(TASKS), "every datagram exactly once");
        // While the queue drains, a freed slot wakes one waiter (and a send hands leftover
        // room on), so the tasks poll a few times each, not once per packet that left.
        let total = polls.load(Ordering::Relaxed);
        eprintln!("{waiting} polls while full, {total} in all for {TASKS} sends");
        assert!(
            total <= 10 * u64::from(TASKS),
            "{total} polls for {TASKS} sends: the waiters are woken in herds"
        );
        pump.abort();
        reader.abort();
    });
}
