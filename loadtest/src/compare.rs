//! `loadtest compare`: several targets in interleaved rounds, and their ratios to the first.
//!
//! Measuring A for five minutes and then B for five minutes compares A's machine state with
//! B's: a neighbour's build, CPU frequency or a noisy host hits one side only. Interleaving
//! (each round measures every target once) exposes both sides to the same drift, and a ratio is
//! computed *inside* each round before taking the median over rounds, so the drift cancels. The
//! spread of the per-round ratios is printed next to the median: it is the honest error bar.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::cli::{check_writable, CompareArgs, Order};
use crate::engine::{Plan, RunResult};
use crate::report_json::{fmt_count, fmt_us, Meta, Report};
use crate::stats::median;

/// The JSON (and HTML) form of a comparison; `bench` produces the same shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareReport {
    pub meta: Meta,
    /// `compare` or `bench`.
    pub title: String,
    pub settings: CompareSettings,
    pub targets: Vec<TargetSummary>,
    pub rounds: Vec<Round>,
    /// Free-form notes (bench: process commands, pinning, log files).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareSettings {
    pub rounds: usize,
    pub order: Order,
    pub connections: usize,
    pub threads: usize,
    pub duration_s: Option<f64>,
    pub requests: Option<u64>,
    pub rate: Option<f64>,
    pub warmup_s: f64,
}

impl CompareSettings {
    /// The settings every target of a comparison shares, taken from its first plan.
    pub fn from_plan(first: &Plan, rounds: usize, order: Order) -> Self {
        CompareSettings {
            rounds,
            order,
            connections: first.connections,
            threads: first.threads,
            duration_s: first.duration.map(|d| d.as_secs_f64()),
            requests: first.requests,
            rate: first.rate,
            warmup_s: first.warmup.as_secs_f64(),
        }
    }
}

/// One round: the order the targets ran in and each one's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Round {
    pub index: usize,
    pub order: Vec<String>,
    pub runs: Vec<RoundRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundRun {
    pub target: String,
    pub result: RunResult,
    /// CPU µs per response of processes the tool started (bench only), by process name.
    #[serde(default)]
    pub cpu_us_per_request: BTreeMap<String, f64>,
    /// What else the machine was doing during the measurement.
    #[serde(default)]
    pub machine: Option<MachineUse>,
    /// False when foreign CPU plus steal exceeded `--max-other`: the sample is left out of the
    /// medians and ratios (unless no sample is clean).
    #[serde(default = "yes")]
    pub clean: bool,
}

fn yes() -> bool {
    true
}

/// CPU time on the machine that the measurement did not account for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MachineUse {
    /// Busy CPU time of the whole machine minus that of the processes the tool knows about
    /// (itself, and in `bench` the upstream and gateway), in % of one CPU. `None` in `compare`,
    /// where the targets' processes are unknown.
    pub foreign_cpu_percent: Option<f64>,
    /// Time the hypervisor ran something else on our vCPUs, in % of one CPU.
    pub steal_percent: f64,
}

/// One measurement as [`run_rounds`] receives it.
#[derive(Debug, Clone)]
pub struct Measured {
    pub result: RunResult,
    pub cpu_us_per_request: BTreeMap<String, f64>,
    pub machine: Option<MachineUse>,
}

/// Aggregate busy and steal time from `/proc/stat`, to tell a clean sample from a polluted one.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    busy_ticks: u64,
    steal_ticks: u64,
    at: Instant,
}

impl CpuSample {
    /// Reads the `cpu` line of `/proc/stat` (all CPUs); `None` where unavailable.
    pub fn now() -> Option<CpuSample> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let line = text.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal
        let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?;
        Some(CpuSample { busy_ticks: busy, steal_ticks: *v.get(7)?, at: Instant::now() })
    }

    /// Machine use since `self`, given the CPU seconds of the known processes (`None`: unknown).
    pub fn since(&self, own_cpu_s: Option<f64>) -> Option<MachineUse> {
        let after = CpuSample::now()?;
        let wall = after.at.duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        let busy_s = after.busy_ticks.saturating_sub(self.busy_ticks) as f64 / 100.0;
        let steal_s = after.steal_ticks.saturating_sub(self.steal_ticks) as f64 / 100.0;
        Some(MachineUse {
            foreign_cpu_percent: own_cpu_s.map(|own| (100.0 * (busy_s - own) / wall).max(0.0)),
            steal_percent: 100.0 * steal_s / wall,
        })
    }
}

