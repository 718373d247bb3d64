//! cargo-fuzz target `ingress_bytes`: see [`netstack_fuzz::ingress_bytes`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netstack_fuzz::ingress_bytes(data));
