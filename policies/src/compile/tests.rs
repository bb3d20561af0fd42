use super::*;
use crate::config::{parse, Format};
use crate::snapshot::Action;
use crate::verdict::ProblemCode;

/// The public shape from the foundation issue, verbatim.
pub const ISSUE_EXAMPLE: &str = r#"
server:
  threads: 2                          # worker threads for the data plane (default: one per core)
access_log: { enabled: true, path: stdout }   # JSON lines; a file path also works
listeners:
  - address: 127.0.0.1:8080
admin:
  address: 127.0.0.1:9900
  token_env: GATEWAY_ADMIN_TOKEN      # required when address is not loopback
apis:
  - name: orders
    context: /orders
    version: v1
    default_version: true             # /orders/... routes here as well as /orders/v1/...
    state: published                  # created|prototyped|published|deprecated|retired|blocked
    endpoint:
      strategy: round_robin           # round_robin | failover
      targets:
        - url: http://127.0.0.1:9000
          weight: 2
        - url: http://127.0.0.1:9001
      connect_timeout: 1s
      read_timeout: 30s
      health_check: { path: /health, interval: 5s, unhealthy_after: 3, healthy_after: 2 }
    cors:
      allow_origins: ["https://app.example"]
      allow_methods: [GET, PUT]
      allow_headers: [authorization, content-type]
      max_age: 10m
    resources:
      - path: /menu                   # exact
        methods: [GET]
      - path: /order/{id}             # URI template
        methods: [GET, PUT, DELETE]
      - path: /admin/*                # URL mapping (prefix)
        methods: [ANY]
  - name: demo
    context: /demo
    version: v1
    state: prototyped
    resources:
      - path: /hello
        methods: [GET]
        mock: { status: 200, headers: { content-type: application/json }, body: '{"hello":"world"}' }
"#;

fn snapshot(yaml: &str) -> Snapshot {
    let spec = parse(yaml.as_bytes(), Format::Yaml).unwrap();
    compile(&spec, &Durable::new()).unwrap()
}

fn errors(yaml: &str) -> Vec<ConfigError> {
    let spec = parse(yaml.as_bytes(), Format::Yaml).unwrap();
    compile(&spec, &Durable::new()).unwrap_err()
}

fn req(method: &str, path: &str) -> http::request::Parts {
    http::Request::builder().method(method).uri(path).body(()).unwrap().into_parts().0
}

#[test]
fn the_issue_example_is_accepted_as_written() {
    let s = snapshot(ISSUE_EXAMPLE);
    assert_eq!(s.apis.len(), 2);
    let orders = s.api_by_name("orders").unwrap();
    assert_eq!(orders.endpoint.as_ref().unwrap().targets.len(), 2);
    assert!(orders.cors.is_some());
}

#[test]
fn plan_routes_versions_defaults_and_mocks() {
    let s = snapshot(ISSUE_EXAMPLE);
    let plan = |m: &str, p: &str| s.route(&req(m, p), p);
    let p = plan("GET", "/orders/v1/menu").unwrap();
    assert_eq!((p.api, p.resource, p.rest_start), (0, Some(0), 10));
    assert!(matches!(p.action, Action::Proxy));
    let p = plan("GET", "/orders/menu").unwrap();
    assert_eq!((p.api, p.resource, p.rest_start), (0, Some(0), 7));
    let p = plan("PUT", "/orders/order/42").unwrap();
    assert_eq!(p.resource, Some(1));
    assert_eq!(&"/orders/order/42"[p.bindings[0].0 as usize..p.bindings[0].1 as usize], "42");
    assert!(matches!(plan("GET", "/demo/v1/hello").unwrap().action, Action::Mock));
    assert!(matches!(plan("HEAD", "/orders/v1/menu").unwrap().action, Action::Proxy), "GET implies HEAD");

    let r = plan("POST", "/orders/v1/menu").unwrap_err().rejection;
    assert_eq!(r.code, ProblemCode::MethodNotAllowed);
    assert_eq!(r.headers[0].1, "GET, HEAD");
    assert_eq!(plan("GET", "/orders/v1/nothing").unwrap_err().rejection.code, ProblemCode::RouteNotFound);
    assert_eq!(plan("GET", "/demo/hello").unwrap_err().rejection.code, ProblemCode::RouteNotFound, "demo has no default version");
    assert_eq!(plan("GET", "/nope").unwrap_err().rejection.code, ProblemCode::RouteNotFound);
}

#[test]
fn preflight_is_answered_before_the_verb_check() {
    let s = snapshot(ISSUE_EXAMPLE);
    let mut r = req("OPTIONS", "/orders/v1/order/1");
    r.headers.insert("origin", "https://app.example".parse().unwrap());
    r.headers.insert("access-control-request-method", "PUT".parse().unwrap());
    assert!(matches!(s.route(&r, "/orders/v1/order/1").unwrap().action, Action::Preflight(_)));
    // A preflight for a path no resource serves is a plain 404.
    assert_eq!(s.route(&r, "/orders/v1/none").unwrap_err().rejection.code, ProblemCode::RouteNotFound);
}

#[test]
fn every_error_is_reported_with_its_path() {
    let errs = errors(
        r#"
listeners: [{ address: "nope" }]
apis:
  - name: a
    context: orders
    version: v1
    endpoint: { targets: [{ url: "ftp://x" }, { url: "http://127.0.0.1:1", weight: 0 }] }
    resources:
      - { path: "/order/{id}", methods: [GET] }
      - { path: "/order/{num}", methods: [GET] }
      - { path: "/x/*/y", methods: [FETCH] }
  - name: a
    context: /b
    version: v1
    resources: [{ path: /x }]
