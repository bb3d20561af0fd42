//! End to end: the real binary and the real engine against `loadtest upstream` on ephemeral
//! 127.0.0.1 ports. Counts are asserted exactly; timings never are (beyond "it finished").

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use common::*;
use loadtest::cli::{Cli, Command};
use loadtest::upstream::{BackgroundUpstream, UpstreamConfig};

const LIMIT: Duration = Duration::from_secs(60);

fn plan(args: &[&str]) -> loadtest::engine::Plan {
    let mut argv = vec!["loadtest", "run"];
    argv.extend_from_slice(args);
    let Command::Run(run) = Cli::try_parse_from(argv).unwrap().command else { unreachable!() };
    run.load.plan(&run.url, Duration::from_secs(30)).unwrap()
}

#[test]
fn closed_loop_sends_exactly_n_requests_in_process() {
    let up = BackgroundUpstream::start("127.0.0.1:0".parse().unwrap(), UpstreamConfig { body_size: 64, delay: Duration::ZERO }, 1).unwrap();
    let url = format!("http://{}/x", up.addr);
    let p = plan(&[&url, "-n", "5000", "-c", "16", "--threads", "2", "--progress", "quiet"]);
    let r = loadtest::engine::run(p).unwrap();
    assert_eq!((r.requests, r.responses, r.errors), (5000, 5000, 0));
    assert_eq!(up.requests(), 5000, "the upstream saw exactly what the client counted");
    assert_eq!(r.status_counts["200"], 5000);
    assert_eq!(r.body_bytes_received, 5000 * 64);
    assert_eq!(r.latency.count, 5000);
    assert!(r.latency.min_us > 0.0 && r.latency.min_us <= r.latency.p50_us && r.latency.p50_us <= r.latency.max_us);
    assert_eq!(r.timeline.iter().map(|t| t.responses).sum::<u64>(), 5000);
    assert_eq!(up.stats.connections.load(Ordering::Relaxed), 16 + 1, "16 connections plus the preflight probe");
}

#[test]
fn open_loop_sends_exactly_n_requests_at_the_rate() {
    let up = BackgroundUpstream::start("127.0.0.1:0".parse().unwrap(), UpstreamConfig { body_size: 16, delay: Duration::ZERO }, 1).unwrap();
    let url = format!("http://{}/x", up.addr);
    // 1000 requests at 2000/s: half a second of pacing, split over two generator threads.
    let p = plan(&[&url, "-n", "1000", "-r", "2000", "-c", "8", "--threads", "2", "--progress", "quiet"]);
    let r = loadtest::engine::run(p).unwrap();
    assert_eq!((r.requests, r.responses, r.unsent), (1000, 1000, 0));
    assert_eq!(up.requests(), 1000);
    assert_eq!(r.mode, "open");
    assert!(r.send_lag.is_some());
    // Request 999 is due at 0.4995 s, so the run cannot have finished before that.
    assert!(r.measured_s >= 0.4995, "{}", r.measured_s);
}

