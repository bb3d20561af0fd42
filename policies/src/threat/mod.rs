//! Threat protection: protectors that look at a request's head and body before the upstream
//! sees it (issue 11). So far, as pure, tested modules: the streaming [`json`] validator, the
//! [`regex`] protector (built-in patterns, decoding) and the [`xml`] protector (no entity is
//! ever expanded). The request limits, the config and the wiring into both exchanges are next
//! (see the note).

pub mod json;
pub mod regex;
pub mod xml;
