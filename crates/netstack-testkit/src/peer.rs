//! An in-memory peer: a smoltcp host that plays the kernel's part behind a TUN device.
//!
//! A [`Peer`] is a smoltcp [`Interface`] with its own TCP sockets, on a [`Wire`]: a device made
//! of two packet queues. The test moves packets between the wire and the stack under test (or
//! another peer) and decides when time passes ([`ManualTime`]), so a run is deterministic: no
//! executor, no thread, no real clock.
//!
//! ```
//! use netstack_testkit::{Peer, TARGET_ADDR};
//! use smoltcp::time::Instant;
//! use smoltcp::wire::IpEndpoint;
//!
//! let mut peer = Peer::new();
//! peer.connect(40000, IpEndpoint::new(TARGET_ADDR.into(), 443), 4096);
//! peer.poll(Instant::ZERO);
//! let syn = peer.wire.to_stack.pop_front().expect("the peer sent its SYN");
//! assert!(netstack_testkit::packets::is_syn(&syn));
//! ```

use std::cell::Cell;
use std::collections::VecDeque;

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr};

/// The peer's address on the link ([`Peer::new`]): 10.0.0.1/8.
pub const PEER_ADDR: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
/// The peer's default gateway ([`Peer::new`]): every other address is reached through it.
const PEER_GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 0, 254);
/// The destination tests connect to. Any address works (the stack under test accepts them all);
/// this one is off the peer's subnet, as a real destination would be. Nothing leaves the process.
pub const TARGET_ADDR: Ipv4Address = Ipv4Address::new(93, 184, 216, 34);

/// The link MTU a [`Wire`] reports unless told otherwise.
pub const DEFAULT_MTU: usize = 1500;

/// A clock that only moves when the test says so (microsecond resolution, starting at zero).
///
/// It implements no clock trait of its own: the crate that needs one (`netstack_core::Clock`)
/// wraps it, so that this kit does not depend on the core.
#[derive(Debug, Default)]
pub struct ManualTime(Cell<i64>);

impl ManualTime {
    /// The current time.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.0.get())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0
            .set(self.0.get().saturating_add_unsigned(by.total_micros()));
    }

    /// Moves the clock to `to`, or leaves it where it is if `to` lies in the past: a clock
    /// never goes backwards.
    pub fn set(&self, to: Instant) {
        self.0.set(self.0.get().max(to.total_micros()));
    }
}

/// The peer's network device: whole IP packets (medium IP, as on a TUN device) in two queues
/// that the test moves.
#[derive(Debug)]
pub struct Wire {
    /// Packets the peer sent, in order, for the test to hand to the stack.
    pub to_stack: VecDeque<Vec<u8>>,
    /// Packets for the peer; its next [`Peer::poll`] reads them in order.
    pub to_peer: VecDeque<Vec<u8>>,
    mtu: usize,
}

impl Default for Wire {
    /// Empty queues and an MTU of [`DEFAULT_MTU`].
    fn default() -> Self {
        Wire::new(DEFAULT_MTU)
    }
}

impl Wire {
    /// Empty queues on a link of `mtu` bytes (the largest packet smoltcp sends on it; an
    /// interface reads it once, when it is made).
    pub fn new(mtu: usize) -> Wire {
        Wire {
            to_stack: VecDeque::new(),
            to_peer: VecDeque::new(),
            mtu,
        }
    }

    /// The link's MTU.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Drops every packet in both queues (a link outage).
    pub fn clear(&mut self) {
        self.to_stack.clear();
        self.to_peer.clear();
    }
}

/// A packet the peer receives, handed to smoltcp as it is.
pub struct RxToken(Vec<u8>);

/// Room for one packet the peer sends, queued in [`Wire::to_stack`].
pub struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0u8; len];
        let r = f(&mut packet);
        self.0.push_back(packet);
        r
    }
}

