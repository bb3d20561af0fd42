//! Recording and summarising what happened: latency histograms, statuses, errors, a timeline.
//!
//! Each generator thread owns one [`Recorder`] (no sharing, no atomics on the hot path); the
//! recorders are merged at the end. Latency goes into an HDR histogram in nanoseconds with three
//! significant digits, so every percentile is within 0.1 % of the exact value; min, max, mean
//! and standard deviation are computed exactly on the side, because an HDR `max` is the top of
//! a bucket rather than the largest value seen.
//!
//! Percentiles use the nearest-rank definition: p(q) is the smallest recorded value such that
//! at least `ceil(q * n)` values are at or below it. Failed requests (connect, timeout, reset…)
//! are counted by kind but are not in the latency histogram: they have no response time.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::ErrorKind;

/// Highest latency the histograms track (1 hour); slower values are clamped to it.
const MAX_TRACKED_NS: u64 = 3_600_000_000_000;

/// Status codes are stored in a flat array for speed; codes outside 100..=999 count as 999.
const STATUS_SLOTS: usize = 1000;

/// The percentiles drawn in the report's percentile chart (HDR-style: dense near the tail).
pub const CURVE_PERCENTILES: [f64; 21] =
    [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.75, 99.9, 99.95, 99.99, 100.0];

/// Only ever called with the constants in this module (sigfig 2 or 3), which hdrhistogram
/// accepts; a failure would be a programming error caught by the first test, not bad input.
#[allow(clippy::expect_used)]
fn new_histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, sigfig).expect("constant histogram bounds are valid")
}

/// A latency distribution: HDR histogram plus exact count, min, max, sum and sum of squares.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
    sum_sq: u128,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        Latency { hist: new_histogram(3), count: 0, min: u64::MAX, max: 0, sum: 0, sum_sq: 0 }
    }

    /// Records one value in nanoseconds.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let v = ns.clamp(1, MAX_TRACKED_NS);
        self.hist.saturating_record(v);
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
        self.sum_sq += u128::from(v) * u128::from(v);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds another distribution into this one.
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so adding cannot fail; if it did, the exact
        // fields below would still be right and only percentiles would miss `other`.
        let _ = self.hist.add(&other.hist);
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
    }

    /// The value at percentile `p` (0–100), in nanoseconds.
    pub fn percentile_ns(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        if p >= 100.0 {
            return self.max;
        }
        if p <= 0.0 {
            return self.min;
        }
        // `p / 100` is inexact in binary (99.9 / 100 is a hair above 0.999), and hdrhistogram
        // takes ceil(q * n) as the rank, so 1000 values would give rank 1000 for p99.9. A
        // nudge far below any real rank step restores the exact nearest rank.
        let q = (p / 100.0 - 1e-12).max(0.0);
        // The top of an HDR bucket can exceed the largest value actually seen.
        self.hist.value_at_quantile(q).clamp(self.min, self.max)
    }

    /// The summary the reports show.
    pub fn summary(&self) -> LatencySummary {
        if self.count == 0 {
            return LatencySummary::default();
        }
        let n = self.count as f64;
        let mean = self.sum as f64 / n;
        let var = (self.sum_sq as f64 / n - mean * mean).max(0.0);
        LatencySummary {
            count: self.count,
            min_us: us(self.min),
            mean_us: round3(mean / 1000.0),
            stdev_us: round3(var.sqrt() / 1000.0),
            p50_us: us(self.percentile_ns(50.0)),
            p90_us: us(self.percentile_ns(90.0)),
            p99_us: us(self.percentile_ns(99.0)),
            p999_us: us(self.percentile_ns(99.9)),
            max_us: us(self.max),
        }
    }

    /// The percentile curve for the report chart.
    pub fn curve(&self) -> Vec<PercentilePoint> {
        if self.count == 0 {
            return Vec::new();
        }
        CURVE_PERCENTILES.iter().map(|&p| PercentilePoint { percentile: p, latency_us: us(self.percentile_ns(p)) }).collect()
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Nanoseconds to microseconds, kept to the nanosecond.
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Latency figures in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub stdev_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// One point of the percentile curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub latency_us: f64,
}

