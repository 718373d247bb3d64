//! `cargo xtask demo`: `tun_forward` in a throw-away network namespace.
//!
//! The demo builds `tun_forward` in release mode, creates the namespace
//! `netstack-demo-<pid>`, starts `tun_forward --tun tun0 --redirect
//! 127.0.0.1` in it, gives the kernel `198.18.0.1/15` and `fd00::1/64` on
//! `tun0`, serves a temporary directory with `python3 -m http.server` on
//! `127.0.0.1:8080` inside the namespace, and fetches
//! `http://198.19.0.10:8080/`, a 4 MiB file and `http://[fd00::10]:8080/`
//! with `curl`. Those connections go into the TUN device, are terminated by
//! the user-space stack and redirected to the local server.
//!
//! Everything happens inside the namespace; a guard kills the processes the
//! demo started (by PID) and deletes the namespace and the temporary
//! directory on every exit path.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Size of the large file served by the demo.
const BIG_FILE_LEN: usize = 4 * 1024 * 1024;
/// Name of the large file served by the demo.
const BIG_FILE_NAME: &str = "big.bin";
/// Content of the served `index.html`.
const INDEX_HTML: &str = "<!DOCTYPE html>\n<html><head><title>netstack demo</title></head>\n\
<body><h1>Hello from netstack!</h1>\n\
<p>This page reached you through a user-space TCP/IP stack.</p></body></html>\n";
/// Port of the HTTP server (and of the URLs curl fetches).
const HTTP_PORT: u16 = 8080;
/// How long to wait for `tun_forward` to print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the HTTP server to accept connections.
const SERVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for `tun_forward` to exit after SIGINT.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Set by the SIGINT handler so the demo stops between steps and cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// One line of the final summary.
struct Step {
    /// What was done.
    name: String,
    /// Whether it worked.
    pass: bool,
    /// Measurements or the reason for a failure.
    detail: String,
}

/// Collects step results and prints them as they happen.
#[derive(Default)]
struct Report {
    /// All steps so far, in order.
    steps: Vec<Step>,
}

impl Report {
    /// Records (and prints) one step result.
    fn record(&mut self, name: impl Into<String>, pass: bool, detail: impl Into<String>) {
        let step = Step {
            name: name.into(),
            pass,
            detail: detail.into(),
        };
        println!(
            "[{}] {}{}{}",
            if step.pass { "PASS" } else { "FAIL" },
            step.name,
            if step.detail.is_empty() { "" } else { ": " },
            step.detail
        );
        self.steps.push(step);
    }

    /// Records a step from a `Result`; returns whether it passed.
    fn check(&mut self, name: &str, result: Result<String, String>) -> bool {
        match result {
            Ok(detail) => {
                self.record(name, true, detail);
                true
            }
            Err(detail) => {
                self.record(name, false, detail);
                false
            }
        }
    }

    /// Returns whether every recorded step passed.
    fn all_passed(&self) -> bool {
        self.steps.iter().all(|s| s.pass)
    }

    /// Prints the summary table.
    fn print_summary(&self) {
        println!();
        println!("==================== demo summary ====================");
        for step in &self.steps {
            println!(
                "  {}  {}{}{}",
                if step.pass { "PASS" } else { "FAIL" },
                step.name,
                if step.detail.is_empty() { "" } else { " — " },
                step.detail
            );
        }
        let failed = self.steps.iter().filter(|s| !s.pass).count();
        println!(
            "  result: {}",
            if failed == 0 {
                "PASS".to_string()
            } else {
                format!("FAIL ({failed} step(s) failed)")
            }
        );
        println!("======================================================");
    }
}

/// Everything the demo created; dropping it removes all of it.
struct Guard {
    /// The network namespace, once created.
    netns: Option<String>,
    /// The `tun_forward` process, while running.
    forwarder: Option<Child>,
    /// The HTTP server process, while running.
    server: Option<Child>,
    /// The DNS server process, while running.
    dns: Option<Child>,
    /// The temporary web root, once created.
    web_root: Option<PathBuf>,
}

