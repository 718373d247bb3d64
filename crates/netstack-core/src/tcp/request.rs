//! [`ConnectionRequest`]: a new TCP connection, handed to the application at SYN time (with
//! [`Config::connection_requests`](crate::Config::connection_requests)), before the stack has
//! answered the peer. A forwarder can dial the real destination first and then accept (SYN-ACK;
//! the stream follows once the handshake completes) or refuse — with RST, so the client's
//! `connect()` fails with `ECONNREFUSED`, or with an ICMP destination unreachable, so it
//! fails with `EHOSTUNREACH`/`ENETUNREACH` — as the real destination would have answered.

use core::fmt;
use core::future::poll_fn;
use core::marker::PhantomData;
use core::net::SocketAddr;
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::raw::RawMutex;

use smoltcp::time::Instant;

use crate::classify::{SynOptions, TcpHeader};
use crate::error::{Error, TcpError};
use crate::group::Group;
use crate::ptr::{Handle, StackPtr};
use crate::stack::Stack;
use crate::tcp::connection::{Accepted, ConnId};
use crate::tcp::pending::{Refusal, RequestInfo};
use crate::tcp::stream::TcpStream;
use crate::tcp::tuple::FourTuple;
use crate::time::Clock;
use crate::waker::WakeBatch;

/// What a listener yields with [`incoming`](crate::TcpListener::incoming): a request to answer,
/// or a connection that is already established (with connection requests on, only those made
/// from SYN cookies, which cannot be refused at SYN time).
pub enum Incoming<P: StackPtr, S, E> {
    /// A SYN for a new 4-tuple, waiting for the application's answer.
    Request(ConnectionRequest<P, S, E>),
    /// An established connection and its peer's address.
    Stream(S, SocketAddr),
}

impl<P: StackPtr, S, E> fmt::Debug for Incoming<P, S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incoming::Request(r) => f.debug_tuple("Request").field(r).finish(),
            Incoming::Stream(_, peer) => f.debug_tuple("Stream").field(peer).finish(),
        }
    }
}

/// A SYN for a new 4-tuple that the stack has not answered yet: accept it, refuse it, or let
/// it expire (after `syn_timeout` the stack refuses it with RST). Dropping it unanswered
/// refuses it with RST at once. Retransmissions of the SYN make no second request; the
/// request holds the SYN (no socket buffers) and counts against `syn_backlog`.
///
/// `S` and `E` are its listener's stream and error types.
pub struct ConnectionRequest<P: StackPtr, S = TcpStream<P>, E = Error> {
    stack: Handle<P>,
    info: RequestInfo,
    answered: bool,
    _types: PhantomData<fn() -> (S, E)>,
}

impl<P: StackPtr, S: From<TcpStream<P>>, E> ConnectionRequest<P, S, E> {
    pub(crate) fn new(stack: Handle<P>, info: RequestInfo) -> Self {
        ConnectionRequest {
            stack,
            info,
            answered: false,
            _types: PhantomData,
        }
    }

    /// The destination the peer asked for (the stream's `local_addr` once accepted).
    pub fn local_addr(&self) -> SocketAddr {
        self.info.tuple.local.into()
    }

    /// The peer: the source of the SYN.
    pub fn peer_addr(&self) -> SocketAddr {
        self.info.tuple.remote.into()
    }

    /// The options of the peer's SYN: MSS, window scale, SACK-permitted, timestamps.
    pub fn syn_options(&self) -> SynOptions {
        self.info.options
    }

    /// Accepts: the stack answers the SYN (SYN-ACK) and the returned future resolves to the
    /// stream once the handshake completes. Dropping the future before then resets the
    /// connection.
    ///
    /// # Errors
    /// `ConnectionReset` if the request expired before it was accepted, or the handshake
    /// failed (the peer reset it, or it did not complete within `syn_timeout`);
    /// `ConnectionRefused` if the connection's buffers no longer fit the budget (the peer got
    /// RST).
    pub async fn accept(mut self) -> Result<S, TcpError> {
        self.answered = true;
        let id = self.info.id;
        self.stack.accept_request(id)?;
        let mut handshake = Handshake {
            stack: self.stack.clone(),
            id,
            done: false,
        };
        let accepted = poll_fn(|cx| handshake.stack.poll_handshake(id, cx)).await;
        handshake.done = true;
        let accepted = accepted?;
        Ok(S::from(TcpStream::new(self.stack.ptr().clone(), accepted)))
    }

    /// Refuses the request (see [`Refusal`]).
    ///
    /// # Errors
    /// [`Error::QueueFull`] if the egress queue had no room for the answer (it is dropped and
    /// counted; the peer's retransmitted SYN is then answered as a new connection).
    pub fn refuse(mut self, refusal: Refusal) -> Result<(), Error> {
        self.answered = true;
        self.stack.refuse_request(self.info.id, refusal)
    }
}