/// One time slot of the timeline (by completion time, relative to the end of warm-up).
#[derive(Debug, Clone, Default)]
struct Slot {
    responses: u64,
    errors: u64,
    latency: Option<Histogram<u64>>,
    max: u64,
}

/// Throughput and latency per time slot.
#[derive(Debug, Clone)]
pub struct Timeline {
    slot: Duration,
    slots: Vec<Slot>,
    max_slots: usize,
}

impl Timeline {
    /// A timeline with slots of `slot` length, at most `max_slots` of them (later completions go
    /// into the last slot, so memory stays bounded on very long runs).
    pub fn new(slot: Duration, max_slots: usize) -> Self {
        Timeline { slot: slot.max(Duration::from_millis(1)), slots: Vec::new(), max_slots: max_slots.max(1) }
    }

    fn slot_mut(&mut self, at: Duration) -> &mut Slot {
        let idx = ((at.as_nanos() / self.slot.as_nanos()) as usize).min(self.max_slots - 1);
        if self.slots.len() <= idx {
            self.slots.resize_with(idx + 1, Slot::default);
        }
        &mut self.slots[idx]
    }

    #[inline]
    pub fn record_response(&mut self, at: Duration, latency_ns: u64) {
        let slot = self.slot_mut(at);
        slot.responses += 1;
        slot.max = slot.max.max(latency_ns);
        // Two significant digits (1 %) are plenty for a chart and keep long runs small.
        slot.latency.get_or_insert_with(|| new_histogram(2)).saturating_record(latency_ns.clamp(1, MAX_TRACKED_NS));
    }

    #[inline]
    pub fn record_error(&mut self, at: Duration) {
        self.slot_mut(at).errors += 1;
    }

    pub fn merge(&mut self, other: &Timeline) {
        if self.slots.len() < other.slots.len() {
            self.slots.resize_with(other.slots.len(), Slot::default);
        }
        for (mine, theirs) in self.slots.iter_mut().zip(&other.slots) {
            mine.responses += theirs.responses;
            mine.errors += theirs.errors;
            mine.max = mine.max.max(theirs.max);
            if let Some(h) = &theirs.latency {
                match &mut mine.latency {
                    Some(m) => {
                        let _ = m.add(h);
                    }
                    None => mine.latency = Some(h.clone()),
                }
            }
        }
    }

    /// The timeline points; the last slot's length is cut at `measured` so its rate is right.
    /// A last slot shorter than half a slot (the few responses still in flight when a
    /// duration ends) is folded into the one before, instead of showing as a fake dip.
    pub fn points(&self, measured: Duration) -> Vec<TimelinePoint> {
        let slot_s = self.slot.as_secs_f64();
        let total_s = measured.as_secs_f64();
        let mut slots: Vec<(f64, f64, Slot)> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let t = i as f64 * slot_s;
                let len = if i + 1 == self.slots.len() { (total_s - t).clamp(slot_s * 0.01, slot_s) } else { slot_s };
                (t, len, s.clone())
            })
            .collect();
        if slots.len() >= 2 && slots.last().is_some_and(|l| l.1 < slot_s * 0.5) {
            if let Some((_, len, last)) = slots.pop() {
                if let Some(prev) = slots.last_mut() {
                    prev.1 += len;
                    let mut tl = Timeline { slot: self.slot, slots: vec![prev.2.clone()], max_slots: 1 };
                    tl.merge(&Timeline { slot: self.slot, slots: vec![last], max_slots: 1 });
                    prev.2 = tl.slots.remove(0);
                }
            }
        }
        slots
            .into_iter()
            .map(|(t, len, s)| {
                let q = |p: f64| s.latency.as_ref().map(|h| us(h.value_at_quantile(p).min(s.max))).unwrap_or(0.0);
                TimelinePoint {
                    t_s: round3(t),
                    duration_s: round3(len),
                    responses: s.responses,
                    errors: s.errors,
                    rps: round3(s.responses as f64 / len),
                    p50_us: q(0.5),
                    p99_us: q(0.99),
                    max_us: us(s.max),
                }
            })
            .collect()
    }
}

/// One slot of the throughput/latency timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Slot start, seconds after warm-up.
    pub t_s: f64,
    pub duration_s: f64,
    pub responses: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// Counters for one kind of request (the whole run, or one scenario entry).
