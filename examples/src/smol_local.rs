//! Glue of the single-thread smol forwarder: packet pumps between an [`AsyncIoTun`] and a
//! [`netstack_smol::local::Stack`], and a relay of one stream over an async-io kernel socket.
//!
//! Everything here is `!Send`: it runs on one thread, with no locks, in a
//! `async_executor::LocalExecutor`.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream as StdTcpStream};
use std::rc::Rc;

use async_executor::{LocalExecutor, Task};
use async_io::Async;
use futures::io::BufReader;
use futures::{AsyncWriteExt, SinkExt, StreamExt};
use netstack_smol::local::{Stack, TcpStream};

use crate::tun_async_io::AsyncIoTun;

/// Buffer size of each relay direction: large enough that the copy is not the bottleneck.
const RELAY_BUFFER: usize = 64 * 1024;

/// Spawns the two packet pumps between `tun` and `stack` on `ex`: device → stack and
/// stack → device (see [`wire`](crate::wire::wire) for the tokio version).
///
/// The device → stack task ends with an error if reading the device fails. The stack → device
/// task counts and skips packets the device refuses to write, and never ends on its own.
pub fn wire(
    ex: &LocalExecutor<'static>,
    tun: Rc<AsyncIoTun>,
    stack: Stack,
) -> (Task<io::Result<()>>, Task<io::Result<()>>) {
    let (mut sink, mut stream) = stack.split();
    let reader = tun.clone();
    let inbound = ex.spawn(async move {
        // Room for the largest packet the device can deliver.
        let capacity = reader.mtu() as usize + 64;
        loop {
            // One allocation per packet: the buffer is handed to the stack by value.
            let mut buf = vec![0u8; capacity];
            let n = reader.recv(&mut buf).await?;
            buf.truncate(n);
            sink.feed(buf).await?;
        }
    });
    let outbound = ex.spawn(async move {
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

/// Connects to `target` and copies bytes both ways until both directions finished, keeping
/// half-closes (see [`relay`](crate::relay::relay) for the tokio version). If the connection
/// to `target` fails, the inbound stream is reset (RST), as the real server would have refused
/// it.
///
/// Returns the bytes copied (inbound → target, target → inbound).
///
/// # Errors
/// The connect error, or the first I/O error of either direction.
pub async fn relay(inbound: TcpStream, target: SocketAddr) -> io::Result<(u64, u64)> {
    let outbound = match Async::<StdTcpStream>::connect(target).await {
        Ok(s) => s,
        Err(e) => {
            inbound.abort();
            return Err(e);
        }
    };
    outbound.get_ref().set_nodelay(true)?;
    let (in_read, mut in_write) = inbound.into_split();
    let outbound = &outbound;
    let up = async move {
        let reader = BufReader::with_capacity(RELAY_BUFFER, in_read);
        let n = futures::io::copy_buf(reader, &mut &*outbound).await?;
        outbound.get_ref().shutdown(Shutdown::Write)?;
        Ok::<_, io::Error>(n)
    };
    let down = async move {
        let reader = BufReader::with_capacity(RELAY_BUFFER, outbound);
        let n = futures::io::copy_buf(reader, &mut in_write).await?;
        // A half-close: queues the FIN, the other direction keeps flowing.
        in_write.close().await?;
        Ok::<_, io::Error>(n)
    };
    futures::future::try_join(up, down).await
}
