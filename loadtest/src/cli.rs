//! The command line: subcommands, options, and turning them into a validated [`Plan`].
//!
//! Every user-supplied value is parsed here into a typed value with a clear error (bad
//! durations, header syntax, URLs, scenario files), so the rest of the tool never has to
//! second-guess its input.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::{Plan, Workload};
use crate::http1::{valid_header_name, valid_header_value, write_request};
use crate::progress::ProgressMode;
use crate::scenario::{Scenario, StatusSet};
use crate::target::Target;

#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about = "HTTP load generator, upstream, test IdP and benchmark runner", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load one URL (closed loop, or open loop with --rate) and report.
    Run(RunArgs),
    /// Load several targets in interleaved rounds and compare them.
    Compare(CompareArgs),
    /// A fast, minimal HTTP/1.1 upstream for benchmarks.
    Upstream(UpstreamArgs),
    /// A test identity provider: JWKS, OIDC discovery, client-credentials tokens, introspection.
    Idp(IdpArgs),
    /// The standard gateway benchmark, end to end: starts the upstream and the gateway.
    Bench(BenchArgs),
    /// Renders the HTML report again from a JSON result file.
    Report(ReportArgs),
}

/// Parses `30s`, `500ms`, `2m` (humantime), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(format!("invalid duration {s:?}"));
    }
    humantime::parse_duration(t).map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 30s, 500ms, 2m"))
}

/// Parses a `Name: value` header.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once(':').ok_or_else(|| format!("bad header {s:?}: expected 'Name: value'"))?;
    let name = name.trim();
    let value = value.trim();
    if !valid_header_name(name) {
        return Err(format!("bad header {s:?}: {name:?} is not a valid header name"));
    }
    if !valid_header_value(value) {
        return Err(format!("bad header {s:?}: the value contains a line break or control character"));
    }
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding") {
        return Err(format!("bad header {s:?}: {name} is set by the tool from the body"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Parses `NAME=URL` for `compare --target`.
pub fn parse_named_target(s: &str) -> Result<(String, String), String> {
    let (name, url) = s.split_once('=').ok_or_else(|| format!("bad target {s:?}: expected NAME=URL"))?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("bad target name {name:?}: use letters, digits, '-', '_' or '.'"));
    }
    Ok((name.to_string(), url.trim().to_string()))
}

/// Load options shared by `run`, `compare` and `bench`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// Generator threads (default: one per CPU in --cpus, else the CPUs this process may run on;
    /// at most one per connection).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Measured duration (after warm-up), e.g. 30s. Default 30s unless --requests is given.
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Measured request count (after warm-up): exactly this many requests are sent.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Open loop at this many requests/s; latency counts from each request's intended send time.
    #[arg(short = 'r', long)]
    pub rate: Option<f64>,
    /// Warm-up before measuring (default 1s for duration runs, 0 for --requests runs).
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Per-request timeout; a request without a complete response by then is a timeout error.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Time allowed to open a TCP connection; a failure counts as a connect error.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub connect_timeout: Duration,
    /// Hard cap on a run, whatever else happens.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub max_duration: Duration,
    /// HTTP method.
    #[arg(short = 'm', long, default_value = "GET", conflicts_with = "scenario")]
    pub method: String,
    /// A request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Request body from a file.
    #[arg(long, conflicts_with = "scenario")]
    pub body_file: Option<PathBuf>,
    /// A scenario file (YAML) describing a weighted request mix.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Statuses that count as expected, e.g. 2xx,429 (default 2xx,3xx; scenarios set their own).
    #[arg(long, value_delimiter = ',')]
    pub expect: Vec<String>,
    /// Allow targets that are not on this machine.
    #[arg(long)]
    pub allow_remote: bool,
    /// Seed for the scenario's random choices (runs with the same seed send the same mix).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Pin generator threads to these CPUs, e.g. 0 or 0,2.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Timeline resolution.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub interval: Duration,
    /// Progress display on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Target URL (http://host:port/path).
    pub url: String,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Write every figure, the command and the environment as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report with charts.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// Target order inside each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// A B C, A B C, ...
    Forward,
    /// A B C, C B A, ... (cancels linear drift within a round pair; what ../shared/bench does)
    Alternate,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A target, NAME=URL (repeatable; the first is the baseline of every ratio).
    #[arg(long = "target", required = true, value_parser = parse_named_target)]
    pub targets: Vec<(String, String)>,
    /// Rounds; each round measures every target once.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    #[arg(long, value_enum, default_value_t = Order::Forward)]
    pub order: Order,
    /// A measurement with more steal than this (% of one CPU) is left out of the medians.
    #[arg(long, default_value_t = 15.0)]
    pub max_other: f64,
    #[command(flatten)]
    pub load: LoadArgs,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: std::net::SocketAddr,
    /// Size of each response body in bytes.
    #[arg(long, default_value_t = 64)]
    pub body_size: usize,
    /// Delay before each response.
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    pub delay: Duration,
    /// Worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Allow listening on a non-loopback address.
    #[arg(long)]
    pub allow_remote: bool,
}

