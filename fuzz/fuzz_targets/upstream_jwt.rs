//! `cargo fuzz run upstream_jwt`: see docs/security.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dge_broker::fuzzing::upstream_jwt(data));
