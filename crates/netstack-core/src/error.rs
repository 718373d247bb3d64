//! Errors returned by the core.

use core::fmt;

/// Errors of stack-level operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A bounded queue is full; the item was not accepted (and was counted as dropped).
    QueueFull,
    /// The datagram is larger than one IP packet can carry (64 KiB).
    TooLarge,
    /// Source and destination are of different IP versions.
    AddressFamily,
    /// A port or address that cannot be used (port 0, a non-unicast address).
    InvalidAddress,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::QueueFull => f.write_str("queue full"),
            Error::TooLarge => f.write_str("datagram too large"),
            Error::AddressFamily => f.write_str("source and destination IP versions differ"),
            Error::InvalidAddress => f.write_str("invalid address or port"),
        }
    }
}

/// Errors of TCP connection operations. Adapters map them to `std::io::ErrorKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TcpError {
    /// The peer reset the connection (RST), or the connection timed out.
    ConnectionReset,
    /// The connection was aborted locally ([`TcpConnection::abort`](crate::TcpConnection::abort)).
    ConnectionAborted,
    /// Writing after the write half was shut down, or after the connection closed.
    BrokenPipe,
}

impl fmt::Display for TcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpError::ConnectionReset => f.write_str("connection reset by peer"),
            TcpError::ConnectionAborted => f.write_str("connection aborted"),
            TcpError::BrokenPipe => f.write_str("write half closed"),
        }
    }
}
