//! Conversion of core errors into `std::io::Error` with a fitting `ErrorKind`.

use std::io;

use netstack_core::TcpError;

/// Maps a TCP error to the `io::ErrorKind` a kernel socket would report.
pub(crate) fn tcp(e: TcpError) -> io::Error {
    let kind = match e {
        TcpError::ConnectionReset => io::ErrorKind::ConnectionReset,
        TcpError::ConnectionAborted => io::ErrorKind::ConnectionAborted,
        TcpError::BrokenPipe => io::ErrorKind::BrokenPipe,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}
