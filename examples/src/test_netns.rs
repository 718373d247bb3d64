//! Test helpers: a private network namespace for a test, and the `ip`/`tc` commands run in it.

#![allow(unsafe_code)]

use std::io;
use std::process::Command;

/// Runs `f` on a fresh thread that first moves into a new network namespace (which disappears
/// when the thread ends), and returns what it returns (a panic in `f` fails the caller).
pub(crate) fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: plain unshare(2) call; it only affects the calling thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) failed (these tests must run as root): {}",
            io::Error::last_os_error()
        );
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `program` with `args` (in the calling thread's namespace) and fails the test if it
/// does not succeed.
pub(crate) fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
