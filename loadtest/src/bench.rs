//! `loadtest bench`: the standard gateway scenarios, end to end, processes included.
//!
//! It starts everything it measures and stops everything it started:
//! 1. its own upstream (`loadtest upstream`, this same binary) on 127.0.0.1:18080;
//! 2. the gateway (`target/release/gateway run --config conf/bench.yaml`), which listens on
//!    127.0.0.1:18099 and forwards `/bench/v1/*` to the upstream; optionally a second gateway
//!    with a token-checking config for the `jwt` scenario;
//! 3. waits until each answers `200` (with a timeout), then measures the scenarios in
//!    interleaved rounds (see [`crate::compare`]): `direct` (client → upstream), `passthrough`
//!    (client → gateway → upstream), `jwt` (the same with token checks);
//! 4. prints the comparison table and writes `report.json`, `report.html` and the processes'
//!    logs into a timestamped folder.
//!
//! Every child runs in a process group of its own and is stopped through that group's id
//! (SIGINT, like Ctrl-C, which Pingora treats as a fast shutdown; SIGKILL 3 s later), including
//! when the bench fails half-way or is interrupted. Nothing is ever stopped by name.
//!
//! For each measurement it also reads the CPU time of the processes it started, and reports
//! CPU µs per request: the steadiest figure when comparing gateway builds, because it does not
//! depend on where the client bottleneck is.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::BenchArgs;
use crate::compare::{run_rounds, stop_on_ctrl_c, summarize, table_text, CompareReport, CompareSettings, CpuSample, Measured};
use crate::engine::Plan;
use crate::report_json::{write_json, Meta, Report};
use crate::target::Target;

/// How long a child gets to exit after SIGINT before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A child process in its own process group, stopped when dropped.
pub struct ChildProc {
    pub name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl ChildProc {
    /// Starts `cmd` in a new process group, with stdout and stderr appended to `log` (stdout is
    /// piped instead when `capture_stdout`, to read a first line such as "listening on ...").
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, capture_stdout: bool) -> Result<ChildProc> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open log {}", log.display()))?;
        let err = file.try_clone()?;
        cmd.stdin(Stdio::null()).stderr(Stdio::from(err)).process_group(0);
        if capture_stdout {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(Stdio::from(file));
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        Ok(ChildProc { name: name.to_string(), child, log: log.to_path_buf(), stopped: false })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the first stdout line (only with `capture_stdout`); the rest goes to the log.
    pub fn first_line(&mut self, timeout: Duration) -> Result<String> {
        let out = self.child.stdout.take().ok_or_else(|| anyhow!("{}: stdout not captured", self.name))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining into the log so the child never blocks on a full pipe.
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) {
                let _ = std::io::copy(&mut reader, &mut f);
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(line) if !line.is_empty() => Ok(line.trim().to_string()),
            _ => Err(self.died_or(format!("{} printed nothing within {timeout:?}", self.name))),
        }
    }

    /// CPU seconds used by the process: the sum of its threads' scheduler run time
    /// (`/proc/PID/task/*/schedstat`, nanoseconds), or `/proc/PID/stat` (10 ms ticks) where
    /// that is unavailable. Nanoseconds matter: a short measurement of a fast process uses less
    /// CPU than one tick.
    pub fn cpu_seconds(&self) -> Option<f64> {
        thread_cpu_seconds(self.pid()).or_else(|| {
            let text = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
            crate::engine::cpu_seconds_from_stat(&text, true)
        })
    }

    /// An error for a child that should be running: says whether it exited and shows its log.
    fn died_or(&mut self, what: String) -> anyhow::Error {
        let status = match self.child.try_wait() {
            Ok(Some(s)) => format!(" ({} exited: {s})", self.name),
            _ => String::new(),
        };
        anyhow!("{what}{status}\n--- last lines of {} ---\n{}", self.log.display(), tail(&self.log, 15))
    }