impl Guard {
    /// Removes everything created so far; safe to call more than once.
    /// Returns a description of problems, if any.
    fn cleanup(&mut self) -> Result<String, String> {
        let mut problems = Vec::new();
        let mut done = Vec::new();
        for (what, child) in [
            ("HTTP server", self.server.take()),
            ("DNS server", self.dns.take()),
            ("tun_forward", self.forwarder.take()),
        ] {
            if let Some(mut child) = child {
                if let Ok(None) = child.try_wait() {
                    // Child::kill sends SIGKILL to exactly this PID.
                    if let Err(e) = child.kill() {
                        problems.push(format!("killing {what} (pid {}): {e}", child.id()));
                    }
                }
                let _ = child.wait();
                done.push(format!("stopped {what}"));
            }
        }
        if let Some(ns) = self.netns.take() {
            match run_quiet("ip", &["netns", "del", &ns]) {
                Ok(()) => done.push(format!("deleted namespace {ns}")),
                Err(e) => problems.push(e),
            }
        }
        if let Some(dir) = self.web_root.take() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => done.push(format!("removed {}", dir.display())),
                Err(e) => problems.push(format!("removing {}: {e}", dir.display())),
            }
        }
        if problems.is_empty() {
            Ok(done.join(", "))
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("xtask demo: cleanup problem: {e}");
        }
    }
}

/// Output of `tun_forward` collected by reader threads.
struct ForwarderOutput {
    /// Lines of stdout, as they arrive.
    stdout_lines: mpsc::Receiver<String>,
    /// All of stderr, available once the process has exited.
    stderr: JoinHandle<String>,
}

/// Runs the demo.
pub fn run() -> Result<(), String> {
    if !super::is_root() {
        return Err(
            "`cargo xtask demo` must run as root: it creates a network namespace \
             (ip netns add) and a TUN device inside it."
                .to_string(),
        );
    }
    for tool in ["ip", "curl", "python3", "ping"] {
        if !tool_exists(tool) {
            return Err(format!(
                "`{tool}` not found in PATH; the demo needs ip (iproute2), curl and python3"
            ));
        }
    }
    install_sigint_handler();

    let mut report = Report::default();
    let mut guard = Guard {
        netns: None,
        forwarder: None,
        server: None,
        dns: None,
        web_root: None,
    };
    let forwarder_output = run_steps(&mut report, &mut guard);

    // Whatever happened, stop tun_forward, show what it said, and clean up.
    stop_forwarder(&mut report, &mut guard, forwarder_output);
    let cleanup = guard.cleanup();
    report.check("cleanup (processes, namespace, temp dir)", cleanup);
    report.print_summary();
    if report.all_passed() {
        Ok(())
    } else {
        Err("demo failed (see the summary above)".to_string())
    }
}

