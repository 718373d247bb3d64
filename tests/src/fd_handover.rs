//! Handing a TUN descriptor to a child process the way Android hands one to an app: inherited,
//! and owned by somebody else.
//!
//! [`hand_over`] makes the child inherit descriptor `fd` (the parent keeps its own copy open)
//! and installs, in the child before it runs the program, a seccomp filter that kills it with
//! `SIGSYS` the moment it closes that descriptor: `close(fd)`, a `close_range` that covers it, or
//! `dup2`/`dup3` onto it (which close it first). Android 11+'s fdsan aborts an app that closes a
//! descriptor it does not own in the same way. A process's exit closes its descriptors without a
//! system call, so the filter sees only the program's own closes: a child that exits normally
//! never closed `fd`.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Classic BPF opcodes (`linux/filter.h`).
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JGT_K: u16 = 0x05 | 0x20; // BPF_JMP | BPF_JGT | BPF_K
const JMP_JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Offsets in `struct seccomp_data`: the syscall number, the audit architecture, and the low
/// 32 bits of the first two arguments (little-endian; the descriptors are `unsigned int`).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0: u32 = 16;
const ARG1: u32 = 24;

/// `AUDIT_ARCH_*` of the target (`linux/audit.h`): a syscall of another ABI is killed.
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xC000_00B7;

/// `dup2` where it exists (aarch64 has only `dup3`, checked anyway).
#[cfg(target_arch = "x86_64")]
const SYS_DUP2: u32 = libc::SYS_dup2 as u32;
#[cfg(not(target_arch = "x86_64"))]
const SYS_DUP2: u32 = libc::SYS_dup3 as u32;

/// Length of the filter program.
const LEN: usize = 19;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter: kill the process on any system call that closes `fd`, allow everything else.
/// Jump offsets count the instructions skipped; the comments give each instruction's index.
fn close_guard(fd: RawFd) -> [libc::sock_filter; LEN] {
    let fd = fd as u32;
    const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    [
        /* 0 */ stmt(LD_W_ABS, ARCH),
        /* 1 */ jump(JMP_JEQ_K, NATIVE_ARCH, 1, 0), // -> 3
        /* 2 */ stmt(RET_K, KILL),
        /* 3 */ stmt(LD_W_ABS, NR),
        /* 4 */ jump(JMP_JEQ_K, libc::SYS_close as u32, 4, 0), // -> 9
        /* 5 */ jump(JMP_JEQ_K, libc::SYS_dup3 as u32, 5, 0), // -> 11
        /* 6 */ jump(JMP_JEQ_K, SYS_DUP2, 4, 0), // -> 11
        /* 7 */ jump(JMP_JEQ_K, libc::SYS_close_range as u32, 5, 0), // -> 13
        /* 8 */ stmt(RET_K, ALLOW),
        // close(fd)
        /* 9 */ stmt(LD_W_ABS, ARG0),
        /* 10 */ jump(JMP_JEQ_K, fd, 6, 7), // -> 17 / 18
        // dup2(_, fd), dup3(_, fd, _)
        /* 11 */ stmt(LD_W_ABS, ARG1),
        /* 12 */ jump(JMP_JEQ_K, fd, 4, 5), // -> 17 / 18
        // close_range(first, last, _) with first <= fd <= last
        /* 13 */
        stmt(LD_W_ABS, ARG0),
        /* 14 */ jump(JMP_JGT_K, fd, 3, 0), // first > fd -> 18
        /* 15 */ stmt(LD_W_ABS, ARG1),
        /* 16 */ jump(JMP_JGE_K, fd, 0, 1), // last >= fd -> 17, else 18
        /* 17 */ stmt(RET_K, KILL),
        /* 18 */ stmt(RET_K, ALLOW),
    ]
}

/// Makes the child of `cmd` inherit descriptor `fd` (open in this process, close-on-exec or
/// not) under the same number, and kills the child with `SIGSYS` if it ever closes it (see the
/// [module documentation](self)). Only this child inherits it: the descriptor stays
/// close-on-exec in this process.
pub fn hand_over(cmd: &mut Command, fd: RawFd) {
    let filter = close_guard(fd);
    // SAFETY: the closure runs in the forked child before exec; it only makes system calls
    // that are async-signal-safe (fcntl, prctl) on memory it owns (the filter array, copied by
    // the kernel), with no allocation or locking.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            let program = libc::sock_fprog {
                len: LEN as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::ExitStatusExt;

    /// Runs `sh -c script` with descriptor `fd` handed over; returns its exit status.
    fn sh(fd: RawFd, script: &str) -> std::process::ExitStatus {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        hand_over(&mut cmd, fd);
        cmd.status().expect("running sh")
    }

    #[test]
    fn the_child_inherits_the_descriptor_and_may_close_others() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = file.as_raw_fd();
        let other = fd + 1;
        let status = sh(fd, &format!("exec {other}>&-; test -e /proc/self/fd/{fd}"));
        assert!(status.success(), "{status:?}");
        let above = format!("exec python3 -c 'import os; os.closerange({other}, 1000)'");
        let status = sh(fd, &above);
        assert!(status.success(), "a range above it: {status:?}");
    }

    #[test]
    fn closing_the_handed_over_descriptor_kills_the_child() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = file.as_raw_fd();
        let status = sh(fd, &format!("exec {fd}>&-; exit 0"));
        assert_eq!(status.signal(), Some(libc::SIGSYS), "close: {status:?}");
        // Python's closerange uses close_range(2) where the kernel has it.
        let status = sh(
            fd,
            &format!(
                "exec python3 -c 'import os; os.closerange({}, 1000)'",
                fd - 1
            ),
        );
        assert_eq!(
            status.signal(),
            Some(libc::SIGSYS),
            "closerange: {status:?}"
        );
        let status = sh(fd, &format!("exec {fd}</dev/null; exit 0"));
        assert_eq!(
            status.signal(),
            Some(libc::SIGSYS),
            "dup onto it: {status:?}"
        );
    }
}
