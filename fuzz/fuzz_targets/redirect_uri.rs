//! `cargo fuzz run redirect_uri`: see docs/security.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dge_oidc::fuzzing::redirect_uri(data));
