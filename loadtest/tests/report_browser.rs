//! The HTML reports, rendered by a real headless browser.
//!
//! Needs the Debian package `chromium` (`apt-get install -y chromium`); without it the test
//! fails and says so, rather than passing without having looked. For each report it checks:
//! * `--dump-dom`: the page parses, and every chart is an inline `<svg>` inside its figure;
//! * `--screenshot`: a PNG of the requested size exists and is clearly more than a blank page
//!   (compared with a screenshot of an empty page taken the same way).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use common::*;
use loadtest::cli::{Cli, Command as Sub};
use loadtest::report_json::{Meta, Report, RunReport};
use loadtest::upstream::{BackgroundUpstream, UpstreamConfig};

const CHROMIUM: &str = "/usr/bin/chromium";
const WIDTH: u32 = 1200;
const HEIGHT: u32 = 2000;

fn chromium() -> &'static str {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} not found: the report test needs a real browser. Install the Debian package `chromium` \
         (apt-get update && apt-get install -y chromium)"
    );
    CHROMIUM
}

/// Runs headless chromium with the flags of the test plan plus `extra`, on `page`.
fn chromium_run(profile: &Path, extra: &[String], page: &Path) -> std::process::Output {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--window-size={WIDTH},{HEIGHT}"))
    .args(extra)
    .arg(format!("file://{}", page.display()));
    run_cmd(&mut cmd, Duration::from_secs(120))
}

/// Takes a screenshot and returns its size in bytes after checking it is a PNG of the window size.
fn screenshot(profile: &Path, page: &Path, png: &Path) -> u64 {
    let out = chromium_run(profile, &[format!("--screenshot={}", png.display())], page);
    assert!(png.is_file(), "no screenshot written for {}:\n{}", page.display(), text(&out.stderr));
    let bytes = std::fs::read(png).unwrap();
    assert!(!bytes.is_empty(), "empty screenshot for {}", page.display());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // IHDR: width and height, big-endian, right after the chunk header.
    let w = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let h = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    assert_eq!((w, h), (WIDTH, HEIGHT), "screenshot size");
    bytes.len() as u64
}

fn dump_dom(profile: &Path, page: &Path) -> String {
    let out = chromium_run(profile, &["--dump-dom".to_string()], page);
    let dom = text(&out.stdout);
    assert!(dom.contains("</html>"), "no DOM from chromium:\n{}", text(&out.stderr));
    dom
}

/// The inner markup of the element with `id`, up to its closing `</figure>`.
fn figure<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no element #{id} in the DOM"));
    let end = dom[start..].find("</figure>").map(|e| start + e).unwrap_or(dom.len());
    &dom[start..end]
}

fn assert_chart(dom: &str, id: &str) {
    let f = figure(dom, id);
    assert!(f.contains("<svg"), "#{id} has no inline <svg>");
    assert!(f.contains("<text"), "#{id} has no axis labels");
    assert!(f.contains("<polyline") || f.contains("<path") || f.contains("<rect"), "#{id} draws nothing");
}

fn run_report(url: &str, extra: &[&str]) -> loadtest::engine::RunResult {
    let mut argv = vec!["loadtest", "run", url, "--progress", "quiet"];
    argv.extend_from_slice(extra);
    let Sub::Run(run) = Cli::try_parse_from(argv).unwrap().command else { unreachable!() };
    loadtest::engine::run(run.load.plan(&run.url, Duration::from_secs(2)).unwrap()).unwrap()
}

fn write_page(dir: &Path, name: &str, report: &Report) -> PathBuf {
    let path = dir.join(name);
    loadtest::report_html::write(&path, report).unwrap();
    path
}

#[test]
fn reports_render_in_a_real_browser_with_their_charts() {
    let chromium = chromium();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    let up = BackgroundUpstream::start("127.0.0.1:0".parse().unwrap(), UpstreamConfig { body_size: 64, delay: Duration::ZERO }, 1).unwrap();
    let url = format!("http://{}/x", up.addr);

    // A run report with a few timeline points (closed loop, 1.5 s measured, 0.5 s slots).
    let result = run_report(&url, &["-d", "1500ms", "--warmup", "200ms", "-c", "4", "--interval", "500ms"]);
    assert!(result.timeline.len() >= 3, "{:?}", result.timeline);
    let run = Report::Run(Box::new(RunReport { meta: Meta::capture(), scenario: None, result }));
    let run_page = write_page(dir.path(), "run.html", &run);

    // A compare report from a real two-target comparison.
    let (slow, slow_addr) = spawn_upstream(&["--delay", "1ms"]);
    let json = dir.path().join("compare.json");
    let out = run_bin(
        &[
            "compare",
            "--target",
            &format!("fast={url}"),
            "--target",
            &format!("slow=http://{slow_addr}/x"),
            "--rounds",
            "2",
            "-n",
            "300",
            "-c",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(slow);
    let compare = loadtest::report_json::read_json(&json).unwrap();
    let compare_page = write_page(dir.path(), "compare.html", &compare);

    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_size = screenshot(&profile, &blank, &dir.path().join("blank.png"));

    let dom = dump_dom(&profile, &run_page);
    for id in ["chart-percentiles", "chart-throughput", "chart-latency-time"] {
        assert_chart(&dom, id);
    }
    assert!(dom.contains("id=\"headline\"") && dom.contains("id=\"reproduce\""));
    let run_size = screenshot(&profile, &run_page, &dir.path().join("run.png"));
    assert!(run_size > blank_size * 3, "run screenshot {run_size} B looks blank (blank page: {blank_size} B)");

    let dom = dump_dom(&profile, &compare_page);
    for id in ["chart-rps-bars", "chart-ratio-bars", "chart-rounds", "chart-percentiles", "chart-p99-bars"] {
        assert_chart(&dom, id);
    }
    assert!(dom.contains("id=\"summary-table\""));
    let compare_size = screenshot(&profile, &compare_page, &dir.path().join("compare.png"));
    assert!(compare_size > blank_size * 3, "compare screenshot {compare_size} B looks blank (blank page: {blank_size} B)");

    // Keep the screenshots for a human when asked to.
    if let Ok(keep) = std::env::var("LOADTEST_KEEP_SCREENSHOTS") {
        for f in ["run.png", "compare.png", "run.html", "compare.html"] {
            let _ = std::fs::copy(dir.path().join(f), Path::new(&keep).join(f));
        }
    }
    let _ = chromium;
}
