//! Lifecycle states and CORS through the real gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

fn config(up: &TestUpstream) -> String {
    let api = |name: &str, state: &str, extra: &str| {
        format!(
            "  - name: {name}\n    context: /{name}\n    version: v1\n    state: {state}\n{extra}    endpoint: {{ targets: [{{ url: \"{}\" }}] }}\n    resources: [{{ path: \"/*\", methods: [GET, PUT] }}]\n",
            up.url()
        )
    };
    let mut c = String::from("access_log: { enabled: false }\nlisteners: [{ address: \"127.0.0.1:{port}\" }]\nadmin: { address: \"127.0.0.1:{admin}\" }\napis:\n");
    c += &api("pub", "published", "");
    c += &api("blocked", "blocked", "");
    c += &api("retired", "retired", "");
    c += &api("created", "created", "");
    c += &api(
        "old",
        "deprecated",
        "    deprecation: { since: \"2026-01-01T00:00:00Z\", sunset: \"2027-01-01T00:00:00Z\", link: \"https://docs.example/old\" }\n",
    );
    c += &api(
        "web",
        "published",
        "    cors: { allow_origins: [\"https://app.example\"], allow_methods: [GET, PUT], allow_headers: [authorization, content-type], expose_headers: [x-upstream], allow_credentials: true, max_age: 10m }\n",
    );
    c += "  - name: proto\n    context: /proto\n    version: v1\n    state: prototyped\n    resources:\n      - path: /hello\n        methods: [GET]\n        mock: { status: 201, headers: { content-type: text/plain, x-mock: \"yes\" }, body: \"hi there\" }\n";
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_states_answer_as_documented() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up));
    let c = client();

    assert_eq!(c.get(gw.url("/pub/v1/x")).send().await.unwrap().status(), 200);

    let r = c.get(gw.url("/blocked/v1/x")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["code"], "lifecycle.blocked");
    assert_eq!(b["status"], 503);

    for api in ["retired", "created"] {
        let r = c.get(gw.url(&format!("/{api}/v1/x"))).send().await.unwrap();
        assert_eq!(r.status(), 404, "{api}");
        let b: serde_json::Value = r.json().await.unwrap();
        assert_eq!(b["code"], "lifecycle.not_available");
        assert_eq!(b["title"], "No route for this path", "worded like an unknown route");
    }

    let r = c.get(gw.url("/old/v1/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["deprecation"], "@1767225600");
    assert_eq!(r.headers()["sunset"], "Fri, 01 Jan 2027 00:00:00 GMT");
    assert_eq!(r.headers()["link"], "<https://docs.example/old>; rel=\"deprecation\"; type=\"text/html\"");

    let r = c.get(gw.url("/proto/v1/hello")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.headers()["x-mock"], "yes");
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "hi there");

    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 2, "only pub and old reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_and_actual_requests() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up));
    let c = client();
    let preflight = |origin: &str, method: &str, headers: Option<&str>| {
        let mut r = c
            .request(reqwest::Method::OPTIONS, gw.url("/web/v1/items/1"))
            .header("origin", origin)
            .header("access-control-request-method", method);
        if let Some(h) = headers {
            r = r.header("access-control-request-headers", h);
        }
        r.send()
    };

    let r = preflight("https://app.example", "PUT", Some("content-type, authorization")).await.unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(h["access-control-allow-headers"], "content-type, authorization");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["vary"].to_str().unwrap().contains("Origin"));
    assert!(h.contains_key("x-request-id"));

    let r = preflight("https://evil.example", "GET", None).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "cors.origin_not_allowed");
    let r = preflight("https://app.example", "DELETE", None).await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "cors.method_not_allowed");
    let r = preflight("https://app.example", "GET", Some("x-evil")).await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "cors.headers_not_allowed");
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "preflights never reach the upstream");

    let r = c.get(gw.url("/web/v1/items/1")).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(r.headers()["access-control-expose-headers"], "x-upstream");
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let r = c.get(gw.url("/web/v1/items/1")).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    // A rejection inside a CORS API still carries CORS headers, so the browser can read it.
    let r = c.post(gw.url("/web/v1/items/1")).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example");
}
