//! Conversion of core errors into `std::io::Error` with a fitting `ErrorKind`.

use std::io;

use netstack_core::TcpError;

/// Maps a TCP error to the `io::ErrorKind` a `tokio::net::TcpStream` would report.
pub(crate) fn tcp(e: TcpError) -> io::Error {
    let kind = match e {
        TcpError::ConnectionReset => io::ErrorKind::ConnectionReset,
        TcpError::ConnectionAborted => io::ErrorKind::ConnectionAborted,
        TcpError::BrokenPipe => io::ErrorKind::BrokenPipe,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}

/// Maps a stack error to an `io::ErrorKind`.
pub(crate) fn core(e: netstack_core::Error) -> io::Error {
    let kind = match e {
        netstack_core::Error::QueueFull => io::ErrorKind::WouldBlock,
        netstack_core::Error::TooLarge
        | netstack_core::Error::AddressFamily
        | netstack_core::Error::InvalidAddress => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}
