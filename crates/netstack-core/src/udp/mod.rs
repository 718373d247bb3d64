//! UDP for any destination: the queue of received datagrams, sending, and the application's
//! socket.

pub(crate) mod queue;
pub(crate) mod send;
pub(crate) mod socket;

#[cfg(test)]
mod hold_tests;
#[cfg(test)]
mod tests;
