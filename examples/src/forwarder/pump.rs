//! The two packet pumps between a TUN device and the stack's packet port, batched both ways:
//! every packet that is ready is read in one readiness wait and handed to the stack under one
//! lock ([`PacketSink::send_batch`]); the stack's egress comes out in batches too
//! ([`PacketStream`] takes them from the core together).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::task::Poll;

use futures::{FutureExt, StreamExt};
use netstack_core::{PacketSink, PacketStream, StackPtr};

use super::executor::TunDevice;
use crate::udp_train::{self, Joins, MAX_TRAIN};

/// Packets moved from the device to the stack per batch.
pub const BATCH: usize = 32;

/// Device → stack, until reading the device fails; returns that error.
///
/// After a wake-up that found more than one packet, packets are arriving faster than the
/// reader wakes: it then lets the executor run its other ready tasks once (the runner, the UDP
/// relay, the relays that the batch woke) and reads again before it waits for the device. What
/// arrived meanwhile is read without a trip through the reactor (an `epoll_wait`, and often a
/// sleep and a wake-up of the thread). A wake-up that found one packet waits at once, so a
/// lightly loaded or idle device costs no extra reads.
///
/// Measured in BENCHMARKS.md, run N (`cargo xtask bench` with the build before this as a
/// baseline): UDP upload 1.89 and 1.94 Gbit/s delivered at MTU 1500 and 65000, against 1.58
/// and 1.63 without the second read; TCP within the baseline's spread. The price: a burst
/// ends with one or two empty reads (`WouldBlock`) more than before: the read after the
/// yield, and, when that one had found packets, the one before the next wait.
pub async fn device_to_stack<T: TunDevice, P: StackPtr>(
    tun: Arc<T>,
    mut sink: PacketSink<P, io::Error>,
) -> io::Error {
    // Room for the largest packet the device can deliver.
    let capacity = tun.max_packet() + 64;
    let mut batch = VecDeque::with_capacity(BATCH);
    loop {
        if let Err(e) = tun.recv_many(&mut batch, BATCH, capacity).await {
            return e;
        }
        while batch.len() > 1 {
            sink.send_batch(&mut batch).await;
            yield_once().await;
            // Without waiting: an empty read (`WouldBlock`) ends the burst.
            if let Err(e) = tun.try_recv_more(&mut batch, BATCH, capacity) {
                return e;
            }
        }
        if !batch.is_empty() {
            sink.send_batch(&mut batch).await;
        }
    }
}

/// Returns `Pending` once, waking its task at once: the executor runs its other ready tasks
/// first, then this one again.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// Stack → device, for as long as the stack lives. Packets the device refuses are counted and
/// skipped (reported on stderr at powers of two). The buffers of written packets go back to
/// the stack (one lock acquisition per batch, when no more packets are ready), which builds
/// later packets in them instead of allocating and zeroing new ones.
///
/// Where the device takes UDP trains ([`crate::udp_train`]), consecutive ready datagrams of one
/// flow with payloads of one size go out as one write: the kernel cuts the train back into
/// them, and a UDP download costs one system call per train instead of one per datagram.
pub async fn stack_to_device<T: TunDevice, P: StackPtr + Unpin>(
    tun: Arc<T>,
    mut stream: PacketStream<P>,
) {
    let mut write_errors: u64 = 0;
    let mut written: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut train: Vec<Vec<u8>> = Vec::with_capacity(MAX_TRAIN);
    // A packet taken to extend a train that it did not join: the next one to write.
    let mut next_up: Option<Vec<u8>> = None;
    let mut ended = false;
    while !ended {
        let packet = match next_up.take() {
            Some(p) => p,
            None => match stream.next().now_or_never() {
                Some(Some(p)) => p,
                Some(None) => return,
                None => {
                    if !written.is_empty() {
                        stream.recycle(written.drain(..));
                    }
                    match stream.next().await {
                        Some(p) => p,
                        None => return,
                    }
                }
            },
        };
        let head = if tun.sends_udp_trains() {
            udp_train::head(&packet)
        } else {
            None
        };
        train.push(packet);
        if let Some(head) = head {
            let mut bytes = head.segment();
            loop {
                let p = match stream.next().now_or_never() {
                    Some(Some(p)) => p,
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                };
                match udp_train::joins(head, &train[0], train.len(), bytes, &p) {
                    Joins::No => {
                        next_up = Some(p);
                        break;
                    }
                    joined => {
                        bytes += p.len() - head.headers();
                        train.push(p);
                        if joined == Joins::Last {
                            break;
                        }
                    }
                }
            }
        }
        let result = if train.len() > 1 {
            // No allocation per train: the slices on the stack.
            let mut slices: [&[u8]; MAX_TRAIN] = [&[]; MAX_TRAIN];
            for (slot, p) in slices.iter_mut().zip(&train) {
                *slot = p;
            }
            match tun.send_train(&slices[..train.len()]).await {
                // The kernel takes no trains after all: one by one.
                Err(_) if !tun.sends_udp_trains() => send_each(&*tun, &train).await,
                other => other.map(drop),
            }
        } else {
            tun.send(&train[0]).await.map(drop)
        };
        if let Err(e) = result {
            write_errors += 1;
            if write_errors.is_power_of_two() {
                eprintln!("tun write failed ({write_errors} so far): {e}");
            }
        }
        written.append(&mut train);
        if written.len() >= BATCH {
            stream.recycle(written.drain(..));
        }
    }
}

/// Writes `packets` one by one; the last error, if any.
async fn send_each<T: TunDevice>(tun: &T, packets: &[Vec<u8>]) -> io::Result<()> {
    let mut result = Ok(());
    for p in packets {
        if let Err(e) = tun.send(p).await {
            result = Err(e);
        }
    }
    result
}
