//! The gateway against the project's own test identity provider (`loadtest idp`): tokens
//! issued by its client-credentials endpoint, verified through OIDC discovery and JWKS, and
//! opaque tokens checked through its introspection endpoint (counted by its /stats).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};

/// The `loadtest` binary beside the gateway's (same profile). `cargo test --workspace`
/// builds it; run alone, this test builds it first.
fn loadtest_bin() -> std::path::PathBuf {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("loadtest");
    if !bin.exists() {
        let status = Command::new(env!("CARGO")).args(["build", "-p", "loadtest", "--bin", "loadtest"]).status().unwrap();
        assert!(status.success(), "cannot build loadtest");
    }
    bin
}

struct Idp {
    child: Child,
    addr: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_idp(extra: &[&str]) -> Idp {
    let mut child = Command::new(loadtest_bin())
        .args(["idp", "--listen", "127.0.0.1:0", "--client", "bench-client:bench-secret:Gold:read write", "--client", "gateway:gateway-secret"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected idp output: {line}")).to_string();
    Idp { child, addr }
}

async fn issue_token(idp: &Idp) -> String {
    let r = client()
        .post(format!("http://{}/token", idp.addr))
        .basic_auth("bench-client", Some("bench-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_from_the_test_idp_pass_the_gateway() {
    let jwt_idp = start_idp(&[]);
    let opaque_idp = start_idp(&["--opaque"]);
    let up = TestUpstream::start("a").await;
    let cfg = format!(
        r#"access_log: {{ enabled: false }}
listeners: [{{ address: "127.0.0.1:{{port}}" }}]
admin: {{ address: "127.0.0.1:{{admin}}" }}
key_managers:
  - {{ type: jwt, name: idp, issuer: "http://{jwt}", audiences: [bench-api], algorithms: [ES256, EdDSA], discovery: "http://{jwt}/.well-known/openid-configuration" }}
  - {{ type: introspection, name: opaque, endpoint: "http://{opaque}/introspect", client_id: gateway, client_secret_env: TEST_IDP_GATEWAY_SECRET }}
applications:
  - {{ id: bench, client_ids: [bench-client], subscriptions: [{{ api: signed, tier: Gold }}, {{ api: opaque, tier: Gold }}] }}
apis:
  - {{ name: signed, context: /signed, version: v1, endpoint: {{ targets: [{{ url: "{up}" }}] }}, auth: {{ key_managers: [idp], require_subscription: true }}, resources: [{{ path: "/*", methods: [GET], auth: application, scopes: [read] }}] }}
  - {{ name: opaque, context: /opaque, version: v1, endpoint: {{ targets: [{{ url: "{up}" }}] }}, auth: {{ key_managers: [opaque], require_subscription: true }}, resources: [{{ path: "/*", methods: [GET], scopes: [write] }}] }}
"#,
        jwt = jwt_idp.addr,
        opaque = opaque_idp.addr,
        up = up.url()
    );
    let gw = TestGateway::start_with(&cfg, &[("TEST_IDP_GATEWAY_SECRET", "gateway-secret")], "gateway.yaml");
    let c = client();

    let signed = issue_token(&jwt_idp).await;
    assert_eq!(signed.split('.').count(), 3);
    for _ in 0..3 {
        assert_eq!(c.get(gw.url("/signed/v1/x")).bearer_auth(&signed).send().await.unwrap().status(), 200);
    }
    assert_eq!(c.get(gw.url("/signed/v1/x")).bearer_auth(format!("{signed}x")).send().await.unwrap().status(), 401);

    let opaque = issue_token(&opaque_idp).await;
    assert_eq!(opaque.split('.').count(), 1, "an opaque token");
    for _ in 0..3 {
        let r = c.get(gw.url("/opaque/v1/x")).bearer_auth(&opaque).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", gw.log());
    }
    assert_eq!(c.get(gw.url("/opaque/v1/x")).bearer_auth("never-issued").send().await.unwrap().status(), 401);
    let stats: serde_json::Value = c.get(format!("http://{}/stats", opaque_idp.addr)).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["introspections"], 2, "one call per distinct token, then the caches: {stats}");
}
