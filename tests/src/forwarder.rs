//! A forwarder binary (`tun_forward`, `tun_forward_smol`) as a child process of a test, in the
//! test thread's network namespace: start it, wait for `ready`, configure the link, stop it
//! with SIGINT and read its counters; and the kernel-side helpers its tests share (servers on
//! loopback, free ports, the open-file limit, the child's peak RSS).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{configure_kernel_side, enter_new_netns};

/// How long a forwarder may take to print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running forwarder process; killed (by its PID) when dropped unless stopped before.
pub struct ForwarderProcess {
    child: Option<Child>,
}

impl Drop for ForwarderProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl ForwarderProcess {
    /// Spawns `cmd` with stdout and stderr piped and waits for its first line, which must be
    /// `ready`.
    pub fn spawn_ready(mut cmd: Command) -> ForwarderProcess {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the forwarder");
        let stdout = child.stdout.take().expect("piped stdout");
        let process = ForwarderProcess { child: Some(child) };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(READY_TIMEOUT)
            .expect("the forwarder printed nothing")
            .expect("reading the forwarder's stdout");
        assert_eq!(first, "ready");
        process
    }

    /// Enters a new network namespace on the calling thread, starts `binary --tun tunf
    /// <args>`, waits for `ready` and configures the kernel side of the link
    /// ([`configure_kernel_side`]).
    pub fn start_in_new_netns(binary: &Path, args: &[&str]) -> ForwarderProcess {
        enter_new_netns().expect("new network namespace");
        let mut cmd = Command::new(binary);
        cmd.args(["--tun", "tunf"]).args(args);
        let process = Self::spawn_ready(cmd);
        configure_kernel_side("tunf").expect("configure tunf");
        process
    }

    /// Runs `test(pid)` on a thread of its own, in a new network namespace with the forwarder at
    /// `binary` started there with `args` ([`start_in_new_netns`](Self::start_in_new_netns));
    /// then stops it, checks that it exited cleanly and returns its stderr (its counters). A
    /// panic of `test` is the caller's, after the forwarder's stderr is printed (its counters
    /// say where a missing packet went).
    pub fn run_in_new_netns<T>(binary: PathBuf, args: Vec<&'static str>, test: T) -> String
    where
        T: FnOnce(u32) + Send + 'static,
    {
        std::thread::spawn(move || {
            let fwd = ForwarderProcess::start_in_new_netns(&binary, &args);
            let pid = fwd.pid();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(pid)));
            let (status, stderr) = fwd.interrupt();
            if let Err(panic) = outcome {
                eprintln!("the forwarder, stopped after the test failed ({status}):\n{stderr}");
                std::panic::resume_unwind(panic);
            }
            assert!(
                status.success(),
                "the forwarder exited with {status}: {stderr}"
            );
            stderr
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The child's peak resident set size so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the forwarder's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in the forwarder's /proc status")
    }

    /// Waits up to `limit` for the forwarder to exit (`after`: what should have made it exit);
    /// returns its status and stderr.
    pub fn wait_exit(mut self, limit: Duration, after: &str) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let reader = std::thread::spawn(move || {
            let mut stderr = String::new();
            let _ = stderr_pipe.read_to_string(&mut stderr);
            stderr
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait().map(|s| (s, child)));
        });
        match rx.recv_timeout(limit) {
            Ok(Ok((status, _reaped))) => (status, reader.join().expect("stderr reader")),
            Ok(Err(e)) => panic!("waiting for the forwarder: {e}"),
            Err(_) => {
                // The child moved to the waiting thread: stop it by its PID from here.
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("the forwarder did not exit within {limit:?} after {after}")
            }
        }
    }

    /// Stops the forwarder with SIGINT; returns its status and stderr (its counters).
    pub fn interrupt(self) -> (ExitStatus, String) {
        // Signal only the process this test started.
        let status = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        self.wait_exit(Duration::from_secs(10), "SIGINT")
    }
}

/// The number that follows `label` on the line of the forwarder's counters (`stderr`) that
/// starts with `line`, e.g. `counter(s, "tcp:", "syn cookies (sent ")`.
pub fn counter(stderr: &str, line: &str, label: &str) -> u64 {
    let text = stderr
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or_else(|| panic!("no line {line:?} in the counters: {stderr}"));
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {text:?}"))
        + label.len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {label:?} in {text:?}"))
}

/// Raises the open-file limit of this process (and so of the children it starts) to at least
/// `want` where it can: the soft limit to the hard one, and the hard one too where the process
/// may (root: `CAP_SYS_RESOURCE`). Returns the new soft limit.
pub fn raise_open_file_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by reference,
    // which lives on this stack frame for every call.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max.max(want),
            rlim_max: limit.rlim_max.max(want),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return raised.rlim_cur;
        }
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// A port of `ip` on which nothing listens (TCP and UDP): one the kernel just gave out and
/// took back.
pub fn closed_port(ip: &str) -> u16 {
    let tcp = std::net::TcpListener::bind((ip, 0)).expect("bind a probe socket");
    let port = tcp.local_addr().expect("probe address").port();
    drop(tcp);
    port
}

/// A kernel echo server on `addr` (loopback, in the calling thread's namespace), serving every
/// connection until the runtime ends; returns its address.
pub async fn echo_server(addr: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind echo server");
    let addr = listener.local_addr().expect("echo server address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A kernel server on `addr` that reads each connection to its end, then writes back the byte
/// count (8 bytes, big-endian) and closes; returns its address.
pub async fn count_server(addr: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind count server");
    let addr = listener.local_addr().expect("count server address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total: u64 = 0;
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => total += n as u64,
                        Err(_) => return,
                    }
                }
                let _ = stream.write_all(&total.to_be_bytes()).await;
            });
        }
    });
    addr
}

/// A kernel HTTP server on `addr` that answers every request with `200 OK` and `body`, then
/// closes; returns its address.
pub async fn http_server(addr: SocketAddr, body: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind HTTP server");
    let addr = listener.local_addr().expect("HTTP server address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A listener on `addr` that never accepts, whose accept queue is full: the kernel drops every
/// further SYN to it, so connecting there hangs (a black-holed destination). Keep the returned
/// sockets alive for as long as it should stay so.
pub fn black_hole(addr: SocketAddr) -> (std::net::TcpListener, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind(addr).expect("bind the black hole");
    let addr = listener.local_addr().expect("black hole address");
    // SAFETY: listen(2) on a descriptor this function owns, with a constant backlog; no memory
    // is involved. Backlog 0 leaves room for one completed connection.
    let rc = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 0) };
    assert_eq!(rc, 0, "listen(0): {}", std::io::Error::last_os_error());
    let filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .expect("the one connection the black hole's queue holds");
    (listener, filler)
}
