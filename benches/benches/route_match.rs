//! Guards: the route match on the request path (DESIGN §8: "route match (10,000 APIs) well
//! under a microsecond"; foundation issue target: under 1 µs at 10,000 APIs).
//!
//! Measures `normalize` + `Snapshot::plan` (context/version lookup, resource match, verb)
//! for 10, 1,000 and 10,000 APIs over a spread of paths, against a naive baseline: a linear
//! scan of every API's context prefix, which is what a gateway without a route table does.
#![allow(clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use policies::route::normalize;
use policies::state::Durable;
use policies::{compile, parse, Format};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in [10usize, 1_000, 10_000] {
        let yaml = benches::config_with_apis(n, "http://127.0.0.1:18080");
        let spec = parse(yaml.as_bytes(), Format::Yaml).expect("generated config parses");
        let snapshot = compile(&spec, &Durable::new()).expect("generated config compiles");
        let paths = benches::request_paths(n, 1024);
        let requests: Vec<http::request::Parts> =
            paths.iter().map(|p| http::Request::get(p.as_str()).body(()).expect("request").into_parts().0).collect();

        group.bench_with_input(BenchmarkId::new("plan", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                let req = &requests[i & 1023];
                i += 1;
                let path = normalize(req.uri.path()).expect("normal path");
                black_box(snapshot.route(req, &path).is_ok())
            })
        });

        // Naive baseline: scan every context in order.
        let contexts: Vec<String> = (0..n).map(|i| format!("/svc{i}/")).collect();
        group.bench_with_input(BenchmarkId::new("naive_linear_scan", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                let p = &paths[i & 1023];
                i += 1;
                black_box(contexts.iter().position(|c| p.starts_with(c.as_str())))
            })
        });
    }
    group.finish();

    let mut norm = c.benchmark_group("normalize");
    norm.bench_function("already_normal", |b| b.iter(|| black_box(normalize(black_box("/orders/v1/order/42/items")).is_ok())));
    norm.bench_function("dot_segments_and_escapes", |b| {
        b.iter(|| black_box(normalize(black_box("/orders/v1/menu/../%2e%2e/v1//order/%34%32")).is_ok()))
    });
    norm.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
