//! Threat protection: protectors that look at a request's head and body before the upstream
//! sees it (issue 11). So far, as pure, tested modules: the streaming [`json`] validator, the
//! [`regex`] protector (built-in patterns, decoding) and the [`xml`] protector (no entity is
//! ever expanded). Wired into the chain so far: the request limits and the regex protector
//! over the path, query and headers ([`head`]); the body protectors are next.

pub mod compile;
pub mod head;
pub mod json;
pub mod regex;
pub mod spec;
pub mod xml;

#[cfg(test)]
mod fuzz_tests;