#[derive(Debug, Clone)]
pub struct Counts {
    pub latency: Latency,
    statuses: Box<[u64; STATUS_SLOTS]>,
    pub expected: u64,
    pub unexpected: u64,
    pub errors: [u64; 5],
    pub first_error: [Option<String>; 5],
}

impl Default for Counts {
    fn default() -> Self {
        Self::new()
    }
}

impl Counts {
    pub fn new() -> Self {
        Counts {
            latency: Latency::new(),
            statuses: Box::new([0; STATUS_SLOTS]),
            expected: 0,
            unexpected: 0,
            errors: [0; 5],
            first_error: Default::default(),
        }
    }

    #[inline]
    pub fn response(&mut self, status: u16, latency_ns: u64, expected: bool) {
        self.latency.record(latency_ns);
        let idx = usize::from(status).min(STATUS_SLOTS - 1);
        self.statuses[idx] += 1;
        if expected {
            self.expected += 1;
        } else {
            self.unexpected += 1;
        }
    }

    pub fn error(&mut self, kind: ErrorKind, detail: &str) {
        self.errors[kind.index()] += 1;
        let first = &mut self.first_error[kind.index()];
        if first.is_none() {
            *first = Some(detail.to_string());
        }
    }

    pub fn responses(&self) -> u64 {
        self.latency.count()
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn merge(&mut self, other: &Counts) {
        self.latency.merge(&other.latency);
        for (a, b) in self.statuses.iter_mut().zip(other.statuses.iter()) {
            *a += b;
        }
        self.expected += other.expected;
        self.unexpected += other.unexpected;
        for i in 0..5 {
            self.errors[i] += other.errors[i];
            if self.first_error[i].is_none() {
                self.first_error[i].clone_from(&other.first_error[i]);
            }
        }
    }

    /// Counts per status code, e.g. `{"200": 10, "429": 2}`.
    pub fn status_map(&self) -> BTreeMap<String, u64> {
        self.statuses.iter().enumerate().filter(|(_, &n)| n > 0).map(|(code, &n)| (code.to_string(), n)).collect()
    }

    /// Counts per status class, e.g. `{"2xx": 10, "4xx": 2}`.
    pub fn class_map(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (code, &n) in self.statuses.iter().enumerate() {
            if n > 0 {
                *out.entry(format!("{}xx", code / 100)).or_insert(0) += n;
            }
        }
        out
    }

    /// Errors per kind, every kind present (zeros included, so a report reader can see that
    /// "reset: 0" was checked rather than missing).
    pub fn error_map(&self) -> BTreeMap<String, u64> {
        ErrorKind::ALL.iter().map(|k| (k.name().to_string(), self.errors[k.index()])).collect()
    }

    pub fn error_samples(&self) -> BTreeMap<String, String> {
        ErrorKind::ALL.iter().filter_map(|k| self.first_error[k.index()].clone().map(|d| (k.name().to_string(), d))).collect()
    }
}

/// Everything one generator thread records during a run.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub all: Counts,
    /// Per scenario entry (empty without a scenario).
    pub entries: Vec<Counts>,
    /// Open loop only: how late each request was sent relative to its due time. This is the
    /// generator's own health: a large send lag while connections were idle means the pacer or
    /// the CPU could not keep up, and the report says so.
    pub send_lag: Latency,
    pub timeline: Timeline,
    /// Requests started during warm-up (not in any other figure).
    pub warmup_requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub connections_opened: u64,
    /// Last completion, relative to the end of warm-up.
    pub last_completion: Duration,
    /// Open loop: tickets the pacers released (due requests), to spot ones never sent.
    pub tickets_released: u64,
}

impl Recorder {
    pub fn new(entries: usize, slot: Duration, max_slots: usize) -> Self {
        Recorder {
            all: Counts::new(),
            entries: (0..entries).map(|_| Counts::new()).collect(),
            send_lag: Latency::new(),
            timeline: Timeline::new(slot, max_slots),
            warmup_requests: 0,
            bytes_sent: 0,
            bytes_received: 0,
            connections_opened: 0,
            last_completion: Duration::ZERO,
            tickets_released: 0,
        }
    }

