//! `cargo fuzz run config`: see docs/security.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dge_idp::config::parse_toml(text);
    }
});
