//! The control plane: the one [`Store`] of the current [`policies::Snapshot`] (an `ArcSwap`),
//! its revisions on disk, and the admin HTTP API that reads and changes it.
//!
//! ```text
//!  file watch ─┐
//!  SIGHUP ─────┼─► Store::apply(Candidate) ── lock ─► parse ─► compile ─► persist ─► swap
//!  PUT /v1/... ┘                                       (every error, with field paths)
//!  data plane ──► Store::load() (one atomic increment per request)
//! ```
//!
//! No Pingora here: the router is tested in-process with `tower::ServiceExt::oneshot`.

pub mod api;
pub mod auth;
pub mod problem;
pub mod revisions;
pub mod store;

pub use api::{router, AdminState};
pub use auth::AdminToken;
pub use store::{Applied, ApplyError, Candidate, Prepare, Release, Source, Store, Summary};
