//! Upstream groups: targets resolved at compile time, weighted round robin or failover over
//! the healthy ones, and the per-target health handles from [`crate::state::Durable`].
//!
//! Selection never blocks and never allocates: a shared cursor walks a precomputed smooth
//! weighted schedule (nginx's algorithm, unrolled once at compile time). When every target is
//! unhealthy the group goes into *panic mode* and uses them anyway, in schedule order: a
//! health checker that wrongly marks everything down must not turn into a full outage
//! (Envoy's panic threshold does the same).
//!
//! `spec.rs` is the `endpoint:` schema, `compile.rs` resolves and checks it at reload time, and
//! this file selects targets per request.

pub(crate) mod compile;
pub(crate) mod spec;

use crate::state::TargetHealth;
use http::HeaderValue;
use spec::Strategy;
use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Most targets a group may have: tried targets are tracked in a `u64` bitmask.
pub const MAX_TARGETS: usize = 64;

#[derive(Debug)]
pub struct Endpoint {
    pub strategy: Strategy,
    pub targets: Vec<Target>,
    /// Target indices in smooth-weighted order (RoundRobin only).
    schedule: Vec<u8>,
    cursor: AtomicUsize,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub retries: u32,
    pub preserve_host: bool,
    pub health_check: Option<HealthCheck>,
    pub passive_failures: u32,
    pub eject_for_ms: u64,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
}

/// One upstream target.
pub struct Target {
    /// The URL as configured: the health key and the `target` metric label.
    pub url: String,
    pub addr: SocketAddr,
    pub tls: bool,
    /// Server name sent in TLS and verified against the certificate.
    pub sni: String,
    pub verify: bool,
    /// Trusted CAs (PEM), read at compile time so requests never touch the disk.
    pub ca_pem: Option<Arc<[u8]>>,
    /// `Host` sent upstream unless `preserve_host`: the URL's authority.
    pub authority: HeaderValue,
    /// Path prefix from the URL (`http://h/base` → `/base`), or empty.
    pub base_path: String,
    pub health: Arc<TargetHealth>,
    /// Data-plane cache: the gateway keeps its connector's peer template here, built on first
    /// use. It lives as long as this snapshot, so a reload rebuilds it.
    pub data_plane: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("url", &self.url).field("addr", &self.addr).finish()
    }
}

impl Endpoint {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        strategy: Strategy,
        targets: Vec<(Target, u32)>,
        timeouts: [Duration; 4],
        retries: u32,
        preserve_host: bool,
        health_check: Option<HealthCheck>,
        passive_failures: u32,
        eject_for_ms: u64,
    ) -> Endpoint {
        let weights: Vec<u32> = targets.iter().map(|(_, w)| *w).collect();
        let schedule = smooth_weighted_schedule(&weights);
        Endpoint {
            strategy,
            targets: targets.into_iter().map(|(t, _)| t).collect(),
            schedule,
            cursor: AtomicUsize::new(0),
            connect_timeout: timeouts[0],
            read_timeout: timeouts[1],
            write_timeout: timeouts[2],
            idle_timeout: timeouts[3],
            retries,
            preserve_host,
            health_check,
            passive_failures,
            eject_for_ms,
        }
    }

    /// Picks a target that is not in `tried` (bit i = target i). Healthy targets first; when
    /// none of the untried ones is healthy, panic mode picks an untried one anyway. `None`
    /// when every target has been tried.
    pub fn select(&self, tried: u64, now_ms: u64) -> Option<usize> {
        let untried = |i: usize| tried & (1u64 << i) == 0;
        match self.strategy {
            Strategy::Failover => {
                let mut fallback = None;
                for (i, t) in self.targets.iter().enumerate() {
                    if untried(i) {
                        if t.health.is_healthy(now_ms) {
                            return Some(i);
                        }
                        fallback.get_or_insert(i);
                    }
                }
                fallback
            }
            Strategy::RoundRobin => {
                let n = self.schedule.len();
                if n == 0 {
                    return None;
                }
                let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
                let mut fallback = None;
                for k in 0..n {
                    let i = usize::from(self.schedule[(start + k) % n]);
                    if untried(i) {
                        if self.targets[i].health.is_healthy(now_ms) {
                            return Some(i);
                        }
                        fallback.get_or_insert(i);
                    }
                }
                fallback
            }
        }
    }
}

/// nginx's smooth weighted round robin, unrolled: weights 5,1,1 give a a b a c a a, not
/// a a a a a b c, so a heavy target never takes a burst. Weights are scaled down by their gcd
/// and the schedule is capped at 4096 slots.
fn smooth_weighted_schedule(weights: &[u32]) -> Vec<u8> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<i64> = weights.iter().map(|x| i64::from(x / g)).collect();
    let mut total: i64 = w.iter().sum();
    if total > 4096 {
        let scale = total as f64 / 4096.0;
        w = w.iter().map(|x| ((*x as f64 / scale).round() as i64).max(1)).collect();
        total = w.iter().sum();
    }
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u8);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Durable;

    fn endpoint(strategy: Strategy, weights: &[u32], d: &Durable) -> Endpoint {
        let targets = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let url = format!("http://127.0.0.1:{}", 9000 + i);
                (
                    Target {
                        addr: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                        tls: false,
                        sni: String::new(),
                        verify: true,
                        ca_pem: None,
                        authority: HeaderValue::from_static("x"),
                        base_path: String::new(),
                        health: d.target_health(&url),
                        url,
                        data_plane: OnceLock::new(),
                    },
                    *w,
                )
            })
            .collect();
        Endpoint::new(strategy, targets, [Duration::from_secs(1); 4], 1, false, None, 3, 1000)
    }

    #[test]
    fn smooth_schedule_spreads_weight() {
        assert_eq!(smooth_weighted_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_weighted_schedule(&[2, 1]), vec![0, 1, 0]);
        assert_eq!(smooth_weighted_schedule(&[100, 100]), vec![0, 1]);
        assert_eq!(smooth_weighted_schedule(&[10_000, 1]).len(), 4097);
    }

    #[test]
    fn round_robin_follows_weights_and_skips_unhealthy() {
        let d = Durable::new();
        let e = endpoint(Strategy::RoundRobin, &[2, 1], &d);
        let picks: Vec<usize> = (0..6).map(|_| e.select(0, 0).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 4);
        e.targets[0].health.record_failure(0, 1, 10_000);
        assert!((0..5).all(|_| e.select(0, 1).unwrap() == 1));
        // After the ejection expires, target 0 is back.
        assert!((0..6).any(|_| e.select(0, 20_000).unwrap() == 0));
    }

    #[test]
    fn retries_never_repeat_a_target_and_panic_mode_uses_unhealthy_ones() {
        let d = Durable::new();
        let e = endpoint(Strategy::Failover, &[1, 1, 1], &d);
        assert_eq!(e.select(0, 0), Some(0));
        assert_eq!(e.select(0b001, 0), Some(1));
        assert_eq!(e.select(0b011, 0), Some(2));
        assert_eq!(e.select(0b111, 0), None);
        for t in &e.targets {
            t.health.record_failure(0, 1, 10_000);
        }
        assert_eq!(e.select(0, 1), Some(0), "panic mode");
    }
}
