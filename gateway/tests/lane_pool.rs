//! The lane's upstream exchange and pool (`gateway/src/lane/exchange.rs`, `pool.rs`): plain
//! HTTP/1 requests are proxied by the gateway over its own per-thread idle connections.
//! Everything else in the suite also runs through it (routing, retries, health, timeouts,
//! reloads under load); these tests pin down what is particular to it: that it runs
//! (`gateway_exchange_requests_total{exchange="lane"}`),
//! connection reuse, hop-by-hop fields, re-framing of a close-delimited response, resending
//! after a closed kept connection (idempotent requests only), timeouts, clients that hang
//! up, and the switch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::sync::atomic::Ordering;

fn failures(log_metrics: &str) -> Vec<&str> {
    log_metrics.lines().filter(|l| l.starts_with("gateway_upstream_failures_total{")).collect()
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn config(upstream: &str, server: &str) -> String {
    format!(
        "{server}access_log: {{ enabled: true, path: stdout }}\nlisteners: [{{ address: \"127.0.0.1:{{port}}\" }}]\nadmin: {{ address: \"127.0.0.1:{{admin}}\" }}\napis:\n  - name: svc\n    context: /svc\n    version: v1\n    endpoint: {{ targets: [{{ url: \"{upstream}\" }}] }}\n    resources: [{{ path: \"/*\", methods: [ANY] }}]\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_requests_share_one_upstream_connection_and_hop_by_hop_fields_stay_behind() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up.url(), "server: { threads: 1 }\n"));
    let c = client();
    for i in 0..20 {
        let r = c
            .get(gw.url(&format!("/svc/v1/item/{i}")))
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("proxy-authorization", "Basic c2VjcmV0")
            .header("x-custom", "kept")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("x-request-id"));
        let echo: Echo = r.json().await.unwrap();
        assert_eq!(echo.path, format!("/item/{i}"));
        for gone in ["keep-alive", "te", "proxy-authorization", "connection"] {
            assert!(!echo.headers.contains_key(gone), "{gone} reached the upstream: {:?}", echo.headers);
        }
        assert_eq!(echo.headers["x-custom"], "kept");
        assert_eq!(echo.headers["x-forwarded-proto"], "http");
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 20);
    assert_eq!(up.connections.load(Ordering::SeqCst), 1, "one kept connection served every request");
    assert_eq!(lane_count(&gw).await, 20, "every request took the fast path");

    // A client's `Connection: close` ends its own connection, not the upstream one.
    let raw = gw.raw("GET /svc/v1/bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("connection: close"), "{raw}");
    assert!(!raw.contains("\"connection\""), "the upstream saw the client's Connection header: {raw}");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);

    // HTTP/1.0 clients are served by Pingora's path (its own pool: a second connection),
    // which sends HTTP/1.1 upstream.
    let raw = gw.raw("GET /svc/v1/old HTTP/1.0\r\nHost: x\r\n\r\n");
    assert!(raw.contains("200 OK"), "{raw}");
    assert_eq!(lane_count(&gw).await, 21, "the HTTP/1.0 request was not the lane's");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_connection_found_closed_is_resent_once_for_idempotent_requests_only() {
    // Each connection answers its first request, then reads the next one and hangs up
    // without answering: the upstream closed a kept connection just as it was reused.
    let up = raw_upstream(|n, _| if n == 0 { Reply::Send(OK.to_vec()) } else { Reply::Close });
    let (port, received) = (up.port, up.requests);
    let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}"), "server: { threads: 1 }\n"));
    let c = client();
    assert_eq!(c.get(gw.url("/svc/v1/a")).send().await.unwrap().status(), 200);
    // Reuses the kept connection, which fails; resent on a new one.
    let r = c.get(gw.url("/svc/v1/b")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    assert_eq!(received.load(Ordering::SeqCst), 3, "first, the lost one, the resend");
    // A POST without a body is not resent: the upstream may have acted on it.
    let r = c.post(gw.url("/svc/v1/c")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "upstream.error");
    assert_eq!(received.load(Ordering::SeqCst), 4, "the POST reached the upstream once");
    let metrics = c.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(failures(&metrics).is_empty(), "a closed kept connection is not a target failure: {:?}", failures(&metrics));
    // All three were answered by the lane, the 502 included.
    assert_eq!(lane_count(&gw).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_after_sending_is_final_and_counted() {
    // The first request on a connection is answered at once, the next after 2 s.
    let up = raw_upstream(|n, _| Reply::After(std::time::Duration::from_millis(if n == 0 { 0 } else { 2_000 }), OK.to_vec()));
    let (port, received) = (up.port, up.requests);
    let upstream = format!("http://127.0.0.1:{port}");
    let cfg = format!(
        "server: {{ threads: 1 }}\naccess_log: {{ enabled: false }}\nlisteners: [{{ address: \"127.0.0.1:{{port}}\" }}]\nadmin: {{ address: \"127.0.0.1:{{admin}}\" }}\napis:\n  - name: svc\n    context: /svc\n    version: v1\n    endpoint: {{ targets: [{{ url: \"{upstream}\" }}, {{ url: \"{upstream}/\" }}], retries: 1, read_timeout: 300ms }}\n    resources: [{{ path: \"/*\", methods: [ANY] }}]\n"
    );
    let gw = TestGateway::start(&cfg);
    let c = client();
    assert_eq!(c.get(gw.url("/svc/v1/warm")).send().await.unwrap().status(), 200);
    let started = std::time::Instant::now();
    let r = c.post(gw.url("/svc/v1/cancel")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < std::time::Duration::from_millis(1_500), "one read_timeout, no resend: {:?}", started.elapsed());
    // A GET is not sent to the other target after a timeout either. (A new client: the
    // gateway closes a connection after answering an upstream failure.)
    let c = client();
    assert_eq!(c.get(gw.url("/svc/v1/warm-again")).send().await.unwrap().status(), 200);
    let started = std::time::Instant::now();
    let r = c.get(gw.url("/svc/v1/slow")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < std::time::Duration::from_millis(1_500), "{:?}", started.elapsed());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // warm, cancel, warm-again, slow: each once.
    assert_eq!(received.load(Ordering::SeqCst), 4);
    let metrics = c.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gateway_upstream_failures_total{api=\"svc\",kind=\"timeout\"} 2"), "{:?}", failures(&metrics));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_ends_the_exchange() {
    let slow = TestUpstream::start_on("slow", 0, std::time::Duration::from_secs(3)).await;
    let gw = TestGateway::start(&config(&slow.url(), "server: { threads: 1 }\n"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.write_all(b"GET /svc/v1/long-poll HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(s);
    // The access-log line is written when the request ends: right after the hang-up, not
    // when the upstream would have answered.
    wait_for("the request to end", std::time::Duration::from_millis(1_500), || gw.access_log().contains("/svc/v1/long-poll"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_close_delimited_response_is_rechunked_and_the_client_connection_stays_open() {
    // HTTP/1.0 style: no Content-Length, the body ends when the upstream closes.
    let port = raw_upstream(|_, _| Reply::SendAndClose(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close".to_vec())).port;
    let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}"), ""));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /svc/v1/x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"0\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the gateway closed the client connection: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.contains("transfer-encoding: chunked"), "{text}");
        assert!(text.contains("until close"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fast_path_can_be_switched_off() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up.url(), "server: { threads: 1, upstream_fast_path: false }\n"));
    let c = client();
    for _ in 0..5 {
        let r = c.get(gw.url("/svc/v1/x")).header("keep-alive", "timeout=5").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let echo: Echo = r.json().await.unwrap();
        assert!(!echo.headers.contains_key("keep-alive"));
    }
    // Pingora's pool reuses the connection too.
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    assert_eq!(lane_count(&gw).await, 0, "the switch is off");
}

/// An answer with `body`, framed by Content-Length or, when `chunked`, in 16 KiB chunks; only
/// the head for a HEAD request.
fn bulk_answer(body: &[u8], chunked: bool, head: &[u8]) -> Vec<u8> {
    let head_only = head.starts_with(b"HEAD ");
    let mut out = Vec::new();
    if chunked {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        if !head_only {
            for c in body.chunks(16 * 1024) {
                out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    } else {
        out.extend_from_slice(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
        if !head_only {
            out.extend_from_slice(body);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_stream_through_intact_and_head_gets_none() {
    // 3 MiB of a pattern that a dropped, repeated or reordered chunk would break.
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect();
    let body = std::sync::Arc::new(body);
    for chunked in [false, true] {
        let body_for_upstream = body.clone();
        let port = raw_upstream(move |_, head| Reply::Send(bulk_answer(&body_for_upstream, chunked, head))).port;
        let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}"), "server: { threads: 1 }\n"));
        let c = client();
        for _ in 0..3 {
            let r = c.get(gw.url("/svc/v1/big")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let got = r.bytes().await.unwrap();
            assert_eq!(got.len(), body.len(), "chunked={chunked}");
            assert!(got[..] == body[..], "chunked={chunked}: the body changed on the way");
        }
        let r = c.head(gw.url("/svc/v1/big")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap().is_empty());
        // HEAD and the GETs kept one upstream connection going: the next GET still works.
        assert_eq!(c.get(gw.url("/svc/v1/big")).send().await.unwrap().bytes().await.unwrap().len(), body.len());
        assert_eq!(lane_count(&gw).await, 5, "chunked={chunked}");
    }
}
