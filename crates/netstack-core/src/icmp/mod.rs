//! ICMP and ICMPv6: echo requests answered by the stack or delivered to the application, and
//! the application's socket for them.

pub(crate) mod message;
pub(crate) mod queue;
pub(crate) mod socket;
