//! A resource's `mock:` response. Re-exported by [`crate::config`].

use serde::Deserialize;
use std::collections::BTreeMap;

/// A canned response.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MockSpec {
    #[serde(default = "default_mock_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

fn default_mock_status() -> u16 {
    200
}
