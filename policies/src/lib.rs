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
//!  per request, on either exchange:  chain::plan (normalise ─► route ─► lifecycle ─► CORS ─►
//!  verb ─► lane flag ─► authentication from caches), then the gateway's commit (async, once)
//! ```
//!
//! The order of the policies is one list in one place: [`chain`].
//!
//! State that must outlive a snapshot (upstream health today; counters and caches later) lives
//! in [`state::Durable`], keyed by a stable name, so a reload keeps it.
//!
//! ## Layout
//!
//! Each policy is a folder holding its part of the config schema (`spec.rs`: serde types,
//! re-exported by [`config`] so `config::Xxx` names all of them), its compile step
//! (`compile.rs`: spec → compiled form, errors with their field paths) and its evaluation
//! (`mod.rs`, on the request path):
//!
//! | module | `spec.rs` | `compile.rs` | evaluation |
//! |---|---|---|---|
//! | [`authn`] | `key_managers`, `applications`, `backend_jwt`, `auth` | keys, JWKS files, introspection, applications, an API's auth | credential → [`authn::Principal`]; `jwt`, `jwks`, `introspect`, `keys`, `backend_jwt` |
//! | [`lifecycle`] | `state`, `deprecation` | deprecation headers | serve or refuse |
//! | [`cors`] | `cors` | origins, methods, header values | preflight answers, response headers |
//! | [`upstream`] | `endpoint` | targets resolved, CA files read, health checks | target selection |
//! | [`throttle`] | `tiers`, `throttling`, an API's `tiers` and `throttling`, a resource's `throttling` | tiers, deny lists, conditions, counter keys | the limits of a request, counted in one store call |
//! | [`mock`] | `mock` | status, headers and body encoded | (sent as is by the gateway) |
//! | [`route`] | none: a resource's `path` and `methods` are fields of [`config::ResourceSpec`] | context, version, methods | normalisation, route table, resource match |
//!
//! The rest: [`config`] is the document root (the document, APIs, resources, process
//! settings) and its parser; [`compile()`] walks the document and calls each policy's compile
//! step; [`snapshot`] is the compiled form; [`chain`] is the request chain (the ordered
//! policy list, its pure `plan` and the values it decides); [`verdict`], [`error`],
//! [`request`], [`metrics`] and [`state`] are shared by all of them.

pub mod authn;
pub mod cache;
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
pub mod threat;
pub mod throttle;
pub mod upstream;
pub mod verdict;

pub use compile::compile;
pub use config::{parse, Format, GatewaySpec};
pub use error::ConfigError;
pub use request::RequestHead;
pub use snapshot::Snapshot;
pub use verdict::{ProblemCode, Rejection, Verdict};
