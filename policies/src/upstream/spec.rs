//! An API's `endpoint:`: its targets, timeouts, health checks and TLS. Re-exported by
//! [`crate::config`].

use crate::config::{yes, HumanDuration};
use serde::Deserialize;
use std::time::Duration;

/// Where proxied requests go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    #[serde(default)]
    pub strategy: Strategy,
    pub targets: Vec<TargetSpec>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    #[serde(default = "default_read_timeout")]
    pub read_timeout: HumanDuration,
    #[serde(default = "default_read_timeout")]
    pub write_timeout: HumanDuration,
    /// How long an idle pooled connection to a target is kept.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Extra attempts on another target, made only when connecting failed (nothing was sent).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Send the client's `Host` upstream instead of the target's.
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    #[serde(default)]
    pub passive_health: PassiveHealthSpec,
    #[serde(default)]
    pub tls: UpstreamTlsSpec,
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_read_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_retries() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Weighted round robin over healthy targets.
    #[default]
    RoundRobin,
    /// The first healthy target in the listed order.
    Failover,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// `http://host:port[/base]` or `https://...`.
    pub url: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Active health checks: an HTTP GET to each target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_health_interval")]
    pub interval: HumanDuration,
    #[serde(default = "default_connect_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: u32,
    #[serde(default = "default_healthy_after")]
    pub healthy_after: u32,
}

fn default_health_path() -> String {
    "/health".into()
}
fn default_health_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_unhealthy_after() -> u32 {
    3
}
fn default_healthy_after() -> u32 {
    2
}

/// Passive ejection: a target that fails this many requests in a row (connect errors,
/// timeouts, broken responses) is taken out of rotation for `eject_for`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthSpec {
    /// 0 turns passive ejection off.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    #[serde(default = "default_eject_for")]
    pub eject_for: HumanDuration,
}

impl Default for PassiveHealthSpec {
    fn default() -> Self {
        Self { consecutive_failures: default_consecutive_failures(), eject_for: default_eject_for() }
    }
}

fn default_consecutive_failures() -> u32 {
    5
}
fn default_eject_for() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// TLS towards `https://` targets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSpec {
    /// Verify the target's certificate chain and name. Turning this off is for labs only.
    #[serde(default = "yes")]
    pub verify: bool,
    /// PEM bundle of CAs to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Server name to send and verify; default: the target URL's host.
    #[serde(default)]
    pub sni: Option<String>,
}

impl Default for UpstreamTlsSpec {
    fn default() -> Self {
        Self { verify: true, ca_file: None, sni: None }
    }
}
