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

use std::io;
use std::sync::Arc;

use clap::Parser;
use tun_rs::SyncDevice;

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

/// Creates TUN interface `name` (blocking, no packet information, no offloads) with tun-rs, as
/// `tun_forward` does, but leaves its MTU and state to the caller.
fn open_tun(name: &str) -> io::Result<SyncDevice> {
    tun_rs::DeviceBuilder::new()
        .name(name)
        .inherit_enable_state()
        .build_sync()
}

/// Copies packets from `from` to `to` until a read fails.
fn pump(from: &SyncDevice, to: &SyncDevice) -> io::Error {
    let mut buf = vec![0u8; 65536 + 64];
    loop {
        let n = match from.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return e,
        };
        // A refused write (device down, queue full) drops the packet, as a router would.
        let _ = to.send(&buf[..n]);
    }
}

/// The same process set-up as `tun_forward` (page-mapped large blocks, glibc keeping small
/// frees), so that the subjects differ in their stacks, not in their allocator tuning.
#[global_allocator]
static ALLOC: netstack_examples::allocator::PageMappedLargeAllocs =
    netstack_examples::allocator::PageMappedLargeAllocs;

fn main() -> io::Result<()> {
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
