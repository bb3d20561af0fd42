//! The `threat_protection:` block (gateway-wide, and per API to override any part). Re-exported
//! by [`crate::config`].

use crate::config::ByteSize;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThreatSpec {
    /// `enforce` (refuse) or `monitor` (log and count, never refuse). Default: enforce.
    #[serde(default)]
    pub mode: Option<ThreatMode>,
    #[serde(default)]
    pub limits: Option<ThreatLimitsSpec>,
    #[serde(default)]
    pub regex: Option<RegexSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ThreatMode {
    Enforce,
    Monitor,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThreatLimitsSpec {
    /// The request target (path and query), in bytes: 414 beyond. Default 8KiB.
    #[serde(default)]
    pub max_uri_length: Option<ByteSize>,
    /// All header fields together (`name: value` lines), in bytes: 431 beyond. Default 16KiB.
    #[serde(default)]
    pub max_header_size: Option<ByteSize>,
    /// Header fields: 431 beyond. Default 100.
    #[serde(default)]
    pub max_headers: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegexSpec {
    /// `default` (the built-in set), `none`, or a list that replaces the built-in set.
    #[serde(default)]
    pub patterns: Option<PatternsSpec>,
    /// Patterns added to `patterns`.
    #[serde(default)]
    pub add: Vec<PatternSpec>,
    /// Where to look: `path`, `query`, `headers` (and `body`, not scanned yet). Default: all.
    #[serde(default)]
    pub scan: Option<Vec<ScanTarget>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PatternsSpec {
    /// `default` or `none`.
    Named(String),
    List(Vec<PatternSpec>),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PatternSpec {
    pub name: String,
    pub pattern: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScanTarget {
    Path,
    Query,
    Headers,
    Body,
}
