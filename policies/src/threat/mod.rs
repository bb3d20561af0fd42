//! Threat protection: protectors that look at a request's head and body before the upstream
//! sees it (issue 11). So far: the streaming [`json`] validator. The regex and XML
//! protectors, the request limits, the config and the wiring into both exchanges are next
//! (see the note).

pub mod json;