/// Per-target figures over all rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetSummary {
    pub name: String,
    pub url: String,
    pub samples: usize,
    /// Samples used for the figures: the clean ones, or all when none was clean.
    #[serde(default)]
    pub clean_samples: usize,
    /// True when no sample was clean and all were used (shown as `~`).
    #[serde(default)]
    pub unclean: bool,
    pub rps_median: f64,
    pub rps_min: f64,
    pub rps_max: f64,
    /// Medians over rounds of each round's percentile.
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub errors: u64,
    pub unexpected_responses: u64,
    /// Ratio to the first target (absent for the first target itself).
    pub ratio: Option<Ratio>,
    #[serde(default)]
    pub cpu_us_per_request: BTreeMap<String, f64>,
}

/// A target's throughput ratio to the baseline, computed per round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    pub baseline: String,
    /// Rounds whose ratio went into the median: those clean on both sides (or all, when none was).
    #[serde(default)]
    pub rounds_used: usize,
    #[serde(default)]
    pub unclean: bool,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub per_round: Vec<f64>,
    /// Whether each of `per_round` was clean on both sides.
    #[serde(default)]
    pub per_round_clean: Vec<bool>,
    /// Median over rounds of p50(target) / p50(baseline), and the same for p99.
    pub p50_ratio: f64,
    pub p99_ratio: f64,
}

/// The order of target indices in round `round` (0-based).
pub fn round_order(n: usize, round: usize, order: Order) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    if order == Order::Alternate && round % 2 == 1 {
        v.reverse();
    }
    v
}

/// Measures one target once; the default just runs the plan.
pub type Measure<'a> = dyn FnMut(usize, &Plan) -> Result<Measured> + 'a;

/// Runs the rounds. Stops early (keeping what was measured) when `stop` is set. A measurement
/// whose foreign CPU plus steal exceeds `max_other` (% of one CPU) is marked not clean.
pub fn run_rounds(
    targets: &[(String, Plan)],
    rounds: usize,
    order: Order,
    max_other: f64,
    stop: &AtomicBool,
    measure: &mut Measure<'_>,
) -> Result<Vec<Round>> {
    let mut out = Vec::new();
    'rounds: for r in 0..rounds {
        let idx = round_order(targets.len(), r, order);
        let mut round = Round { index: r + 1, order: idx.iter().map(|&i| targets[i].0.clone()).collect(), runs: Vec::new() };
        for &i in &idx {
            if stop.load(Ordering::Relaxed) {
                break 'rounds;
            }
            let (name, plan) = &targets[i];
            let Measured { result, cpu_us_per_request: cpu, machine } = measure(i, plan)?;
            let clean = machine.is_none_or(|m| m.foreign_cpu_percent.unwrap_or(0.0) + m.steal_percent <= max_other);
            let cpu_text: String = cpu.iter().map(|(k, v)| format!(" {k}_cpu={v:.1}µs/req")).collect();
            let machine_text = match machine {
                Some(MachineUse { foreign_cpu_percent: Some(o), steal_percent }) => format!(" other={o:.0}% steal={steal_percent:.0}%"),
                Some(MachineUse { foreign_cpu_percent: None, steal_percent }) => format!(" steal={steal_percent:.0}%"),
                None => String::new(),
            };
            eprintln!(
                "round {}/{rounds} {name:<14} {:>10.0} req/s  p50 {:>8}  p99 {:>8}  errors {}{}{cpu_text}{machine_text}{}",
                r + 1,
                result.rps,
                fmt_us(result.latency.p50_us),
                fmt_us(result.latency.p99_us),
                result.errors,
                if result.unexpected_responses > 0 { format!("  unexpected {}", result.unexpected_responses) } else { String::new() },
                if clean { "" } else { "  NOT CLEAN" },
            );
            round.runs.push(RoundRun { target: name.clone(), result, cpu_us_per_request: cpu, machine, clean });
        }
        // Keep results in target order (not run order) so that tables line up.
        round.runs.sort_by_key(|run| targets.iter().position(|(n, _)| *n == run.target));
        out.push(round);
    }
    Ok(out)
}

