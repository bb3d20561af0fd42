//! Progress while a run is going: a live bar on a terminal, plain lines otherwise.
//!
//! A bar redrawn in place is unreadable in a CI log, and a log line every 250 ms floods it, so
//! the display depends on whether stderr is a terminal: an `indicatif` bar with live RPS and
//! errors there, one plain line every few seconds elsewhere. Progress goes to stderr so stdout
//! stays clean for the result table.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// A live bar with the current rate and errors (redrawn in place).
    Bar,
    /// A plain line every 5 seconds and one at the end (for logs and CI).
    Lines,
    /// Nothing.
    Quiet,
}

/// Seconds between plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    duration: Option<Duration>,
    requests: Option<u64>,
    warmup: Duration,
    last_line: Duration,
    /// Previous sample, to compute the current rate.
    last: (Duration, u64),
    rate: f64,
    /// The latest totals, for the closing line.
    totals: (Duration, u64, u64),
}

impl Progress {
    pub fn new(mode: ProgressMode, duration: Option<Duration>, requests: Option<u64>, warmup: Duration) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let (bar, lines) = match mode {
            ProgressMode::Quiet => (false, false),
            ProgressMode::Bar => (true, false),
            ProgressMode::Lines => (false, true),
            ProgressMode::Auto => (terminal, !terminal),
        };
        let bar = bar.then(|| {
            // Length in milliseconds (duration runs) or requests (count runs).
            let len = match (duration, requests) {
                (Some(d), _) => (warmup + d).as_millis() as u64,
                (None, Some(n)) => n,
                (None, None) => 0,
            };
            let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
            let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            pb.set_style(style);
            pb
        });
        Progress {
            bar,
            lines,
            duration,
            requests,
            warmup,
            last_line: Duration::ZERO,
            last: (Duration::ZERO, 0),
            rate: 0.0,
            totals: (Duration::ZERO, 0, 0),
        }
    }

    /// Called a few times a second with totals since the start (warm-up included).
    pub fn update(&mut self, elapsed: Duration, responses: u64, errors: u64) {
        let done = responses + errors;
        self.totals = (elapsed, responses, errors);
        let dt = elapsed.saturating_sub(self.last.0).as_secs_f64();
        if dt >= 0.2 {
            let instant = done.saturating_sub(self.last.1) as f64 / dt;
            // Smooth a little so the number is readable.
            self.rate = if self.rate == 0.0 { instant } else { 0.5 * self.rate + 0.5 * instant };
            self.last = (elapsed, done);
        }
        let phase = if elapsed < self.warmup { " (warm-up)" } else { "" };
        if let Some(bar) = &self.bar {
            match (self.duration, self.requests) {
                (Some(_), _) => bar.set_position(elapsed.as_millis() as u64),
                _ => bar.set_position(done),
            }
            bar.set_message(format!("{:.0} req/s, {responses} responses, {errors} errors{phase}", self.rate));
        }
        if self.lines && elapsed >= self.last_line + LINE_EVERY {
            self.last_line = elapsed;
            eprintln!("[{:>6.1}s] {responses} responses, {errors} errors, {:.0} req/s{phase}", elapsed.as_secs_f64(), self.rate);
        }
    }

    /// Prints a one-off message without breaking the bar.
    pub fn note(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None if self.lines => eprintln!("{msg}"),
            None => {}
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.lines {
            let (elapsed, responses, errors) = self.totals;
            eprintln!("[{:>6.1}s] done: {responses} responses, {errors} errors (warm-up included)", elapsed.as_secs_f64());
        }
    }
}