/// Runs the demo steps up to and including the curl fetches; stops at the
/// first setup failure. Returns the forwarder's output channels if it was
/// started.
fn run_steps(report: &mut Report, guard: &mut Guard) -> Option<ForwarderOutput> {
    // 1. Build.
    let binary = match build_tun_forward() {
        Ok(path) => {
            report.record(
                "build tun_forward (release)",
                true,
                path.display().to_string(),
            );
            path
        }
        Err(e) => {
            report.record("build tun_forward (release)", false, e);
            return None;
        }
    };

    // 2. Namespace.
    let ns = format!("netstack-demo-{}", std::process::id());
    let created = run_quiet("ip", &["netns", "add", &ns]);
    if created.is_ok() {
        guard.netns = Some(ns.clone());
    }
    let created = created.and_then(|()| run_quiet("ip", &["-n", &ns, "link", "set", "lo", "up"]));
    if !report.check(
        &format!("create namespace {ns}"),
        created.map(|()| "lo up".to_string()),
    ) || interrupted(report)
    {
        return None;
    }

    // 3. tun_forward.
    let (started, output) = start_forwarder(&ns, &binary, guard);
    let ok = report.check("start tun_forward and wait for `ready`", started);
    if !ok || interrupted(report) {
        return output;
    }

    // 4. Kernel side of the TUN link.
    let configured = [
        vec!["addr", "add", "198.18.0.1/15", "dev", "tun0"],
        vec!["link", "set", "tun0", "up"],
        vec!["-6", "addr", "add", "fd00::1/64", "dev", "tun0", "nodad"],
    ]
    .iter()
    .try_for_each(|args| run_in_ns(&ns, "ip", args));
    if !report.check(
        "configure tun0 (198.18.0.1/15, fd00::1/64)",
        configured.map(|()| String::new()),
    ) || interrupted(report)
    {
        return output;
    }

    // 5. HTTP server.
    let served = start_server(&ns, guard);
    if !report.check(
        &format!("start HTTP server on 127.0.0.1:{HTTP_PORT} in the namespace"),
        served,
    ) || interrupted(report)
    {
        return output;
    }

    // 6. Fetch through the stack.
    let fetches = [
        (
            "GET http://198.19.0.10:8080/ (IPv4)",
            format!("http://198.19.0.10:{HTTP_PORT}/"),
            INDEX_HTML.len(),
        ),
        (
            "GET http://198.19.0.10:8080/big.bin (IPv4, 4 MiB)",
            format!("http://198.19.0.10:{HTTP_PORT}/{BIG_FILE_NAME}"),
            BIG_FILE_LEN,
        ),
        (
            "GET http://[fd00::10]:8080/ (IPv6)",
            format!("http://[fd00::10]:{HTTP_PORT}/"),
            INDEX_HTML.len(),
        ),
    ];
    for (name, url, expected_len) in fetches {
        if interrupted(report) {
            break;
        }
        let result = curl(&ns, &url, expected_len);
        report.check(name, result);
    }

    // 7. DNS over UDP through the stack.
    if !interrupted(report)
        && report.check(
            "start dnsmasq on 127.0.0.1:53 in the namespace",
            start_dns(&ns, guard),
        )
    {
        for server in ["@198.19.0.53", "@fd00::53"] {
            let result = dig(&ns, server);
            report.check(&format!("dig {server} example.test"), result);
        }
    }

    // 8. ICMP echo answered by the stack.
    for (name, args) in [
        (
            "ping 198.19.0.10",
            vec!["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.19.0.10"],
        ),
        (
            "ping -6 fd00::10",
            vec!["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "fd00::10"],
        ),
        (
            "ping -s 4000 198.19.0.10 (fragmented)",
            vec!["ping", "-c", "2", "-s", "4000", "-W", "2", "198.19.0.10"],
        ),
    ] {
        if interrupted(report) {
            break;
        }
        report.check(name, ping(&ns, &args));
    }
    output
}

/// The name the demo's DNS server answers, and its address.
const DNS_NAME: &str = "example.test";
const DNS_ANSWER: &str = "198.18.7.7";

/// Starts dnsmasq on 127.0.0.1:53 inside the namespace, answering [`DNS_NAME`].
fn start_dns(ns: &str, guard: &mut Guard) -> Result<String, String> {
    if !tool_exists("dnsmasq") || !tool_exists("dig") {
        return Err("dnsmasq and dig are needed (apt-get install dnsmasq-base dnsutils)".into());
    }
    let pid_file =
        std::env::temp_dir().join(format!("netstack-demo-dnsmasq-{}.pid", std::process::id()));
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
        ])
        .args([
            "--no-hosts",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--port=53",
        ])
        .arg(format!("--address=/{DNS_NAME}/{DNS_ANSWER}"))
        .args(["--user=root"])
        .arg(format!("--pid-file={}", pid_file.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning dnsmasq: {e}"))?;
    let pid = child.id();
    guard.dns = Some(child);
    // dnsmasq answers as soon as it listens; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    Ok(format!("pid {pid}"))
}

/// Resolves [`DNS_NAME`] with dig through the stack.
fn dig(ns: &str, server: &str) -> Result<String, String> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "dig", server, DNS_NAME, "+short", "+time=2", "+tries=2",
        ])
        .output()
        .map_err(|e| format!("running dig: {e}"))?;
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && answer == DNS_ANSWER {
        Ok(format!("{DNS_NAME} = {answer}"))
    } else {
        Err(format!("dig answered {answer:?} ({})", out.status))
    }
}