/// Computes per-target summaries and ratios to the first target.
///
/// Only clean samples count (see [`RoundRun::clean`]); when a target has none, all of its
/// samples are used and the summary says so. A round's ratio counts when both sides are clean.
pub fn summarize(targets: &[(String, String)], rounds: &[Round]) -> Vec<TargetSummary> {
    let baseline = targets.first().map(|t| t.0.clone()).unwrap_or_default();
    targets
        .iter()
        .enumerate()
        .map(|(ti, (name, url))| {
            let all: Vec<&RoundRun> = rounds.iter().filter_map(|r| r.runs.iter().find(|x| &x.target == name)).collect();
            let clean: Vec<&RoundRun> = all.iter().copied().filter(|x| x.clean).collect();
            let unclean = clean.is_empty() && !all.is_empty();
            let used = if clean.is_empty() { all.clone() } else { clean };
            let col = |f: &dyn Fn(&RunResult) -> f64| -> Vec<f64> { used.iter().map(|r| f(&r.result)).collect() };
            let rps = col(&|r| r.rps);
            let ratio = (ti > 0).then(|| {
                let pairs: Vec<(&RoundRun, &RoundRun)> = rounds
                    .iter()
                    .filter_map(|round| {
                        let b = round.runs.iter().find(|x| x.target == baseline)?;
                        let m = round.runs.iter().find(|x| &x.target == name)?;
                        Some((b, m))
                    })
                    .collect();
                let clean_pairs: Vec<(&RoundRun, &RoundRun)> = pairs.iter().copied().filter(|(b, m)| b.clean && m.clean).collect();
                let unclean = clean_pairs.is_empty() && !pairs.is_empty();
                let used_pairs = if clean_pairs.is_empty() { pairs.clone() } else { clean_pairs };
                let ratio_of = |f: &dyn Fn(&RunResult) -> f64| -> Vec<f64> {
                    used_pairs.iter().filter(|(b, _)| f(&b.result) > 0.0).map(|(b, m)| f(&m.result) / f(&b.result)).collect()
                };
                // Every round's ratio is reported; the median uses the clean ones.
                let valid: Vec<&(&RoundRun, &RoundRun)> = pairs.iter().filter(|(b, _)| b.result.rps > 0.0).collect();
                let per_round: Vec<f64> = valid.iter().map(|(b, m)| m.result.rps / b.result.rps).collect();
                let per_round_clean: Vec<bool> = valid.iter().map(|(b, m)| b.clean && m.clean).collect();
                let used_rps = ratio_of(&|r| r.rps);
                Ratio {
                    baseline: baseline.clone(),
                    rounds_used: used_rps.len(),
                    unclean,
                    median: median(&used_rps).unwrap_or(f64::NAN),
                    min: used_rps.iter().copied().fold(f64::INFINITY, f64::min),
                    max: used_rps.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    per_round,
                    per_round_clean,
                    p50_ratio: median(&ratio_of(&|r| r.latency.p50_us)).unwrap_or(f64::NAN),
                    p99_ratio: median(&ratio_of(&|r| r.latency.p99_us)).unwrap_or(f64::NAN),
                }
            });
            let mut cpu: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for run in &used {
                for (k, v) in &run.cpu_us_per_request {
                    cpu.entry(k.clone()).or_default().push(*v);
                }
            }
            TargetSummary {
                name: name.clone(),
                url: url.clone(),
                samples: all.len(),
                clean_samples: used.len(),
                unclean,
                rps_median: median(&rps).unwrap_or(0.0),
                rps_min: rps.iter().copied().fold(f64::INFINITY, f64::min).min(f64::MAX),
                rps_max: rps.iter().copied().fold(0.0, f64::max),
                p50_us: median(&col(&|r| r.latency.p50_us)).unwrap_or(0.0),
                p90_us: median(&col(&|r| r.latency.p90_us)).unwrap_or(0.0),
                p99_us: median(&col(&|r| r.latency.p99_us)).unwrap_or(0.0),
                p999_us: median(&col(&|r| r.latency.p999_us)).unwrap_or(0.0),
                max_us: median(&col(&|r| r.latency.max_us)).unwrap_or(0.0),
                errors: all.iter().map(|r| r.result.errors).sum(),
                unexpected_responses: all.iter().map(|r| r.result.unexpected_responses).sum(),
                ratio,
                cpu_us_per_request: cpu.into_iter().filter_map(|(k, v)| median(&v).map(|m| (k, m))).collect(),
            }
        })
        .collect()
}

