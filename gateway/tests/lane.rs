//! The HTTP/1 fast lane (`gateway/src/lane.rs`): the gateway's own loop for plain-HTTP
//! connections. The whole suite runs through it; these tests pin down what is particular to
//! it: requests it hands to Pingora and takes back on the same connection, pipelining,
//! response framing it re-does (chunked, forwarded interim responses, bad framing), the fields it drops
//! both ways, and the problems it answers itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

fn config(upstream: &str) -> String {
    format!(
        "server: {{ threads: 1 }}\naccess_log: {{ enabled: true, path: stdout }}\nlisteners: [{{ address: \"127.0.0.1:{{port}}\" }}]\nadmin: {{ address: \"127.0.0.1:{{admin}}\" }}\napis:\n  - name: svc\n    context: /svc\n    version: v1\n    endpoint: {{ targets: [{{ url: \"{upstream}\" }}] }}\n    resources: [{{ path: \"/*\", methods: [ANY] }}]\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_the_lane_does_not_take_go_to_pingora_and_the_connection_comes_back() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up.url()));
    let mut s = connect(&gw);
    let mut rest = Vec::new();
    // lane, Pingora (a chunked body), lane, the lane's own 404 (routing), lane, lane (a
    // small Content-Length body): one connection.
    let steps: [(&str, &str, &str); 6] = [
        ("GET /svc/v1/one HTTP/1.1\r\nHost: x\r\n\r\n", "200", "/one"),
        ("POST /svc/v1/two HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "200", "/two"),
        ("GET /svc/v1/three HTTP/1.1\r\nHost: x\r\n\r\n", "200", "/three"),
        ("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", "404", ""),
        ("GET /svc/v1/five HTTP/1.1\r\nHost: x\r\n\r\n", "200", "/five"),
        ("POST /svc/v1/six HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "200", "/six"),
    ];
    for (req, status, path) in steps {
        s.write_all(req.as_bytes()).unwrap();
        let (head, body) = read_response(&mut s, &mut rest);
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{req}: {head}");
        assert!(head.contains("x-request-id: "), "{head}");
        if status == "200" {
            let echo: Echo = serde_json::from_slice(&body).unwrap();
            assert_eq!(echo.path, path);
        } else {
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["code"], "route.not_found");
            assert!(head.contains("content-type: application/problem+json"), "{head}");
        }
    }
    assert!(rest.is_empty());
    assert_eq!(lane_count(&gw).await, 5, "all but the chunked POST took the lane");
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order_including_a_rejection_and_a_body() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up.url()));
    let mut s = connect(&gw);
    s.write_all(b"GET /svc/v1/p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /svc/v1/p2 HTTP/1.1\r\nHost: x\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: x\r\n\r\nGET /svc/v1/p4 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    for expect in ["/p1", "/p2", "404", "/p4"] {
        let (head, body) = read_response(&mut s, &mut rest);
        if expect == "404" {
            assert!(head.starts_with("http/1.1 404"), "{head}");
        } else {
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let echo: Echo = serde_json::from_slice(&body).unwrap();
            assert_eq!(echo.path, expect);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_response_is_reframed_without_extensions_trailers_or_hop_by_hop_fields() {
    let port = fixed_upstream(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 999\r\nConnection: keep-alive, X-Internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\nTrailer: X-Sum\r\nX-Request-Id: upstream-made\r\nX-App: kept\r\n\r\n5;name=val\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n",
    )
    .port;
    let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}")));
    let mut s = connect(&gw);
    let mut rest = Vec::new();
    for _ in 0..2 {
        s.write_all(b"GET /svc/v1/c HTTP/1.1\r\nHost: x\r\nX-Request-Id: client-id-1\r\n\r\n").unwrap();
        // The 103 is forwarded (RFC 9110 §15.2), with the gateway's request id.
        let (early, _) = read_response(&mut s, &mut rest);
        assert_eq!(early, "http/1.1 103 early hints\r\nlink: </a.css>; rel=preload\r\nx-request-id: client-id-1\r\n\r\n");
        let (head, body) = read_response(&mut s, &mut rest);
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert_eq!(body, b"hello world");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(head.contains("x-app: kept"), "{head}");
        assert!(head.contains("x-request-id: client-id-1\r\n"), "{head}");
        for gone in ["content-length", "x-internal", "keep-alive: timeout", "trailer", "upstream-made", "link:"] {
            assert!(!head.contains(gone), "{gone} reached the client: {head}");
        }
        assert!(head.contains("\r\nconnection: keep-alive\r\n"), "the gateway's own Connection, not the upstream's: {head}");
        assert!(rest.is_empty(), "the trailer section did not leak: {:?}", String::from_utf8_lossy(&rest));
    }
    assert_eq!(lane_count(&gw).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_upstream_framing_gets_a_502_problem_from_the_lane() {
    for (answer, what) in [
        (&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"[..], "unknown transfer coding"),
        (&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"[..], "conflicting lengths"),
        (&b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"[..], "a 101 nobody asked for"),
        (&b"NOT HTTP\r\n\r\n"[..], "garbage"),
    ] {
        let port = fixed_upstream(answer).port;
        let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}")));
        let raw = gw.raw("GET /svc/v1/x HTTP/1.1\r\nHost: x\r\nX-Request-Id: rid-42\r\n\r\n");
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{what}: no answer: {raw:?}\n{}", gw.log()));
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 502"), "{what}: {raw}");
        assert!(head.contains("content-type: application/problem+json"), "{what}: {raw}");
        assert!(head.contains("connection: close"), "{what}: {raw}");
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["code"], "upstream.error", "{what}: {raw}");
        assert_eq!(problem["status"], 502);
        assert_eq!(problem["request_id"], "rid-42");
        // The log line is written by the access-log thread, shortly after the answer.
        wait_for("the access log line", Duration::from_secs(5), || gw.access_log().contains("rid-42"));
        let line = gw.access_log().lines().find(|l| l.contains("rid-42")).map(str::to_string).unwrap_or_default();
        assert!(line.contains("\"status\":502"), "{what}: {line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_answered_502_by_the_lane_and_a_head_request_gets_no_body() {
    let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{}", free_port())));
    let raw = gw.raw("HEAD /svc/v1/x HTTP/1.1\r\nHost: x\r\n\r\n");
    let lower = raw.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 502"), "{raw}");
    assert!(lower.contains("content-length: "), "{raw}");
    assert!(raw.ends_with("\r\n\r\n"), "a HEAD answer has no body: {raw}");
    let raw = gw.raw("GET /svc/v1/x HTTP/1.1\r\nHost: x\r\n\r\n");
    let (_, body) = raw.split_once("\r\n\r\n").unwrap();
    let problem: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["code"], "upstream.unavailable");
}

#[tokio::test(flavor = "multi_thread")]
async fn heads_beyond_the_lane_limits_are_still_served_by_pingora() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up.url()));
    // 70 header fields (the lane parses 64) and a 70 KiB head (the lane reads 64 KiB).
    let many: String = (0..70).map(|i| format!("X-F{i}: v\r\n")).collect();
    let raw = gw.raw(&format!("GET /svc/v1/many HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n"));
    assert!(raw.starts_with("HTTP/1.1 200"), "{}", &raw[..raw.len().min(300)]);
    let big = "a".repeat(70 * 1024);
    let raw = gw.raw(&format!("GET /svc/v1/big HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"));
    assert!(raw.starts_with("HTTP/1.1 200"), "{}", &raw[..raw.len().min(300)]);
    // Pingora read them; its own direct exchange (`direct.rs`) then proxied them.
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn framing_fields_survive_a_connection_header_naming_them() {
    // An upstream whose Connection header names Content-Length must not make the response
    // unframed: the next response on the connection would be read as part of this body.
    let port = fixed_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: content-length, x-gone\r\nX-Gone: 1\r\n\r\nhello").port;
    let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}")));
    let mut s = connect(&gw);
    let mut rest = Vec::new();
    for _ in 0..2 {
        s.write_all(b"GET /svc/v1/x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut s, &mut rest);
        assert!(head.contains("content-length: 5\r\n"), "{head}");
        assert!(!head.contains("x-gone"), "{head}");
        assert_eq!(body, b"hello");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_reaches_the_client_as_it_comes() {
    // The head and the first part now, the rest after 3 s: the client must have the first
    // part long before the rest.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst,\r\n");
                std::thread::sleep(Duration::from_secs(3));
                let _ = s.write_all(b"4\r\nlast\r\n0\r\n\r\n");
            });
        }
    });
    let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}")));
    let mut s = connect(&gw);
    s.write_all(b"GET /svc/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(6).any(|w| w == b"first,") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(started.elapsed() < Duration::from_secs(2), "the first part waited for the rest: {:?}", started.elapsed());
    let mut rest = got[got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..].to_vec();
    // Put the head back so read_response parses the whole response.
    let mut all = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    all.append(&mut rest);
    let (_, body) = read_response(&mut s, &mut all);
    assert_eq!(body, b"first,last");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lanes_problem_answers_are_logged_with_their_code() {
    let port = fixed_upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").port;
    let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}")));
    let raw = gw.raw("GET /svc/v1/x HTTP/1.1\r\nHost: x\r\nX-Request-Id: logged-1\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 502"), "{raw}");
    wait_for("the access log line", Duration::from_secs(5), || gw.access_log().contains("logged-1"));
    let line = gw.access_log().lines().find(|l| l.contains("logged-1")).unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 502);
    assert_eq!(v["problem"], "upstream.error");
    assert_eq!(v["api"], "svc");
    assert_eq!(v["path"], "/svc/v1/x");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed_when_the_gateway_shuts_down() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up.url()));
    let mut s = connect(&gw);
    let mut rest = Vec::new();
    s.write_all(b"GET /svc/v1/x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, _) = read_response(&mut s, &mut rest);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    // Idle now; graceful_shutdown_timeout is 10 s by default, but an idle connection has
    // nothing to finish: it is closed at once (by the lane's shutdown watch, or by the
    // runtime's shutdown, whichever comes first).
    let started = std::time::Instant::now();
    gw.signal("TERM");
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the connection was closed");
    assert!(started.elapsed() < Duration::from_secs(3), "closed only after {:?}", started.elapsed());
}