impl phy::Device for Wire {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let packet = self.to_peer.pop_front()?;
        Some((RxToken(packet), TxToken(&mut self.to_stack)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.to_stack))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// A smoltcp host on a [`Wire`]: an interface, its TCP sockets and its device.
pub struct Peer {
    iface: Interface,
    sockets: SocketSet<'static>,
    /// The peer's link: what it sent ([`Wire::to_stack`]) and what it will read
    /// ([`Wire::to_peer`]).
    pub wire: Wire,
}

impl Default for Peer {
    /// [`Peer::new`].
    fn default() -> Self {
        Peer::new()
    }
}

impl Peer {
    /// A peer at [`PEER_ADDR`]/8 that reaches every other address through a default gateway
    /// (so it can connect to any destination, [`TARGET_ADDR`] for instance).
    pub fn new() -> Peer {
        Peer::with_address(Ipv4Cidr::new(PEER_ADDR, 8), PEER_GATEWAY, DEFAULT_MTU)
    }

    /// A peer at `addr` whose default route goes through `gateway` (on a medium-IP link the
    /// gateway is only a name: every packet goes out on the wire), on a link of `mtu` bytes.
    pub fn with_address(addr: Ipv4Cidr, gateway: Ipv4Address, mtu: usize) -> Peer {
        let mut wire = Wire::new(mtu);
        let mut iface = Interface::new(
            IfaceConfig::new(HardwareAddress::Ip),
            &mut wire,
            Instant::ZERO,
        );
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::Ipv4(addr)).expect("one address fits");
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(gateway)
            .expect("one route fits");
        Peer {
            iface,
            sockets: SocketSet::new(Vec::new()),
            wire,
        }
    }

    /// Runs the peer at `now`: it reads every packet in [`Wire::to_peer`], and its sockets
    /// send what they have to send into [`Wire::to_stack`]. Returns whether a socket's state
    /// may have changed.
    pub fn poll(&mut self, now: Instant) -> bool {
        let result = self.iface.poll(now, &mut self.wire, &mut self.sockets);
        result == smoltcp::iface::PollResult::SocketStateChanged
    }