/// Runs ping inside the namespace and reports its summary line.
fn ping(ns: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .map_err(|e| format!("running ping: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("no summary")
        .to_string();
    if out.status.success() {
        Ok(summary)
    } else {
        Err(summary)
    }
}

/// Records an "interrupted" failure if SIGINT arrived; returns whether it did.
fn interrupted(report: &mut Report) -> bool {
    let hit = INTERRUPTED.load(Ordering::SeqCst);
    if hit {
        report.record("demo", false, "interrupted by SIGINT");
    }
    hit
}

/// Builds `tun_forward` in release mode and returns its path.
fn build_tun_forward() -> Result<PathBuf, String> {
    let args = [
        "build",
        "--release",
        "-p",
        "netstack-examples",
        "--bin",
        "tun_forward",
    ];
    println!("==> cargo {}", args.join(" "));
    let status = Command::new(super::cargo())
        .args(args)
        .current_dir(super::workspace_root())
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    let path = super::target_dir().join("release").join("tun_forward");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("built, but {} does not exist", path.display()))
    }
}

/// Starts `tun_forward` in the namespace and waits for its `ready` line.
fn start_forwarder(
    ns: &str,
    binary: &Path,
    guard: &mut Guard,
) -> (Result<String, String>, Option<ForwarderOutput>) {
    let spawned = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(binary)
        .args(["--tun", "tun0", "--redirect", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return (Err(format!("spawning tun_forward: {e}")), None),
    };
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    guard.forwarder = Some(child);

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let output = ForwarderOutput {
        stdout_lines: rx,
        stderr,
    };

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match output.stdout_lines.recv_timeout(left) {
            Ok(line) if line.trim() == "ready" => {
                return (Ok(format!("pid {pid}")), Some(output));
            }
            Ok(line) => println!("tun_forward stdout: {line}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return (
                    Err(format!(
                        "no `ready` line within {} s",
                        READY_TIMEOUT.as_secs()
                    )),
                    Some(output),
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return (
                    Err("tun_forward closed stdout (exited?) before printing `ready`".to_string()),
                    Some(output),
                );
            }
        }
    }
}

/// Sends SIGINT to `tun_forward`, waits for it to exit and prints what it
/// wrote (its counters go to stderr).
fn stop_forwarder(report: &mut Report, guard: &mut Guard, output: Option<ForwarderOutput>) {
    let Some(mut child) = guard.forwarder.take() else {
        return;
    };
    let pid = child.id();
    let result = match child.try_wait() {
        Ok(Some(status)) => Err(format!("tun_forward had already exited ({status})")),
        Ok(None) => {
            send_sigint(pid);
            let deadline = Instant::now() + EXIT_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => {
                        break Ok(format!("exited after SIGINT ({status})"));
                    }
                    Ok(Some(status)) => break Err(format!("exited after SIGINT with {status}")),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(format!(
                            "did not exit within {} s of SIGINT; killed",
                            EXIT_TIMEOUT.as_secs()
                        ));
                    }
                    Err(e) => break Err(format!("waiting for tun_forward: {e}")),
                }
            }
        }
        Err(e) => Err(format!("waiting for tun_forward: {e}")),
    };
    // Make sure it is gone before reading the rest of its output.
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
    report.check(&format!("stop tun_forward (SIGINT to pid {pid})"), result);

    if let Some(output) = output {
        let rest: Vec<String> = output.stdout_lines.try_iter().collect();
        if !rest.is_empty() {
            println!("---- tun_forward stdout ----");
            for line in rest {
                println!("{line}");
            }
        }
        let stderr = output.stderr.join().unwrap_or_default();
        println!("---- tun_forward stderr (counters) ----");
        print!("{stderr}");
        if !stderr.ends_with('\n') {
            println!();
        }
        println!("---------------------------------------");
    }
}