#[derive(Debug, Args)]
pub struct IdpArgs {
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub listen: std::net::SocketAddr,
    /// The issuer URL (default: http://LISTEN).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Load signing keys from this directory (*.pem private keys, *.secret HMAC secrets);
    /// without it an ES256 and an EdDSA key are generated.
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Key id for loaded keys when a directory has one key per algorithm (default: file stem).
    #[arg(long)]
    pub kid: Option<String>,
    /// Algorithm of issued tokens (default: the first key's).
    #[arg(long)]
    pub alg: Option<String>,
    /// A client allowed to get tokens and introspect: ID:SECRET[:TIER[:SCOPE]] (repeatable).
    #[arg(long = "client")]
    pub clients: Vec<String>,
    /// Audience of issued tokens.
    #[arg(long, default_value = "bench-api")]
    pub audience: String,
    /// Lifetime of issued tokens.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub token_ttl: Duration,
    /// Issue opaque tokens (only valid through introspection) instead of JWTs.
    #[arg(long)]
    pub opaque: bool,
    #[arg(long)]
    pub allow_remote: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The gateway binary.
    #[arg(long, default_value = "target/release/gateway")]
    pub gateway: PathBuf,
    /// The gateway config for the passthrough scenario.
    #[arg(long, default_value = "conf/bench.yaml")]
    pub config: PathBuf,
    /// Scenarios to run, in order: direct, passthrough, jwt. Default: direct and passthrough,
    /// plus jwt when --jwt-config exists and a token is available.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Gateway config for the `jwt` scenario (a second gateway process that verifies the token,
    /// then serves it from its verified-token cache).
    #[arg(long, default_value = "conf/bench-auth.yaml")]
    pub jwt_config: PathBuf,
    /// URL of the `jwt` scenario's gateway.
    #[arg(long, default_value = "http://127.0.0.1:18098/bench/v1/x")]
    pub jwt_url: String,
    /// Where the upstream listens (the passthrough config forwards to it).
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub upstream: std::net::SocketAddr,
    /// URL of the passthrough scenario.
    #[arg(long, default_value = "http://127.0.0.1:18099/bench/v1/x")]
    pub gateway_url: String,
    /// Token sent as `Authorization: Bearer` with every request (a file with one JWT). Default:
    /// ../shared/bench/keys/token_rs256.txt when it exists, like the shared harness.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Upstream response body size.
    #[arg(long, default_value_t = 64)]
    pub body_size: usize,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long, value_enum, default_value_t = Order::Alternate)]
    pub order: Order,
    /// A measurement with more foreign CPU plus steal than this (% of one CPU) is not clean and
    /// is left out of the medians (the rule of ../shared/bench).
    #[arg(long, default_value_t = 15.0)]
    pub max_other: f64,
    /// Pin the gateway and the upstream to these CPUs (with taskset), e.g. 1.
    #[arg(long)]
    pub sut_cpus: Option<String>,
    /// How long to wait for each process to answer 200.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub ready_timeout: Duration,
    /// Output directory (a timestamped folder is created inside).
    #[arg(long, default_value = "loadtest-out")]
    pub out: PathBuf,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A JSON file written by run, compare or bench.
    pub json: PathBuf,
    #[arg(long)]
    pub html: PathBuf,
}

