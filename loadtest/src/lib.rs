//! `loadtest`: a load generator and benchmark runner whose numbers can be trusted.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that the integration tests
//! can drive the same code in-process. Module map:
//!
//! | module | job |
//! |---|---|
//! | [`cli`] | command line, parsed into typed values and a validated [`engine::Plan`] |
//! | [`target`] | URL parsing and the loopback guard |
//! | [`http1`] | request serialisation and the incremental response parser |
//! | [`client`] | one keep-alive connection; error kinds |
//! | [`schedule`] | open-loop rate schedule and pacer (coordinated-omission correction) |
//! | [`engine`] | threads, connections, closed and open loops, the run result |
//! | [`stats`] | HDR histograms, percentiles, status and error counts, timeline |
//! | [`scenario`] | scenario files: weighted request mix, variables, token pools |
//! | [`jwt`] | signing keys and token minting (scenarios and the IdP) |
//! | [`progress`] | live progress bar or plain lines |
//! | [`report_json`] | the JSON result with command and environment |
//! | [`report_html`] | the self-contained HTML report with inline SVG charts |
//! | [`compare`] | interleaved rounds over several targets, ratios and spread |
//! | [`bench`] | the standard gateway benchmark, processes included |
//! | [`upstream`] | the fast origin server |
//! | [`idp`] | the test identity provider |

pub mod bench;
pub mod cli;
pub mod client;
pub mod compare;
pub mod engine;
pub mod http1;
pub mod idp;
pub mod jwt;
pub mod progress;
pub mod report_html;
pub mod report_json;
pub mod scenario;
pub mod schedule;
pub mod stats;
pub mod target;
pub mod upstream;
