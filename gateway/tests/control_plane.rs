//! The control plane on real sockets: admin token, startup refusals, reload through the
//! API, the file watch and SIGHUP, bad configs that change nothing, persistence across a
//! restart, metrics, and `gateway validate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::time::Duration;

fn config(body: &str, token: bool) -> String {
    let token = if token { ", token_env: TEST_ADMIN_TOKEN" } else { "" };
    format!(
        "access_log: {{ enabled: false }}\nlisteners: [{{ address: \"127.0.0.1:{{port}}\" }}]\nadmin: {{ address: \"127.0.0.1:{{admin}}\"{token} }}\napis:\n  - name: demo\n    context: /demo\n    version: v1\n    resources:\n      - path: /hello\n        mock: {{ body: \"{body}\" }}\n"
    )
}

async fn body(c: &reqwest::Client, gw: &TestGateway) -> String {
    c.get(gw.url("/demo/v1/hello")).send().await.unwrap().text().await.unwrap()
}

async fn metrics(gw: &TestGateway) -> String {
    client().get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_token_is_required_when_configured() {
    let gw = TestGateway::start_with(&config("A", true), &[("TEST_ADMIN_TOKEN", "t0ken-very-secret")], "gateway.yaml");
    let c = client();
    let r = c.get(gw.admin_url("/v1/status")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"gateway-admin\"");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "admin.unauthorized");
    let r = c.get(gw.admin_url("/v1/status")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c.get(gw.admin_url("/v1/status")).bearer_auth("t0ken-very-secret").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["revision"], 1);
    assert_eq!(c.get(gw.admin_url("/healthz")).send().await.unwrap().status(), 200);
}

