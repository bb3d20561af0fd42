//! The admin API in-process (no socket): every endpoint and every error status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use control_api::{router, AdminState, AdminToken, Store};
use http_body_util::BodyExt;
use policies::state::Durable;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

const BASE: &str =
    "apis:\n  - name: demo\n    context: /demo\n    version: v1\n    resources:\n      - path: /hello\n        mock: { body: one }\n";
const TOKEN: &str = "test-admin-token";

struct App {
    _dir: tempfile::TempDir,
    router: axum::Router,
}

fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, BASE).unwrap();
    let store = Arc::new(Store::open(&path, Arc::new(Durable::new()), None).unwrap());
    let router = router(Arc::new(AdminState { store, token: Some(AdminToken::new(TOKEN)), cache: None }));
    App { _dir: dir, router }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn call(app: &App, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut b = Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {TOKEN}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = app.router.clone().oneshot(b.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    Resp { status, headers, body }
}

fn api_json(name: &str, body: &str) -> String {
    format!(r#"{{"name":"{name}","context":"/{name}","version":"v1","resources":[{{"path":"/x","mock":{{"body":"{body}"}}}}]}}"#)
}

#[tokio::test]
async fn probes_and_metrics_are_open_v1_needs_the_token() {
    let app = app();
    for uri in ["/healthz", "/readyz", "/metrics"] {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        assert_eq!(app.router.clone().oneshot(req).await.unwrap().status(), StatusCode::OK, "{uri}");
    }
    let metrics = call(&app, "GET", "/metrics", &[], "").await;
    // The gauge is process-wide and other tests apply configs concurrently: check the family.
    assert!(String::from_utf8_lossy(&metrics.body).contains("# TYPE gateway_config_revision gauge"));
    let req = Request::get("/v1/status").header("authorization", "Bearer wrong").body(Body::empty()).unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"gateway-admin\"");
    let req = Request::get("/v1/status").body(Body::empty()).unwrap();
    assert_eq!(app.router.clone().oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn status_and_config_in_both_syntaxes() {
    let app = app();
    let s = call(&app, "GET", "/v1/status", &[], "").await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.json()["revision"], 1);
    assert_eq!(s.json()["apis"], 1);
    let yaml = call(&app, "GET", "/v1/config", &[("accept", "application/yaml")], "").await;
    assert_eq!(yaml.header("content-type"), "application/yaml");
    assert_eq!(String::from_utf8(yaml.body.clone()).unwrap(), BASE);
    let json = call(&app, "GET", "/v1/config", &[], "").await;
    assert_eq!(json.header("content-type"), "application/json");
    assert_eq!(json.json()["apis"][0]["name"], "demo");
    assert_eq!(json.header("etag"), yaml.header("etag"));
    assert!(json.header("etag").starts_with('"'));
}

#[tokio::test]
async fn put_config_with_etags() {
    let app = app();
    let etag = call(&app, "GET", "/v1/config", &[], "").await.header("etag").to_string();
    let doc = BASE.replace("one", "two");
    let ok = call(&app, "PUT", "/v1/config", &[("content-type", "application/yaml"), ("if-match", &etag)], &doc).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["revision"], 2);
    assert_eq!(ok.json()["changed"], true);
    assert_eq!(ok.json()["summary"]["apis_changed"][0], "demo");
    let stale = call(&app, "PUT", "/v1/config", &[("content-type", "application/yaml"), ("if-match", &etag)], BASE).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.json()["code"], "config.stale");
    assert_eq!(stale.json()["status"], 412);
}

