//! The accept queue: established connections waiting for the application, across all shards.

use alloc::collections::VecDeque;
use core::task::{Context, Poll};

use crate::tcp::connection::ConnId;
use crate::waker::{WakeBatch, WakerList};

/// Established connections waiting for `accept` (bounded). Any number of tasks may wait in
/// `accept` at once; all are woken when a connection arrives and the first to poll takes it.
pub(crate) struct AcceptQueue {
    queue: VecDeque<ConnId>,
    capacity: usize,
    waiters: WakerList,
}

impl AcceptQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        AcceptQueue {
            queue: VecDeque::with_capacity(capacity),
            capacity,
            waiters: WakerList::default(),
        }
    }

    /// Queues a connection whose handshake completed; `false` if the queue is full.
    pub(crate) fn push(&mut self, id: ConnId, wake: &mut WakeBatch) -> bool {
        if self.queue.len() >= self.capacity {
            return false;
        }
        self.queue.push_back(id);
        self.waiters.take_all(wake);
        true
    }

    /// Takes the next connection, or registers the waker.
    pub(crate) fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<ConnId> {
        match self.queue.pop_front() {
            Some(id) => Poll::Ready(id),
            None => {
                self.waiters.register(cx.waker());
                Poll::Pending
            }
        }
    }
}
