//! The `threat_protection:` block (gateway-wide, and per API to override any part). Re-exported
//! by [`crate::config`].

use crate::config::{ByteSize, Length};
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
    #[serde(default)]
    pub json: Option<JsonSpec>,
    #[serde(default)]
    pub xml: Option<XmlSpec>,
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
    /// The request body, in bytes: 413 beyond, read no further. Default 10MiB (and never more
    /// than `server.max_request_body`, which holds for every request).
    #[serde(default)]
    pub max_body_size: Option<ByteSize>,
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
    /// Where to look: `path`, `query`, `headers`, `body`. Default: all four.
    #[serde(default)]
    pub scan: Option<Vec<ScanTarget>>,
    /// How much of a body is scanned (the rest is forwarded unscanned). Default 1MiB.
    #[serde(default)]
    pub max_body_scan: Option<ByteSize>,
}

/// The JSON protector's settings (bodies with a JSON content type). Each key overrides the
/// gateway-wide value; absent everywhere: the default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JsonSpec {
    /// `false` turns the protector off. Default: on.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub max_depth: Option<u32>,
    #[serde(default)]
    pub max_properties: Option<u32>,
    #[serde(default)]
    pub max_string_length: Option<Length>,
    #[serde(default)]
    pub max_array_length: Option<u32>,
    #[serde(default)]
    pub max_key_length: Option<Length>,
    #[serde(default)]
    pub max_size: Option<ByteSize>,
}

/// The XML protector's settings (bodies with an XML content type, SOAP included).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct XmlSpec {
    /// `false` turns the protector off. Default: on.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub max_depth: Option<u32>,
    #[serde(default)]
    pub max_elements: Option<u32>,
    #[serde(default)]
    pub max_attributes: Option<u32>,
    #[serde(default)]
    pub max_attribute_length: Option<Length>,
    #[serde(default)]
    pub max_children: Option<u32>,
    #[serde(default)]
    pub max_text_length: Option<Length>,
    #[serde(default)]
    pub max_size: Option<ByteSize>,
    /// `deny` (default) refuses a `<!DOCTYPE>`; `allow` accepts one (its entities are still
    /// never expanded).
    #[serde(default)]
    pub dtd: Option<DtdSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DtdSpec {
    Deny,
    Allow,
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