/// The CPUs this process may run on (honours `taskset`).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl LoadArgs {
    /// Builds a validated plan for `url`. `default_duration` applies when neither --duration
    /// nor --requests is given.
    pub fn plan(&self, url: &str, default_duration: Duration) -> Result<Plan> {
        let target = Target::parse(url, self.allow_remote)?;
        let (duration, requests) = match (self.duration, self.requests) {
            (None, None) => (Some(default_duration), None),
            other => other,
        };
        let warmup = self.warmup.unwrap_or(if requests.is_none() { Duration::from_secs(1) } else { Duration::ZERO });
        let workload = self.workload(&target)?;
        let cpus = if self.cpus.is_empty() { available_cpus() } else { self.cpus.len() };
        let threads = self.threads.unwrap_or_else(|| cpus.min(self.connections.max(1)));
        let plan = Plan {
            url: url.to_string(),
            addr: target.addr,
            connections: self.connections,
            threads,
            rate: self.rate,
            duration,
            requests,
            warmup,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            max_duration: self.max_duration,
            workload,
            seed: self.seed,
            cpus: (!self.cpus.is_empty()).then(|| self.cpus.clone()),
            slot: self.interval,
            progress: self.progress,
        };
        plan.validate()?;
        Ok(plan)
    }

    fn workload(&self, target: &Target) -> Result<Workload> {
        if let Some(path) = &self.scenario {
            if !self.headers.is_empty() {
                bail!("--header cannot be combined with --scenario; put headers in the scenario's defaults");
            }
            if !self.expect.is_empty() {
                bail!("--expect cannot be combined with --scenario; set expect in the scenario");
            }
            let scenario = Scenario::load(path, &target.authority)?;
            return Ok(Workload::Scenario(Arc::new(scenario)));
        }
        let method = self.method.trim().to_ascii_uppercase();
        if method.is_empty() || !valid_header_name(&method) {
            bail!("--method {:?} is not a valid HTTP method", self.method);
        }
        let body = match &self.body_file {
            Some(p) => std::fs::read(p).with_context(|| format!("cannot read --body-file {}", p.display()))?,
            None => Vec::new(),
        };
        let expect = if self.expect.is_empty() { StatusSet::success() } else { StatusSet::parse(&self.expect).context("--expect")? };
        let mut bytes = Vec::new();
        write_request(&mut bytes, &method, &target.path, &target.authority, &self.headers, &body);
        Ok(Workload::Fixed { request: Arc::from(bytes), head: method == "HEAD", expect })
    }
}

/// Checks an output path can be written before a long run, rather than after it.
pub fn check_writable(path: &Option<PathBuf>) -> Result<()> {
    if let Some(p) = path {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            return Err(anyhow!("cannot write {}: directory {} does not exist", p.display(), dir.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").unwrap_err().contains("invalid duration"));
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(parse_header("Authorization: Bearer x"), Ok(("Authorization".into(), "Bearer x".into())));
        assert_eq!(parse_header("X-Empty:"), Ok(("X-Empty".into(), String::new())));
        assert!(parse_header("no colon").unwrap_err().contains("expected 'Name: value'"));
        assert!(parse_header("Bad Name: v").unwrap_err().contains("not a valid header name"));
        assert!(parse_header("Content-Length: 4").is_err());
    }

    #[test]
    fn named_targets() {
        assert_eq!(parse_named_target("gw=http://127.0.0.1:1/x"), Ok(("gw".into(), "http://127.0.0.1:1/x".into())));
        assert!(parse_named_target("http://x").is_err());
        assert!(parse_named_target("a b=http://x").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn plan_defaults_and_errors() {
        let cli = Cli::try_parse_from(["loadtest", "run", "http://127.0.0.1:9/", "-n", "10"]).unwrap();
        let Command::Run(args) = cli.command else { panic!() };
        let plan = args.load.plan(&args.url, Duration::from_secs(30)).unwrap();
        assert_eq!((plan.requests, plan.duration, plan.warmup, plan.connections), (Some(10), None, Duration::ZERO, 64));
        let cli = Cli::try_parse_from(["loadtest", "run", "http://127.0.0.1:9/"]).unwrap();
        let Command::Run(args) = cli.command else { panic!() };
        let plan = args.load.plan(&args.url, Duration::from_secs(30)).unwrap();
        assert_eq!((plan.duration, plan.warmup), (Some(Duration::from_secs(30)), Duration::from_secs(1)));
        // Bad input is a parse error, not a panic.
        assert!(Cli::try_parse_from(["loadtest", "run", "http://127.0.0.1:9/", "-H", "nocolon"]).is_err());
        assert!(Cli::try_parse_from(["loadtest", "run", "http://127.0.0.1:9/", "-d", "soon"]).is_err());
        let cli = Cli::try_parse_from(["loadtest", "run", "http://example.invalid/"]).unwrap();
        let Command::Run(args) = cli.command else { panic!() };
        assert!(args.load.plan(&args.url, Duration::from_secs(1)).is_err());
    }
}
