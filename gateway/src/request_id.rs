//! `X-Request-Id`: a well-formed incoming id is kept (so a trace spans the caller and the
//! backend); otherwise one is generated. Generated ids are a per-process random prefix and a
//! counter: unique, cheap (no syscall, no lock), and sortable within a process.

use http::HeaderValue;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

const MAX_LEN: usize = 128;

fn prefix() -> u64 {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    *PREFIX.get_or_init(|| {
        // RandomState is seeded from the OS: a random 64-bit prefix without a rand crate.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    })
}

/// The id to use for a request carrying `incoming`.
pub fn for_request(incoming: Option<&[u8]>) -> HeaderValue {
    if let Some(b) = incoming {
        if !b.is_empty() && b.len() <= MAX_LEN && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c)) {
            if let Ok(v) = HeaderValue::from_bytes(b) {
                return v;
            }
        }
    }
    generate()
}

pub fn generate() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 33];
    write_hex(&mut buf[..16], prefix());
    buf[16] = b'-';
    write_hex(&mut buf[17..], n);
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

fn write_hex(out: &mut [u8], mut v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_good_ids_and_replaces_bad_ones() {
        let good = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(for_request(Some(good.as_bytes())), good);
        let bad = HeaderValue::from_static("has space");
        assert_ne!(for_request(Some(bad.as_bytes())), bad);
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 33);
    }
}