/// The comparison table, as printed on stdout.
pub fn table_text(summaries: &[TargetSummary]) -> String {
    let cpu_names: Vec<String> = {
        let mut v: Vec<String> = summaries.iter().flat_map(|s| s.cpu_us_per_request.keys().cloned()).collect();
        v.sort();
        v.dedup();
        v
    };
    let mut out = format!(
        "{:<14} {:>7} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>15}",
        "target", "samples", "RPS(med)", "min", "max", "p50", "p90", "p99", "p99.9", "max", "errors", "ratio", "ratio range"
    );
    for c in &cpu_names {
        out.push_str(&format!(" {:>12}", format!("{c} µs/req")));
    }
    out.push('\n');
    for s in summaries {
        let (ratio, range) = match &s.ratio {
            Some(r) => (format!("{:.3}{}", r.median, if r.unclean { "~" } else { "" }), format!("{:.3}–{:.3}", r.min, r.max)),
            None => ("1.000".to_string(), "baseline".to_string()),
        };
        let flag = if s.errors > 0 || s.unexpected_responses > 0 { "!" } else { "" };
        out.push_str(&format!(
            "{:<14} {:>7} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>15}",
            format!("{}{flag}", s.name),
            format!("{}{}/{}", if s.unclean { "~" } else { "" }, s.clean_samples, s.samples),
            fmt_count(s.rps_median.round() as u64),
            fmt_count(s.rps_min.round() as u64),
            fmt_count(s.rps_max.round() as u64),
            fmt_us(s.p50_us),
            fmt_us(s.p90_us),
            fmt_us(s.p99_us),
            fmt_us(s.p999_us),
            fmt_us(s.max_us),
            s.errors,
            ratio,
            range
        ));
        for c in &cpu_names {
            match s.cpu_us_per_request.get(c) {
                Some(v) => out.push_str(&format!(" {v:>12.1}")),
                None => out.push_str(&format!(" {:>12}", "-")),
            }
        }
        out.push('\n');
    }
    for s in summaries {
        if let Some(r) = &s.ratio {
            let rounds: Vec<String> = r
                .per_round
                .iter()
                .enumerate()
                .map(|(i, x)| format!("{x:.3}{}", if r.per_round_clean.get(i).copied().unwrap_or(true) { "" } else { "*" }))
                .collect();
            out.push_str(&format!(
                "RATIO {}/{} rps={:.3}{} (n={}) per_round=[{}] p50_ratio={:.3} p99_ratio={:.3}\n",
                s.name,
                r.baseline,
                r.median,
                if r.unclean { "~" } else { "" },
                r.rounds_used,
                rounds.join(","),
                r.p50_ratio,
                r.p99_ratio
            ));
        }
    }
    if summaries.iter().any(|s| s.errors > 0 || s.unexpected_responses > 0) {
        out.push_str("! = errors or unexpected statuses: the figures of that target are suspect\n");
    }
    if summaries.iter().any(|s| s.clean_samples < s.samples || s.unclean) {
        out.push_str("samples = clean/all: samples with too much foreign CPU or steal are left out (* in per_round); ~ = none was clean, all were used\n");
    }
    out
}

/// Spawns a thread that sets `stop` on Ctrl-C, for commands that span several runs.
pub fn stop_on_ctrl_c(stop: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new().name("ctrl-c".into()).spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("interrupted: stopping after the current measurement");
                    stop.store(true, Ordering::Relaxed);
                }
            });
        }
    });
}

