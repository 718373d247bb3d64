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
    /// The stack's one UDP or ICMP receiver is already held by another socket.
    AlreadyClaimed,
    /// The ICMP message is not an echo request, so it cannot be answered with an echo reply.
    NotEchoRequest,
    /// No ICMP error may be sent about that packet (it is an ICMP error itself, or went to a
    /// multicast or broadcast address, or came from one that names no single host).
    NotAllowed,
    /// ICMP errors are being sent at their configured rate already; this one was not sent.
    RateLimited,
}

impl core::error::Error for Error {}
impl core::error::Error for TcpError {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::QueueFull => f.write_str("queue full"),
            Error::TooLarge => f.write_str("datagram too large"),
            Error::AddressFamily => f.write_str("source and destination IP versions differ"),
            Error::InvalidAddress => f.write_str("invalid address or port"),
            Error::AlreadyClaimed => f.write_str("the stack's receiver is already taken"),
            Error::NotEchoRequest => f.write_str("not an ICMP echo request"),
            Error::NotAllowed => f.write_str("no ICMP error may be sent about that packet"),
            Error::RateLimited => f.write_str("ICMP error rate limit reached"),
        }
    }
}

/// Errors of TCP connection operations. Adapters map them to `std::io::ErrorKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TcpError {
    /// The peer reset the connection (RST), or the connection timed out.
    ConnectionReset,
    /// The connection was aborted locally ([`TcpStream::abort`](crate::TcpStream::abort)).
    ConnectionAborted,
    /// Writing after the write half was shut down, or after the connection closed.
    BrokenPipe,
    /// An accepted connection request could not become a connection (its buffers no longer
    /// fit the budget): the peer was refused with RST.
    ConnectionRefused,
}

impl fmt::Display for TcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpError::ConnectionReset => f.write_str("connection reset by peer"),
            TcpError::ConnectionAborted => f.write_str("connection aborted"),
            TcpError::BrokenPipe => f.write_str("write half closed"),
            TcpError::ConnectionRefused => f.write_str("connection refused"),
        }
    }
}

#[cfg(feature = "std")]
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind;
        let kind = match e {
            Error::QueueFull | Error::RateLimited => ErrorKind::WouldBlock,
            Error::AlreadyClaimed => ErrorKind::AlreadyExists,
            Error::TooLarge
            | Error::AddressFamily
            | Error::InvalidAddress
            | Error::NotEchoRequest
            | Error::NotAllowed => ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e)
    }
}

#[cfg(feature = "std")]
impl From<TcpError> for std::io::Error {
    fn from(e: TcpError) -> Self {
        use std::io::ErrorKind;
        let kind = match e {
            TcpError::ConnectionReset => ErrorKind::ConnectionReset,
            TcpError::ConnectionAborted => ErrorKind::ConnectionAborted,
            TcpError::BrokenPipe => ErrorKind::BrokenPipe,
            TcpError::ConnectionRefused => ErrorKind::ConnectionRefused,
        };
        std::io::Error::new(kind, e)
    }
}