#[test]
fn startup_is_refused_without_a_token_off_loopback_or_with_a_missing_token() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open.yaml");
    let admin_port = free_port();
    std::fs::write(
        &open,
        config("A", false).replace("127.0.0.1:{admin}", &format!("0.0.0.0:{admin_port}")).replace("{port}", &free_port().to_string()),
    )
    .unwrap();
    let (code, _, err) = run_gateway(&["run", "--config", open.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("admin.token_env: is required because the admin address"), "{err}");

    let missing = dir.path().join("missing.yaml");
    std::fs::write(&missing, config("A", true).replace("{admin}", &free_port().to_string()).replace("{port}", &free_port().to_string()))
        .unwrap();
    let (code, _, err) = run_gateway(&["run", "--config", missing.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("TEST_ADMIN_TOKEN is not set"), "{err}");

    let (code, _, err) = run_gateway(&["run", "--config", dir.path().join("nope.yaml").to_str().unwrap()], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_through_the_api_and_bad_configs_change_nothing() {
    let gw = TestGateway::start(&config("A", false));
    let c = client();
    assert_eq!(body(&c, &gw).await, "A");
    let next = config("B", false).replace("{port}", &gw.port.to_string()).replace("{admin}", &gw.admin_port.to_string());
    let r = c.put(gw.admin_url("/v1/config")).header("content-type", "application/yaml").body(next.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(body(&c, &gw).await, "B");
    // The change is on disk: the file now holds what the API was given.
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), next);

    let bad = next.replace("/hello", "hello");
    let r = c.put(gw.admin_url("/v1/config")).header("content-type", "application/yaml").body(bad).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["path"], "apis[0].resources[0].path");
    assert_eq!(body(&c, &gw).await, "B");
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), next);
    assert!(metrics(&gw).await.contains("gateway_config_reloads_total{result=\"invalid\",source=\"api\"} 1"));
    assert!(metrics(&gw).await.contains("gateway_config_revision 2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_through_the_file_watch_and_sighup() {
    let gw = TestGateway::start(&config("A", false));
    let c = client();
    gw.write_config(&config("C", false));
    wait_for_async("file reload", Duration::from_secs(10), async || body(&c, &gw).await == "C").await;

    // A broken file is rejected, logged and counted; C keeps serving.
    gw.write_config("apis: [ {broken");
    wait_for_async("invalid file counted", Duration::from_secs(10), async || {
        metrics(&gw).await.contains("gateway_config_reloads_total{result=\"invalid\",source=\"file\"} 1")
    })
    .await;
    assert_eq!(body(&c, &gw).await, "C");
    assert!(gw.log().contains("config rejected; the previous config keeps serving"), "{}", gw.log());

    gw.write_config(&config("D", false));
    wait_for_async("file reload after a bad one", Duration::from_secs(10), async || body(&c, &gw).await == "D").await;
    gw.signal("HUP");
    wait_for_async("SIGHUP reload", Duration::from_secs(10), async || {
        metrics(&gw).await.contains("gateway_config_reloads_total{result=\"unchanged\",source=\"sighup\"} 1")
    })
    .await;
    assert_eq!(body(&c, &gw).await, "D");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_body_for_a_yaml_file_is_one_revision_not_two() {
    let gw = TestGateway::start(&config("A", false));
    let c = client();
    let json = format!(
        r#"{{"access_log":{{"enabled":false}},"listeners":[{{"address":"127.0.0.1:{}"}}],"admin":{{"address":"127.0.0.1:{}"}},"apis":[{{"name":"demo","context":"/demo","version":"v1","resources":[{{"path":"/hello","mock":{{"body":"J"}}}}]}}]}}"#,
        gw.port, gw.admin_port
    );
    let r = c.put(gw.admin_url("/v1/config")).header("content-type", "application/json").body(json).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(body(&c, &gw).await, "J");
    // The file now holds YAML; the watcher must see it as the same document.
    std::thread::sleep(Duration::from_millis(800));
    let written = std::fs::read_to_string(&gw.config_path).unwrap();
    assert!(written.contains("body: J"), "{written}");
    let s: serde_json::Value = c.get(gw.admin_url("/v1/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(s["revision"], 2);
    assert_eq!(s["etag"], etag);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_serves_the_last_applied_revision() {
    let mut gw = TestGateway::start(&config("A", false));
    let c = client();
    let next = config("E", false).replace("{port}", &gw.port.to_string()).replace("{admin}", &gw.admin_port.to_string());
    let r = c.put(gw.admin_url("/v1/config")).header("content-type", "application/yaml").body(next).send().await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["revision"], 2);
    gw.restart();
    assert_eq!(body(&c, &gw).await, "E");
    let s: serde_json::Value = c.get(gw.admin_url("/v1/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(s["revision"], 2, "same document, same revision");
    let revs: serde_json::Value = c.get(gw.admin_url("/v1/revisions")).send().await.unwrap().json().await.unwrap();
    assert_eq!(revs["revisions"].as_array().unwrap().len(), 2);
    // Roll back to the first revision over a real socket.
    let r = c.post(gw.admin_url("/v1/revisions/1/rollback")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(body(&c, &gw).await, "A");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_per_api_and_status_class() {
    let gw = TestGateway::start(&config("A", false));
    let c = client();
    for _ in 0..3 {
        body(&c, &gw).await;
    }
    c.get(gw.url("/demo/v1/nothing")).send().await.unwrap();
    c.get(gw.url("/elsewhere")).send().await.unwrap();
    let m = metrics(&gw).await;
    assert!(m.contains("gateway_http_requests_total{api=\"demo\",status_class=\"2xx\"} 3"), "{m}");
    assert!(m.contains("gateway_http_requests_total{api=\"demo\",status_class=\"4xx\"} 1"), "{m}");
    assert!(m.contains("gateway_http_requests_total{api=\"-\",status_class=\"4xx\"} 1"), "{m}");
    assert!(m.contains("gateway_policy_rejections_total{policy=\"route\",reason=\"route.not_found\"} 2"), "{m}");
    assert!(m.contains("gateway_http_request_duration_seconds_bucket{api=\"demo\""), "{m}");
}

#[test]
fn validate_prints_ok_or_every_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, config("A", false).replace("{port}", "18001").replace("{admin}", "18002")).unwrap();
    let (code, out, _) = run_gateway(&["validate", good.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), "ok (1 APIs)");

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"apis":[{"name":"x y","context":"/a","version":"v1","resources":[{"path":"/{id}.json","methods":["GETT"],"mock":{}}]}]}"#,
    )
    .unwrap();
    let (code, _, err) = run_gateway(&["validate", bad.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("apis[0].name: `x y` must be non-empty"), "{err}");
    assert!(err.contains("apis[0].resources[0].methods[0]: `GETT` is not an HTTP method"), "{err}");
    assert!(err.contains("apis[0].resources[0].path:"), "{err}");

    let typo = dir.path().join("typo.yaml");
    std::fs::write(&typo, "listners: []\n").unwrap();
    let (code, _, err) = run_gateway(&["validate", typo.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("listners: unknown field `listners`"), "{err}");
    assert!(err.contains("did you mean `listeners`?"), "{err}");
}
