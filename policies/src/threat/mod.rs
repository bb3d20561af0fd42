//! Threat protection: protectors that look at a request's head and body before the upstream
//! sees it. The protectors are pure, tested modules: the streaming [`json`] validator, the
//! [`regex`] protector (built-in patterns, decoding) and the [`xml`] protector (no entity is
//! ever expanded). The chain runs them in two places: [`head`] (the request limits, and the
//! regex protector over the path, query and headers) with the routing steps, and [`body`]
//! (the body size limit, the regex protector over the body, JSON and XML) once the request is
//! admitted, as its body arrives.

pub mod body;
pub mod compile;
pub mod head;
pub mod json;
pub mod regex;
pub mod spec;
pub mod xml;

#[cfg(test)]
mod fuzz_tests;
