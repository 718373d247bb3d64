//! Which handles are `Send + Sync`, checked at compile time for all four flavours: the
//! compiler derives it from the flavour's pointer and lock (`Arc` + `StdRawMutex`, or `Rc` +
//! `NoopRawMutex`); nothing in the crates asserts it with `unsafe impl`.

use static_assertions::{assert_impl_all, assert_not_impl_any};

macro_rules! send_flavour {
    ($($m:ident)::+) => {
        assert_impl_all!($($m)::+::StackBuilder: Send, Sync);
        assert_impl_all!($($m)::+::PacketPort: Send, Sync);
        assert_impl_all!($($m)::+::PacketSink: Send, Sync);
        assert_impl_all!($($m)::+::PacketStream: Send, Sync);
        assert_impl_all!($($m)::+::Runner: Send, Sync);
        assert_impl_all!($($m)::+::TcpListener: Send, Sync);
        assert_impl_all!($($m)::+::TcpStream: Send, Sync);
        assert_impl_all!($($m)::+::OwnedReadHalf: Send, Sync);
        assert_impl_all!($($m)::+::OwnedWriteHalf: Send, Sync);
        assert_impl_all!($($m)::+::UdpSocket: Send, Sync);
        assert_impl_all!($($m)::+::IcmpSocket: Send, Sync);
    };
}

macro_rules! local_flavour {
    ($($m:ident)::+) => {
        assert_not_impl_any!($($m)::+::PacketPort: Send, Sync);
        assert_not_impl_any!($($m)::+::PacketSink: Send, Sync);
        assert_not_impl_any!($($m)::+::PacketStream: Send, Sync);
        assert_not_impl_any!($($m)::+::Runner: Send, Sync);
        assert_not_impl_any!($($m)::+::TcpListener: Send, Sync);
        assert_not_impl_any!($($m)::+::TcpStream: Send, Sync);
        assert_not_impl_any!($($m)::+::OwnedReadHalf: Send, Sync);
        assert_not_impl_any!($($m)::+::OwnedWriteHalf: Send, Sync);
        assert_not_impl_any!($($m)::+::UdpSocket: Send, Sync);
        assert_not_impl_any!($($m)::+::IcmpSocket: Send, Sync);
    };
}

send_flavour!(netstack_tokio);
send_flavour!(netstack_smol);
local_flavour!(netstack_tokio::local);
local_flavour!(netstack_smol::local);
