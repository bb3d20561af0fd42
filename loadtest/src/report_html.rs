//! The HTML report: one self-contained file with inline SVG charts.
//!
//! The file has no scripts, stylesheets, fonts or images from anywhere else, so it can be
//! attached to an issue, archived, or opened on an offline machine and look the same. Charts
//! are drawn with `plotters`' SVG backend, which emits plain `<svg>` markup with text as
//! `<text>` elements; no font files are read when drawing (plotters' font support is compiled
//! out), the browser renders the text with its own sans-serif.
//!
//! A report is rendered from the same structures as the JSON file, so `loadtest report` can
//! rebuild it from a JSON result.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue};
use plotters::prelude::*;

use crate::cli::ReportArgs;
use crate::compare::CompareReport;
use crate::engine::RunResult;
use crate::report_json::{fmt_count, fmt_us, read_json, Meta, Report, RunReport};
use crate::stats::PercentilePoint;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 380;

/// Colour-blind-friendly series colours (Okabe–Ito).
const COLORS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart failed: {e:?}")
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Maps a percentile to the x axis of a percentile chart: `-log10(1 - p)`, so 90 %, 99 %,
/// 99.9 % ... are evenly spaced and the tail gets the room it deserves. The maximum (p100)
/// is drawn at the right edge, labelled "max".
fn percentile_x(p: f64) -> f64 {
    let q = (p / 100.0).min(0.99999);
    -(1.0 - q).log10()
}

fn percentile_label(x: f64) -> String {
    match x.round() as i64 {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        3 => "99.9%".into(),
        4 => "99.99%".into(),
        5 => "max".into(),
        _ => String::new(),
    }
}

/// Latency by percentile, one line per series (name, points).
fn chart_percentiles(series: &[(String, &[PercentilePoint])]) -> Result<String> {
    let max_ms = series.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.latency_us / 1000.0)).fold(0.0f64, f64::max).max(0.001) * 1.08;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .margin_right(30)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..5f64, 0f64..max_ms)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .draw()
            .map_err(plot_err)?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let c = color(i);
            let line: Vec<(f64, f64)> = pts.iter().map(|p| (percentile_x(p.percentile), p.latency_us / 1000.0)).collect();
            chart
                .draw_series(LineSeries::new(line.clone(), c.stroke_width(2)))
                .map_err(plot_err)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
            chart.draw_series(line.iter().map(|&(x, y)| Circle::new((x, y), 3, c.filled()))).map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// A line chart; each series is (name, points (x, y)). `x_min` is where the x axis starts and
/// `markers` draws a dot on every point (for charts with few points, such as rounds).
fn chart_lines(series: &[(String, Vec<(f64, f64)>)], x_desc: &str, y_desc: &str, x_min: f64, markers: bool) -> Result<String> {
    let max_t = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).fold(x_min, f64::max).max(x_min + 1.0);
    let max_y = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold(0.0f64, f64::max).max(1e-3) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(x_min..max_t, 0f64..max_y)
            .map_err(plot_err)?;
        let integer_x = markers;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .x_label_formatter(&|x| {
                if integer_x {
                    if (x - x.round()).abs() < 1e-6 {
                        format!("{x:.0}")
                    } else {
                        String::new()
                    }
                } else {
                    format!("{x:.1}")
                }
            })
            .y_desc(y_desc)
            .y_label_formatter(&|y| if max_y >= 100.0 { format!("{y:.0}") } else { format!("{y:.2}") })
            .draw()
            .map_err(plot_err)?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(plot_err)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
            if markers {
                chart.draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 4, c.filled()))).map_err(plot_err)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Bars with min–max whiskers, one per label.
