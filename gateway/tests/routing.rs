//! Routing through the real gateway: versions, default versions, exact paths, URI templates,
//! URL mappings, 404/405, path rewriting, forwarded headers and normalisation bypass attempts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

fn config(up: &TestUpstream) -> String {
    format!(
        r#"
access_log: {{ enabled: true, path: stdout }}
listeners: [{{ address: "127.0.0.1:{{port}}" }}]
admin: {{ address: "127.0.0.1:{{admin}}" }}
apis:
  - name: orders
    context: /orders
    version: v1
    default_version: true
    endpoint: {{ targets: [{{ url: "{up}/base" }}] }}
    resources:
      - {{ path: /menu, methods: [GET] }}
      - {{ path: "/order/{{id}}", methods: [GET, PUT, DELETE] }}
      - {{ path: "/admin/*", methods: [ANY] }}
  - name: orders-v2
    context: /orders
    version: v2
    endpoint: {{ targets: [{{ url: "{up}" }}] }}
    resources: [{{ path: "/*", methods: [GET] }}]
  - name: keep
    context: /keep
    version: v1
    strip_context: false
    endpoint: {{ targets: [{{ url: "{up}" }}] }}
    resources: [{{ path: "/*", methods: [GET] }}]
  - name: secure
    context: /secure
    version: v1
    endpoint: {{ targets: [{{ url: "{up}" }}] }}
    resources: [{{ path: "/public/*", methods: [GET] }}]
"#,
        up = up.url()
    )
}

async fn echo(resp: reqwest::Response) -> Echo {
    assert_eq!(resp.status(), 200, "expected 200");
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_context_version_and_resource() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up));
    let c = client();
    let get = |p: &str| c.get(gw.url(p)).send();

    assert_eq!(echo(get("/orders/v1/menu").await.unwrap()).await.path, "/base/menu");
    assert_eq!(echo(get("/orders/menu?x=1&y=%20").await.unwrap()).await.path, "/base/menu?x=1&y=%20");
    assert_eq!(echo(get("/orders/v1/order/42").await.unwrap()).await.path, "/base/order/42");
    assert_eq!(echo(get("/orders/v2/anything/deep").await.unwrap()).await.path, "/anything/deep");
    assert_eq!(echo(get("/keep/v1/x").await.unwrap()).await.path, "/keep/v1/x");
    let del = c.delete(gw.url("/orders/v1/admin/x/y")).send().await.unwrap();
    let e = echo(del).await;
    assert_eq!((e.method.as_str(), e.path.as_str()), ("DELETE", "/base/admin/x/y"));
    let put = c.put(gw.url("/orders/v1/order/7")).body("payload").send().await.unwrap();
    assert_eq!(echo(put).await.body, "payload");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_and_wrong_verbs_get_problem_details() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up));
    let c = client();

    let r = c.post(gw.url("/orders/v1/menu")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "type": "urn:gateway:problem:route.method_not_allowed",
            "title": "Method not allowed",
            "status": 405,
            "detail": "this resource accepts GET, HEAD",
            "code": "route.method_not_allowed",
            "request_id": rid,
        })
    );

    for path in ["/orders/v1/nothing", "/nothing", "/orders/v3/menu/x", "/"] {
        let r = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "route.not_found", "{path}");
    }
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_and_request_ids() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up));
    let c = client();

    let r = c.get(gw.url("/orders/v1/menu")).header("x-forwarded-for", "10.9.8.7").send().await.unwrap();
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let e = echo(r).await;
    assert_eq!(e.headers["x-forwarded-for"], "10.9.8.7, 127.0.0.1");
    assert_eq!(e.headers["x-forwarded-proto"], "http");
    assert_eq!(e.headers["x-forwarded-host"], format!("127.0.0.1:{}", gw.port));
    assert_eq!(e.headers["host"], format!("127.0.0.1:{}", up.port));
    assert_eq!(e.headers["x-request-id"], rid);
    assert_eq!(rid.len(), 33);

    let r = c.get(gw.url("/orders/v1/menu")).header("x-request-id", "trace-abc.123").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc.123");
    assert_eq!(echo(r).await.headers["x-request-id"], "trace-abc.123");

    let head = c.head(gw.url("/orders/v1/menu")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.bytes().await.unwrap().len(), 0);

    // The access log has one JSON line per request, without the query string.
    c.get(gw.url("/orders/v1/menu?apikey=secret")).send().await.unwrap();
    wait_for("access log", std::time::Duration::from_secs(5), || gw.access_log().contains("\"path\":\"/orders/v1/menu\""));
    assert!(!gw.access_log().contains("secret"));
    let line = gw.access_log().lines().find(|l| l.contains("trace-abc.123")).unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["api"], "orders");
    assert_eq!(v["resource"], "/menu");
    assert_eq!(v["upstream"], format!("{}/base", up.url()));
}

