//! cargo-fuzz target `tcp_packets`: see [`netstack_fuzz::tcp_packets`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netstack_fuzz::tcp_packets(data));
