//! Canned responses for resources of prototyped APIs (or any resource with `mock:`).
//! Header names, values and the body are checked and encoded once, at compile time
//! (`compile.rs`); the gateway sends them as they are.

pub(crate) mod compile;
pub(crate) mod spec;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

#[derive(Debug, Clone)]
pub struct Mock {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}
