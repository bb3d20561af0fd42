//! Hot reload under load: a bounded load over 64 connections while the config is replaced
//! at least 200 times through the admin API and the file. Zero failed requests, and every
//! response comes wholly from one config revision (its body, headers and upstream path all
//! name the same revision).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 64;
const MIN_REQUESTS: usize = 20_000;
const API_RELOADS: usize = 150;
const FILE_RELOADS: usize = 50;

fn config(rev: usize, up: &TestUpstream) -> String {
    format!(
        r#"access_log: {{ enabled: false }}
listeners: [{{ address: "127.0.0.1:{{port}}" }}]
admin: {{ address: "127.0.0.1:{{admin}}" }}
apis:
  - name: mock
    context: /mock
    version: v1
    resources:
      - path: /r
        mock: {{ headers: {{ x-rev: "{rev}" }}, body: "rev-{rev}" }}
  - name: proxied
    context: /proxied
    version: v1
    state: deprecated
    deprecation: {{ link: "https://docs.example/{rev}" }}
    endpoint: {{ targets: [{{ url: "{up}/base{rev}" }}] }}
    resources: [{{ path: /x, methods: [GET] }}]
"#,
        up = up.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_failures_and_whole_responses_across_200_reloads() {
    let up = TestUpstream::start("up").await;
    let gw = Arc::new(TestGateway::start(&config(0, &up)));
    let client =
        reqwest::Client::builder().no_proxy().pool_max_idle_per_host(CONNECTIONS).timeout(Duration::from_secs(10)).build().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reloading = Arc::new(AtomicBool::new(true));
    let deadline = Instant::now() + Duration::from_secs(120);

    let mut tasks = Vec::new();
    for t in 0..CONNECTIONS {
        let (client, gw, done, failures, reloading) = (client.clone(), gw.clone(), done.clone(), failures.clone(), reloading.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            // Bounded: stops once reloads are over and the minimum count is reached, or at the deadline.
            while (reloading.load(Ordering::Relaxed) || done.load(Ordering::Relaxed) < MIN_REQUESTS) && Instant::now() < deadline {
                i += 1;
                let proxied = (t + i).is_multiple_of(2);
                let url = if proxied { gw.url("/proxied/v1/x") } else { gw.url("/mock/v1/r") };
                let outcome = match client.get(&url).send().await {
                    Err(e) => Err(format!("transport error: {e}")),
                    Ok(r) if r.status() != 200 => Err(format!("status {}", r.status())),
                    Ok(r) => {
                        let headers = r.headers().clone();
                        let body = r.text().await.unwrap_or_default();
                        if proxied {
                            let link = headers.get("link").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                            let rev = link.trim_start_matches("<https://docs.example/").split('>').next().unwrap_or("?").to_string();
                            let e: Result<Echo, _> = serde_json::from_str(&body);
                            match e {
                                Ok(e) if e.path == format!("/base{rev}/x") => Ok(()),
                                Ok(e) => Err(format!("mixed revisions: link says {rev}, upstream path {}", e.path)),
                                Err(err) => Err(format!("bad body {err}: {body}")),
                            }
                        } else {
                            let rev = headers.get("x-rev").and_then(|v| v.to_str().ok()).unwrap_or("?");
                            if body == format!("rev-{rev}") {
                                Ok(())
                            } else {
                                Err(format!("mixed revisions: header {rev}, body {body}"))
                            }
                        }
                    }
                };
                done.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = outcome {
                    failures.lock().unwrap().push(e);
                }
            }
        }));
    }

    // The reloader: API PUTs interleaved with file rewrites (each waited for, so none is
    // folded into the next by the watcher's debounce).
    let admin = client.clone();
    let status = |admin: reqwest::Client, gw: Arc<TestGateway>| async move {
        let s: serde_json::Value = admin.get(gw.admin_url("/v1/status")).send().await.unwrap().json().await.unwrap();
        s["revision"].as_u64().unwrap()
    };
    let mut rev = 0;
    for k in 0..(API_RELOADS + FILE_RELOADS) {
        rev += 1;
        let text = config(rev, &up);
        if k % 4 == 3 {
            let before = status(admin.clone(), gw.clone()).await;
            gw.write_config(&text);
            let started = Instant::now();
            while status(admin.clone(), gw.clone()).await == before {
                assert!(started.elapsed() < Duration::from_secs(10), "file reload {rev} not applied");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            let body = text.replace("{port}", &gw.port.to_string()).replace("{admin}", &gw.admin_port.to_string());
            let r = admin.put(gw.admin_url("/v1/config")).header("content-type", "application/yaml").body(body).send().await.unwrap();
            assert_eq!(r.status(), 200, "reload {rev}: {}", r.text().await.unwrap());
        }
    }
    reloading.store(false, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let total = done.load(Ordering::Relaxed);
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert!(failures.is_empty(), "{} of {total} requests failed; first: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert!(total >= MIN_REQUESTS, "only {total} requests");
    let final_rev = status(admin.clone(), gw.clone()).await;
    assert!(final_rev > (API_RELOADS + FILE_RELOADS) as u64, "revision {final_rev}");
    eprintln!("{total} requests over {CONNECTIONS} connections, {} reloads, 0 failures", API_RELOADS + FILE_RELOADS);
}
