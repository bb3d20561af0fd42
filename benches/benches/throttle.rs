//! Guards: the consolidated throttle decision (issue 10 target: under 300 ns for a request
//! subject to 4 levels, uncontended). Measures `throttle::checks` (which limits apply, keys
//! hashed) plus `throttle::acquire` (one store call counting the request in all of them) for
//! a request under the API, resource, subscription and application levels, on one thread and
//! with 4 threads contending for the same counters. Baseline: one global mutex-guarded
//! counter per level, incremented in turn, which is what a naive limiter does.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use policies::authn::Principal;
use policies::state::Durable;
use policies::throttle;
use policies::{compile, parse, Format};
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
tiers:
  Huge: { requests: 1000000000, per: 1m, burst: { requests: 1000000000, per: 1s } }
applications:
  - { id: app, tier: Huge, client_ids: [app], subscriptions: [{ api: orders, tier: Huge }] }
apis:
  - name: orders
    context: /orders
    version: v1
    endpoint: { targets: [{ url: "http://127.0.0.1:9" }] }
    auth: { api_keys: { header: apikey } }
    throttling: { api: Huge }
    resources:
      - { path: "/order/{id}", methods: [GET], throttling: Huge }
"#;

fn bench(c: &mut Criterion) {
    let spec = parse(CONFIG.as_bytes(), Format::Yaml).expect("config parses");
    let snapshot = Arc::new(compile(&spec, &Durable::new()).expect("config compiles"));
    let req = http::Request::get("/orders/v1/order/7").body(()).expect("request").into_parts().0;
    let principal = Principal {
        application: Some(0),
        user: None,
        scopes: Arc::from([]),
        tier: Some(Arc::from("Huge")),
        via_api_key: true,
        claims: policies::authn::jwt::no_extra(),
    };
    let decide = |snapshot: &policies::Snapshot, now: u64| {
        let api = &snapshot.apis[0];
        let checks = throttle::checks(
            &snapshot.throttling,
            &api.throttle,
            Some((0, api.resources[0].throttle_tier)),
            &http::Method::GET,
            Some(&principal),
            true,
            &req,
            None,
        );
        assert_eq!(checks.len, 6, "api, resource, subscription (+burst), application (+burst)");
        throttle::acquire(&snapshot.throttling, &checks, now).is_ok()
    };

    let mut group = c.benchmark_group("throttle");
    let start = Instant::now();
    group.bench_function("four_levels_one_thread", |b| b.iter(|| black_box(decide(&snapshot, start.elapsed().as_millis() as u64))));
    group.bench_function("four_levels_4_threads_contending", |b| {
        b.iter_custom(|iters| {
            let per = iters.div_ceil(4);
            let began = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..per {
                            black_box(decide(&snapshot, start.elapsed().as_millis() as u64));
                        }
                    });
                }
            });
            // Wall time per decision across the 4 threads (on this 2-core machine they share
            // cores, so this is throughput, not latency).
            began.elapsed() / 4
        })
    });
    // Baseline: a global mutex per level and a plain counter, no window, no keys.
    let naive: Vec<Mutex<u64>> = (0..6).map(|_| Mutex::new(0)).collect();
    group.bench_function("naive_global_mutex_counters", |b| {
        b.iter(|| {
            for m in &naive {
                *m.lock().unwrap() += 1;
            }
            black_box(())
        })
    });
    group.finish();
    let _ = Duration::ZERO;
}

criterion_group!(benches, bench);
criterion_main!(benches);
