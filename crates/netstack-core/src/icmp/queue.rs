//! The queue of ICMP messages waiting for the application (bounded; any number of receiving
//! tasks may wait on it).

use alloc::collections::VecDeque;
use core::task::{Context, Poll};

use crate::icmp::message::IcmpMessage;
use crate::waker::{WakeBatch, WakerList};

/// ICMP messages waiting for the application.
pub(crate) struct IcmpQueue {
    queue: VecDeque<IcmpMessage>,
    max: usize,
    readers: WakerList,
}

impl IcmpQueue {
    pub(crate) fn new(max: usize) -> Self {
        IcmpQueue {
            queue: VecDeque::new(),
            max,
            readers: WakerList::default(),
        }
    }

    /// Queues a message; `false` (dropped) when full.
    pub(crate) fn push(&mut self, m: IcmpMessage, wake: &mut WakeBatch) -> bool {
        if self.queue.len() >= self.max {
            return false;
        }
        self.queue.push_back(m);
        self.readers.take_all(wake);
        true
    }

    /// Takes the next message, or registers the waker.
    pub(crate) fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<IcmpMessage> {
        match self.queue.pop_front() {
            Some(m) => Poll::Ready(m),
            None => {
                self.readers.register(cx.waker());
                Poll::Pending
            }
        }
    }
}
