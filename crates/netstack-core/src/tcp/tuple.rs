//! A TCP connection's identity: its two endpoints.

use smoltcp::wire::IpEndpoint;

/// A TCP connection's identity, seen from the stack: `remote` is the peer on the link (the
/// application that opened the connection), `local` its original destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FourTuple {
    pub(crate) remote: IpEndpoint,
    pub(crate) local: IpEndpoint,
}
