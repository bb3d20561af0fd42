//! Guards: config compile time (foundation issue target: a 10,000-API config compiles in
//! under 500 ms). Measures parse + compile from bytes, as a reload does, for 1,000 and
//! 10,000 APIs, and the arc-swap store + load the data path sees after it.
#![allow(clippy::expect_used)]

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use policies::state::Durable;
use policies::{compile, parse, Format};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for n in [1_000usize, 10_000] {
        let yaml = benches::config_with_apis(n, "http://127.0.0.1:18080");
        let durable = Durable::new();
        group.bench_with_input(BenchmarkId::new("parse_and_compile", n), &n, |b, _| {
            b.iter(|| {
                let spec = parse(yaml.as_bytes(), Format::Yaml).expect("parses");
                black_box(compile(&spec, &durable).expect("compiles"))
            })
        });
    }
    group.finish();

    let yaml = benches::config_with_apis(10, "http://127.0.0.1:18080");
    let snapshot = compile(&parse(yaml.as_bytes(), Format::Yaml).expect("parses"), &Durable::new()).expect("compiles");
    let store = ArcSwap::from_pointee(snapshot);
    c.bench_function("snapshot_load_full", |b| b.iter(|| black_box(store.load_full())));
}

criterion_group!(benches, bench);
criterion_main!(benches);