    /// Records a response that completed `at` after the end of warm-up.
    #[inline]
    pub fn response(&mut self, entry: Option<usize>, status: u16, latency_ns: u64, expected: bool, at: Duration) {
        self.all.response(status, latency_ns, expected);
        if let Some(e) = entry.and_then(|i| self.entries.get_mut(i)) {
            e.response(status, latency_ns, expected);
        }
        self.timeline.record_response(at, latency_ns);
        self.last_completion = self.last_completion.max(at);
    }

    pub fn error(&mut self, entry: Option<usize>, kind: ErrorKind, detail: &str, at: Duration) {
        self.all.error(kind, detail);
        if let Some(e) = entry.and_then(|i| self.entries.get_mut(i)) {
            e.error(kind, detail);
        }
        self.timeline.record_error(at);
        self.last_completion = self.last_completion.max(at);
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.all.merge(&other.all);
        if self.entries.len() < other.entries.len() {
            self.entries.resize_with(other.entries.len(), Counts::new);
        }
        for (a, b) in self.entries.iter_mut().zip(&other.entries) {
            a.merge(b);
        }
        self.send_lag.merge(&other.send_lag);
        self.timeline.merge(&other.timeline);
        self.warmup_requests += other.warmup_requests;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.connections_opened += other.connections_opened;
        self.last_completion = self.last_completion.max(other.last_completion);
        self.tickets_released += other.tickets_released;
    }
}

