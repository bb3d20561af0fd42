//! Decoding and scanning never panic, and decoding never grows a value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use policies::threat::regex::{decode, RegexProtector};
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static SET: OnceLock<RegexProtector> = OnceLock::new();
    let decoded = decode(data, true);
    assert!(decoded.len() <= data.len());
    let _ = SET.get_or_init(RegexProtector::built_in).scan(data, false);
});