fn chart_bars(bars: &[(String, f64, f64, f64)], y_desc: &str, reference: Option<f64>) -> Result<String> {
    let n = bars.len().max(1);
    let max_y = bars.iter().map(|b| b.3.max(b.1)).fold(0.0f64, f64::max).max(reference.unwrap_or(0.0)).max(1e-3) * 1.15;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            // Discrete ranges are inclusive in plotters: 0..=n-1 gives exactly n segments.
            .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..max_y)
            .map_err(plot_err)?;
        let fmt = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&fmt)
            .y_desc(y_desc)
            .y_label_formatter(&|y| if max_y >= 100.0 { format!("{y:.0}") } else { format!("{y:.2}") })
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let mut r = Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), b.1)], color(i).mix(0.75).filled());
                r.set_margin(0, 0, 25, 25);
                r
            }))
            .map_err(plot_err)?;
        // Whiskers: the spread over rounds.
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                PathElement::new(vec![(SegmentValue::CenterOf(i), b.2), (SegmentValue::CenterOf(i), b.3)], BLACK.stroke_width(2))
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(
                bars.iter()
                    .enumerate()
                    .flat_map(|(i, b)| [b.2, b.3].into_iter().map(move |y| Circle::new((SegmentValue::CenterOf(i), y), 3, BLACK.filled()))),
            )
            .map_err(plot_err)?;
        if let Some(r) = reference {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(SegmentValue::Exact(0), r), (SegmentValue::Last, r)],
                    RGBColor(120, 120, 120).stroke_width(1),
                )))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1180px; padding: 0 12px; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.5em; margin-bottom: 4px; }
