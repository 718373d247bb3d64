//! Wiring a [`Tun`] device to a [`netstack_tokio::PacketPort`]: two tasks that move packets.

use std::io;
use std::sync::Arc;

use futures::StreamExt;
use netstack_tokio::PacketPort;
use tokio::task::JoinHandle;

use crate::tun::Tun;

/// Packets moved from the device to the stack per batch.
const BATCH: usize = 32;

/// Spawns the two packet pumps between `tun` and `stack`: device → stack and stack → device.
///
/// The device → stack task ends with an error if reading the device fails. The stack → device
/// task counts and skips packets the device refuses to write, and never ends on its own.
pub fn wire(
    tun: Arc<Tun>,
    stack: PacketPort,
) -> (JoinHandle<io::Result<()>>, JoinHandle<io::Result<()>>) {
    let (mut sink, mut stream) = stack.split();
    let reader = tun.clone();
    let inbound = tokio::spawn(async move {
        // Room for the largest packet the device can deliver.
        let capacity = reader.max_packet() + 64;
        // Packets read per readiness wake-up and handed to the stack under one lock.
        let mut batch = std::collections::VecDeque::with_capacity(BATCH);
        loop {
            reader.recv_many(&mut batch, BATCH, capacity).await?;
            sink.send_batch(&mut batch).await;
        }
    });
    let outbound = tokio::spawn(async move {
        let mut write_errors: u64 = 0;
        while let Some(packet) = stream.next().await {
            if let Err(e) = tun.send(&packet).await {
                write_errors += 1;
                if write_errors.is_power_of_two() {
                    eprintln!("tun write failed ({write_errors} so far): {e}");
                }
            }
        }
        Ok(())
    });
    (inbound, outbound)
}