"#,
    );
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "listeners[0].address",
        "apis[0].context",
        "apis[0].endpoint.targets[0].url",
        "apis[0].endpoint.targets[1].weight",
        "apis[0].resources[1].path",
        "apis[0].resources[2].methods[0]",
        "apis[0].resources[2].path",
        "apis[1].name",
        "apis[1].resources[0]",
    ] {
        assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
    }
}

#[test]
fn duplicate_context_version_and_non_loopback_admin_without_token() {
    let errs = errors(
        r#"
admin: { address: "0.0.0.0:9900" }
apis:
  - { name: a, context: /a, version: v1, resources: [{ path: /x, mock: { body: a } }] }
  - { name: b, context: /a, version: v1, resources: [{ path: /x, mock: { body: b } }] }
"#,
    );
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"admin.token_env"), "{paths:?}");
    assert!(paths.contains(&"apis[1].context"), "{paths:?}");
}

#[test]
fn lifecycle_states_route_then_refuse() {
    let s = snapshot(
        r#"
apis:
  - { name: a, context: /a, version: v1, state: blocked, resources: [{ path: /x, mock: { body: a } }] }
  - { name: b, context: /b, version: v1, state: retired, resources: [{ path: /x, mock: { body: b } }] }
  - { name: c, context: /c, version: v1, state: deprecated, resources: [{ path: /x, mock: { body: c } }] }
"#,
    );
    let code = |p: &str| s.route(&req("GET", p), p).map(|_| ()).map_err(|e| e.rejection.code);
    assert_eq!(code("/a/v1/x"), Err(ProblemCode::ApiBlocked));
    assert_eq!(code("/a/v1/anything"), Err(ProblemCode::ApiBlocked));
    assert_eq!(code("/b/v1/x"), Err(ProblemCode::ApiNotAvailable));
    assert_eq!(code("/c/v1/x"), Ok(()));
    assert_eq!(s.apis[2].lifecycle.headers.len(), 1);
}

#[test]
fn unchanged_targets_keep_health_across_compiles() {
    let durable = Durable::new();
    let spec = parse(ISSUE_EXAMPLE.as_bytes(), Format::Yaml).unwrap();
    let first = compile(&spec, &durable).unwrap();
    first.apis[0].endpoint.as_ref().unwrap().targets[0].health.record_failure(0, 1, 60_000);
    let second = compile(&spec, &durable).unwrap();
    assert!(!second.apis[0].endpoint.as_ref().unwrap().targets[0].health.is_healthy(1));
    assert!(second.apis[0].endpoint.as_ref().unwrap().targets[1].health.is_healthy(1));
}

#[test]
fn an_absent_server_section_gets_the_documented_defaults() {
    let s = snapshot("apis: [{ name: a, context: /a, version: v1, resources: [{ path: /x, mock: { body: a } }] }]\n");
    assert_eq!(s.process.server.upstream_keepalive_pool, 1024);
    assert_eq!(s.process.server.graceful_shutdown_timeout.0, std::time::Duration::from_secs(10));
    assert_eq!(s.process.server, parse(b"server: {}\napis: []\n", Format::Yaml).unwrap().server);
}

#[test]
fn sizes_are_parsed_and_bounded() {
    let s = snapshot(
        "access_log: { buffer_size: 1MiB }\napis: [{ name: a, context: /a, version: v1, resources: [{ path: /x, mock: { body: a } }] }]\n",
    );
    assert_eq!(s.process.access_log.buffer_size.0, 1 << 20);
    let errs = errors("access_log: { buffer_size: 10B }\napis: []\n");
    assert_eq!(errs[0].path, "access_log.buffer_size");
    let parse_err = parse(b"access_log: { buffer_size: 64 }\n", Format::Yaml).unwrap_err();
    assert_eq!(parse_err[0].path, "access_log.buffer_size");
}

#[test]
fn a_204_or_304_mock_cannot_have_a_body_and_limits_must_be_usable() {
    let errs = errors(
        r#"
server: { client_header_timeout: 10ms, max_request_body: 0B }
apis:
  - name: a
    context: /a
    version: v1
    resources:
      - { path: /x, mock: { status: 204, body: "no" } }
      - { path: /y, mock: { status: 304, body: "no" } }
      - { path: /z, mock: { status: 204 } }
"#,
    );
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["server.client_header_timeout", "server.max_request_body", "apis[0].resources[0].mock.body", "apis[0].resources[1].mock.body"]
    );
    assert!(errs[2].message.contains("a 204 response cannot have a body"), "{}", errs[2].message);
}

#[test]
fn the_lane_flag_is_compiled_per_resource() {
    let s = snapshot(
        r#"
apis:
  - name: plain
    context: /p
    version: v1
    endpoint: { targets: [{ url: "http://127.0.0.1:9" }] }
    resources: [{ path: /x }]
  - name: tls
    context: /t
    version: v1
    endpoint: { targets: [{ url: "https://127.0.0.1:9" }] }
    resources: [{ path: /x }, { path: /m, mock: { body: m } }]
"#,
    );
    let lane = |api: &str, r: u32| s.api_by_name(api).and_then(|a| a.resource(r)).map(|r| r.lane);
    assert_eq!(lane("plain", 0), Some(true));
    assert_eq!(lane("tls", 0), Some(false));
    assert_eq!(lane("tls", 1), Some(true));
}