impl<P: StackPtr, S, E> fmt::Debug for ConnectionRequest<P, S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionRequest")
            .field("local", &self.info.tuple.local)
            .field("peer", &self.info.tuple.remote)
            .field("options", &self.info.options)
            .finish()
    }
}

impl<P: StackPtr, S, E> Drop for ConnectionRequest<P, S, E> {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.stack.refuse_request(self.info.id, Refusal::Reset);
        }
    }
}

/// An accepted request whose handshake is in progress; dropped unfinished, it resets the
/// connection.
struct Handshake<P: StackPtr> {
    stack: Handle<P>,
    id: ConnId,
    done: bool,
}

impl<P: StackPtr> Drop for Handshake<P> {
    fn drop(&mut self) {
        if !self.done {
            self.stack.abort_handshake(self.id);
        }
    }
}

/// The primitives requests are built on.
impl<M: RawMutex, C: Clock> Stack<M, C> {
    /// Takes the next request a listener may hand out, or registers the waker.
    pub(crate) fn poll_request(&self, cx: &mut Context<'_>) -> Poll<RequestInfo> {
        loop {
            let id = match self.with_shared(|shared, _| shared.requests.poll_pop(cx)) {
                Poll::Ready(id) => id,
                Poll::Pending => return Poll::Pending,
            };
            let info =
                self.with_request(id, |group, i, _| group.shards[i].tcp.hand_out_request(id));
            if let Some(info) = info {
                return Poll::Ready(info);
            }
        }
    }

    /// Runs `f` on the group of request (or connection) `id` and its local shard index.
    fn with_request<R>(
        &self,
        id: ConnId,
        f: impl FnOnce(&mut Group, usize, &mut WakeBatch) -> R,
    ) -> R {
        self.with_group(id.shard() % self.runner_groups(), |group, wake| {
            let i = group.local(id.shard());
            f(group, i, wake)
        })
    }

    /// Accepts request `id`: its socket is made and smoltcp answers the SYN.
    fn accept_request(&self, id: ConnId) -> Result<(), TcpError> {
        let now = self.clock().now();
        self.with_request(id, |group, i, wake| {
            let Some(request) = group.shards[i].tcp.take_request(id) else {
                return Err(TcpError::ConnectionReset); // expired meanwhile
            };
            let budget = group.buffer_budget();
            let shard = &mut group.shards[i];
            if let Err(e) =
                shard
                    .tcp
                    .accept_request(id, &request, &group.config, budget, &mut shard.sockets)
            {
                let _ = group.out.send_rst(request.tuple, &request.header, wake);
                return Err(e);
            }
            group.feed(i, request.syn, now);
            let shard = &mut group.shards[i];
            shard.tcp.after_new_syn(id, &mut shard.sockets);
            group.schedule(i, wake);
            Ok(())
        })
    }

    /// Refuses request `id`, unless it expired (then the stack has refused it already).
    fn refuse_request(&self, id: ConnId, refusal: Refusal) -> Result<(), Error> {
        let now = self.clock().now();
        self.with_request(id, |group, i, wake| {
            let Some(request) = group.shards[i].tcp.take_request(id) else {
                return Ok(());
            };
            let table = &mut group.shards[i].tcp;
            table.stats.refused_by_application += 1;
            table.remember_refusal(request.tuple, refusal, now);
            group.refuse(
                request.tuple,
                &request.header,
                &request.syn,
                refusal,
                now,
                wake,
            )
        })
    }

    /// Ready once accepted request `id` is established (its stream is counted as a handle).
    fn poll_handshake(&self, id: ConnId, cx: &mut Context<'_>) -> Poll<Result<Accepted, TcpError>> {
        let r = self.with_request(id, |group, i, _| group.shards[i].tcp.poll_handshake(id, cx));
        if let Poll::Ready(Ok(_)) = r {
            self.count_stream();
        }
        r
    }

    /// The task waiting for `id`'s handshake gave up: reset the connection.
    fn abort_handshake(&self, id: ConnId) {
        let now = self.clock().now();
        self.with_request(id, |group, i, wake| {
            let shard = &mut group.shards[i];
            shard.tcp.abort(id, &mut shard.sockets, wake);
            shard.tcp.orphan(id, now, &shard.sockets);
            group.schedule(i, wake);
        });
    }
}

impl Group {
    /// Answers the SYN `syn` (of `tuple`, with `header`) as `refusal` says.
    pub(crate) fn refuse(
        &mut self,
        tuple: FourTuple,
        header: &TcpHeader,
        syn: &[u8],
        refusal: Refusal,
        now: Instant,
        wake: &mut WakeBatch,
    ) -> Result<(), Error> {
        if let Refusal::Unreachable(kind) = refusal {
            match self.out.send_unreachable(syn, kind, now, wake) {
                Err(Error::QueueFull) => return Err(Error::QueueFull),
                Ok(()) => return Ok(()),
                // Not allowed or rate-limited: a reset refuses it all the same.
                Err(_) => {}
            }
        }
        self.out.send_rst(tuple, header, wake)
    }
}
