//! The JSON validator never panics, and where the input is cut into chunks never changes its
//! verdict.
#![no_main]
use libfuzzer_sys::fuzz_target;
use policies::threat::json::{JsonLimits, JsonValidator};

fuzz_target!(|data: &[u8]| {
    let limits = JsonLimits { max_depth: 16, max_properties: 64, max_string_length: 256, max_array_length: 64, max_key_length: 32, max_size: 1 << 16 };
    let whole = {
        let mut v = JsonValidator::new(limits);
        v.feed(data).and_then(|()| v.finish())
    };
    let cut = data.first().map_or(0, |&b| usize::from(b)) % (data.len() + 1);
    let mut v = JsonValidator::new(limits);
    let split = v.feed(&data[..cut]).and_then(|()| v.feed(&data[cut..])).and_then(|()| v.finish());
    assert_eq!(whole, split);
});
