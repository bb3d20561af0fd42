//! An API's `state:` and `deprecation:` settings. Re-exported by [`crate::config`].

use serde::Deserialize;

/// WSO2-style API lifecycle.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleState {
    Created,
    Prototyped,
    #[default]
    Published,
    Deprecated,
    Retired,
    Blocked,
}

impl LifecycleState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Prototyped => "prototyped",
            Self::Published => "published",
            Self::Deprecated => "deprecated",
            Self::Retired => "retired",
            Self::Blocked => "blocked",
        }
    }
}

/// Headers sent by a deprecated API (RFC 9745 `Deprecation`, RFC 8594 `Sunset`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeprecationSpec {
    /// RFC 3339 time the API was deprecated, e.g. `2026-06-01T00:00:00Z`.
    #[serde(default)]
    pub since: Option<String>,
    /// RFC 3339 time the API will stop answering.
    #[serde(default)]
    pub sunset: Option<String>,
    /// A page explaining the deprecation (sent as `Link: <...>; rel="deprecation"`).
    #[serde(default)]
    pub link: Option<String>,
}
