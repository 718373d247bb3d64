//! Benchmark-only helpers for `cargo xtask bench`.
//!
//! This crate is a workspace member that no library depends on. It holds the subjects and load
//! generators the benchmark drives. The peers and the kernel relay share one relay glue
//! ([`relay::relay_to`], `copy_bidirectional_with_sizes` with the same buffer size per direction
//! as `tun_forward`'s relay), so that only the TCP termination differs between them;
//! `tun_forward` uses its own readiness-based relay (see BENCHMARKS.md). For UDP they use
//! `tun_forward`'s own flow table and flows through [`udp_relay`] (one kernel socket per flow,
//! bounded per-flow queues, idle timeout):
//!
//! * `fwd_netstack_smoltcp`, `fwd_ipstack`: forwarders with `tun_forward`'s command line over the
//!   peer stacks netstack-smoltcp 0.2.4 and ipstack 1.0.1, relaying TCP and UDP;
//! * `kernel_relay`: the same relay glue on a kernel listening socket (the ceiling), TCP and,
//!   with `--udp`, UDP;
//! * `tun_floor`: copies packets between two TUN devices, no TCP termination (the floor);
//! * `connload`: an echo server and clients for the connection-rate, reconnect-storm and
//!   idle-connection tests;
//! * `udpload`: a UDP echo server, a request/response latency client and a DNS query load.
//!
//! `bench/gvisor/main.go` (not part of this crate) is the gVisor-netstack subject, built by
//! `cargo xtask bench` with Go in GOPATH mode.

pub mod cli;
pub mod relay;
pub mod tun_io;
pub mod udp_relay;
