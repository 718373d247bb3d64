//! `tun_floor`: copies packets between two TUN devices, with no TCP termination (the floor).
//!
//! ```text
//! tun_floor --tun-a NAME --tun-b NAME
//! ```
//!
//! Creates both devices in the current network namespace (the caller moves one into another
//! namespace and configures MTU, addresses and routes), prints `ready`, then copies every packet
//! read from one device to the other with one blocking `read(2)` and one `write(2)` per packet
//! on two threads: the least a user-space TUN program can do per packet.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use clap::Parser;

/// Command line of `tun_floor`.
#[derive(Parser, Debug)]
#[command(about = "Copy packets between two TUN devices")]
struct Args {
    /// Name of the first TUN device.
    #[arg(long)]
    tun_a: String,
    /// Name of the second TUN device.
    #[arg(long)]
    tun_b: String,
}

/// Opens `/dev/net/tun` (blocking) and attaches it to TUN interface `name` (`IFF_NO_PI`).
fn open_tun(name: &str) -> io::Result<OwnedFd> {
    const PATH: &CStr = c"/dev/net/tun";
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad name"));
    }
    // SAFETY: `PATH` is NUL-terminated; `open` does not retain it.
    let raw = unsafe { libc::open(PATH.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: all-zero is a valid `ifreq` (integers, arrays and a pointer).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: `fd` is open on /dev/net/tun and `req` is a valid `ifreq` outliving the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Copies packets from `from` to `to` until a read fails.
fn pump(from: &OwnedFd, to: &OwnedFd) -> io::Error {
    let mut buf = vec![0u8; 65536 + 64];
    loop {
        // SAFETY: `buf` is valid for writes of its length; `from` is open.
        let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return e;
        }
        // A refused write (device down, queue full) drops the packet, as a router would.
        // SAFETY: the first `n` bytes of `buf` are initialised; `to` is open.
        unsafe { libc::write(to.as_raw_fd(), buf.as_ptr().cast(), n as usize) };
    }
}

/// The same process set-up as `tun_forward` (page-mapped large blocks, glibc keeping small
/// frees), so that the subjects differ in their stacks, not in their allocator tuning.
#[global_allocator]
static ALLOC: netstack_examples::allocator::PageMappedLargeAllocs =
    netstack_examples::allocator::PageMappedLargeAllocs;

fn main() -> io::Result<()> {
    netstack_examples::allocator::keep_small_frees();
    let args = Args::parse();
    let a = Arc::new(open_tun(&args.tun_a)?);
    let b = Arc::new(open_tun(&args.tun_b)?);
    println!("ready");
    let (a2, b2) = (a.clone(), b.clone());
    let forward = std::thread::spawn(move || pump(&a2, &b2));
    let backward = std::thread::spawn(move || pump(&b, &a));
    let e = forward
        .join()
        .unwrap_or_else(|_| io::Error::other("panicked"));
    eprintln!("tun_floor: {e}");
    let _ = backward.join();
    Err(e)
}
