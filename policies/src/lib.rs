//! The gateway's brain, without the network: the config schema, the compiler from a config
//! file to an immutable [`Snapshot`], the route table and every request policy.
//!
//! Nothing here imports Pingora. Policies see a request as a [`request::RequestHead`] (method,
//! query, header fields by name: `http::request::Parts` or the gateway's fast-lane view) plus a
//! normalised path, and answer with a value
//! ([`Verdict`]), so each one is testable without sockets.
//!
//! ```text
//!  bytes ──parse──► GatewaySpec ──compile──► Snapshot ──(ArcSwap in control-api)──► requests
//!                   (serde, field paths)     (route table, lifecycle, CORS, upstream groups)
//!
//!  per request, in `request_filter`:  normalise path ─► route ─► lifecycle ─► CORS ─► (mock | upstream)
//! ```
//!
//! State that must outlive a snapshot (upstream health today; counters and caches later) lives
//! in [`state::Durable`], keyed by a stable name, so a reload keeps it.

pub mod authn;
pub mod chain;
pub mod compile;
pub mod config;
pub mod cors;
pub mod error;
pub mod lifecycle;
pub mod metrics;
pub mod mock;
pub mod request;
pub mod route;
pub mod snapshot;
pub mod state;
pub mod upstream;
pub mod verdict;

pub use compile::compile;
pub use config::{parse, Format, GatewaySpec};
pub use error::ConfigError;
pub use request::RequestHead;
pub use snapshot::Snapshot;
pub use verdict::{ProblemCode, Rejection, Verdict};
