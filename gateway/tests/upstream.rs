//! Upstream behaviour through the real gateway: weighted round robin, failover, retries on
//! connect failure, passive ejection, active health checks and recovery, timeouts, HTTPS
//! targets with a private CA, and health state surviving a reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn config(endpoint: &str) -> String {
    format!(
        "access_log: {{ enabled: true, path: stdout }}\nlisteners: [{{ address: \"127.0.0.1:{{port}}\" }}]\nadmin: {{ address: \"127.0.0.1:{{admin}}\" }}\napis:\n  - name: svc\n    context: /svc\n    version: v1\n    endpoint:\n{endpoint}\n    resources: [{{ path: \"/*\", methods: [ANY] }}]\n"
    )
}

async fn server_of(c: &reqwest::Client, gw: &TestGateway) -> (u16, String) {
    let r = c.get(gw.url("/svc/v1/x")).send().await.unwrap();
    let status = r.status().as_u16();
    let server = r.headers().get("x-upstream").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_round_robin_follows_weights() {
    let (a, b) = (TestUpstream::start("a").await, TestUpstream::start("b").await);
    let gw = TestGateway::start(&config(&format!("      targets: [{{ url: \"{}\", weight: 2 }}, {{ url: \"{}\" }}]", a.url(), b.url())));
    let c = client();
    for _ in 0..30 {
        assert_eq!(server_of(&c, &gw).await.0, 200);
    }
    assert_eq!((a.hits.load(Ordering::SeqCst), b.hits.load(Ordering::SeqCst)), (20, 10));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_target_fails_over_without_client_errors() {
    let (a, b) = (TestUpstream::start("a").await, TestUpstream::start("b").await);
    let gw = TestGateway::start(&config(&format!(
        "      targets: [{{ url: \"{}\" }}, {{ url: \"{}\" }}]\n      passive_health: {{ consecutive_failures: 2, eject_for: 1m }}",
        a.url(),
        b.url()
    )));
    let c = client();
    for _ in 0..4 {
        assert_eq!(server_of(&c, &gw).await.0, 200);
    }
    a.stop();
    // Give the gateway's pool a moment to see its idle connections to `a` close. A POST that
    // lands on a pooled connection in the instant the upstream dies may already be on the
    // wire, and a non-idempotent request is never retried then (502 by design).
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every request still succeeds: a connect failure is retried on the other target, even
    // for POST, because nothing was sent.
    for i in 0..20 {
        let r = c.post(gw.url("/svc/v1/x")).body(format!("n{i}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        let e: Echo = r.json().await.unwrap();
        assert_eq!((e.server.as_str(), e.body.as_str()), ("b", format!("n{i}").as_str()));
    }
    // After two strikes target a is ejected: later requests do not even try it.
    let metrics = client().get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    let failures: u64 = metrics
        .lines()
        .find(|l| l.starts_with("gateway_upstream_failures_total{api=\"svc\",kind=\"connect\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert_eq!(failures, 2, "{metrics}");
    assert!(
        metrics.contains(&format!("gateway_upstream_healthy{{target=\"{}\"}} 0", a.url())) || {
            // the gauge is refreshed every 100 ms
            std::thread::sleep(Duration::from_millis(300));
            client()
                .get(gw.admin_url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .contains(&format!("gateway_upstream_healthy{{target=\"{}\"}} 0", a.url()))
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_strategy_prefers_the_first_target_and_comes_back() {
    let (a, b) = (TestUpstream::start("a").await, TestUpstream::start("b").await);
    let a_port = a.port;
    let gw = TestGateway::start(&config(&format!(
        "      strategy: failover\n      targets: [{{ url: \"{}\" }}, {{ url: \"{}\" }}]\n      passive_health: {{ consecutive_failures: 1, eject_for: 500ms }}",
        a.url(),
        b.url()
    )));
    let c = client();
    for _ in 0..5 {
        assert_eq!(server_of(&c, &gw).await, (200, "a".into()));
    }
    a.stop();
    drop(a);
    // The stopped upstream's open keep-alive connections close when their tasks see the stop,
    // so under load a request may still be answered by "a" for a moment; never by an error.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, server) = server_of(&c, &gw).await;
        assert_eq!(status, 200, "failing over costs no client error");
        if server == "b" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "traffic never moved to b");
    }
    for _ in 0..5 {
        assert_eq!(server_of(&c, &gw).await, (200, "b".into()));
    }
    let _a2 = TestUpstream::start_on("a", a_port, Duration::ZERO).await;
    wait_for_async("traffic back on a", Duration::from_secs(5), async || server_of(&c, &gw).await == (200, "a".into())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_checks_take_a_target_out_and_bring_it_back() {
    let (a, b) = (TestUpstream::start("a").await, TestUpstream::start("b").await);
    let gw = TestGateway::start(&config(&format!(
        "      targets: [{{ url: \"{}\" }}, {{ url: \"{}\" }}]\n      health_check: {{ path: /health, interval: 100ms, timeout: 500ms, unhealthy_after: 2, healthy_after: 2 }}",
        a.url(),
        b.url()
    )));
    let c = client();
    wait_for_async("probes", Duration::from_secs(5), async || a.health_hits.load(Ordering::SeqCst) >= 2).await;
    a.health_status.store(503, Ordering::SeqCst);
    let probes = a.health_hits.load(Ordering::SeqCst);
    wait_for_async("two failed probes", Duration::from_secs(5), async || a.health_hits.load(Ordering::SeqCst) >= probes + 3).await;
    let before = a.hits.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(server_of(&c, &gw).await, (200, "b".into()));
    }
    assert_eq!(a.hits.load(Ordering::SeqCst), before, "an unhealthy target gets no traffic");
    assert!(gw.log().contains("marked unhealthy"), "{}", gw.log());

    a.health_status.store(200, Ordering::SeqCst);
    wait_for_async("recovery", Duration::from_secs(5), async || server_of(&c, &gw).await.1 == "a").await;
    assert!(gw.log().contains("healthy again"));
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_and_unreachable_targets_get_problem_details() {
    let slow = TestUpstream::start_on("slow", 0, Duration::from_secs(3)).await;
    let gw = TestGateway::start(&config(&format!("      targets: [{{ url: \"{}\" }}]\n      read_timeout: 300ms", slow.url())));
    let c = client();
    let started = std::time::Instant::now();
    let r = c.get(gw.url("/svc/v1/x")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["code"], "upstream.timeout");
    drop(gw);

    let dead_port = free_port();
    let gw = TestGateway::start(&config(&format!("      targets: [{{ url: \"http://127.0.0.1:{dead_port}\" }}]")));
    let r = c.get(gw.url("/svc/v1/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["code"], "upstream.unavailable");
    assert_eq!(b["status"], 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn https_targets_are_verified_against_the_configured_ca() {
    let pki = TestPki::new();
    let (port, _task) = start_tls_upstream("tls", &pki).await;
    let gw = TestGateway::start(&config(&format!(
        "      targets: [{{ url: \"https://localhost:{port}\" }}]\n      tls: {{ ca_file: \"{}\" }}",
        pki.ca_path.display()
    )));
    let (status, server) = server_of(&client(), &gw).await;
    assert_eq!((status, server.as_str()), (200, "tls"));
    drop(gw);

    // Another CA: the handshake fails and nothing is sent.
    let other = TestPki::new();
    let gw = TestGateway::start(&config(&format!(
        "      targets: [{{ url: \"https://localhost:{port}\" }}]\n      tls: {{ ca_file: \"{}\" }}",
        other.ca_path.display()
    )));
    assert_eq!(server_of(&client(), &gw).await.0, 502);
}

#[test]
fn a_bad_ca_file_is_a_validation_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").unwrap();
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(
        &cfg,
        config(&format!("      targets: [{{ url: \"https://localhost:1\" }}]\n      tls: {{ ca_file: \"{}\" }}", ca.display()))
            .replace("{port}", "1")
            .replace("{admin}", "2"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway")).arg("validate").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apis[0].endpoint.tls.ca_file"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn target_health_survives_a_reload() {
    let (a, b) = (TestUpstream::start("a").await, TestUpstream::start("b").await);
    let a_port = a.port;
    let endpoint = format!(
        "      targets: [{{ url: \"{}\" }}, {{ url: \"{}\" }}]\n      passive_health: {{ consecutive_failures: 1, eject_for: 1m }}",
        a.url(),
        b.url()
    );
    let gw = TestGateway::start(&config(&endpoint));
    let c = client();
    a.stop();
    drop(a);
    for _ in 0..4 {
        assert_eq!(server_of(&c, &gw).await, (200, "b".into()));
    }
    let _a2 = TestUpstream::start_on("a", a_port, Duration::ZERO).await;
    // Reload with a change elsewhere: target a keeps its ejection.
    let next = config(&endpoint).replace("methods: [ANY]", "methods: [GET, POST]");
    let next = next.replace("{port}", &gw.port.to_string()).replace("{admin}", &gw.admin_port.to_string());
    let r = c.put(gw.admin_url("/v1/config")).header("content-type", "application/yaml").body(next).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for _ in 0..6 {
        assert_eq!(server_of(&c, &gw).await, (200, "b".into()), "ejection kept across the reload");
    }
}

/// An upstream that answers each connection's first request with keep-alive headers, then
/// reads the next request on that connection and closes it without an answer: what a
/// backend's idle-connection reaper does when it races a reused connection.
async fn closing_upstream() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok").await;
                let _ = s.read(&mut buf).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_pooled_connection_is_retried_on_the_same_single_target() {
    let port = closing_upstream().await;
    let gw = TestGateway::start(&config(&format!("      targets: [{{ url: \"http://127.0.0.1:{port}\" }}]")));
    let c = client();
    for i in 0..5 {
        let r = c.get(gw.url("/svc/v1/x")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), "ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_abandons_a_chunked_upload_is_not_a_strike_against_the_target() {
    // Chunked uploads take Pingora's path. One strike would eject the only target for a
    // minute; a client hanging up mid-body must not count as one.
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&format!(
        "      targets: [{{ url: \"{}\" }}]\n      passive_health: {{ consecutive_failures: 1, eject_for: 1m }}",
        up.url()
    )));
    for _ in 0..3 {
        let mut s = connect(&gw);
        std::io::Write::write_all(&mut s, b"POST /svc/v1/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        drop(s);
    }
    wait_for("the uploads to end", Duration::from_secs(5), || gw.access_log().matches("/svc/v1/upload").count() == 3);
    let metrics = client().get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("gateway_upstream_failures_total{"), "{metrics}");
    let r = client().get(gw.url("/svc/v1/after")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the target is still in");
    // The access log says the client went away (no status sent).
    let line = gw.access_log().lines().find(|l| l.contains("/svc/v1/upload")).unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["exchange"], "pingora");
}