#[tokio::test]
async fn bad_documents_get_400_or_422_with_every_error() {
    let app = app();
    let malformed = call(&app, "PUT", "/v1/config", &[("content-type", "application/json")], "{\"apis\": [").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.header("content-type"), "application/problem+json");
    assert_eq!(malformed.json()["code"], "config.malformed");
    let unknown = call(&app, "PUT", "/v1/config", &[("content-type", "application/json")], r#"{"apis":[],"listners":[]}"#).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.json()["errors"][0]["path"], "listners");
    assert_eq!(unknown.json()["errors"][0]["hint"], "did you mean `listeners`?");
    let invalid = r#"{"apis":[{"name":"a","context":"a","version":"v1","resources":[{"path":"x","mock":{}}]}]}"#;
    let r = call(&app, "PUT", "/v1/config", &[("content-type", "application/json")], invalid).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> =
        r.json()["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string().leak() as &str).collect();
    assert_eq!(paths, vec!["apis[0].context", "apis[0].resources[0].path"]);
    let v = call(&app, "POST", "/v1/config/validate", &[("content-type", "application/json")], invalid).await;
    assert_eq!(v.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v.json()["errors"].as_array().unwrap().len(), 2);
    let media = call(&app, "PUT", "/v1/config", &[("content-type", "text/plain")], BASE).await;
    assert_eq!(media.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(call(&app, "GET", "/v1/status", &[], "").await.json()["revision"], 1);
}

#[tokio::test]
async fn validate_is_a_dry_run_with_a_summary() {
    let app = app();
    let doc = format!("{BASE}  - name: more\n    context: /more\n    version: v1\n    resources: [{{ path: /x, mock: {{ body: m }} }}]\n");
    let v = call(&app, "POST", "/v1/config/validate", &[("content-type", "application/yaml")], &doc).await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.json()["valid"], true);
    assert_eq!(v.json()["summary"]["apis_added"][0], "more");
    assert_eq!(call(&app, "GET", "/v1/status", &[], "").await.json()["apis"], 1);
}

#[tokio::test]
async fn revisions_and_rollback() {
    let app = app();
    call(&app, "PUT", "/v1/config", &[("content-type", "application/yaml")], &BASE.replace("one", "two")).await;
    let list = call(&app, "GET", "/v1/revisions", &[], "").await;
    assert_eq!(list.json()["current"], 2);
    assert_eq!(list.json()["revisions"].as_array().unwrap().len(), 2);
    let one = call(&app, "GET", "/v1/revisions/1", &[], "").await;
    assert_eq!(one.json()["document"]["apis"][0]["resources"][0]["mock"]["body"], "one");
    assert_eq!(one.json()["revision"]["source"], "startup");
    let rb = call(&app, "POST", "/v1/revisions/1/rollback", &[], "").await;
    assert_eq!(rb.status, StatusCode::OK);
    assert_eq!(rb.json()["revision"], 3);
    assert_eq!(call(&app, "GET", "/v1/revisions/99", &[], "").await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, "POST", "/v1/revisions/99/rollback", &[], "").await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, "GET", "/v1/revisions/abc", &[], "").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn per_api_crud() {
    let app = app();
    let created = call(&app, "PUT", "/v1/apis/extra", &[("content-type", "application/json")], &api_json("extra", "e")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&created.body));
    let got = call(&app, "GET", "/v1/apis/extra", &[], "").await;
    assert_eq!(got.json()["context"], "/extra");
    let list = call(&app, "GET", "/v1/apis", &[], "").await;
    assert_eq!(list.json()["apis"].as_array().unwrap().len(), 2);
    let replaced = call(&app, "PUT", "/v1/apis/extra", &[("content-type", "application/json")], &api_json("extra", "f")).await;
    assert_eq!(replaced.status, StatusCode::OK);
    let mismatch = call(&app, "PUT", "/v1/apis/extra", &[("content-type", "application/json")], &api_json("other", "f")).await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    let invalid =
        call(&app, "PUT", "/v1/apis/bad", &[("content-type", "application/json")], r#"{"context":"/bad","version":"v1","resources":[]}"#)
            .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.json()["errors"][0]["path"], "apis[2].resources");
    let stale = call(&app, "DELETE", "/v1/apis/extra", &[("if-match", "\"nope\"")], "").await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let deleted = call(&app, "DELETE", "/v1/apis/extra", &[], "").await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(call(&app, "GET", "/v1/apis/extra", &[], "").await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, "DELETE", "/v1/apis/extra", &[], "").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_endpoints_and_methods_are_problems() {
    let app = app();
    let nf = call(&app, "GET", "/v1/nothing", &[], "").await;
    assert_eq!(nf.status, StatusCode::NOT_FOUND);
    assert_eq!(nf.header("content-type"), "application/problem+json");
    let m = call(&app, "DELETE", "/v1/config", &[], "").await;
    assert_eq!(m.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(m.json()["code"], "admin.method_not_allowed");
}

#[tokio::test]
async fn warnings_come_back_with_the_summary_and_the_backend_jwks_is_public() {
    let app = app();
    // No backend JWT yet: an empty key set, without the token.
    let req = Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), serde_json::json!({ "keys": [] }));
    assert_eq!(call(&app, "GET", "/v1/status", &[], "").await.json()["warnings"], serde_json::json!([]));

    // An API asking for a backend JWT without a key: valid, with a warning, and after the
    // apply the generated key is published.
    let doc = "apis:\n  - name: demo\n    context: /demo\n    version: v1\n    auth: { api_keys: { header: k }, backend_jwt: true }\n    resources: [{ path: /hello, mock: { body: one } }]\n";
    let v = call(&app, "POST", "/v1/config/validate", &[("content-type", "application/yaml")], doc).await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.json()["summary"]["warnings"][0]["path"], "backend_jwt");
    let put = call(&app, "PUT", "/v1/config", &[("content-type", "application/yaml")], doc).await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.json()["summary"]["warnings"][0]["path"], "backend_jwt");
    assert_eq!(call(&app, "GET", "/v1/status", &[], "").await.json()["warnings"][0]["path"], "backend_jwt");
    let jwks = call(&app, "GET", "/.well-known/jwks.json", &[], "").await;
    assert_eq!(jwks.header("cache-control"), "max-age=300");
    let key = &jwks.json()["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str(), key["use"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"), Some("sig"))
    );
    assert!(put.json()["summary"]["warnings"][0]["message"].as_str().unwrap().contains(key["kid"].as_str().unwrap()));
}