#[test]
fn binary_run_against_binary_upstream_counts_exactly_and_writes_json() {
    let (up, addr) = spawn_upstream(&["--body-size", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let url = format!("http://{addr}/x");
    let out = run_bin(
        &["run", &url, "-n", "3000", "-c", "8", "-H", "X-Test: yes", "--json", json.to_str().unwrap(), "--progress", "lines"],
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("3,000 requests"), "{stdout}");
    let r = read_result(&json);
    assert_eq!(r["requests"], 3000);
    assert_eq!(r["status_counts"]["200"], 3000);
    assert_eq!(r["body_bytes_received"], 300_000);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["kind"], "run");
    let argv = report["meta"]["command"]["argv"].as_array().unwrap();
    assert!(argv.iter().any(|a| a == "X-Test: yes"), "the exact command is recorded");
    assert!(report["meta"]["command"]["line"].as_str().unwrap().contains("'X-Test: yes'"));
    assert!(report["meta"]["environment"]["cpus_allowed"].as_u64().unwrap() >= 1);
    let upstream_log = up.interrupt();
    assert!(upstream_log.contains("upstream: 3000 requests"), "{upstream_log}");
}

#[test]
fn scenario_mix_counts_expected_statuses_apart() {
    let (up, addr) = spawn_upstream(&[]);
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.yaml");
    std::fs::write(
        &scenario,
        r#"
name: throttled mix
variables:
  id: { random: { min: 1, max: 50 } }
requests:
  - { name: ok, weight: 1, path: "/items/{{id}}" }
  - { name: throttled, weight: 1, path: "/status/429", expect: [2xx, 429] }
  - { name: broken, weight: 1, method: POST, path: "/status/503", body: '{"id": {{id}}}' }
"#,
    )
    .unwrap();
    let json = dir.path().join("r.json");
    let url = format!("http://{addr}/");
    let out =
        run_bin(&["run", &url, "-n", "3000", "-c", "4", "--scenario", scenario.to_str().unwrap(), "--json", json.to_str().unwrap()], LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = read_result(&json);
    assert_eq!(r["requests"], 3000);
    let entries = r["entries"].as_array().unwrap();
    let by_name = |n: &str| entries.iter().find(|e| e["name"] == n).unwrap().clone();
    let (ok, throttled, broken) = (by_name("ok"), by_name("throttled"), by_name("broken"));
    // Every 429 of the throttled entry is expected; every 503 is not.
    assert_eq!(throttled["unexpected_responses"], 0);
    assert_eq!(throttled["expected_responses"], throttled["responses"]);
    assert_eq!(broken["expected_responses"], 0);
    assert_eq!(broken["status_counts"]["503"], broken["responses"]);
    let total: u64 = [&ok, &throttled, &broken].iter().map(|e| e["responses"].as_u64().unwrap()).sum();
    assert_eq!(total, 3000);
    assert_eq!(r["unexpected_responses"], broken["responses"]);
    assert!(text(&out.stdout).contains("unexpected statuses"), "a warning names the surprise");
    drop(up);
}

#[test]
fn progress_is_plain_lines_in_a_pipe_and_a_bar_on_a_terminal() {
    let (up, addr) = spawn_upstream(&[]);
    let url = format!("http://{addr}/x");
    // stderr is a pipe here: plain lines, no escape sequences.
    let out = run_bin(&["run", &url, "-n", "500", "-c", "2"], LIMIT);
    let err = text(&out.stderr);
    assert!(err.contains("done: 500 responses, 0 errors"), "{err}");
    assert!(!err.contains('\x1b'), "escape sequences in a pipe: {err:?}");
    // Under a pseudo-terminal (util-linux `script`), the live bar with its rate is drawn.
    let cmd = format!("{} run {url} -d 1500ms --warmup 0s -c 2", bin());
    let out = run_cmd(std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]), LIMIT);
    let tty = text(&out.stdout);
    assert!(tty.contains("req/s") && tty.contains("errors") && tty.contains('\x1b'), "{tty:?}");
    drop(up);
}

#[test]
fn the_example_scenario_loads_and_builds_requests() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/orders-mix.yaml");
    let s = loadtest::scenario::Scenario::load(&path, "127.0.0.1:8080").unwrap();
    assert_eq!(s.entries.len(), 3);
    assert_eq!(s.pool_sizes, vec![("bronze".to_string(), 2), ("gold".to_string(), 20)]);
    let mut b = s.builder(3);
    let mut out = Vec::new();
    for _ in 0..50 {
        s.next_request(&mut b, &mut out);
        assert!(out.starts_with(b"GET /orders/v1/order") || out.starts_with(b"POST /orders/v1/order"));
    }
}

#[test]
fn bad_input_gives_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bad_scenario = dir.path().join("bad.yaml");
    std::fs::write(&bad_scenario, "requests: [{ path: /x, wieght: 2 }]").unwrap();
    let refused = format!("http://127.0.0.1:{}/", free_port());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", &refused, "-n", "10"], "unreachable"),
        (vec!["run", "http://127.0.0.1:9/", "-H", "NoColon"], "expected 'Name: value'"),
        (vec!["run", "http://127.0.0.1:9/", "-d", "soon"], "invalid duration"),
        (vec!["run", "http://192.0.2.1/", "-n", "1"], "--allow-remote"),
        (vec!["run", "https://127.0.0.1/", "-n", "1"], "only http://"),
        (vec!["run", "http://127.0.0.1:9/", "--scenario", bad_scenario.to_str().unwrap()], "unknown field `wieght`"),
        (vec!["run", "http://127.0.0.1:9/", "--scenario", "/nonexistent.yaml"], "cannot read scenario file"),
        (vec!["run", "http://127.0.0.1:9/", "--body-file", "/nonexistent"], "cannot read --body-file"),
        (vec!["run", "http://127.0.0.1:9/", "-r", "0"], "rate must be"),
        (vec!["run", "http://127.0.0.1:9/", "-c", "0"], "at least 1"),
        (vec!["run", "http://127.0.0.1:9/", "--json", "/nonexistent-dir/r.json"], "does not exist"),
        (vec!["compare", "--target", "a=http://127.0.0.1:9/", "--target", "a=http://127.0.0.1:9/"], "unique"),
        (vec!["upstream", "--listen", "0.0.0.0:0"], "--allow-remote"),
    ];
    for (args, needle) in cases {
        let out = run_bin(&args, LIMIT);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: expected {needle:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    }
}