    /// Fails if the child has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            _ => Err(self.died_or(format!("{} is not running", self.name))),
        }
    }

    /// SIGINT to the process group, then SIGKILL after the grace period.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::INT);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // The leader is gone; make sure nothing it started stays behind.
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sums the run time of every thread of `pid` from `schedstat` (threads that already exited
/// are not counted; the processes measured here keep their threads for their whole life).
fn thread_cpu_seconds(pid: u32) -> Option<f64> {
    let mut total_ns: u64 = 0;
    let mut any = false;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else { continue };
        if let Some(ns) = text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) {
            total_ns += ns;
            any = true;
        }
    }
    any.then_some(total_ns as f64 / 1e9)
}

/// A command as a shell line, for notes and logs.
fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| crate::report_json::shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Fails with a clear message when `addr` is already taken, before anything is started.
fn ensure_free(addr: SocketAddr, what: &str) -> Result<()> {
    TcpListener::bind(addr).map(drop).map_err(|e| {
        anyhow!("{what} address {addr} is not free ({e}); stop whatever listens there (another bench run or the shared harness?)")
    })
}

/// Polls `GET path` until it answers 200 or `timeout` passes; fails early if `proc` exits.
pub fn wait_ready(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
    mut proc: Option<&mut ChildProc>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Some(p) = proc.as_deref_mut() {
            p.check_running()?;
        }
        match rt.block_on(crate::client::simple_request(addr, "GET", path, headers, b"", Duration::from_secs(2))) {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => last = format!("status {}", r.status),
            Err(f) => last = f.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let what = format!("http://{addr}{path} did not answer 200 within {timeout:?} (last: {last})");
    match proc {
        Some(p) => Err(p.died_or(what)),
        None => Err(anyhow!(what)),
    }
}

/// A command, wrapped in `taskset -c CPUS` when pinning was asked for.
fn pinned(program: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn timestamp() -> String {
    let t = crate::report_json::now_rfc3339();
    t.replace([':', '-'], "").replace('T', "-").trim_end_matches('Z').to_string()
}

/// Resolves the token sent with every request, like the shared harness does.
fn bench_token(args: &BenchArgs) -> Result<Option<(String, PathBuf)>> {
    let path = match &args.token_file {
        Some(p) => p.clone(),
        None => {
            let default = PathBuf::from("../shared/bench/keys/token_rs256.txt");
            if !default.is_file() {
                return Ok(None);
            }
            default
        }
    };
    let token = std::fs::read_to_string(&path).with_context(|| format!("cannot read --token-file {}", path.display()))?;
    let token = token.trim().to_string();
    if token.is_empty() || !crate::http1::valid_header_value(&token) {
        bail!("{} does not contain a usable token", path.display());
    }
    Ok(Some((token, path)))
}

/// `loadtest bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let mut meta = Meta::capture();
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let known = ["direct", "passthrough", "jwt"];
    for s in &args.scenarios {
        if !known.contains(&s.as_str()) {
            bail!("unknown scenario {s:?} (known: {})", known.join(", "));
        }
    }
    let token = bench_token(&args)?;
    let scenarios: Vec<String> = if args.scenarios.is_empty() {
        let mut v = vec!["direct".to_string(), "passthrough".to_string()];
        if args.jwt_config.is_file() && token.is_some() {
            v.push("jwt".to_string());
        }
        v
    } else {
        args.scenarios.clone()
    };
    let wants = |s: &str| scenarios.iter().any(|x| x == s);
    let needs_gateway = wants("passthrough") || wants("jwt");
    if needs_gateway && !args.gateway.is_file() {
        bail!(
            "gateway binary {} not found; build it with `cargo build --release -p gateway`, or pass --gateway, or run --scenarios direct",
            args.gateway.display()
        );
    }
    if wants("passthrough") && !args.config.is_file() {
        bail!("gateway config {} not found (pass --config)", args.config.display());
    }
    let jwt_config = match (wants("jwt"), args.jwt_config.is_file()) {
        (true, true) => Some(args.jwt_config.clone()),
        (true, false) => {
            bail!("the jwt scenario needs a gateway config that verifies tokens: --jwt-config {} not found", args.jwt_config.display())
        }
        (false, _) => None,
    };
    if wants("jwt") && token.is_none() {
        bail!("the jwt scenario needs a token: pass --token-file (default ../shared/bench/keys/token_rs256.txt)");
    }
    if args.sut_cpus.is_some() && Command::new("taskset").arg("-V").output().is_err() {
        bail!("--sut-cpus needs the taskset command (package util-linux)");
    }
    let mut load = args.load.clone();
    if let Some((t, _)) = &token {
        load.headers.push(("Authorization".to_string(), format!("Bearer {t}")));
    }
    // Targets and their plans; all must be loopback unless --allow-remote.
    let direct_url = format!("http://{}/x", args.upstream);
    let mut targets: Vec<(String, String)> = Vec::new();
    for s in &scenarios {
        let url = match s.as_str() {
            "direct" => direct_url.clone(),
            "passthrough" => args.gateway_url.clone(),
            _ => args.jwt_url.clone(),
        };
        targets.push((s.clone(), url));
    }
    let mut plans = Vec::new();
    for (name, url) in &targets {
        let plan = load.plan(url, Duration::from_secs(10)).map_err(|e| e.context(format!("scenario {name}")))?;
        plans.push((name.clone(), plan));
    }
    let gw_target = Target::parse(&args.gateway_url, load.allow_remote)?;
    let jwt_target = Target::parse(&args.jwt_url, load.allow_remote)?;
    // Nothing may already listen where our processes will.
    ensure_free(args.upstream, "upstream")?;
    if wants("passthrough") {
        ensure_free(gw_target.addr, "gateway")?;
    }
    if wants("jwt") {
        ensure_free(jwt_target.addr, "jwt gateway")?;
    }
    let out = args.out.join(format!("bench-{}", timestamp()));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_ctrl_c(stop.clone());
    let mut notes = Vec::new();
    let sut = args.sut_cpus.as_deref();

    // 1. The upstream: this binary, one worker thread per SUT CPU (one when unpinned).
    let exe = std::env::current_exe().context("cannot find the loadtest binary itself")?;
    let mut cmd = pinned(&exe, sut);
    let up_threads = sut.map(count_cpus).unwrap_or(1).max(1);
    cmd.args(["upstream", "--listen", &args.upstream.to_string(), "--body-size", &args.body_size.to_string()])
        .args(["--threads", &up_threads.to_string()]);
    notes.push(format!("upstream: {}", command_line(&cmd)));
    let mut upstream = ChildProc::spawn("upstream", cmd, &out.join("upstream.log"), true)?;
    let line = upstream.first_line(Duration::from_secs(10))?;
    eprintln!("upstream {line} (pid {})", upstream.pid());
    wait_ready(args.upstream, "/health", &[], args.ready_timeout, Some(&mut upstream))?;

    // 2. The gateway(s).
    let auth: Vec<(String, String)> = load.headers.clone();
    let mut gateways: Vec<(String, ChildProc)> = Vec::new();
    let mut start_gateway = |name: &str, config: &Path, target: &Target| -> Result<()> {
        let mut cmd = pinned(&args.gateway, sut);
        cmd.arg("run").arg("--config").arg(config);
        notes.push(format!("{name}: {}", command_line(&cmd)));
        let mut gw = ChildProc::spawn(name, cmd, &out.join(format!("{name}.log")), false)?;
        eprintln!("{name} starting (pid {}), waiting for {}", gw.pid(), target.url);
        wait_ready(target.addr, &target.path, &auth, args.ready_timeout, Some(&mut gw))?;
        gateways.push((name.to_string(), gw));
        Ok(())
    };
    if wants("passthrough") {
        start_gateway("gateway", &args.config, &gw_target)?;
    }
    if let Some(cfg) = &jwt_config {
        start_gateway("gateway-jwt", cfg, &jwt_target)?;
    }
    if let Some((_, path)) = &token {
        notes.push(format!("every request carries Authorization: Bearer <token from {}>", path.display()));
    }
    if let Some(c) = sut {
        notes.push(format!("gateway and upstream pinned to CPU(s) {c} with taskset"));
    }
    if !load.cpus.is_empty() {
        notes.push(format!("generator threads pinned to CPU(s) {:?}", load.cpus));
    }
    notes.push(format!("logs in {}", out.display()));

    // 3. The rounds. CPU per request is read around each measurement for the processes that
    //    serve that scenario.
    let settings = CompareSettings::from_plan(&plans[0].1, args.rounds, args.order);
    let stop2 = stop.clone();
    let mut measure = |i: usize, plan: &Plan| -> Result<Measured> {
        upstream.check_running()?;
        for (_, g) in gateways.iter_mut() {
            g.check_running()?;
        }
        let scenario = plans[i].0.as_str();
        // Every process we started, for the foreign-CPU figure; the ones serving this scenario
        // also get a CPU-per-request figure.
        let mut all: Vec<&ChildProc> = vec![&upstream];
        all.extend(gateways.iter().map(|(_, g)| g));
        let serves = |p: &ChildProc| {
            p.name == "upstream" || (scenario == "passthrough" && p.name == "gateway") || (scenario == "jwt" && p.name == "gateway-jwt")
        };
        let before: Vec<Option<f64>> = all.iter().map(|p| p.cpu_seconds()).collect();
        let machine_before = CpuSample::now();
        let mut p = plan.clone();
        p.progress = crate::progress::ProgressMode::Quiet;
        let result = crate::engine::run_with_stop(p, stop2.clone())?;
        let mut cpu = BTreeMap::new();
        let mut own = result.generator_cpu_s;
        // Warm-up requests used CPU too; divide by every request served in the window.
        let served = (result.responses + result.warmup_requests).max(1) as f64;
        for (proc, b) in all.iter().zip(before) {
            if let (Some(b), Some(a)) = (b, proc.cpu_seconds()) {
                own += a - b;
                if serves(proc) {
                    cpu.insert(proc.name.clone(), (a - b) * 1e6 / served);
                }
            }
        }
        let machine = machine_before.and_then(|m| m.since(Some(own)));
        Ok(Measured { result, cpu_us_per_request: cpu, machine })
    };
    let rounds = run_rounds(&plans, args.rounds, args.order, args.max_other, &stop, &mut measure)?;

    // 4. Stop everything (in reverse order), then report.
    for (_, g) in gateways.iter_mut().rev() {
        g.stop();
    }
    upstream.stop();
    meta.finish();
    let summaries = summarize(&targets, &rounds);
    print!("{}", table_text(&summaries));
    let report = Report::Compare(Box::new(CompareReport { meta, title: "bench".to_string(), settings, targets: summaries, rounds, notes }));
    let json = out.join("report.json");
    let html = out.join("report.html");
    write_json(&json, &report)?;
    crate::report_html::write(&html, &report)?;
    eprintln!("wrote {} and {}", json.display(), html.display());
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted; the report has the rounds measured so far");
    }
    Ok(())
}

/// Counts the CPUs in a taskset list such as `1`, `0,2` or `2-3`.
fn count_cpus(list: &str) -> usize {
    list.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("1"), 1);
        assert_eq!(count_cpus("0,2"), 2);
        assert_eq!(count_cpus("2-5"), 4);
    }

    #[test]
    fn a_child_is_stopped_through_its_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        // A shell that starts a grandchild: both must go when the group is stopped.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & echo started; wait"]);
        let mut p = ChildProc::spawn("sleeper", cmd, &log, true).unwrap();
        assert_eq!(p.first_line(Duration::from_secs(5)).unwrap(), "started");
        p.check_running().unwrap();
        let t = Instant::now();
        p.stop();
        assert!(t.elapsed() < STOP_GRACE + Duration::from_secs(1));
        assert!(p.check_running().is_err());
    }

    #[test]
    fn readiness_timeout_explains_itself() {
        // Nothing listens on this port (bound and released just before).
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let err = wait_ready(addr, "/health", &[], Duration::from_millis(300), None).unwrap_err().to_string();
        assert!(err.contains("did not answer 200"), "{err}");
    }
}
