//! The gateway against the project's own test identity provider (`loadtest idp`): tokens
//! issued by its client-credentials endpoint, verified through OIDC discovery and JWKS, and
//! opaque tokens checked through its introspection endpoint (counted by its /stats).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

fn start_idp(extra: &[&str]) -> Idp {
    let mut args = vec!["--client", "bench-client:bench-secret:Gold:read write", "--client", "gateway:gateway-secret"];
    args.extend_from_slice(extra);
    Idp::start(&args)
}

async fn issue_token(idp: &Idp) -> String {
    idp.issue_token("bench-client", "bench-secret").await
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
