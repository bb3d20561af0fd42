//! Guards: the threat protectors' throughput in MB/s on typical payloads (issue 11 targets:
//! JSON at least 400 MB/s, XML at least 200 MB/s, the default regex set at least 200 MB/s). Payload: an array of order-like objects (strings with escapes,
//! numbers, booleans, nested arrays), 1 KiB, 64 KiB and 1 MiB. Baseline: serde_json parsing
//! the same bytes into a `Value`, which is what a protector that builds the document pays.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use policies::threat::body::BodyInspector;
use policies::threat::json::{JsonLimits, JsonValidator};
use policies::threat::regex::RegexProtector;
use policies::threat::xml::{check_xml, XmlLimits};
use std::hint::black_box;

/// About `size` bytes of typical API JSON.
fn payload(size: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let mut len = 2;
    let mut i = 0;
    while len < size {
        let item = format!(
            r#"{{"id":{i},"sku":"SKU-{i:06}","name":"Item \"{i}\" by O'Brien","price":{}.{:02},"qty":{},"tags":["new","sale"],"ok":true,"note":null,"url":"https://shop.example/items/{i}?ref=a%20b"}}"#,
            i * 7 % 1000,
            i % 100,
            i % 9
        );
        len += item.len() + 1;
        items.push(item);
        i += 1;
    }
    format!("[{}]", items.join(",")).into_bytes()
}

/// About `size` bytes of a SOAP-like XML document.
fn xml_payload(size: usize) -> Vec<u8> {
    let head = r#"<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:Order xmlns:m="urn:example">"#;
    let tail = "</m:Order></soap:Body></soap:Envelope>";
    let mut out = String::from(head);
    let mut i = 0;
    while out.len() + tail.len() < size {
        out.push_str(&format!(
            r#"<m:Item id="{i}" sku="SKU-{i:06}" currency="EUR"><m:Name>Item {i} by O&apos;Brien &amp; Co</m:Name><m:Price>{}.{:02}</m:Price><m:Qty>{}</m:Qty></m:Item>"#,
            i * 7 % 1000,
            i % 100,
            i % 9
        ));
        i += 1;
    }
    out.push_str(tail);
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let limits = JsonLimits { max_array_length: 1_000_000, max_size: 64 << 20, ..JsonLimits::default() };
    let mut group = c.benchmark_group("threat_json");
    for (name, size) in [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let body = payload(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("validator", name), &body, |b, body| {
            b.iter(|| {
                let mut v = JsonValidator::new(limits);
                // As it arrives: 16 KiB chunks.
                for chunk in body.chunks(16 * 1024) {
                    v.feed(chunk).unwrap();
                }
                black_box(v.finish().is_ok())
            })
        });
        group.bench_with_input(BenchmarkId::new("serde_json_value", name), &body, |b, body| {
            b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(body).is_ok()))
        });
    }
    group.finish();

    // XML: a SOAP-like envelope of order items (attributes, text, entities), whole bodies.
    let xml_limits = XmlLimits { max_elements: 1_000_000, max_children: 1_000_000, max_size: 64 << 20, ..XmlLimits::default() };
    let mut group = c.benchmark_group("threat_xml");
    for (name, size) in [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let body = xml_payload(size);
        assert!(check_xml(&body, &xml_limits).is_ok());
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("protector", name), &body, |b, body| {
            b.iter(|| black_box(check_xml(body, &xml_limits).is_ok()))
        });
    }
    group.finish();

    // The regex protector's default set over the same benign bodies (nothing matches, so the
    // whole body is scanned; they contain `%` and `&`, so the decoded form is scanned too).
    let protector = RegexProtector::built_in();
    let mut group = c.benchmark_group("threat_regex");
    for (name, size) in [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let body = payload(size);
        assert_eq!(protector.scan(&body, false), None, "the payload is benign");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("default_set_decoded", name), &body, |b, body| {
            b.iter(|| black_box(protector.scan(body, false).is_none()))
        });
        group.bench_with_input(BenchmarkId::new("default_set_raw", name), &body, |b, body| {
            b.iter(|| black_box(protector.scan_raw(body).is_none()))
        });
    }
    group.finish();

    // A whole request body through the body step, as the exchanges run it: the side-by-side
    // bench's 1 KiB JSON POST, and the order payloads, with every protector on (defaults).
    let policy = policies::threat::compile::default_policy();
    let post = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/bench/post-1k.lua"))
        .ok()
        .and_then(|lua| {
            lua.lines().find_map(|l| l.strip_prefix("wrk.body = ").map(|b| b.trim().trim_matches('"').replace("\\\"", "\"").into_bytes()))
        })
        .unwrap_or_else(|| payload(1024));
    let mut group = c.benchmark_group("threat_body");
    let json = Some(&b"application/json"[..]);
    for (name, body) in [("bench_post_1k", post), ("orders_1KiB", payload(1024)), ("orders_64KiB", payload(60 * 1024))] {
        assert!(BodyInspector::check_whole(&policy, json, &body).is_ok(), "{name} is benign");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("all_protectors", name), &body, |b, body| {
            b.iter(|| black_box(BodyInspector::check_whole(&policy, json, body).is_ok()))
        });
    }
    group.finish();

    // The head of the side-by-side bench's GET: its 577-character bearer token and the usual
    // fields, each scanned (as the head protector does).
    let token =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/bench/keys/token_rs256.txt")).unwrap_or_default();
    let fields = [
        ("host", "127.0.0.1:18098".to_string()),
        ("user-agent", "wrk".to_string()),
        ("accept", "*/*".to_string()),
        ("authorization", format!("Bearer {}", token.trim())),
    ];
    let mut group = c.benchmark_group("threat_head");
    group.bench_function("bench_get_fields", |b| {
        b.iter(|| black_box(fields.iter().all(|(_, v)| protector.scan(v.as_bytes(), false).is_none())))
    });
    group.bench_function("token_only", |b| b.iter(|| black_box(protector.scan(fields[3].1.as_bytes(), false).is_none())));
    group.bench_function("short_field", |b| b.iter(|| black_box(protector.scan(b"127.0.0.1:18098", false).is_none())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