/// `loadtest compare`.
pub fn run(args: CompareArgs) -> Result<()> {
    check_writable(&args.json)?;
    check_writable(&args.html)?;
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let mut names: Vec<&str> = args.targets.iter().map(|t| t.0.as_str()).collect();
    names.sort();
    names.dedup();
    if names.len() != args.targets.len() {
        bail!("target names must be unique");
    }
    let mut meta = Meta::capture();
    let mut plans = Vec::new();
    for (name, url) in &args.targets {
        let plan = args.load.plan(url, Duration::from_secs(10)).map_err(|e| e.context(format!("target {name}")))?;
        crate::engine::preflight(plan.addr, plan.connect_timeout).map_err(|e| e.context(format!("target {name}")))?;
        plans.push((name.clone(), plan));
    }
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_ctrl_c(stop.clone());
    let settings = CompareSettings::from_plan(&plans[0].1, args.rounds, args.order);
    let stop2 = stop.clone();
    let mut measure = move |_: usize, plan: &Plan| -> Result<Measured> {
        let mut p = plan.clone();
        // One progress line per run is printed by run_rounds; a bar per run would be noise.
        p.progress = crate::progress::ProgressMode::Quiet;
        let before = CpuSample::now();
        let result = crate::engine::run_with_stop(p, stop2.clone())?;
        // The targets' processes are unknown here, so only steal can be judged.
        let machine = before.and_then(|b| b.since(None));
        Ok(Measured { result, cpu_us_per_request: BTreeMap::new(), machine })
    };
    let rounds = run_rounds(&plans, args.rounds, args.order, args.max_other, &stop, &mut measure)?;
    meta.finish();
    let summaries = summarize(&args.targets, &rounds);
    print!("{}", table_text(&summaries));
    let report = Report::Compare(Box::new(CompareReport {
        meta,
        title: "compare".to_string(),
        settings,
        targets: summaries,
        rounds,
        notes: Vec::new(),
    }));
    crate::report_json::write_outputs(&report, args.json.as_deref(), args.html.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_orders() {
        assert_eq!(round_order(3, 0, Order::Forward), vec![0, 1, 2]);
        assert_eq!(round_order(3, 1, Order::Forward), vec![0, 1, 2]);
        assert_eq!(round_order(3, 1, Order::Alternate), vec![2, 1, 0]);
        assert_eq!(round_order(3, 2, Order::Alternate), vec![0, 1, 2]);
    }

    fn result(rps: f64, p50: f64) -> RunResult {
        let mut r: RunResult = serde_json::from_value(serde_json::json!({
            "target": "t", "mode": "closed", "rate": null, "connections": 1, "threads": 1,
            "warmup_s": 0.0, "measured_s": 1.0, "requests": 1, "responses": 1, "errors": 0, "rps": 0.0,
            "latency": {"count": 1, "min_us": 1.0, "mean_us": 1.0, "stdev_us": 0.0, "p50_us": 1.0,
                        "p90_us": 1.0, "p99_us": 1.0, "p999_us": 1.0, "max_us": 1.0},
            "percentiles": [], "send_lag": null, "status_counts": {}, "status_classes": {},
            "expected_statuses": [], "expected_responses": 1, "unexpected_responses": 0,
            "error_counts": {}, "error_samples": {}, "timeline": [], "warmup_requests": 0, "unsent": 0,
            "bytes_sent": 0, "body_bytes_received": 0, "connections_opened": 1,
            "generator_cpu_s": 0.0, "generator_cpu_percent": 0.0, "entries": [], "stopped": "duration",
            "warnings": []
        }))
        .unwrap();
        r.rps = rps;
        r.latency.p50_us = p50;
        r.latency.p99_us = p50 * 2.0;
        r
    }

    #[test]
    fn ratios_are_computed_within_rounds_then_medianed() {
        // Round 2 is 2x slower for everyone (host noise): per-round ratios stay 0.5.
        let mk = |i, a: f64, b: f64| Round {
            index: i,
            order: vec!["a".into(), "b".into()],
            runs: vec![
                RoundRun { target: "a".into(), result: result(a, 100.0), cpu_us_per_request: BTreeMap::new(), machine: None, clean: true },
                RoundRun { target: "b".into(), result: result(b, 300.0), cpu_us_per_request: BTreeMap::new(), machine: None, clean: true },
            ],
        };
        let rounds = vec![mk(1, 1000.0, 500.0), mk(2, 500.0, 250.0), mk(3, 1000.0, 600.0)];
        let targets = vec![("a".to_string(), "u1".to_string()), ("b".to_string(), "u2".to_string())];
        let s = summarize(&targets, &rounds);
        assert!(s[0].ratio.is_none());
        assert_eq!((s[0].rps_median, s[0].rps_min, s[0].rps_max), (1000.0, 500.0, 1000.0));
        let r = s[1].ratio.as_ref().unwrap();
        assert_eq!(r.per_round, vec![0.5, 0.5, 0.6]);
        assert_eq!((r.median, r.min, r.max), (0.5, 0.5, 0.6));
        assert_eq!((r.p50_ratio, r.p99_ratio), (3.0, 3.0));
        let text = table_text(&s);
        assert!(text.contains("RATIO b/a rps=0.500 (n=3) per_round=[0.500,0.500,0.600]"), "{text}");

        // A polluted sample of b in round 1 drops that round from b's figures and the ratio,
        // but stays visible in per_round, marked.
        let mut dirty = rounds.clone();
        dirty[0].runs[1].clean = false;
        let s = summarize(&targets, &dirty);
        assert_eq!((s[1].samples, s[1].clean_samples, s[1].unclean), (3, 2, false));
        let r = s[1].ratio.as_ref().unwrap();
        assert_eq!((r.median, r.rounds_used), (0.55, 2));
        assert_eq!(r.per_round_clean, vec![false, true, true]);
        assert!(table_text(&s).contains("per_round=[0.500*,0.500,0.600]"));
        // With no clean sample at all, everything is used and flagged.
        for round in dirty.iter_mut() {
            round.runs[1].clean = false;
        }
        let s = summarize(&targets, &dirty);
        assert!(s[1].unclean && s[1].ratio.as_ref().unwrap().unclean);
        assert_eq!(s[1].ratio.as_ref().unwrap().median, 0.5);
        assert!(table_text(&s).contains("rps=0.500~"));
    }
}