h2 { font-size: 1.15em; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.9em; }
pre { background: #f5f5f5; padding: 8px 10px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; }
td.l, th.l { text-align: left; }
.big { display: flex; gap: 14px; flex-wrap: wrap; margin: 12px 0; }
.big div { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.big b { display: block; font-size: 1.35em; }
.warn { background: #fff4e5; border-left: 4px solid #e69f00; padding: 6px 10px; margin: 6px 0; }
figure { margin: 10px 0; }
figcaption { font-size: 0.9em; color: #555; }
svg { max-width: 100%; height: auto; }
.scroll { overflow-x: auto; max-width: 100%; }
.muted { color: #666; font-size: 0.9em; }
"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        esc(title)
    )
}

fn figure(id: &str, caption: &str, svg: &str) -> String {
    format!("<figure id=\"{id}\" class=\"chart\">\n{svg}\n<figcaption>{}</figcaption>\n</figure>\n", esc(caption))
}

fn meta_section(meta: &Meta) -> String {
    let e = &meta.environment;
    let mut s = String::from("<h2 id=\"reproduce\">Command and environment</h2>\n");
    let _ = write!(
        s,
        "<p>Run from <code>{}</code>, {} to {}:</p>\n<pre>{}</pre>\n",
        esc(&meta.command.cwd),
        esc(&meta.started_at),
        esc(&meta.finished_at),
        esc(&meta.command.line)
    );
    s.push_str("<table>\n");
    for (k, v) in [
        ("tool", format!("{} {} ({} build)", meta.tool, meta.version, e.build)),
        ("host", e.hostname.clone()),
        ("os", format!("{} (kernel {}, {})", e.os, e.kernel, e.arch)),
        ("cpu", format!("{} — {} online, {} allowed for the tool", e.cpu_model, e.cpus_online, e.cpus_allowed)),
        ("memory", format!("{} MiB", e.memory_total_kib / 1024)),
        ("load average at start", e.load_average.clone()),
    ] {
        let _ = writeln!(s, "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>", esc(k), esc(&v));
    }
    s.push_str("</table>\n");
    s
}

fn warnings_html(warnings: &[String]) -> String {
    warnings.iter().map(|w| format!("<div class=\"warn\">{}</div>\n", esc(w))).collect()
}

fn run_tables(r: &RunResult) -> String {
    let mut s = String::new();
    let l = &r.latency;
    s.push_str("<h2 id=\"latency-table\">Latency</h2>\n<table><tr>");
    for h in ["count", "min", "mean", "stdev", "p50", "p90", "p99", "p99.9", "max"] {
        let _ = write!(s, "<th>{h}</th>");
    }
    let _ = writeln!(
        s,
        "</tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        fmt_count(l.count),
        fmt_us(l.min_us),
        fmt_us(l.mean_us),
        fmt_us(l.stdev_us),
        fmt_us(l.p50_us),
        fmt_us(l.p90_us),
        fmt_us(l.p99_us),
        fmt_us(l.p999_us),
        fmt_us(l.max_us)
    );
    if let Some(lag) = &r.send_lag {
        let _ = writeln!(
            s,
            "<p class=\"muted\">Send lag (due time → write, for requests that came due while their connection was idle; the generator's own precision): p50 {}, p99 {}, max {}.</p>",
            fmt_us(lag.p50_us),
            fmt_us(lag.p99_us),
            fmt_us(lag.max_us)
        );
    }
    s.push_str("<h2 id=\"statuses\">Statuses and errors</h2>\n<table><tr><th class=\"l\">status</th><th>responses</th></tr>\n");
    for (code, n) in &r.status_counts {
        let _ = writeln!(s, "<tr><td class=\"l\">{}</td><td>{}</td></tr>", esc(code), fmt_count(*n));
    }
    let _ = writeln!(
        s,
        "</table>\n<p>Expected statuses ({}): {} responses; unexpected: {}.</p>",
        esc(&r.expected_statuses.join(", ")),
        fmt_count(r.expected_responses),
        fmt_count(r.unexpected_responses)
    );
    s.push_str("<table><tr><th class=\"l\">error kind</th><th>count</th><th class=\"l\">first message</th></tr>\n");
    for (kind, n) in &r.error_counts {
        let sample = r.error_samples.get(kind).cloned().unwrap_or_default();
        let _ = writeln!(s, "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td></tr>", esc(kind), n, esc(&sample));
    }
    s.push_str("</table>\n");
    if !r.entries.is_empty() {
        s.push_str("<h2 id=\"entries\">Scenario entries</h2>\n<table><tr><th class=\"l\">entry</th><th>weight</th><th class=\"l\">expect</th><th>responses</th><th>expected</th><th>unexpected</th><th>errors</th><th>p50</th><th>p99</th><th class=\"l\">statuses</th></tr>\n");
        for e in &r.entries {
            let statuses: Vec<String> = e.status_counts.iter().map(|(c, n)| format!("{c}: {n}")).collect();
            let _ = writeln!(
                s,
                "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                esc(&format!("{} ({})", e.name, e.method)),
                e.weight,
                esc(&e.expect.join(", ")),
                fmt_count(e.responses),
                fmt_count(e.expected_responses),
                fmt_count(e.unexpected_responses),
                e.errors,
                fmt_us(e.latency.p50_us),
                fmt_us(e.latency.p99_us),
                esc(&statuses.join(", "))
            );
        }
        s.push_str("</table>\n");
    }
    s
}

const HOW_TO_READ_RUN: &str = r#"<h2 id="how-to-read">How to read this report</h2>
<ul>
<li><b>Closed loop</b>: each connection sends its next request when the previous response arrives; latency is from the write to the end of the response. Throughput is what the target sustained at this concurrency.</li>
<li><b>Open loop</b> (a rate is set): requests are due at a constant rate whatever the target does, and latency counts from each request's <i>due</i> time, so queueing behind a slow response is included (the coordinated-omission correction). If the target rate was not reached, a warning says so.</li>
<li>Percentiles are nearest-rank, from an HDR histogram with 3 significant digits (within 0.1 %); min, max, mean and stdev are exact. Failed requests have no latency and are counted by kind.</li>
<li>Warm-up requests are in no figure. Throughput is responses divided by the time from the end of warm-up to the last response.</li>
<li>A generator CPU share near 100 % means the client may be the bottleneck.</li>
</ul>
"#;

/// Renders a `run` report.
pub fn render_run(report: &RunReport) -> Result<String> {
    let r = &report.result;
    let mut body = String::new();
    let mode = match r.rate {
        Some(rate) => format!("open loop at {rate} requests/s"),
        None => "closed loop".to_string(),
    };
    let _ = writeln!(body, "<h1>Load test: {}</h1>", esc(&r.target));
    let _ = writeln!(
        body,
        "<p class=\"muted\">{mode}, {} connections, {} generator threads, {:.1}s warm-up, {:.2}s measured; stopped by {}.</p>",
        r.connections,
        r.threads,
        r.warmup_s,
        r.measured_s,
        r.stopped.describe()
    );
    if let Some(s) = &report.scenario {
        let pools: Vec<String> = s.token_pools.iter().map(|(k, v)| format!("{k} ({v} tokens)")).collect();
        let _ = writeln!(
            body,
            "<p>Scenario <b>{}</b> from <code>{}</code>{}.</p>",
            esc(&s.name),
            esc(&s.file),
            if pools.is_empty() { String::new() } else { format!("; token pools: {}", esc(&pools.join(", "))) }
        );
    }
    let _ = writeln!(
        body,
        "<div class=\"big\" id=\"headline\"><div>throughput<b>{:.1}/s</b></div><div>responses<b>{}</b></div><div>p50<b>{}</b></div><div>p99<b>{}</b></div><div>p99.9<b>{}</b></div><div>max<b>{}</b></div><div>errors<b>{}</b></div><div>generator CPU<b>{:.0}%</b></div></div>",
        r.rps,
        fmt_count(r.responses),
        fmt_us(r.latency.p50_us),
        fmt_us(r.latency.p99_us),
        fmt_us(r.latency.p999_us),
        fmt_us(r.latency.max_us),
        fmt_count(r.errors),
        r.generator_cpu_percent
    );
    body.push_str(&warnings_html(&r.warnings));
    body.push_str("<h2>Latency by percentile</h2>\n");
    let svg = chart_percentiles(&[(r.target.clone(), r.percentiles.as_slice())])?;
    body.push_str(&figure(
        "chart-percentiles",
        "Latency at each percentile; the x axis stretches the tail (90 %, 99 %, 99.9 %, ...).",
        &svg,
    ));
    body.push_str("<h2>Throughput over time</h2>\n");
    let mut series = vec![("responses/s".to_string(), r.timeline.iter().map(|p| (p.t_s + p.duration_s / 2.0, p.rps)).collect::<Vec<_>>())];
    if r.errors > 0 {
        series.push((
            "errors/s".to_string(),
            r.timeline.iter().map(|p| (p.t_s + p.duration_s / 2.0, p.errors as f64 / p.duration_s.max(1e-9))).collect(),
        ));
    }
    let svg = chart_lines(&series, "seconds after warm-up", "per second", 0.0, false)?;
    body.push_str(&figure("chart-throughput", "Responses (and errors) per second, by completion time.", &svg));
    body.push_str("<h2>Latency over time</h2>\n");
    let mid = |p: &crate::stats::TimelinePoint| p.t_s + p.duration_s / 2.0;
    let series = vec![
        ("p50".to_string(), r.timeline.iter().map(|p| (mid(p), p.p50_us / 1000.0)).collect::<Vec<_>>()),
        ("p99".to_string(), r.timeline.iter().map(|p| (mid(p), p.p99_us / 1000.0)).collect()),
        ("max".to_string(), r.timeline.iter().map(|p| (mid(p), p.max_us / 1000.0)).collect()),
    ];
    let svg = chart_lines(&series, "seconds after warm-up", "latency (ms)", 0.0, false)?;
    body.push_str(&figure("chart-latency-time", "p50, p99 and max latency of the responses completed in each interval.", &svg));
    body.push_str(&run_tables(r));
    body.push_str(HOW_TO_READ_RUN);
    body.push_str(&meta_section(&report.meta));
    Ok(page(&format!("loadtest: {}", r.target), &body))
}

/// The round whose throughput is closest to the target's median: its percentile curve is the
/// typical one.
fn median_run<'a>(report: &'a CompareReport, target: &str, median_rps: f64) -> Option<&'a RunResult> {
    report
        .rounds
        .iter()
        .filter_map(|r| r.runs.iter().find(|x| x.target == target))
        .map(|x| &x.result)
        .min_by(|a, b| (a.rps - median_rps).abs().total_cmp(&(b.rps - median_rps).abs()))
}

/// Renders a `compare` or `bench` report.
pub fn render_compare(report: &CompareReport) -> Result<String> {
    let mut body = String::new();
    let names: Vec<String> = report.targets.iter().map(|t| t.name.clone()).collect();
    let _ = writeln!(body, "<h1>{}: {}</h1>", esc(&report.title), esc(&names.join(" vs ")));
    let st = &report.settings;
    let load = match (st.rate, st.duration_s, st.requests) {
        (Some(rate), _, _) => format!("open loop at {rate}/s"),
        (None, _, _) => "closed loop".to_string(),
    };
    let span = match (st.duration_s, st.requests) {
        (Some(d), _) => format!("{d:.0}s per measurement"),
        (None, Some(n)) => format!("{n} requests per measurement"),
        _ => String::new(),
    };
    let _ = writeln!(
        body,
        "<p class=\"muted\">{} round{} ({} order), {load}, {} connections, {} threads, {span}, {:.1}s warm-up each. Ratios are computed inside each round, then the median over rounds is taken; the range is the spread of the per-round ratios.</p>",
        report.rounds.len(),
        if report.rounds.len() == 1 { "" } else { "s" },
        match st.order {
            crate::cli::Order::Forward => "A B C, A B C",
            crate::cli::Order::Alternate => "A B C, C B A",
        },
        st.connections,
        st.threads,
        st.warmup_s
    );
    for n in &report.notes {
        let _ = writeln!(body, "<p class=\"muted\">{}</p>", esc(n));
    }
    // Summary table.
    let cpu_names: Vec<String> = {
        let mut v: Vec<String> = report.targets.iter().flat_map(|s| s.cpu_us_per_request.keys().cloned()).collect();
        v.sort();
        v.dedup();
        v
    };
    body.push_str("<h2 id=\"summary\">Summary</h2>\n<div class=\"scroll\"><table id=\"summary-table\"><tr><th class=\"l\">target</th><th>samples</th><th>RPS (median)</th><th>min</th><th>max</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>errors</th><th>unexpected</th><th>ratio</th><th>ratio range</th>");
    for c in &cpu_names {
        let _ = write!(body, "<th>{} CPU µs/req</th>", esc(c));
    }
    body.push_str("</tr>\n");
    for t in &report.targets {
        let (ratio, range) = match &t.ratio {
            Some(r) => (format!("{:.3}{}", r.median, if r.unclean { "~" } else { "" }), format!("{:.3}–{:.3}", r.min, r.max)),
            None => ("1.000".to_string(), "baseline".to_string()),
        };
        let samples = format!("{}{}/{}", if t.unclean { "~" } else { "" }, t.clean_samples, t.samples);
        let _ = write!(
            body,
            "<tr><td class=\"l\" title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(&t.url),
            esc(&t.name),
            samples,
            fmt_count(t.rps_median.round() as u64),
            fmt_count(t.rps_min.round() as u64),
            fmt_count(t.rps_max.round() as u64),
            fmt_us(t.p50_us),
            fmt_us(t.p90_us),
            fmt_us(t.p99_us),
            fmt_us(t.p999_us),
            fmt_us(t.max_us),
            t.errors,
            t.unexpected_responses,
            ratio,
            range
        );
        for c in &cpu_names {
            match t.cpu_us_per_request.get(c) {
                Some(v) => {
                    let _ = write!(body, "<td>{v:.1}</td>");
                }
                None => body.push_str("<td>-</td>"),
            }
        }
        body.push_str("</tr>\n");
    }
    body.push_str("</table></div>\n");
    body.push_str("<p class=\"muted\">samples = clean/all. A sample is not clean when other work on the machine (foreign CPU) plus hypervisor steal exceeded the threshold; such samples are left out of the figures, and ~ marks a target with no clean sample (all used).</p>\n");
    for t in &report.targets {
        if t.errors > 0 || t.unexpected_responses > 0 {
            body.push_str(&warnings_html(&[format!(
                "{} had {} errors and {} unexpected statuses: its figures are suspect.",
                t.name, t.errors, t.unexpected_responses
            )]));
        }
    }
    // Charts.
    body.push_str("<h2>Throughput</h2>\n");
    let bars: Vec<(String, f64, f64, f64)> =
        report.targets.iter().map(|t| (t.name.clone(), t.rps_median, t.rps_min.min(t.rps_median), t.rps_max)).collect();
    let svg = chart_bars(&bars, "responses/s", None)?;
    body.push_str(&figure("chart-rps-bars", "Median requests per second per target; whiskers show the lowest and highest round.", &svg));
    if report.targets.len() > 1 {
        let ratio_bars: Vec<(String, f64, f64, f64)> = report
            .targets
            .iter()
            .map(|t| match &t.ratio {
                Some(r) if r.median.is_finite() => (t.name.clone(), r.median, r.min, r.max),
                _ => (t.name.clone(), 1.0, 1.0, 1.0),
            })
            .collect();
        let base = report.targets.first().map(|t| t.name.clone()).unwrap_or_default();
        let svg = chart_bars(&ratio_bars, &format!("throughput ratio to {base}"), Some(1.0))?;
        body.push_str(&figure(
            "chart-ratio-bars",
            "Median of the per-round throughput ratios to the first target; whiskers show the spread over rounds.",
            &svg,
        ));
    }
    let per_round: Vec<(String, Vec<(f64, f64)>)> = report
        .targets
        .iter()
        .map(|t| {
            let pts = report
                .rounds
                .iter()
                .filter_map(|r| r.runs.iter().find(|x| x.target == t.name).map(|x| (r.index as f64, x.result.rps)))
                .collect();
            (t.name.clone(), pts)
        })
        .collect();
    let svg = chart_lines(&per_round, "round", "responses/s", 1.0, true)?;
    body.push_str(&figure(
        "chart-rounds",
        "Throughput of each target in each round: drift shows as a slope shared by all lines, noise as crossing lines.",
        &svg,
    ));
    body.push_str("<h2>Latency</h2>\n");
    let curves: Vec<(String, &[PercentilePoint])> = report
        .targets
        .iter()
        .filter_map(|t| median_run(report, &t.name, t.rps_median).map(|r| (t.name.clone(), r.percentiles.as_slice())))
        .collect();
    let svg = chart_percentiles(&curves)?;
    body.push_str(&figure("chart-percentiles", "Latency by percentile for each target, from its median-throughput round.", &svg));
    let p99_bars: Vec<(String, f64, f64, f64)> = report
        .targets
        .iter()
        .map(|t| {
            let v: Vec<f64> = report
                .rounds
                .iter()
                .filter_map(|r| r.runs.iter().find(|x| x.target == t.name).map(|x| x.result.latency.p99_us / 1000.0))
                .collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            (t.name.clone(), t.p99_us / 1000.0, if lo.is_finite() { lo } else { 0.0 }, hi)
        })
        .collect();
    let svg = chart_bars(&p99_bars, "p99 latency (ms)", None)?;
    body.push_str(&figure("chart-p99-bars", "Median p99 latency per target; whiskers show the lowest and highest round.", &svg));
    // Per-round table.
    body.push_str("<h2 id=\"rounds\">Every measurement</h2>\n<div class=\"scroll\"><table><tr><th>round</th><th class=\"l\">order</th><th class=\"l\">target</th><th>RPS</th><th>p50</th><th>p99</th><th>max</th><th>errors</th><th>unexpected</th><th class=\"l\">CPU µs/req</th><th>foreign CPU</th><th>steal</th><th>clean</th></tr>\n");
    for round in &report.rounds {
        for run in &round.runs {
            let cpu: Vec<String> = run.cpu_us_per_request.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
            let (foreign, steal) = match run.machine {
                Some(m) => {
                    (m.foreign_cpu_percent.map(|f| format!("{f:.0}%")).unwrap_or_else(|| "-".into()), format!("{:.0}%", m.steal_percent))
                }
                None => ("-".into(), "-".into()),
            };
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                round.index,
                esc(&round.order.join(" ")),
                esc(&run.target),
                run.result.rps,
                fmt_us(run.result.latency.p50_us),
                fmt_us(run.result.latency.p99_us),
                fmt_us(run.result.latency.max_us),
                run.result.errors,
                run.result.unexpected_responses,
                esc(&cpu.join(", ")),
                foreign,
                steal,
                if run.clean { "yes" } else { "no" }
            );
        }
    }
    body.push_str("</table></div>\n");
    body.push_str(r#"<h2 id="how-to-read">How to read this report</h2>
<ul>
<li>Each round measures every target once, so slow drift on the machine affects all targets alike. A target's ratio is its throughput divided by the first target's <i>in the same round</i>; the table shows the median of those ratios and their range. Differences smaller than the range are noise.</li>
<li>Latency columns are medians over rounds of each round's percentile. For open-loop runs, latency counts from each request's due time.</li>
<li>CPU µs/req (bench only) is the CPU time of a process started by the tool divided by the responses in that measurement: the steadiest figure for "what does a request cost".</li>
<li>A target flagged with errors or unexpected statuses measured something else than intended (e.g. a 401 or 429 page is cheaper than a proxied response).</li>
</ul>
"#);
    body.push_str(&meta_section(&report.meta));
    Ok(page(&format!("loadtest {}: {}", report.title, names.join(" vs ")), &body))
}

/// Renders any report.
pub fn render(report: &Report) -> Result<String> {
    match report {
        Report::Run(r) => render_run(r),
        Report::Compare(c) => render_compare(c),
    }
}

/// Renders and writes a report.
pub fn write(path: &Path, report: &Report) -> Result<()> {
    let html = render(report)?;
    std::fs::write(path, html).with_context(|| format!("cannot write {}", path.display()))
}

/// `loadtest report`: re-renders the HTML from a JSON result.
pub fn rerender(args: ReportArgs) -> Result<()> {
    let report = read_json(&args.json)?;
    write(&args.html, &report)?;
    eprintln!("wrote {}", args.html.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(esc("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn percentile_axis() {
        assert_eq!(percentile_x(0.0), 0.0);
        assert!((percentile_x(90.0) - 1.0).abs() < 1e-9);
        assert!((percentile_x(99.9) - 3.0).abs() < 1e-9);
        assert!((percentile_x(100.0) - 5.0).abs() < 1e-9);
        assert_eq!(percentile_label(2.0), "99%");
    }

    #[test]
    fn charts_are_plain_svg_without_external_references() {
        let pts = vec![PercentilePoint { percentile: 50.0, latency_us: 100.0 }, PercentilePoint { percentile: 99.0, latency_us: 900.0 }];
        let svg = chart_percentiles(&[("a".into(), &pts)]).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        assert!(!svg.contains("href") && !svg.contains("url("));
        let svg = chart_bars(&[("a".into(), 10.0, 8.0, 12.0), ("b<".into(), 5.0, 5.0, 6.0)], "rps", Some(1.0)).unwrap();
        assert!(svg.contains("<rect"));
        assert!(svg.contains("b&lt;"), "labels are escaped by plotters");
    }
}
