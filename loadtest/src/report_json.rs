//! Machine-readable results, the terminal summary, and the `run` command that produces them.
//!
//! A figure without its command line and machine is not reproducible, so every JSON file
//! carries both: the exact argv (and a shell-quoted line to paste), the working directory, and
//! what the machine was (kernel, CPU model, CPUs online and allowed, load average, memory,
//! build profile). The same structures are what the HTML report is rendered from, so
//! `loadtest report results.json --html r.html` reproduces a report without rerunning.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cli::{check_writable, RunArgs};
use crate::compare::CompareReport;
use crate::engine::{RunResult, Workload};

/// Every JSON file the tool writes is one of these, tagged by `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    Run(Box<RunReport>),
    Compare(Box<CompareReport>),
}

/// The result of `loadtest run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub meta: Meta,
    /// Scenario name and token pool sizes, when a scenario was used.
    pub scenario: Option<ScenarioInfo>,
    pub result: RunResult,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub file: String,
    pub token_pools: BTreeMap<String, usize>,
}

/// Who ran what, where and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub tool: String,
    pub version: String,
    pub started_at: String,
    pub finished_at: String,
    pub command: CommandLine,
    pub environment: Environment,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandLine {
    pub argv: Vec<String>,
    /// The argv quoted for a POSIX shell, ready to paste.
    pub line: String,
    pub cwd: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Environment {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpu_model: String,
    pub cpus_online: usize,
    /// CPUs this process was allowed to run on (`taskset` shows here).
    pub cpus_allowed: usize,
    pub load_average: String,
    pub memory_total_kib: u64,
    /// `release` or `debug`: a debug build of the load tool is several times slower.
    pub build: String,
}

/// Quotes one argument for a POSIX shell.
pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b)) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Describes this machine from `/proc` and `/etc` (empty fields where unavailable).
pub fn environment() -> Environment {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let cpus_online = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let memory_total_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        .unwrap_or(0);
    let load = read_trim("/proc/loadavg");
    Environment {
        hostname: read_trim("/proc/sys/kernel/hostname"),
        os,
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        arch: std::env::consts::ARCH.to_string(),
        cpu_model,
        cpus_online,
        cpus_allowed: crate::cli::available_cpus(),
        load_average: load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        memory_total_kib,
        build: if cfg!(debug_assertions) { "debug" } else { "release" }.to_string(),
    }
}

/// Current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Meta {
    /// Captures the command line and the environment; call at the start of a command.
    pub fn capture() -> Meta {
        let argv: Vec<String> = std::env::args().collect();
        let line = argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
        Meta {
            tool: "loadtest".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: now_rfc3339(),
            finished_at: String::new(),
            command: CommandLine { argv, line, cwd: std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default() },
            environment: environment(),
        }
    }

    pub fn finish(&mut self) {
        self.finished_at = now_rfc3339();
    }
}

