//! Response caching through the real gateway, on both exchanges, with a counting upstream whose
//! body says which fetch it is (`n=<count>`): a repeated body is a cache hit. The upstream
//! answers with what the request's `x-*` fields ask for (`x-cc` → `Cache-Control`, `x-vary` →
//! `Vary`, `x-status`, `x-expires`, `x-cookie`), which are not part of any key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Fields a test asks the upstream for; `fail` makes it answer 503 (or close, `drop`).
#[derive(Default)]
struct Mode {
    fail: AtomicBool,
    drop: AtomicBool,
}

fn upstream(mode: Arc<Mode>, delay: Duration) -> RawUpstream {
    let count = Arc::new(AtomicUsize::new(0));
    raw_upstream(move |_, head| {
        let text = String::from_utf8_lossy(head).to_string();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")).then(|| l[name.len() + 1..].trim().to_string()))
        };
        if mode.drop.load(Ordering::SeqCst) {
            return Reply::Close;
        }
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let status = if mode.fail.load(Ordering::SeqCst) { "503".to_string() } else { field("x-status").unwrap_or_else(|| "200".into()) };
        let mut extra = String::new();
        for (asked, sent) in [("x-cc", "Cache-Control"), ("x-vary", "Vary"), ("x-expires", "Expires")] {
            if let Some(v) = field(asked) {
                extra.push_str(&format!("{sent}: {v}\r\n"));
            }
        }
        if field("x-cookie").is_some() {
            extra.push_str("Set-Cookie: session=abc\r\n");
        }
        let body = match field("x-size") {
            Some(size) => "b".repeat(size.parse().unwrap()),
            None => format!("n={n}"),
        };
        let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nX-Upstream: yes\r\n{extra}\r\n{body}", body.len());
        if delay.is_zero() {
            Reply::Send(answer.into_bytes())
        } else {
            Reply::After(delay, answer.into_bytes())
        }
    })
}

fn config(up: &str, fast: bool, cache: &str) -> String {
    format!(
        r#"server: {{ threads: 2, upstream_fast_path: {fast} }}
access_log: {{ enabled: false }}
listeners: [{{ address: "127.0.0.1:{{port}}" }}]
admin: {{ address: "127.0.0.1:{{admin}}" }}
{cache}
applications:
  - {{ id: app-a, api_keys: [{{ sha256: "{ka}" }}] }}
  - {{ id: app-b, api_keys: [{{ sha256: "{kb}" }}] }}
apis:
  - name: c
    context: /c
    version: v1
    endpoint: {{ targets: [{{ url: "{up}" }}] }}
    cache: {{ ttl: 60s }}
    resources:
      - {{ path: /short, methods: [GET], cache: {{ ttl: 1s }} }}
      - {{ path: /sie, methods: [GET], cache: {{ ttl: 1s, stale_if_error: 60s }} }}
      - {{ path: /swr, methods: [GET], cache: {{ ttl: 1s, stale_while_revalidate: 30s }} }}
      - {{ path: /tenant, methods: [GET], cache: {{ vary: [x-tenant] }} }}
      - {{ path: /off, methods: [GET], cache: {{ enabled: false }} }}
      - {{ path: /ignore, methods: [GET], cache: {{ request_cache_control: ignore }} }}
      - {{ path: "/*", methods: [ANY] }}
  - name: d
    context: /d
    version: v1
    endpoint: {{ targets: [{{ url: "{up}" }}] }}
    cache: {{ ttl: 60s }}
    resources: [{{ path: "/*", methods: [GET] }}]
  - name: keys
    context: /keys
    version: v1
    endpoint: {{ targets: [{{ url: "{up}" }}] }}
    auth: {{ api_keys: {{ header: apikey }} }}
    cache: {{ ttl: 60s }}
    resources:
      - {{ path: /mine, methods: [GET] }}
      - {{ path: /everyone, methods: [GET], cache: {{ shared: true }} }}
"#,
        ka = sha256_hex("key-a"),
        kb = sha256_hex("key-b"),
    )
}

fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// One request on a fresh connection: (status, head in lower case, body).
fn send(gw: &TestGateway, method: &str, target: &str, fields: &str) -> (u16, String, String) {
    let mut s = connect(gw);
    std::io::Write::write_all(&mut s, format!("{method} {target} HTTP/1.1\r\nHost: api.example\r\n{fields}\r\n").as_bytes()).unwrap();
    let (head, body) = read_response_to(&mut s, &mut Vec::new(), method == "HEAD");
    (head[9..12].parse().unwrap(), head, String::from_utf8(body).unwrap())
}

fn get(gw: &TestGateway, target: &str, fields: &str) -> (String, String) {
    let (status, head, body) = send(gw, "GET", target, fields);
    assert!(status < 500 || head.contains("x-cache: stale") || head.contains("x-cache: miss"), "{target}: {head}{body}");
    (x_cache(&head), body)
}

fn x_cache(head: &str) -> String {
    head.lines().find_map(|l| l.strip_prefix("x-cache: ")).map_or("none".to_string(), |v| v.trim().to_ascii_uppercase())
}

fn field<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")[..])).map(str::trim)
}

#[tokio::test(flavor = "multi_thread")]
async fn hits_misses_expiry_and_keys_on_both_exchanges() {
    for fast in [true, false] {
        let up = upstream(Arc::default(), Duration::ZERO);
        let gw = TestGateway::start(&config(&up.url(), fast, ""));
        let (status, head, body) = send(&gw, "GET", "/c/v1/menu?b=2&a=1", "");
        assert_eq!((status, x_cache(&head).as_str(), body.as_str()), (200, "MISS", "n=1"), "{head}");
        assert_eq!(field(&head, "x-upstream"), Some("yes"));
        // The same request in other words is the same entry: query order, host case.
        let (status, head, body) = send(&gw, "GET", "/c/v1/menu?a=1&b=2", "");
        assert_eq!((status, x_cache(&head).as_str(), body.as_str()), (200, "HIT", "n=1"), "fast path {fast}: {head}");
        assert_eq!(field(&head, "age"), Some("0"), "{head}");
        assert_eq!(field(&head, "content-length"), Some("3"));
        assert_eq!(field(&head, "x-upstream"), Some("yes"), "the stored head is served");
        assert!(field(&head, "x-request-id").is_some_and(|v| !v.is_empty()));
        assert_eq!(head.matches("\r\ndate: ").count(), 1, "{head}");
        // HEAD is served from GET's entry, without a body.
        let (status, head, body) = send(&gw, "HEAD", "/c/v1/menu?a=1&b=2", "");
        assert_eq!((status, x_cache(&head).as_str(), body.as_str()), (200, "HIT", ""), "{head}");
        assert_eq!(field(&head, "content-length"), Some("3"));
        assert_eq!(up.requests.load(Ordering::SeqCst), 1, "one fetch so far");
        // A different query, path or host is another entry.
        assert_eq!(get(&gw, "/c/v1/menu?a=1", ""), ("MISS".into(), "n=2".into()));
        assert_eq!(get(&gw, "/c/v1/menu/", ""), ("MISS".into(), "n=3".into()));
        // Expiry: a 1 s TTL.
        assert_eq!(get(&gw, "/c/v1/short", ""), ("MISS".into(), "n=4".into()));
        assert_eq!(get(&gw, "/c/v1/short", ""), ("HIT".into(), "n=4".into()));
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(get(&gw, "/c/v1/short", ""), ("EXPIRED".into(), "n=5".into()));
        assert_eq!(get(&gw, "/c/v1/short", ""), ("HIT".into(), "n=5".into()));
        // Not cached: other methods, and a resource with `enabled: false`.
        let (status, head, _) = send(&gw, "POST", "/c/v1/menu?a=1&b=2", "Content-Length: 0\r\n");
        assert_eq!((status, x_cache(&head).as_str()), (200, "none"), "{head}");
        assert_eq!(get(&gw, "/c/v1/off", ""), ("none".into(), "n=7".into()));
        assert_eq!(get(&gw, "/c/v1/off", ""), ("none".into(), "n=8".into()));
        let hits = metric(&gw, "gateway_cache_requests_total{api=\"c\",result=\"hit\"}").await;
        assert_eq!(hits, 4, "fast path {fast}");
        assert_eq!(metric(&gw, "gateway_cache_requests_total{api=\"c\",result=\"miss\"}").await, 4);
        assert_eq!(metric(&gw, "gateway_cache_requests_total{api=\"c\",result=\"expired\"}").await, 1);
        if fast {
            assert!(lane_count(&gw).await >= 4, "the lane serves fresh hits");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_control_decides_what_is_stored() {
    for fast in [true, false] {
        let up = upstream(Arc::default(), Duration::ZERO);
        let gw = TestGateway::start(&config(&up.url(), fast, ""));
        let past = "Thu, 01 Jan 2015 00:00:00 GMT";
        let rows: &[(&str, String, &str)] = &[
            ("no-store", "x-cc: no-store\r\n".into(), "MISS"),
            ("private", "x-cc: private, max-age=60\r\n".into(), "MISS"),
            ("no-cache", "x-cc: no-cache\r\n".into(), "MISS"),
            ("max-age-0", "x-cc: max-age=0\r\n".into(), "MISS"),
            ("s-maxage", "x-cc: max-age=0, s-maxage=60\r\n".into(), "HIT"),
            ("max-age", "x-cc: max-age=60\r\n".into(), "HIT"),
            ("expires-past", format!("x-expires: {past}\r\n"), "MISS"),
            ("set-cookie", "x-cookie: 1\r\n".into(), "MISS"),
            ("status-500", "x-status: 500\r\n".into(), "MISS"),
            ("status-404", "x-status: 404\r\n".into(), "HIT"),
            ("status-206", "x-status: 206\r\n".into(), "MISS"),
            ("vary-star", "x-vary: *\r\n".into(), "MISS"),
        ];
        for (path, fields, second) in rows {
            let target = format!("/c/v1/{path}");
            let (_, head, first) = send(&gw, "GET", &target, fields);
            assert_eq!(x_cache(&head), "MISS", "{path}: {head}");
            let (_, head, again) = send(&gw, "GET", &target, fields);
            assert_eq!(x_cache(&head), *second, "fast path {fast}, {path}: {head}");
            assert_eq!(first == again, *second == "HIT", "{path}");
        }
        assert!(metric(&gw, "gateway_cache_not_stored_total{api=\"c\",reason=\"set_cookie\"}").await >= 2);
        assert!(metric(&gw, "gateway_cache_not_stored_total{api=\"c\",reason=\"private\"}").await >= 2);
        // The request's own Cache-Control: no-store bypasses, no-cache refetches and stores.
        assert_eq!(get(&gw, "/c/v1/req", "Cache-Control: no-store\r\n").0, "BYPASS");
        let (x, one) = get(&gw, "/c/v1/req", "");
        assert_eq!(x, "MISS", "a bypassed response was not stored");
        assert_eq!(get(&gw, "/c/v1/req", ""), ("HIT".into(), one.clone()));
        let (x, two) = get(&gw, "/c/v1/req", "Cache-Control: no-cache\r\n");
        assert!(x == "MISS" && two != one, "{x} {two}");
        assert_eq!(get(&gw, "/c/v1/req", ""), ("HIT".into(), two.clone()), "the refetched response was stored");
        assert_eq!(get(&gw, "/c/v1/req", "Pragma: no-cache\r\n").0, "MISS");
        // ... unless the resource ignores it.
        let (_, kept) = get(&gw, "/c/v1/ignore", "");
        assert_eq!(get(&gw, "/c/v1/ignore", "Cache-Control: no-cache\r\n"), ("HIT".into(), kept));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn consumers_never_see_each_others_private_entries() {
    for fast in [true, false] {
        let up = upstream(Arc::default(), Duration::ZERO);
        let gw = TestGateway::start(&config(&up.url(), fast, ""));
        let (a, b) = ("apikey: key-a\r\n", "apikey: key-b\r\n");
        let (x, a1) = get(&gw, "/keys/v1/mine", a);
        assert_eq!(x, "MISS");
        assert_eq!(get(&gw, "/keys/v1/mine", a), ("HIT".into(), a1.clone()));
        let (x, b1) = get(&gw, "/keys/v1/mine", b);
        assert!(x == "MISS" && b1 != a1, "app-b never gets app-a's entry: {x} {b1}");
        assert_eq!(get(&gw, "/keys/v1/mine", b), ("HIT".into(), b1));
        assert_eq!(get(&gw, "/keys/v1/mine", a), ("HIT".into(), a1));
        // A credential is still required for a hit.
        let (status, head, _) = send(&gw, "GET", "/keys/v1/mine", "");
        assert_eq!((status, x_cache(&head).as_str()), (401, "none"));
        let (status, _, _) = send(&gw, "GET", "/keys/v1/mine", "apikey: wrong\r\n");
        assert_eq!(status, 401);
        // A shared resource is shared only when the response says a shared cache may keep it
        // (RFC 9111 §3.5) ...
        assert_eq!(get(&gw, "/keys/v1/everyone", a).0, "MISS");
        assert_eq!(get(&gw, "/keys/v1/everyone", a).0, "MISS");
        // ... and then by every consumer.
        let (_, shared) = get(&gw, "/keys/v1/everyone?p=1", &format!("{a}x-cc: public, max-age=60\r\n"));
        assert_eq!(get(&gw, "/keys/v1/everyone?p=1", b), ("HIT".into(), shared));
        // On an API that checks no credential, each Authorization value is its own consumer,
        // and a response with Set-Cookie may be kept for it.
        let (x, t1) = get(&gw, "/c/v1/profile", "Authorization: Bearer one\r\nx-cookie: 1\r\n");
        assert_eq!(x, "MISS");
        let (x, t2) = get(&gw, "/c/v1/profile", "Authorization: Bearer two\r\n");
        assert!(x == "MISS" && t1 != t2);
        let (status, head, body) = send(&gw, "GET", "/c/v1/profile", "Authorization: Bearer one\r\n");
        assert_eq!((status, x_cache(&head).as_str(), body), (200, "HIT", t1));
        assert_eq!(field(&head, "set-cookie"), Some("session=abc"), "a consumer's own entry keeps its cookie");
        assert_eq!(get(&gw, "/c/v1/profile", "").0, "MISS", "an anonymous request shares no consumer's entry");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn vary_from_the_response_and_the_config_make_variants() {
    for fast in [true, false] {
        let up = upstream(Arc::default(), Duration::ZERO);
        let gw = TestGateway::start(&config(&up.url(), fast, ""));
        let v = "x-vary: Accept-Language\r\n";
        let (x, en) = get(&gw, "/c/v1/i18n", &format!("{v}Accept-Language: en\r\n"));
        assert_eq!(x, "MISS");
        let (x, fr) = get(&gw, "/c/v1/i18n", &format!("{v}Accept-Language: fr\r\n"));
        assert!(x == "MISS" && fr != en, "{x}");
        assert_eq!(get(&gw, "/c/v1/i18n", &format!("{v}Accept-Language: en\r\n")), ("HIT".into(), en), "fast path {fast}");
        assert_eq!(get(&gw, "/c/v1/i18n", &format!("{v}Accept-Language: fr\r\n")), ("HIT".into(), fr.clone()));
        let (x, none) = get(&gw, "/c/v1/i18n", v);
        assert!(x == "MISS" && none != fr, "no Accept-Language is its own variant");
        // The configured `vary: [x-tenant]`.
        let (_, t1) = get(&gw, "/c/v1/tenant", "x-tenant: one\r\n");
        let (x, t2) = get(&gw, "/c/v1/tenant", "x-tenant: two\r\n");
        assert!(x == "MISS" && t1 != t2);
        assert_eq!(get(&gw, "/c/v1/tenant", "x-tenant: one\r\n"), ("HIT".into(), t1));
    }
}

async fn purge(gw: &TestGateway, path: &str) -> (u16, serde_json::Value) {
    let r = client().delete(gw.admin_url(path)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_by_url_by_api_and_all_take_effect_at_once() {
    let up = upstream(Arc::default(), Duration::ZERO);
    let gw = TestGateway::start(&config(&up.url(), true, ""));
    for target in ["/c/v1/menu?b=2&a=1", "/c/v1/other", "/d/v1/x"] {
        assert_eq!(get(&gw, target, "").0, "MISS");
        assert_eq!(get(&gw, target, "").0, "HIT");
    }
    let (status, body) = purge(&gw, "/v1/cache?url=%2Fc%2Fv1%2Fmenu%3Fa%3D1%26b%3D2").await;
    assert_eq!((status, body["purged"].as_u64(), body["scope"].as_str()), (200, Some(1), Some("url")), "{body}");
    assert_eq!(get(&gw, "/c/v1/menu?a=1&b=2", "").0, "MISS");
    assert_eq!(get(&gw, "/c/v1/other", "").0, "HIT");
    let (status, body) = purge(&gw, "/v1/cache/apis/c").await;
    assert_eq!((status, body["purged"].as_u64()), (200, Some(2)), "{body}");
    assert_eq!(get(&gw, "/c/v1/other", "").0, "MISS");
    assert_eq!(get(&gw, "/d/v1/x", "").0, "HIT", "another API's entries stay");
    let (status, body) = purge(&gw, "/v1/cache").await;
    assert_eq!((status, body["scope"].as_str()), (200, Some("all")));
    assert_eq!(body["purged"].as_u64(), Some(2), "/c/v1/other (fetched again) and /d/v1/x: {body}");
    assert_eq!(get(&gw, "/d/v1/x", "").0, "MISS");
    assert_eq!(metric(&gw, "gateway_cache_purged_total{scope=\"api\"}").await, 2);
    let (status, body) = purge(&gw, "/v1/cache/apis/nope").await;
    assert_eq!((status, body["status"].as_u64()), (404, Some(404)), "{body}");
    let (status, body) = purge(&gw, "/v1/cache?url=/nowhere/v9/x").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("cache.bad_url")), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_hundred_concurrent_misses_make_one_upstream_request() {
    let up = upstream(Arc::default(), Duration::from_millis(400));
    let gw = TestGateway::start(&config(&up.url(), true, "cache: { lock_timeout: 5s }"));
    let url = gw.url("/c/v1/hot");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            // A client each: a hundred connections at once.
            let r = reqwest::Client::new().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), (200, "n=1".to_string()));
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 1, "the cache lock let one request through");
    assert!(metric(&gw, "gateway_cache_lock_waits_total{api=\"c\"}").await >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_entries_are_served_on_upstream_errors_and_while_revalidating() {
    for fast in [true, false] {
        let mode = Arc::new(Mode::default());
        let up = upstream(mode.clone(), Duration::ZERO);
        let gw = TestGateway::start(&config(&up.url(), fast, ""));
        let (_, first) = get(&gw, "/c/v1/sie", "");
        let (_, short) = get(&gw, "/c/v1/short", "");
        std::thread::sleep(Duration::from_millis(2100));
        mode.fail.store(true, Ordering::SeqCst);
        assert_eq!(get(&gw, "/c/v1/sie", ""), ("STALE".into(), first.clone()), "fast path {fast}: a 503 is answered stale");
        // Without stale_if_error the upstream's 503 goes through.
        let (status, head, _) = send(&gw, "GET", "/c/v1/short", "");
        assert_eq!(status, 503, "{head}");
        mode.fail.store(false, Ordering::SeqCst);
        mode.drop.store(true, Ordering::SeqCst);
        assert_eq!(get(&gw, "/c/v1/sie", ""), ("STALE".into(), first), "a broken upstream is answered stale");
        mode.drop.store(false, Ordering::SeqCst);
        let _ = short;

        // stale-while-revalidate: the stale entry at once, one background refresh.
        let (_, one) = get(&gw, "/c/v1/swr", "");
        std::thread::sleep(Duration::from_millis(2100));
        let before = up.requests.load(Ordering::SeqCst);
        assert_eq!(get(&gw, "/c/v1/swr", ""), ("STALE".into(), one.clone()));
        wait_for("the background refresh", Duration::from_secs(5), || up.requests.load(Ordering::SeqCst) == before + 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (x, body) = get(&gw, "/c/v1/swr", "");
            if x == "HIT" {
                assert_ne!(body, one, "the refreshed response");
                break;
            }
            assert!(Instant::now() < deadline, "never refreshed: {x}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(up.requests.load(Ordering::SeqCst), before + 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_budget_holds_and_large_objects_stream_through() {
    let up = upstream(Arc::default(), Duration::ZERO);
    let gw = TestGateway::start(&config(&up.url(), true, "cache: { max_memory: 64KiB, max_object_size: 8KiB }"));
    for i in 0..300 {
        let (x, body) = get(&gw, &format!("/d/v1/item/{i}"), "x-size: 2000\r\n");
        assert_eq!((x.as_str(), body.len()), ("MISS", 2000));
    }
    let bytes = metric(&gw, "gateway_cache_bytes").await;
    assert!(bytes > 0 && bytes <= 64 * 1024 + 64 * 1024 / 3, "{bytes} bytes held");
    assert!(metric(&gw, "gateway_cache_evictions_total").await > 0);
    // Over max_object_size: served whole, never stored.
    for _ in 0..2 {
        let (x, body) = get(&gw, "/d/v1/big", "x-size: 20000\r\n");
        assert_eq!((x.as_str(), body.len()), ("MISS", 20000));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_entries_and_new_cache_settings_start_fresh() {
    let up = upstream(Arc::default(), Duration::ZERO);
    let text = config(&up.url(), true, "");
    let gw = TestGateway::start(&text);
    let (_, c) = get(&gw, "/c/v1/keep", "");
    let (_, d) = get(&gw, "/d/v1/keep", "");
    // An unrelated change (a new API) keeps every entry.
    let more = format!(
        "{text}  - {{ name: e, context: /e, version: v1, endpoint: {{ targets: [{{ url: \"{}\" }}] }}, resources: [{{ path: \"/*\" }}] }}\n",
        up.url()
    );
    gw.write_config(&more);
    wait_for_async("revision 2", Duration::from_secs(10), async || metric(&gw, "gateway_config_revision").await == 2).await;
    assert_eq!(get(&gw, "/c/v1/keep", ""), ("HIT".into(), c.clone()));
    assert_eq!(get(&gw, "/d/v1/keep", ""), ("HIT".into(), d.clone()));
    // API d's TTL changes: its entries are not served any more; c's are.
    gw.write_config(&more.replacen(
        "cache: { ttl: 60s }\n    resources: [{ path: \"/*\", methods: [GET] }]",
        "cache: { ttl: 90s }\n    resources: [{ path: \"/*\", methods: [GET] }]",
        1,
    ));
    wait_for_async("revision 3", Duration::from_secs(10), async || metric(&gw, "gateway_config_revision").await == 3).await;
    assert_eq!(get(&gw, "/c/v1/keep", ""), ("HIT".into(), c));
    assert_eq!(get(&gw, "/d/v1/keep", "").0, "MISS");
}