/// One response as a client sees it, with what varies between two runs masked (request ids,
/// dates): the status line, the fields sorted (Pingora re-cases and reorders some; the head
/// comes lower-cased from `read_response`), and the body with request ids masked. Pingora adds
/// a redundant `connection: keep-alive` to HTTP/1.1 answers; it is left out.
fn normalised(head: &str, body: &[u8]) -> (Vec<String>, String) {
    let mut lines: Vec<String> = head
        .trim_end()
        .split("\r\n")
        .enumerate()
        .filter_map(|(i, l)| match l.split_once(':') {
            _ if i == 0 => Some(l.to_string()),
            Some((n, _)) if n == "x-request-id" || n == "date" => Some(format!("{n}: *")),
            Some(("connection", v)) if v.trim() == "keep-alive" => None,
            _ => Some(l.to_string()),
        })
        .collect();
    lines[1..].sort();
    let body = String::from_utf8_lossy(body);
    let body = match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(mut v) => {
            if v.get("request_id").is_some() {
                v["request_id"] = "*".into();
            }
            if v.get("headers").and_then(|h| h.get("x-request-id")).is_some() {
                v["headers"]["x-request-id"] = "*".into();
            }
            v.to_string()
        }
        _ => body.into_owned(),
    };
    (lines, body)
}

