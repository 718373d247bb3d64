//! The sandbox of `cargo xtask bench`: private network namespaces and the processes started in
//! them, all removed by [`Sandbox`]'s `Drop` (on success, on error and after Ctrl-C).
//!
//! Nothing here touches the root namespace: every `ip` command names a namespace this sandbox
//! created (`ip -n NS ...` or `ip netns exec NS ...`), and every process is started inside one.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set by the SIGINT handler; long steps poll it and stop early.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Numbers the namespaces of this run.
static NEXT_NS: AtomicUsize = AtomicUsize::new(0);

/// A process started in a namespace.
pub struct Proc {
    /// The child (the `ip netns exec` wrapper execs the program, so this is its PID).
    child: Child,
    /// Lines of its stdout, if piped.
    pub lines: Option<mpsc::Receiver<String>>,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for a stdout line satisfying `want`; returns it.
    pub fn wait_line(
        &self,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let rx = self
            .lines
            .as_ref()
            .ok_or_else(|| format!("{}: stdout not captured", self.name))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if want(line.trim()) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{}: no expected output within {timeout:?}",
                        self.name
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("{}: exited before the expected output", self.name))
                }
            }
        }
    }
}

/// Network namespaces and processes created by the benchmark; dropping it removes them.
pub struct Sandbox {
    /// Prefix of namespace names (`nsbench-<pid>`).
    prefix: String,
    /// Namespaces created and not yet deleted.
    namespaces: Vec<String>,
    /// Processes started and not yet reaped.
    procs: Vec<Proc>,
    /// Directory for the processes' stderr logs.
    log_dir: PathBuf,
    /// Environment variables given to every process spawned from now on.
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    /// An empty sandbox whose processes log stderr under `log_dir`.
    pub fn new(log_dir: &Path) -> Sandbox {
        Sandbox {
            prefix: format!("nsbench-{}", std::process::id()),
            namespaces: Vec::new(),
            procs: Vec::new(),
            log_dir: log_dir.to_path_buf(),
            env: Vec::new(),
        }
    }

    /// Creates a namespace with `lo` up and returns its name.
    pub fn netns(&mut self) -> Result<String, String> {
        let ns = format!("{}-{}", self.prefix, NEXT_NS.fetch_add(1, Ordering::SeqCst));
        run("ip", &["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&ns, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Starts `program args` in namespace `ns`, stderr to a log file, stdout captured as lines.
    /// Returns the index of the process (for [`Sandbox::proc`]); [`Sandbox::clear`] stops it.
    pub fn spawn(
        &mut self,
        ns: &str,
        name: &str,
        program: &Path,
        args: &[String],
    ) -> Result<usize, String> {
        let log = self.log_dir.join(format!("{ns}-{name}.log"));
        let stderr = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.procs.push(Proc {
            child,
            lines: Some(rx),
            name: name.to_string(),
        });
        Ok(self.procs.len() - 1)
    }

    /// The process at `index`.
    pub fn proc(&self, index: usize) -> &Proc {
        &self.procs[index]
    }

    /// Kills every process and deletes every namespace created so far.
    pub fn clear(&mut self) {
        for mut p in self.procs.drain(..) {
            if let Ok(None) = p.child.try_wait() {
                // SIGTERM first, so forwarders can print their counters; then SIGKILL.
                signal(p.child.id(), libc::SIGTERM);
                let deadline = Instant::now() + Duration::from_millis(1500);
                while matches!(p.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = p.child.kill();
            }
            let _ = p.child.wait();
        }
        for ns in self.namespaces.drain(..) {
            // Anything still in our own namespace was started by us (e.g. a grandchild).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<u32>() {
                        signal(pid, libc::SIGKILL);
                    }
                }
            }
            if let Err(e) = run("ip", &["netns", "del", &ns]) {
                eprintln!("xtask bench: cleanup: {e}");
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Sends `sig` to `pid` (a process this program started).
fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on a PID we started; touches no memory of ours.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Runs `ip -n NS args`.
pub fn ip(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Runs `program args` inside `ns` to completion; returns stdout, or an error with stderr.
pub fn exec_in(ns: &str, program: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run_output("ip", &full)
}

/// Runs a command to completion, failing with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    run_output(program, args).map(|_| ())
}

/// Runs a command to completion and returns its stdout, failing with its stderr.
pub fn run_output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `{program} {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Installs Debian `packages` with `apt-get install -y` (non-interactive).
///
/// # Errors
/// If apt-get cannot run or fails.
pub fn apt_install(packages: &[&str]) -> Result<(), String> {
    eprintln!("==> apt-get install -y {}", packages.join(" "));
    let status = Command::new("apt-get")
        .args(["install", "-y"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("running apt-get: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "apt-get install -y {} failed ({status})",
            packages.join(" ")
        ))
    }
}

/// Runs `program args` in `ns` with a wall-clock limit; returns (success, stdout, stderr).
pub fn exec_in_bounded(
    ns: &str,
    program: &str,
    args: &[String],
    limit: Duration,
) -> Result<(bool, String, String), String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {program}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    match status {
        Some(status) => Ok((status.success(), out, err)),
        None => Err(format!(
            "{program} did not finish within {limit:?} (killed)"
        )),
    }
}

/// CPU time (user + system) of process `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start with field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf(3) has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// A `Vm*:` line of `/proc/PID/status` (for example `VmHWM`), in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Handles SIGINT by setting [`INTERRUPTED`].
extern "C" fn on_sigint(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT set [`INTERRUPTED`] instead of killing the program, so the sandbox is removed.
pub fn install_sigint_handler() {
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: `on_sigint` only performs an atomic store (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

/// Raises the soft open-file limit to the hard limit (children inherit it); returns the limit.
pub fn raise_nofile() -> Result<libc::rlim_t, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "getrlimit(NOFILE): {}",
            std::io::Error::last_os_error()
        ));
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(format!(
            "setrlimit(NOFILE): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(lim.rlim_cur)
}