fn status_and_body(resp: &str) -> (u16, &str) {
    let status = resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn normalisation_stops_bypass_attempts() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up));
    let get = |p: &str| gw.raw(&format!("GET {p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));

    // Dot segments resolve before routing, and the upstream sees the resolved path.
    let r = get("/orders/v1/menu/../admin/x");
    let (status, body) = status_and_body(&r);
    assert_eq!(status, 200);
    assert!(body.contains("\"path\":\"/base/admin/x\""), "{body}");
    let r = get("/orders/v1/%2e%2e/v1/menu");
    assert!(status_and_body(&r).1.contains("\"path\":\"/base/menu\""), "{r}");
    let r = get("//secure///v1//public/x");
    assert!(status_and_body(&r).1.contains("\"path\":\"/public/x\""), "{r}");

    // Escaping the public prefix lands on a path no resource serves.
    for p in ["/secure/v1/public/../private", "/secure/v1/public/%2e%2e/private", "/secure/v1/public/.%2E/private"] {
        let r = get(p);
        assert_eq!(status_and_body(&r).0, 404, "{p}: {r}");
        assert!(r.contains("route.not_found"), "{p}");
    }
    // Encoded separators, NUL and malformed escapes are refused outright.
    for p in [
        "/secure/v1/public/..%2fprivate",
        "/secure/v1/public%2F..%2Fprivate",
        "/secure/v1/public/%5c..%5cprivate",
        "/secure/v1/public/x%00",
        "/secure/v1/public/%zz",
    ] {
        let r = get(p);
        assert_eq!(status_and_body(&r).0, 400, "{p}: {r}");
        assert!(r.contains("request.bad_path"), "{p}: {r}");
    }
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_request_with_a_body_keeps_the_connection_usable() {
    use std::io::{Read, Write};
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    // The body is never read by a rejection: the gateway drains it and keeps the connection.
    s.write_all(b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(first.starts_with("HTTP/1.1 404"), "{first}");
    assert!(first.contains("Connection: keep-alive") || !first.contains("Connection: close"), "{first}");
    s.write_all(b"GET /orders/v1/menu HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(rest.starts_with("HTTP/1.1 200"), "second request on the same connection: {rest}");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_lines_wait_at_most_the_flush_interval_and_a_graceful_stop_writes_the_rest() {
    let up = TestUpstream::start("a").await;
    let cfg = |flush: &str| {
        format!(
            "server: {{ threads: 1, graceful_shutdown_timeout: 1s }}\naccess_log: {{ enabled: true, path: stdout, flush_interval: {flush} }}\nlisteners: [{{ address: \"127.0.0.1:{{port}}\" }}]\nadmin: {{ address: \"127.0.0.1:{{admin}}\" }}\napis:\n  - name: svc\n    context: /svc\n    version: v1\n    endpoint: {{ targets: [{{ url: \"{}\" }}] }}\n    resources: [{{ path: \"/*\", methods: [ANY] }}]\n",
            up.url()
        )
    };
    // A short interval: the line shows up on its own, without traffic pushing it out.
    let gw = TestGateway::start(&cfg("50ms"));
    assert_eq!(gw.raw("GET /svc/v1/quick HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").lines().next(), Some("HTTP/1.1 200 OK"));
    wait_for("the line", std::time::Duration::from_secs(2), || gw.access_log().contains("/svc/v1/quick"));
    // A long one: the line waits in memory, and the stop writes it.
    let gw = TestGateway::start(&cfg("60s"));
    assert_eq!(gw.raw("GET /svc/v1/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").lines().next(), Some("HTTP/1.1 200 OK"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!gw.access_log().contains("/svc/v1/last"), "written before the interval: {}", gw.access_log());
    gw.signal("TERM");
    wait_for("the line at exit", std::time::Duration::from_secs(10), || gw.access_log().contains("/svc/v1/last"));
    let line: serde_json::Value = serde_json::from_str(gw.access_log().lines().find(|l| l.contains("/svc/v1/last")).unwrap()).unwrap();
    assert_eq!(line["status"], 200);
    assert_eq!(line["exchange"], "lane");
}
