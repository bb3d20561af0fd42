//! The gateway binary's library: the only crate that imports Pingora.
//!
//! | module | job |
//! |---|---|
//! | `cli` | `gateway run` / `gateway validate` |
//! | `server` | builds the Pingora server: proxy service, listeners, background services |
//! | `proxy` | `impl ProxyHttp`: maps Pingora phases to the pipeline, nothing else |
//! | `ctx` | the per-request context |
//! | `respond` | the only writer of local replies (problem+json, mocks, preflights) |
//! | `lane` | the HTTP/1 lane: the gateway's own loop for plain-HTTP connections and its upstream pool, handing other requests to Pingora before deciding them |
//! | `pipeline` | the chain's commit step and the head edits, shared by both exchanges (the chain itself is `policies::chain`) |
//! | `upstream` | peer templates and health checkers prepared per snapshot |
//! | `health` | active health checks |
//! | `jwks` | background refresh of remote JWKS key sets |
//! | `introspect` | RFC 7662 token introspection calls, single-flight per token |
//! | `outbound` | outbound HTTP over Pingora's connector (JWKS, discovery, introspection) |
//! | `control_plane` | admin listener, SIGHUP and file-watch reloads |
//! | `access_log` | JSON access log on a writer thread |
//! | `cache_storage` | the response cache's in-memory storage (TinyUFO, a byte budget); not wired yet |
//! | `request_id` | accepts or generates `X-Request-Id` |

pub mod access_log;
pub mod cache;
pub mod cache_storage;
pub mod cli;
pub mod control_plane;
pub mod ctx;
pub mod health;
pub mod introspect;
pub mod jwks;
pub mod lane;
pub mod outbound;
pub mod pipeline;
pub mod proxy;
pub mod request_id;
pub mod respond;
pub mod server;
pub mod sweeper;
pub mod ticker;
pub mod upstream;
