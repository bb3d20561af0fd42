//! The direct exchange (`gateway/src/direct.rs`): plain HTTP/1 requests without a body are
//! proxied by the gateway over its own idle connections. Everything else in the suite also
//! runs through it (routing, retries, health, timeouts, reloads under load); these tests pin
//! down what is particular to it: connection reuse, hop-by-hop fields, re-framing of a
//! close-delimited response, an upstream that closes idle connections, and the switch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::sync::atomic::Ordering;

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

    // A client's `Connection: close` ends its own connection, not the upstream one.
    let raw = gw.raw("GET /svc/v1/bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("connection: close"), "{raw}");
    assert!(!raw.contains("\"connection\""), "the upstream saw the client's Connection header: {raw}");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);

    // HTTP/1.0 clients get an HTTP/1.1 request upstream.
    let raw = gw.raw("GET /svc/v1/old HTTP/1.0\r\nHost: x\r\n\r\n");
    assert!(raw.contains("200 OK"), "{raw}");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_closes_idle_connections_costs_no_request() {
    // An upstream that answers one request per connection and then closes it (like a server
    // whose keep-alive timeout just ran out), while still claiming keep-alive.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok");
            // Give the gateway time to pool the connection, then close it.
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}"), "server: { threads: 1 }\n"));
    let c = client();
    for _ in 0..5 {
        let r = c.get(gw.url("/svc/v1/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(served.load(Ordering::SeqCst), 5);
    assert!(!gw.log().contains("ejected"), "a closed idle connection is not a target failure: {}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_close_delimited_response_is_rechunked_and_the_client_connection_stays_open() {
    // HTTP/1.0 style: no Content-Length, the body ends when the upstream closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close");
        }
    });
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
}