/// Writes `request` (one or more requests, pipelined) on a fresh connection and reads every
/// response the client gets (1xx included) until the connection closes, or until the last
/// response to `finals` final answers. A HEAD row is a single request.
fn conversation(gw: &TestGateway, request: &str, finals: usize) -> Vec<(Vec<String>, String)> {
    let mut s = connect(gw);
    s.write_all(request.as_bytes()).unwrap();
    let head_request = request.starts_with("HEAD ");
    let mut rest = Vec::new();
    let mut out = Vec::new();
    let mut got = 0;
    while got < finals {
        let Some((head, body)) = try_read_response(&mut s, &mut rest, head_request) else {
            out.push((vec!["<closed>".to_string()], String::from_utf8_lossy(&rest).into_owned()));
            break;
        };
        if !head.starts_with("http/1.1 1") {
            got += 1;
        }
        let closing = head.contains("\r\nconnection: close\r\n");
        out.push(normalised(&head, &body));
        if closing {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lane_and_pingoras_path_answer_alike() {
    // The same config with the fast path on (the lane) and off (Pingora's HTTP/1 server and
    // proxy loop): every answer must be the same, field for field but for ids and dates, and
    // what the upstream saw (the echo) must be the same too. Every later policy adds rows.
    let up = TestUpstream::start("a").await;
    // A raw upstream for framing the echo server cannot produce, chosen by path.
    let raw = raw_upstream(|_, head| {
        let path = String::from_utf8_lossy(head).split(' ').nth(1).unwrap_or("").to_string();
        Reply::Send(match path.as_str() {
            "/early-hints" => {
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
            }
            "/chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-App: kept\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n".to_vec()
            }
            "/no-content" => b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "/twice" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            "/gzip" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx".to_vec(),
            "/conflict" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            _ => b"NOT HTTP\r\n\r\n".to_vec(),
        })
    });
    let conf = |fast: bool| {
        format!(
            r#"server: {{ threads: 1, upstream_fast_path: {fast}, max_request_body: 1KiB }}
access_log: {{ enabled: false }}
listeners: [{{ address: "127.0.0.1:{{port}}" }}]
admin: {{ address: "127.0.0.1:{{admin}}" }}
applications:
  - {{ id: partner, api_keys: [{{ sha256: "45f05d20999bb4742e828f14f49dce6501ef026ea1e6ef8451786c14d444201b" }}], subscriptions: [{{ api: svc, tier: Gold }}] }}
apis:
  - name: svc
    context: /svc
    version: v1
    state: deprecated
    deprecation: {{ since: "2026-01-01T00:00:00Z", sunset: "2027-01-01T00:00:00Z", link: "https://docs.example/old" }}
    endpoint: {{ targets: [{{ url: "{up}" }}] }}
    cors: {{ allow_origins: ["https://app.example"], allow_methods: [GET, PUT, POST], allow_headers: [apikey] }}
    auth: {{ api_keys: {{ header: apikey }}, require_subscription: true }}
    resources:
      - {{ path: "/items/{{id}}", methods: [GET, PUT, POST] }}
      - {{ path: /open, methods: [GET, POST], auth: none }}
      - {{ path: /mock, methods: [GET], auth: none, mock: {{ status: 201, headers: {{ content-type: text/plain, x-mock: yes }}, body: made-up }} }}
  - name: raw
    context: /raw
    version: v1
    endpoint: {{ targets: [{{ url: "{raw}" }}] }}
    resources: [{{ path: "/*", methods: [ANY] }}]
"#,
            up = up.url(),
            raw = raw.url(),
        )
    };
    let lane = TestGateway::start(&conf(true));
    let pingora = TestGateway::start(&conf(false));
    const KEY: &str = "apikey: partner-key-123\r\n";
    // (what the row is about, the bytes a client writes, how many final answers it gets,
    // the status of the first answer)
    let rows: Vec<(&str, String, usize, &str)> = vec![
        ("routed, authenticated, CORS", format!("GET /svc/v1/items/7 HTTP/1.1\r\nHost: x\r\n{KEY}Origin: https://app.example\r\n\r\n"), 1, "200"),
        ("HEAD", format!("HEAD /svc/v1/items/7 HTTP/1.1\r\nHost: x\r\n{KEY}\r\n"), 1, "200"),
        ("no credential", "GET /svc/v1/items/7 HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n\r\n".into(), 1, "401"),
        ("a wrong key", "GET /svc/v1/items/7 HTTP/1.1\r\nHost: x\r\napikey: wrong\r\n\r\n".into(), 1, "401"),
        ("a verb the resource lacks", format!("DELETE /svc/v1/items/7 HTTP/1.1\r\nHost: x\r\n{KEY}\r\n"), 1, "405"),
        ("no such resource", "GET /svc/v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "404"),
        ("no such API", "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "404"),
        ("an encoded dot segment, resolved out of the API", "GET /svc/v1/%2e%2e/x HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "404"),
        ("a dot segment with parameters", "GET /svc/v1/open/..;/x HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "400"),
        ("a mock", "GET /svc/v1/mock HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "201"),
        ("HEAD of a mock", "HEAD /svc/v1/mock HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "201"),
        ("a preflight", "OPTIONS /svc/v1/items/7 HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: apikey\r\n\r\n".into(), 1, "204"),
        ("a refused preflight", "OPTIONS /svc/v1/items/7 HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: PUT\r\n\r\n".into(), 1, "403"),
        ("a query, then close", "GET /svc/v1/open?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), 1, "200"),
        ("pipelined: an answer, a rejection, an answer", "GET /svc/v1/open?n=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: x\r\n\r\nGET /svc/v1/open?n=3 HTTP/1.1\r\nHost: x\r\n\r\n".into(), 3, "200"),
        ("a Content-Length body", "POST /svc/v1/open HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"b c\"}".into(), 1, "200"),
        ("a chunked body", "POST /svc/v1/open HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\n\r\n".into(), 1, "200"),
        ("a body over max_request_body", "POST /svc/v1/open HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n".into(), 1, "413"),
        ("the same, expecting 100-continue", "POST /svc/v1/open HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\nExpect: 100-continue\r\n\r\n".into(), 1, "413"),
        ("a chunked body over max_request_body", format!("POST /svc/v1/open HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{}\r\n0\r\n\r\n", "x".repeat(2048)), 1, "413"),
        ("no Host", "GET /svc/v1/open HTTP/1.1\r\n\r\n".into(), 1, "400"),
        ("a Host with a bad port", "GET /svc/v1/open HTTP/1.1\r\nHost: localhost:80abc\r\n\r\n".into(), 1, "400"),
        ("an upstream 103 before its answer", "GET /raw/v1/early-hints HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "103"),
        ("an upstream chunked answer with extensions and trailers", "GET /raw/v1/chunked HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "200"),
        ("an upstream 204 with Content-Length", "GET /raw/v1/no-content HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "204"),
        ("an upstream's duplicate equal Content-Length", "GET /raw/v1/twice HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "200"),
        ("an upstream's unknown transfer coding", "GET /raw/v1/gzip HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "502"),
        ("an upstream's conflicting lengths", "GET /raw/v1/conflict HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "502"),
        ("an upstream that is not HTTP", "GET /raw/v1/garbage HTTP/1.1\r\nHost: x\r\n\r\n".into(), 1, "502"),
    ];
    let mut differ = Vec::new();
    for (what, req, finals, status) in &rows {
        let a = conversation(&lane, req, *finals);
        let b = conversation(&pingora, req, *finals);
        assert!(a[0].0[0].starts_with(&format!("http/1.1 {status} ")), "{what}: {a:?}");
        assert_eq!(a.iter().filter(|(head, _)| !head[0].starts_with("http/1.1 1")).count(), *finals, "{what}: {a:?}");
        if a != b {
            differ.push(format!("{what}:\n  lane:    {a:?}\n  pingora: {b:?}"));
        }
    }
    assert!(differ.is_empty(), "{} of {} rows differ:\n{}", differ.len(), rows.len(), differ.join("\n"));
    assert!(lane_count(&lane).await >= 10);
    assert_eq!(lane_count(&pingora).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_decided_once_including_those_handed_to_pingora() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up.url()));
    let mut s = connect(&gw);
    let mut rest = Vec::new();
    let requests = [
        "GET /svc/v1/a HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /svc/v1/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "GET /svc/v1/c HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
        "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /svc/v1/d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    ];
    for req in requests {
        s.write_all(req.as_bytes()).unwrap();
        let (head, _) = read_response(&mut s, &mut rest);
        assert!(head.starts_with("http/1.1 200") || head.starts_with("http/1.1 404"), "{req}: {head}");
    }
    assert_eq!(metric(&gw, "gateway_request_decisions_total{exchange=\"lane\"}").await, 3, "the GET, the 404 and the small POST");
    assert_eq!(
        metric(&gw, "gateway_request_decisions_total{exchange=\"pingora\"}").await,
        2,
        "the chunked POST and the upgrade, decided by Pingora only"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absolute_form_target_reaches_the_upstream_in_origin_form_with_the_gateways_host() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up.url()));
    let raw = gw.raw("GET http://other.host/svc/v1/x?q=1 HTTP/1.1\r\nHost: other.host\r\nConnection: close\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let body = &raw[raw.find("\r\n\r\n").unwrap() + 4..];
    let echo: Echo = serde_json::from_str(body).unwrap();
    assert_eq!(echo.path, "/x?q=1");
    assert_eq!(echo.headers["host"], up.url().trim_start_matches("http://"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_hosts_dot_segments_with_parameters_and_oversized_bodies_never_reach_the_upstream() {
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start(&config(&up.url()));
    for (req, status, code) in [
        ("GET /svc/v1/x HTTP/1.1\r\n\r\n", "400", "request.malformed"),
        ("GET /svc/v1/x HTTP/1.1\r\nHost:\r\n\r\n", "400", "request.malformed"),
        ("GET /svc/v1/x HTTP/1.1\r\nHost: localhost:80abc\r\n\r\n", "400", "request.malformed"),
        ("GET /svc/v1/public/..;/admin/users HTTP/1.1\r\nHost: x\r\n\r\n", "400", "request.bad_path"),
        ("POST /svc/v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", "413", "request.body_too_large"),
        ("POST /svc/v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n", "413", "request.body_too_large"),
        // Handed to Pingora (HTTP/1.0 / chunked are not the lane's), refused there alike.
        ("GET /svc/v1/public/..;/admin HTTP/1.0\r\nHost: x\r\n\r\n", "400", "request.bad_path"),
    ] {
        let raw = gw.raw(req);
        assert!(raw.starts_with(&format!("HTTP/1.1 {status}")), "{req}: {raw}");
        assert!(!raw.contains("100 Continue"), "{req}: {raw}");
        let body = &raw[raw.find("\r\n\r\n").unwrap() + 4..];
        let problem: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{req}: {e}: {raw}"));
        assert_eq!(problem["code"], code, "{req}");
        assert_eq!(problem["status"].to_string(), status, "{req}");
    }
    // A body shorter than its Content-Length, then the client stops: never forwarded.
    let mut s = connect(&gw);
    s.write_all(b"POST /svc/v1/short HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_gets_408_and_a_204_carries_no_content_length() {
    let port = fixed_upstream(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").port;
    let gw = TestGateway::start(
        &config(&format!("http://127.0.0.1:{port}"))
            .replace("server: { threads: 1 }", "server: { threads: 1, client_body_timeout: 300ms, client_header_timeout: 300ms }"),
    );
    let mut s = connect(&gw);
    let mut rest = Vec::new();
    s.write_all(b"GET /svc/v1/x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut s, &mut rest);
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert!(body.is_empty());
    // A body that stops halfway: 408 from whoever read it, then the connection closes.
    s.write_all(b"POST /svc/v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc").unwrap();
    let (head, body) = read_response(&mut s, &mut rest);
    assert!(head.starts_with("http/1.1 408"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("request.timeout"));
    // A partial head is not held past the header timeout either.
    let mut s = connect(&gw);
    s.write_all(b"GET /svc/v1/x HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_line_without_a_reason_phrase_is_answered_with_the_standard_one() {
    let port = fixed_upstream(b"HTTP/1.1 200\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok").port;
    let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}")));
    let mut s = connect(&gw);
    let mut rest = Vec::new();
    s.write_all(b"GET /svc/v1/x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut s, &mut rest);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert_eq!(head.matches("content-length").count(), 1, "{head}");
    assert_eq!(body, b"ok");
}
