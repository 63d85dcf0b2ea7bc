//! `cargo fuzz run forms`: see docs/security.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dge_pages::fuzzing::posted_form(data));
