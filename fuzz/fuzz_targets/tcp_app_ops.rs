//! cargo-fuzz target `tcp_app_ops`: see [`netstack_fuzz::tcp_app_ops`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netstack_fuzz::tcp_app_ops(data));
