//! ICMP and ICMPv6: echo requests answered by the stack or delivered to the application, the
//! application's socket for them, and the destination-unreachable errors the stack sends.

pub(crate) mod error;
pub(crate) mod limit;
pub(crate) mod message;
pub(crate) mod queue;
pub(crate) mod socket;
pub(crate) mod unreachable;