/// Median of a list (mean of the middle two for even lengths); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(actual: f64, expected: f64, rel: f64) -> bool {
        (actual - expected).abs() <= expected.abs() * rel
    }

    #[test]
    fn uniform_distribution_percentiles_and_moments() {
        // 1..=10_000 µs, each once.
        let mut l = Latency::new();
        for i in 1..=10_000u64 {
            l.record(i * 1000);
        }
        let s = l.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.max_us, 10_000.0);
        assert_eq!(s.mean_us, 5000.5);
        // Standard deviation of a discrete uniform 1..n is sqrt((n^2 - 1) / 12).
        let sd = ((10_000f64 * 10_000.0 - 1.0) / 12.0).sqrt();
        assert!(within(s.stdev_us, sd, 1e-6), "{} vs {sd}", s.stdev_us);
        // Nearest rank: p50 is the 5000th value, p99 the 9900th, p99.9 the 9990th; HDR keeps
        // them within 0.1 %.
        for (got, exact) in [(s.p50_us, 5000.0), (s.p90_us, 9000.0), (s.p99_us, 9900.0), (s.p999_us, 9990.0)] {
            assert!(got >= exact && within(got, exact, 0.001), "{got} vs {exact}");
        }
    }

    #[test]
    fn small_values_are_exact() {
        // Below 2048 ns, three significant digits means every nanosecond has its own bucket.
        let mut l = Latency::new();
        for v in 1..=1000u64 {
            l.record(v);
        }
        assert_eq!(l.percentile_ns(50.0), 500);
        assert_eq!(l.percentile_ns(90.0), 900);
        assert_eq!(l.percentile_ns(99.0), 990);
        assert_eq!(l.percentile_ns(99.9), 999);
        assert_eq!(l.percentile_ns(100.0), 1000);
        assert_eq!(l.percentile_ns(0.0), 1);
    }

    #[test]
    fn constant_distribution_has_no_spread() {
        let mut l = Latency::new();
        for _ in 0..1000 {
            l.record(42_000);
        }
        let s = l.summary();
        assert_eq!((s.min_us, s.max_us, s.mean_us, s.stdev_us), (42.0, 42.0, 42.0, 0.0));
        assert_eq!((s.p50_us, s.p99_us, s.p999_us), (42.0, 42.0, 42.0));
    }

    #[test]
    fn bimodal_tail_lands_in_the_right_percentile() {
        // 99 % at 1 ms, 1 % at 100 ms: p99 is still 1 ms, p99.9 is 100 ms.
        let mut l = Latency::new();
        for _ in 0..9900 {
            l.record(1_000_000);
        }
        for _ in 0..100 {
            l.record(100_000_000);
        }
        let s = l.summary();
        assert!(within(s.p50_us, 1000.0, 0.001));
        assert!(within(s.p99_us, 1000.0, 0.001));
        assert!(within(s.p999_us, 100_000.0, 0.001));
        assert_eq!(s.max_us, 100_000.0);
        assert!(within(s.mean_us, 1990.0, 1e-9));
    }

    #[test]
    fn exponential_distribution_matches_its_quantile_function() {
        // Deterministic sample: the exponential quantile function at (i + 0.5) / n, mean 200 µs.
        // Its p-quantile is -ln(1 - p) * mean.
        let n = 200_000;
        let mean_ns = 200_000.0;
        let mut l = Latency::new();
        for i in 0..n {
            let u = (i as f64 + 0.5) / n as f64;
            l.record((-(1.0 - u).ln() * mean_ns) as u64);
        }
        for p in [0.5f64, 0.9, 0.99, 0.999] {
            let exact_us = -(1.0 - p).ln() * mean_ns / 1000.0;
            let got = l.percentile_ns(p * 100.0) as f64 / 1000.0;
            assert!(within(got, exact_us, 0.002), "p{p}: {got} vs {exact_us}");
        }
        assert!(within(l.summary().mean_us, 200.0, 0.002));
    }

    #[test]
    fn merged_recorders_equal_one_recorder() {
        let mut one = Recorder::new(2, Duration::from_secs(1), 100);
        let mut a = Recorder::new(2, Duration::from_secs(1), 100);
        let mut b = Recorder::new(2, Duration::from_secs(1), 100);
        for i in 0..5000u64 {
            let status = if i % 10 == 0 { 429 } else { 200 };
            let at = Duration::from_millis(i);
            let entry = Some((i % 2) as usize);
            one.response(entry, status, i * 997, status == 200, at);
            let target = if i % 3 == 0 { &mut a } else { &mut b };
            target.response(entry, status, i * 997, status == 200, at);
        }
        one.error(None, ErrorKind::Reset, "peer reset", Duration::from_millis(10));
        b.error(None, ErrorKind::Reset, "peer reset", Duration::from_millis(10));
        a.merge(&b);
        assert_eq!(a.all.latency.summary(), one.all.latency.summary());
        assert_eq!(a.all.status_map(), one.all.status_map());
        assert_eq!(a.all.class_map(), BTreeMap::from([("2xx".into(), 4500), ("4xx".into(), 500)]));
        assert_eq!((a.all.expected, a.all.unexpected), (4500, 500));
        assert_eq!(a.all.error_map()["reset"], 1);
        assert_eq!(a.entries[1].responses(), 2500);
        let pa = a.timeline.points(Duration::from_secs(5));
        assert_eq!(pa, one.timeline.points(Duration::from_secs(5)));
        assert_eq!(pa.len(), 5);
        assert_eq!(pa[0].responses, 1000);
        assert_eq!(pa[0].errors, 1);
        assert_eq!(pa[0].rps, 1000.0);
    }

    #[test]
    fn timeline_last_slot_rate_uses_its_real_length() {
        let mut t = Timeline::new(Duration::from_secs(1), 10);
        for i in 0..160u64 {
            t.record_response(Duration::from_millis(i * 10), 1000);
        }
        let p = t.points(Duration::from_millis(1600));
        assert_eq!(p.len(), 2);
        assert_eq!((p[1].responses, p[1].duration_s, p[1].rps), (60, 0.6, 100.0));
    }

    #[test]
    fn a_short_tail_slot_is_folded_into_the_previous_one() {
        // 3 full seconds at 100/s, then 2 stragglers completing 20 ms after the end.
        let mut t = Timeline::new(Duration::from_secs(1), 10);
        for i in 0..300u64 {
            t.record_response(Duration::from_millis(i * 10), 1000);
        }
        t.record_response(Duration::from_millis(3010), 5000);
        t.record_response(Duration::from_millis(3020), 5000);
        let p = t.points(Duration::from_millis(3020));
        assert_eq!(p.len(), 3);
        assert_eq!((p[2].responses, p[2].duration_s, p[2].max_us), (102, 1.02, 5.0));
        assert!((p[2].rps - 100.0).abs() < 0.01);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
