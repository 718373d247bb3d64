//! What every adapter crate declares the same way, written once: the stream newtypes an
//! adapter implements its ecosystem's I/O traits on ([`adapter_streams!`]), their write side
//! for a std-style `AsyncWrite` trait ([`adapter_write!`]), and the type aliases of one flavour
//! ([`adapter_aliases!`]).
//!
//! An adapter is then: its [`Runtime`](crate::Runtime) (clock, timer, seed, spawn), its I/O
//! trait impls on the generated streams, and one `adapter_aliases!` per flavour.

/// Declares, in the calling module, `TcpStream<P>`, `OwnedReadHalf<P>` and
/// `OwnedWriteHalf<P>`: newtypes over the core's [`TcpStream`](crate::TcpStream),
/// [`TcpReadHalf`](crate::TcpReadHalf) and [`TcpWriteHalf`](crate::TcpWriteHalf) that
/// dereference to them (so every core method is there), convert from them, and split and
/// forget like tokio's. The calling crate implements its I/O traits on them, reaching the core
/// value as field `.0`. `$traits` names those traits in the docs.
#[macro_export]
macro_rules! adapter_streams {
    ($traits:literal) => {
        #[doc = concat!("A TCP connection accepted by the stack, with ", $traits, ".")]
        ///
        /// Everything else — `local_addr` (the original destination), `peer_addr`,
        /// `readable`, `abort`, the `poll_*` primitives — comes from the core's
        /// [`TcpStream`](netstack_core::TcpStream), which this dereferences to. Writing and
        /// flushing complete as soon as the bytes are in the send buffer; shutting down is a
        /// half-close (a FIN is queued, reading goes on until the peer's FIN). Dropping the
        /// stream closes it (FIN), or resets it (RST) if received data was left unread.
        pub struct TcpStream<P: $crate::StackPtr>($crate::TcpStream<P>);

        impl<P: $crate::StackPtr> TcpStream<P> {
            /// Splits into owned halves that can move to different tasks.
            pub fn into_split(self) -> (OwnedReadHalf<P>, OwnedWriteHalf<P>) {
                let (read, write) = self.0.into_split();
                (OwnedReadHalf(read), OwnedWriteHalf(write))
            }
        }

        #[doc = concat!("The read half of a [`TcpStream`], with ", $traits, ".")]
        pub struct OwnedReadHalf<P: $crate::StackPtr>($crate::TcpReadHalf<P>);

        #[doc = concat!("The write half of a [`TcpStream`], with ", $traits, ".")]
        ///
        /// Like tokio's, dropping it shuts the write direction down (FIN).
        pub struct OwnedWriteHalf<P: $crate::StackPtr>($crate::TcpWriteHalf<P>);

        impl<P: $crate::StackPtr> OwnedWriteHalf<P> {
            /// Drops the half without shutting the write direction down.
            pub fn forget(self) {
                self.0.forget();
            }
        }

        $crate::adapter_streams!(@wrap TcpStream, $crate::TcpStream<P>);
        $crate::adapter_streams!(@wrap OwnedReadHalf, $crate::TcpReadHalf<P>);
        $crate::adapter_streams!(@wrap OwnedWriteHalf, $crate::TcpWriteHalf<P>);
    };
    (@wrap $name:ident, $inner:ty) => {
        impl<P: $crate::StackPtr> ::core::ops::Deref for $name<P> {
            type Target = $inner;

            fn deref(&self) -> &$inner {
                &self.0
            }
        }

        impl<P: $crate::StackPtr> ::core::convert::From<$inner> for $name<P> {
            fn from(inner: $inner) -> Self {
                $name(inner)
            }
        }

        impl<P: $crate::StackPtr> ::core::fmt::Debug for $name<P> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

/// Implements an `AsyncWrite`-style trait (`$trait`: tokio's or futures-io's, whose methods
/// are `poll_write`, `poll_flush` and a close method named `$close`) for the `TcpStream` and
/// `OwnedWriteHalf` of [`adapter_streams!`], in the calling module: writes copy into the send
/// buffer (one copy), flushing has nothing to wait for (written bytes are already queued), and
/// closing is a half-close (a FIN is queued; reading goes on until the peer's FIN), so a copy
/// loop in either direction relays half-closed connections correctly.
#[macro_export]
macro_rules! adapter_write {
    ($trait:path, $close:ident) => {
        $crate::adapter_write!(@impl $trait, $close, TcpStream);
        $crate::adapter_write!(@impl $trait, $close, OwnedWriteHalf);
    };
    (@impl $trait:path, $close:ident, $name:ident) => {
        impl<P: $crate::StackPtr> $trait for $name<P> {
            fn poll_write(
                self: ::core::pin::Pin<&mut Self>,
                cx: &mut ::core::task::Context<'_>,
                buf: &[u8],
            ) -> ::core::task::Poll<::std::io::Result<usize>> {
                self.0.poll_write(cx, buf).map_err(::std::io::Error::from)
            }

            fn poll_flush(
                self: ::core::pin::Pin<&mut Self>,
                _: &mut ::core::task::Context<'_>,
            ) -> ::core::task::Poll<::std::io::Result<()>> {
                ::core::task::Poll::Ready(Ok(()))
            }

            fn $close(
                self: ::core::pin::Pin<&mut Self>,
                _: &mut ::core::task::Context<'_>,
            ) -> ::core::task::Poll<::std::io::Result<()>> {
                ::core::task::Poll::Ready(self.0.shutdown_write().map_err(::std::io::Error::from))
            }
        }
    };
}

/// Declares the type aliases of one flavour of an adapter: `StackBuilder`, `PacketPort`,
/// `PacketSink`, `PacketStream`, `Runner`, `TcpListener`, `ConnectionRequest`, `Incoming`,
/// `TcpStream`, `OwnedReadHalf`,
/// `OwnedWriteHalf`, `UdpSocket`, `UdpRecvHalf`, `UdpSendHalf`, `IcmpSocket` and `CoreStack`,
/// for flavour `$flavor` on runtime `$runtime`. The streams are the calling crate's
/// `crate::generic::{TcpStream, OwnedReadHalf, OwnedWriteHalf}` (from [`adapter_streams!`]).
/// `$what` describes the flavour in the docs ("a `Send + Sync`").
// `crate::generic` deliberately names the *calling* adapter's stream types.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! adapter_aliases {
    ($flavor:ty, $runtime:ty, $what:literal) => {
        /// The pointer through which every handle of this flavour shares its stack.
        pub type StackPtr = $crate::PtrOf<$flavor, $runtime>;
        #[doc = concat!("Builds ", $what, " stack: its packet port, runner and listener.")]
        pub type StackBuilder = $crate::StackBuilder<$flavor, $runtime>;
        #[doc = concat!("The packet side of ", $what, " stack: a `Sink` of packets in, a ",
                                        "`Stream` of packets out; also its UDP and ICMP sockets.")]
        pub type PacketPort = $crate::PortOf<$flavor, $runtime>;
        #[doc = concat!("Packets into ", $what, " stack (back-pressure while it is busy).")]
        pub type PacketSink = $crate::PacketSink<StackPtr, <$runtime as $crate::Io>::Error>;
        #[doc = concat!("Packets out of ", $what, " stack; never ends while it lives.")]
        pub type PacketStream = $crate::PacketStream<StackPtr>;
        #[doc = concat!("The future that drives ", $what, " stack.")]
        pub type Runner = $crate::RunnerOf<$flavor, $runtime>;
        #[doc = concat!("Accepts the TCP connections of ", $what, " stack, for any destination.")]
        pub type TcpListener = $crate::ListenerOf<$flavor, $runtime>;
        #[doc = concat!("A new TCP connection of ", $what, " stack, at SYN time.")]
        pub type ConnectionRequest = $crate::ConnectionRequest<
            StackPtr,
            crate::generic::TcpStream<StackPtr>,
            <$runtime as $crate::Io>::Error,
        >;
        #[doc = concat!("What the listener of ", $what, " stack yields: a request or a stream.")]
        pub type Incoming = $crate::Incoming<
            StackPtr,
            crate::generic::TcpStream<StackPtr>,
            <$runtime as $crate::Io>::Error,
        >;
        #[doc = concat!("A TCP connection of ", $what, " stack.")]
        pub type TcpStream = crate::generic::TcpStream<StackPtr>;
        #[doc = concat!("The read half of a TCP connection of ", $what, " stack.")]
        pub type OwnedReadHalf = crate::generic::OwnedReadHalf<StackPtr>;
        #[doc = concat!("The write half of a TCP connection of ", $what, " stack.")]
        pub type OwnedWriteHalf = crate::generic::OwnedWriteHalf<StackPtr>;
        #[doc = concat!("The UDP socket of ", $what, " stack: every datagram, any destination.")]
        pub type UdpSocket = $crate::UdpSocket<StackPtr>;
        #[doc = concat!("The receive half of the UDP socket of ", $what, " stack.")]
        pub type UdpRecvHalf = $crate::UdpRecvHalf<StackPtr>;
        #[doc = concat!("The send half of the UDP socket of ", $what, " stack.")]
        pub type UdpSendHalf = $crate::UdpSendHalf<StackPtr>;
        #[doc = concat!("The ICMP socket of ", $what, " stack.")]
        pub type IcmpSocket = $crate::IcmpSocket<StackPtr>;
        #[doc = concat!("The core stack behind ", $what, " stack's handles.")]
        pub type CoreStack =
            $crate::Stack<<$flavor as $crate::Flavor>::Mutex, <$runtime as $crate::Runtime>::Clock>;
    };
}