    /// When the peer next needs to run if no packet arrives (a retransmission, a delayed ACK,
    /// a timeout), or `None` if it has nothing to time.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.iface.poll_at(now, &self.sockets)
    }

    /// Opens a TCP connection from the peer's port `local_port` to `target`, with `buffer`
    /// bytes of receive and of send buffer, and immediate ACKs (no delayed-ACK timer, so that
    /// exchanges settle in few rounds). The SYN goes out on the next [`Peer::poll`].
    ///
    /// Panics if smoltcp refuses the connection (an unspecified target or port 0): a test bug.
    pub fn connect(
        &mut self,
        local_port: u16,
        target: impl Into<IpEndpoint>,
        buffer: usize,
    ) -> SocketHandle {
        let mut socket = Self::tcp_socket(buffer);
        socket
            .connect(self.iface.context(), target.into(), local_port)
            .expect("the peer's connect");
        self.sockets.add(socket)
    }

    /// Listens on `port` (any of the peer's addresses) with `buffer` bytes of buffer each way;
    /// one connection per returned socket, as smoltcp listens.
    ///
    /// Panics on port 0.
    pub fn listen(&mut self, port: u16, buffer: usize) -> SocketHandle {
        let mut socket = Self::tcp_socket(buffer);
        socket.listen(port).expect("the peer's listen");
        self.sockets.add(socket)
    }

    /// The peer's TCP socket `handle`, to send, receive, close or abort.
    ///
    /// Panics if `handle` is not one of this peer's sockets.
    pub fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    /// Takes every byte waiting in socket `handle`'s receive buffer.
    pub fn read_all(&mut self, handle: SocketHandle) -> Vec<u8> {
        let socket = self.socket(handle);
        let mut out = Vec::new();
        while let Ok(chunk) = socket.recv(|b| (b.len(), b.to_vec())) {
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        out
    }

    fn tcp_socket(buffer: usize) -> tcp::Socket<'static> {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buffer]),
            tcp::SocketBuffer::new(vec![0; buffer]),
        );
        socket.set_ack_delay(None);
        socket
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::{is_syn, tcp_info};

    /// Moves packets between two peers until neither sends anything.
    fn settle(a: &mut Peer, b: &mut Peer, now: Instant) {
        for _ in 0..1000 {
            a.poll(now);
            b.poll(now);
            if a.wire.to_stack.is_empty() && b.wire.to_stack.is_empty() {
                return;
            }
            b.wire.to_peer.extend(a.wire.to_stack.drain(..));
            a.wire.to_peer.extend(b.wire.to_stack.drain(..));
        }
        panic!("the exchange did not settle");
    }

    fn target_host(mtu: usize) -> Peer {
        Peer::with_address(
            Ipv4Cidr::new(TARGET_ADDR, 24),
            Ipv4Address::new(93, 184, 216, 1),
            mtu,
        )
    }

    #[test]
    fn two_peers_on_wires_connect_exchange_bytes_and_close() {
        let mut client = Peer::new();
        let mut server = target_host(DEFAULT_MTU);
        let listening = server.listen(443, 4096);
        let c = client.connect(40000, IpEndpoint::new(TARGET_ADDR.into(), 443), 4096);

        client.poll(Instant::ZERO);
        let syn = client.wire.to_stack.front().expect("a SYN").clone();
        assert!(is_syn(&syn));
        let info = tcp_info(&syn).expect("a TCP segment");
        assert_eq!(info.src, IpEndpoint::new(PEER_ADDR.into(), 40000));
        assert_eq!(info.dst, IpEndpoint::new(TARGET_ADDR.into(), 443));

        settle(&mut client, &mut server, Instant::ZERO);
        assert_eq!(client.socket(c).state(), tcp::State::Established);
        client.socket(c).send_slice(b"ping").unwrap();
        client.socket(c).close();
        settle(&mut client, &mut server, Instant::ZERO);
        assert_eq!(server.read_all(listening), b"ping");
        assert!(!server.socket(listening).may_recv(), "the client's FIN");
        server.socket(listening).send_slice(b"pong").unwrap();
        settle(&mut client, &mut server, Instant::ZERO);
        assert_eq!(client.read_all(c), b"pong");
    }

    #[test]
    fn the_wire_reports_its_mtu_and_the_peer_sends_no_larger_packet() {
        let mut client = Peer::with_address(Ipv4Cidr::new(PEER_ADDR, 8), PEER_GATEWAY, 576);
        assert_eq!(client.wire.mtu(), 576);
        let mut server = target_host(576);
        let s = server.listen(80, 65536);
        let c = client.connect(40001, IpEndpoint::new(TARGET_ADDR.into(), 80), 65536);
        settle(&mut client, &mut server, Instant::ZERO);
        client.socket(c).send_slice(&[7u8; 10_000]).unwrap();
        client.poll(Instant::ZERO);
        assert!(client.wire.to_stack.len() > 1);
        assert!(client.wire.to_stack.iter().all(|p| p.len() <= 576));
        settle(&mut client, &mut server, Instant::ZERO);
        assert_eq!(server.read_all(s), vec![7u8; 10_000]);
    }

    #[test]
    fn a_peer_with_unanswered_data_asks_to_run_again_later() {
        let mut client = Peer::new();
        client.connect(40002, IpEndpoint::new(TARGET_ADDR.into(), 80), 1024);
        client.poll(Instant::ZERO);
        client.wire.clear();
        let at = client
            .poll_at(Instant::ZERO)
            .expect("a SYN retransmission timer");
        assert!(at > Instant::ZERO);
        client.poll(at);
        assert!(is_syn(client.wire.to_stack.front().expect("retransmitted")));
    }

    #[test]
    fn manual_time_moves_only_forward_and_only_when_told() {
        let t = ManualTime::default();
        assert_eq!(t.now(), Instant::ZERO);
        t.advance(Duration::from_millis(3));
        assert_eq!(t.now(), Instant::from_millis(3));
        t.set(Instant::from_millis(1));
        assert_eq!(t.now(), Instant::from_millis(3), "never backwards");
        t.set(Instant::from_secs(2));
        assert_eq!(t.now(), Instant::from_secs(2));
    }
}
