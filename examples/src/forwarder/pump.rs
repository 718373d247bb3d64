//! The two packet pumps between a TUN device and the stack's packet port, batched both ways:
//! every packet that is ready is read in one readiness wait and handed to the stack under one
//! lock ([`PacketSink::send_batch`]); the stack's egress comes out in batches too
//! ([`PacketStream`] takes them from the core together).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use netstack_core::{PacketSink, PacketStream, StackPtr};

use super::executor::TunDevice;

/// Packets moved from the device to the stack per batch.
pub const BATCH: usize = 32;

/// Device → stack, until reading the device fails; returns that error.
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
        sink.send_batch(&mut batch).await;
    }
}

/// Stack → device, for as long as the stack lives. Packets the device refuses are counted and
/// skipped (reported on stderr at powers of two). The buffers of written packets go back to
/// the stack (one lock acquisition per batch, when no more packets are ready), which builds
/// later packets in them instead of allocating and zeroing new ones.
pub async fn stack_to_device<T: TunDevice, P: StackPtr + Unpin>(
    tun: Arc<T>,
    mut stream: PacketStream<P>,
) {
    let mut write_errors: u64 = 0;
    let mut written: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    loop {
        let next = match stream.next().now_or_never() {
            Some(next) => next,
            None => {
                if !written.is_empty() {
                    stream.recycle(written.drain(..));
                }
                stream.next().await
            }
        };
        let Some(packet) = next else { return };
        if let Err(e) = tun.send(&packet).await {
            write_errors += 1;
            if write_errors.is_power_of_two() {
                eprintln!("tun write failed ({write_errors} so far): {e}");
            }
        }
        written.push(packet);
        if written.len() == BATCH {
            stream.recycle(written.drain(..));
        }
    }
}
