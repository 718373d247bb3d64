//! Starting a dial without waiting for the reactor when the kernel has already connected.
//!
//! A non-blocking `connect` returns `EINPROGRESS` even when the handshake is already done. To
//! a destination on this host (loopback: tun2socks to a local SOCKS or HTTP proxy, the
//! benchmark's relays), the kernel runs the whole handshake inside the `connect` call: the SYN,
//! the listener's SYN-ACK and the ACK all pass through loopback before it returns. The
//! executors' own `connect` (tokio's `TcpStream::connect`, async-io's `Async::connect`) then
//! still return `Pending` and wait for the reactor to report the socket writable. That is one
//! more trip through `epoll_wait` per connection, and on a multi-thread runtime often a wake-up
//! of another worker, which then runs the rest of the connection's set-up.
//!
//! [`start`] connects a non-blocking socket and asks the kernel at once whether it is
//! connected (`getpeername`). Only a dial that is still in progress waits for writability,
//! then reads the socket's error as the executors do.
//!
//! Measured with `bench/scripts/rate_one_cell.sh BINARY 1 /tmp/rate` (one client: connect,
//! one-byte echo, close, through the forwarder to 127.0.0.1), three alternating runs of each
//! on the 2-core bench machine: `tun_forward` made 8.2-8.6 context switches per connection
//! against 10.6-11.2 before, and 19,754 connections in 5 s on average against 18,900
//! (+4.5 %); `tun_forward_smol` 23,043 against 21,883 (+5 %). BENCHMARKS.md, run O, has the
//! benchmark's connection-rate test.

use std::io;
use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// A dial that [`start`] began.
#[derive(Debug)]
pub struct Dial {
    /// The non-blocking socket, with `TCP_NODELAY` set.
    pub stream: TcpStream,
    /// The kernel had connected it before `start` returned: no wait for writability needed.
    pub connected: bool,
}

/// Opens a non-blocking TCP socket with `TCP_NODELAY`, connects it to `to`, and tells whether
/// it is already connected.
///
/// # Errors
/// If the socket cannot be made, or `connect` fails at once (for example `ECONNREFUSED` from
/// a closed port on this host, `ENETUNREACH` without a route).
pub fn start(to: SocketAddr) -> io::Result<Dial> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // Non-blocking from the start (`SOCK_NONBLOCK`): no `fcntl` calls to make it so.
    let socket = Socket::new(
        Domain::for_address(to),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let socket = {
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket
    };
    socket.set_tcp_nodelay(true)?;
    let connected = match socket.connect(&to.into()) {
        Ok(()) => true,
        Err(e) if in_progress(&e) => socket.peer_addr().is_ok(),
        Err(e) => return Err(e),
    };
    Ok(Dial {
        stream: socket.into(),
        connected,
    })
}

/// Once a dial that was in progress reports writable: its outcome (the socket's pending
/// error, if there is one). `stream` is the socket, or the executor's stream that owns it.
///
/// # Errors
/// The error the dial ended with (`ECONNREFUSED`, `EHOSTUNREACH` …).
pub fn finish<'s, S>(stream: &'s S) -> io::Result<()>
where
    SockRef<'s>: From<&'s S>,
{
    match SockRef::from(stream).take_error()? {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `connect`'s answer for a non-blocking socket whose handshake is under way.
fn in_progress(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        return true;
    }
    e.kind() == io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn a_dial_to_a_listener_on_this_host_is_connected_when_it_starts() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        // Loopback completes the handshake inside `connect`, unless the kernel deferred its
        // packet processing to ksoftirqd (a loaded machine): of ten dials, one at least must
        // be seen connected at once, and every one must connect.
        let mut at_once = 0;
        for _ in 0..10 {
            let dial = start(to).unwrap();
            at_once += usize::from(dial.connected);
            dial.stream.set_nonblocking(false).unwrap();
            finish(&dial.stream).unwrap();
            assert!(SockRef::from(&dial.stream).tcp_nodelay().unwrap());
            let (mut accepted, _) = listener.accept().unwrap();
            (&dial.stream).write_all(b"x").unwrap();
            let mut byte = [0u8; 1];
            accepted.read_exact(&mut byte).unwrap();
            assert_eq!(&byte, b"x");
        }
        assert!(
            at_once > 0,
            "no dial to this host was connected when `start` returned"
        );
    }

    #[test]
    fn a_dial_to_a_closed_port_fails() {
        // A port that was just free: nothing listens there.
        let to = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let outcome = start(to).and_then(|dial| {
            if dial.connected {
                Ok(())
            } else {
                // The refusal arrived inside connect; the error is pending on the socket.
                finish(&dial.stream)
            }
        });
        let e = outcome.expect_err("nothing listens there");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }
}
