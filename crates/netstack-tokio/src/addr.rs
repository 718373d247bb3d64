//! Conversions between smoltcp endpoints and `std::net` socket addresses.

use std::net::{IpAddr, SocketAddr};

use netstack_core::{IpAddress, IpEndpoint};

/// A smoltcp endpoint as a `SocketAddr`.
pub(crate) fn socket_addr(ep: IpEndpoint) -> SocketAddr {
    SocketAddr::new(ip_addr(ep.addr), ep.port)
}

/// A smoltcp address as an `IpAddr`.
pub(crate) fn ip_addr(addr: IpAddress) -> IpAddr {
    match addr {
        IpAddress::Ipv4(a) => IpAddr::V4(a),
        IpAddress::Ipv6(a) => IpAddr::V6(a),
    }
}

/// A `SocketAddr` as a smoltcp endpoint.
pub(crate) fn endpoint(addr: SocketAddr) -> IpEndpoint {
    let ip = match addr.ip() {
        IpAddr::V4(a) => IpAddress::Ipv4(a),
        IpAddr::V6(a) => IpAddress::Ipv6(a),
    };
    IpEndpoint::new(ip, addr.port())
}