/// Writes `report` as pretty JSON.
/// Writes the `--json` and `--html` outputs a command asked for, saying where.
pub fn write_outputs(report: &Report, json: Option<&Path>, html: Option<&Path>) -> Result<()> {
    if let Some(p) = json {
        write_json(p, report)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = html {
        crate::report_html::write(p, report)?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

pub fn write_json(path: &Path, report: &Report) -> Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a JSON report.
pub fn read_json(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a loadtest JSON report", path.display()))
}

/// Formats microseconds with a unit that keeps three or four significant digits.
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// Formats a count with thousands separators.
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The human summary of a run, as printed on stdout.
pub fn summary_text(r: &RunResult) -> String {
    let mut out = String::new();
    let mode = match r.rate {
        Some(rate) => format!("open loop at {rate}/s"),
        None => "closed loop".to_string(),
    };
    out.push_str(&format!("target     {} ({mode}, {} connections, {} threads)\n", r.target, r.connections, r.threads));
    out.push_str(&format!(
        "measured   {:.2}s after {:.1}s warm-up: {} requests, {} responses, {:.1} responses/s\n",
        r.measured_s,
        r.warmup_s,
        fmt_count(r.requests),
        fmt_count(r.responses),
        r.rps
    ));
    let l = &r.latency;
    out.push_str(&format!(
        "latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (min {}, mean {}, stdev {}){}\n",
        fmt_us(l.p50_us),
        fmt_us(l.p90_us),
        fmt_us(l.p99_us),
        fmt_us(l.p999_us),
        fmt_us(l.max_us),
        fmt_us(l.min_us),
        fmt_us(l.mean_us),
        fmt_us(l.stdev_us),
        if r.mode == "open" { ", from intended send time" } else { "" }
    ));
    let statuses: Vec<String> = r.status_counts.iter().map(|(c, n)| format!("{c}: {}", fmt_count(*n))).collect();
    out.push_str(&format!(
        "statuses   {}  (expected {}, unexpected {})\n",
        if statuses.is_empty() { "none".to_string() } else { statuses.join(", ") },
        fmt_count(r.expected_responses),
        fmt_count(r.unexpected_responses)
    ));
    let errors: Vec<String> = r.error_counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    out.push_str(&format!("errors     {}\n", errors.join(", ")));
    for (kind, sample) in &r.error_samples {
        out.push_str(&format!("           first {kind} error: {sample}\n"));
    }
    if let Some(lag) = &r.send_lag {
        out.push_str(&format!(
            "send lag   p50 {}  p99 {}  max {}  (due time to write, idle connections only)\n",
            fmt_us(lag.p50_us),
            fmt_us(lag.p99_us),
            fmt_us(lag.max_us)
        ));
    }
    out.push_str(&format!(
        "generator  {:.1}s CPU, {:.0}% of {} thread(s); {} connections opened\n",
        r.generator_cpu_s, r.generator_cpu_percent, r.threads, r.connections_opened
    ));
    for e in &r.entries {
        out.push_str(&format!(
            "  entry {:<20} {:>10} responses  p50 {:>9}  p99 {:>9}  expected {} unexpected {} errors {}\n",
            e.name,
            fmt_count(e.responses),
            fmt_us(e.latency.p50_us),
            fmt_us(e.latency.p99_us),
            e.expected_responses,
            e.unexpected_responses,
            e.errors
        ));
    }
    for w in &r.warnings {
        out.push_str(&format!("warning    {w}\n"));
    }
    out
}

/// `loadtest run`.
pub fn run_command(args: RunArgs) -> Result<()> {
    check_writable(&args.json)?;
    check_writable(&args.html)?;
    let mut meta = Meta::capture();
    let plan = args.load.plan(&args.url, Duration::from_secs(30))?;
    let scenario = match (&plan.workload, &args.load.scenario) {
        (Workload::Scenario(s), Some(file)) => Some(ScenarioInfo {
            name: s.name.clone(),
            file: file.display().to_string(),
            token_pools: s.pool_sizes.iter().cloned().collect(),
        }),
        _ => None,
    };
    let result = crate::engine::run(plan)?;
    meta.finish();
    print!("{}", summary_text(&result));
    let report = Report::Run(Box::new(RunReport { meta, scenario, result }));
    write_outputs(&report, args.json.as_deref(), args.html.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("run"), "run");
        assert_eq!(shell_quote("http://127.0.0.1:9000/x"), "http://127.0.0.1:9000/x");
        assert_eq!(shell_quote("Authorization: Bearer x"), "'Authorization: Bearer x'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn number_formatting() {
        assert_eq!(fmt_us(512.4), "512µs");
        assert_eq!(fmt_us(1234.0), "1.23ms");
        assert_eq!(fmt_us(2_500_000.0), "2.50s");
        assert_eq!(fmt_count(1234567), "1,234,567");
        assert_eq!(fmt_count(12), "12");
    }

    #[test]
    fn environment_is_described() {
        let e = environment();
        assert!(e.cpus_allowed >= 1);
        assert!(!e.arch.is_empty());
    }
}
