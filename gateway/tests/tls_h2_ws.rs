//! TLS listener with HTTP/2 through ALPN, and WebSocket upgrades passing through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};

#[tokio::test(flavor = "multi_thread")]
async fn tls_listener_speaks_http2_and_http1() {
    let up = TestUpstream::start("a").await;
    let pki = TestPki::new();
    let cfg = format!(
        "access_log: {{ enabled: false }}\nlisteners:\n  - address: \"127.0.0.1:{{port}}\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}\nadmin: {{ address: \"127.0.0.1:{{admin}}\" }}\napis:\n  - name: svc\n    context: /svc\n    version: v1\n    endpoint: {{ targets: [{{ url: \"{}\" }}] }}\n    resources: [{{ path: \"/*\", methods: [ANY] }}]\n",
        pki.cert_path.display(),
        pki.key_path.display(),
        up.url()
    );
    let gw = TestGateway::start(&cfg);
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let url = format!("https://localhost:{}/svc/v1/hello", gw.port);

    let h2 = reqwest::Client::builder().no_proxy().tls_certs_only([ca.clone()]).build().unwrap();
    let r = h2.get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let e: Echo = r.json().await.unwrap();
    assert_eq!(e.path, "/hello");
    assert_eq!(e.headers["x-forwarded-proto"], "https");
    assert_eq!(e.headers["x-forwarded-host"], format!("localhost:{}", gw.port));

    let h1 = reqwest::Client::builder().no_proxy().http1_only().tls_certs_only([ca]).build().unwrap();
    let r = h1.get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);

    // A problem answer over HTTP/2 keeps its body and headers.
    let r = h2.get(format!("https://localhost:{}/none", gw.port)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "route.not_found");
}

/// A WebSocket echo server standing in for a backend.
async fn ws_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() {
                        let text = format!("echo: {}", msg.into_text().unwrap());
                        if ws.send(tokio_tungstenite::tungstenite::Message::text(text)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrades_pass_through() {
    let port = ws_upstream().await;
    let cfg = format!(
        "access_log: {{ enabled: false }}\nlisteners: [{{ address: \"127.0.0.1:{{port}}\" }}]\nadmin: {{ address: \"127.0.0.1:{{admin}}\" }}\napis:\n  - name: chat\n    context: /chat\n    version: v1\n    endpoint: {{ targets: [{{ url: \"http://127.0.0.1:{port}\" }}] }}\n    resources: [{{ path: /socket, methods: [GET] }}]\n"
    );
    let gw = TestGateway::start(&cfg);
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/chat/v1/socket", gw.port)).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(tokio_tungstenite::tungstenite::Message::text(format!("hi {i}"))).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), format!("echo: hi {i}"));
    }
}