/// Writes the web root and starts `python3 -m http.server` in the namespace,
/// then waits until it answers on 127.0.0.1.
fn start_server(ns: &str, guard: &mut Guard) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("netstack-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    guard.web_root = Some(dir.clone());
    std::fs::write(dir.join("index.html"), INDEX_HTML)
        .map_err(|e| format!("writing index.html: {e}"))?;
    std::fs::write(dir.join(BIG_FILE_NAME), demo_bytes(BIG_FILE_LEN))
        .map_err(|e| format!("writing {BIG_FILE_NAME}: {e}"))?;

    let port = HTTP_PORT.to_string();
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-m", "http.server", &port])
        .args(["--bind", "127.0.0.1", "--directory"])
        .arg(&dir)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning python3 -m http.server: {e}"))?;
    let pid = child.id();
    guard.server = Some(child);

    let url = format!("http://127.0.0.1:{HTTP_PORT}/");
    let deadline = Instant::now() + SERVER_TIMEOUT;
    loop {
        let probe = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-sS", "--max-time", "1"])
            .args(["-o", "/dev/null", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if matches!(probe, Ok(status) if status.success()) {
            return Ok(format!("pid {pid}, serving {}", dir.display()));
        }
        if let Some(server) = guard.server.as_mut() {
            if let Ok(Some(status)) = server.try_wait() {
                return Err(format!("HTTP server exited ({status})"));
            }
        }
        if Instant::now() >= deadline || INTERRUPTED.load(Ordering::SeqCst) {
            return Err(format!(
                "not answering within {} s",
                SERVER_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fetches `url` with curl inside the namespace and checks for status 200
/// and `expected_len` bytes.
fn curl(ns: &str, url: &str, expected_len: usize) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-g", "-sS", "--max-time", "10"])
        .args(["-o", "/dev/null", "-w"])
        .arg("%{http_code} %{size_download} %{speed_download} %{time_total}")
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running curl: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    let code = fields.first().copied().unwrap_or("?");
    let bytes: u64 = fields.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let speed: f64 = fields.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let time: f64 = fields.get(3).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let detail = format!(
        "status {code}, {bytes} bytes in {time:.3} s ({})",
        human_speed(speed)
    );
    if !out.status.success() {
        return Err(format!(
            "curl failed ({}): {}; {detail}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if code != "200" {
        return Err(format!("unexpected HTTP status; {detail}"));
    }
    if bytes != expected_len as u64 {
        return Err(format!("expected {expected_len} bytes; {detail}"));
    }
    Ok(detail)
}

/// Formats a speed in bytes per second.
fn human_speed(bytes_per_sec: f64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes_per_sec >= MIB {
        format!("{:.1} MiB/s", bytes_per_sec / MIB)
    } else {
        format!("{:.1} KiB/s", bytes_per_sec / 1024.0)
    }
}

/// Deterministic pseudo-random content for the large file (xorshift64).
fn demo_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x6e65_7473_7461_636b; // "netstack"
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `program args` inside namespace `ns` (via `ip netns exec`).
fn run_in_ns(ns: &str, program: &str, args: &[&str]) -> Result<(), String> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run_quiet("ip", &full)
}

/// Runs a command to completion, returning its stderr as the error.
fn run_quiet(program: &str, args: &[&str]) -> Result<(), String> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `{shown}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Returns whether `tool` is an executable file somewhere in `PATH`.
fn tool_exists(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool))
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
    })
}

/// Sends SIGINT to the process `pid` (a child this program started).
fn send_sigint(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) on the PID of our own, not yet reaped child process; it
    // touches no memory of ours.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
}

/// Handles SIGINT by setting [`INTERRUPTED`].
extern "C" fn on_sigint(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT (Ctrl-C) set [`INTERRUPTED`] instead of killing the demo, so
/// the guard can still clean up.
fn install_sigint_handler() {
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: `on_sigint` only performs an atomic store, which is
    // async-signal-safe, and has the signature signal(2) expects.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}
