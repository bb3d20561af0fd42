//! Heap retained by a compiled snapshot of N synthetic APIs (a counting allocator around the
//! system one): `snapshot-size [N]`. Used for the memory figures in BENCHMARKS.md.
#![allow(unsafe_code, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let yaml = benches::config_with_apis(n, "http://127.0.0.1:18080");
    let durable = policies::state::Durable::new();
    let before = LIVE.load(Ordering::Relaxed);
    let spec = policies::parse(yaml.as_bytes(), policies::Format::Yaml).expect("parses");
    let after_parse = LIVE.load(Ordering::Relaxed);
    let snapshot = policies::compile(&spec, &durable).expect("compiles");
    drop(spec);
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "apis={n} spec_bytes={} snapshot_bytes={} per_api={} yaml_bytes={}",
        after_parse - before,
        after - after_parse,
        (after - after_parse) / n as isize,
        yaml.len()
    );
    drop(snapshot);
}