#[test]
fn compare_interleaves_rounds_and_reports_ratios() {
    let (fast, fast_addr) = spawn_upstream(&[]);
    let (slow, slow_addr) = spawn_upstream(&["--delay", "2ms"]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let html = dir.path().join("c.html");
    let a = format!("fast=http://{fast_addr}/x");
    let b = format!("slow=http://{slow_addr}/x");
    let out = run_bin(
        &[
            "compare",
            "--target",
            &a,
            "--target",
            &b,
            "--rounds",
            "2",
            "--order",
            "alternate",
            "-n",
            "400",
            "-c",
            "4",
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("RATIO slow/fast"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["kind"], "compare");
    let rounds = v["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    assert_eq!(rounds[0]["order"], serde_json::json!(["fast", "slow"]));
    assert_eq!(rounds[1]["order"], serde_json::json!(["slow", "fast"]));
    for round in rounds {
        for run in round["runs"].as_array().unwrap() {
            assert_eq!(run["result"]["requests"], 400);
        }
    }
    let slow_summary = &v["targets"][1];
    assert_eq!(slow_summary["samples"], 2);
    let ratio = slow_summary["ratio"]["median"].as_f64().unwrap();
    // 4 connections with a 2 ms delay cap the slow target near 2000/s, far below the fast one.
    assert!(ratio > 0.0 && ratio < 1.0, "{ratio}");
    assert_eq!(slow_summary["ratio"]["per_round"].as_array().unwrap().len(), 2);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"chart-rps-bars\"") && page.contains("<svg"));
    drop((fast, slow));
}

#[test]
fn report_command_rerenders_html_from_json() {
    let up = BackgroundUpstream::start("127.0.0.1:0".parse().unwrap(), UpstreamConfig { body_size: 8, delay: Duration::ZERO }, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let html = dir.path().join("again.html");
    let url = format!("http://{}/", up.addr);
    let out = run_bin(&["run", &url, "-n", "200", "-c", "2", "--json", json.to_str().unwrap()], LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run_bin(&["report", json.to_str().unwrap(), "--html", html.to_str().unwrap()], LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"chart-percentiles\""));
    // Self-contained: nothing is fetched from anywhere.
    for external in ["<script", "<link", "src=\"http", "href=\"http", "@import"] {
        assert!(!page.contains(external), "found {external}");
    }
}

#[test]
fn bench_starts_and_stops_everything_with_a_stand_in_gateway() {
    // The "gateway" is a script that ignores `run --config FILE` and starts a second upstream
    // where the gateway should listen: enough to exercise start-up, readiness, CPU accounting,
    // the rounds and the stop through the process group.
    let dir = tempfile::tempdir().unwrap();
    let gw_port = free_port();
    let up_port = free_port();
    let script = dir.path().join("fake-gateway");
    std::fs::write(&script, format!("#!/bin/sh\nexec '{}' upstream --listen 127.0.0.1:{gw_port} --threads 1\n", bin())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = dir.path().join("bench.yaml");
    std::fs::write(&config, "# unused by the stand-in\n").unwrap();
    let out_dir = dir.path().join("out");
    let gw_url = format!("http://127.0.0.1:{gw_port}/bench/v1/x");
    let up_addr = format!("127.0.0.1:{up_port}");
    let out = run_bin(
        &[
            "bench",
            "--gateway",
            script.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--gateway-url",
            &gw_url,
            "--upstream",
            &up_addr,
            "--scenarios",
            "direct,passthrough",
            "--rounds",
            "1",
            "-n",
            "500",
            "-c",
            "4",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let run_dir = std::fs::read_dir(&out_dir).unwrap().next().unwrap().unwrap().path();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(v["title"], "bench");
    let names: Vec<&str> = v["targets"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["direct", "passthrough"]);
    let passthrough = &v["rounds"][0]["runs"][1];
    assert_eq!(passthrough["result"]["requests"], 500);
    assert!(passthrough["cpu_us_per_request"]["gateway"].as_f64().unwrap() > 0.0);
    assert!(passthrough["cpu_us_per_request"]["upstream"].as_f64().is_some());
    // What else the machine did is recorded for every sample (foreign CPU and steal).
    assert!(passthrough["machine"]["foreign_cpu_percent"].is_number(), "{passthrough}");
    assert!(passthrough["machine"]["steal_percent"].is_number());
    assert!(passthrough["clean"].is_boolean());
    assert!(run_dir.join("report.html").is_file());
    assert!(run_dir.join("gateway.log").is_file() && run_dir.join("upstream.log").is_file());
    // Everything it started is gone: both ports are free again.
    for port in [gw_port, up_port] {
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "port {port} still taken");
    }
}

#[test]
fn bench_without_a_gateway_binary_says_how_to_build_it() {
    let out = run_bin(&["bench", "--gateway", "/nonexistent/gateway", "--rounds", "1", "-n", "10"], LIMIT);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cargo build --release -p gateway"), "{}", text(&out.stderr));
}
