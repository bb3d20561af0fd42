//! An API's `cors:` settings. Re-exported by [`crate::config`].

use crate::config::HumanDuration;
use serde::Deserialize;

/// CORS for an API (the Fetch standard's CORS protocol).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    /// Exact origins (`https://app.example`) or `*`.
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}
