//! The head part of threat protection, run in the chain on the exchange that serves the
//! request: the request limits (URI length, header size and count) and the regex protector
//! over the path, the query and every header value.

use super::regex::RegexProtector;
use crate::request::RequestHead;
use crate::verdict::{ProblemCode, Rejection};
use std::ops::ControlFlow;
use std::sync::Arc;

/// An API's compiled threat protection (the gateway-wide block with the API's overrides).
#[derive(Debug)]
pub struct ThreatPolicy {
    /// `false`: monitor mode (detections are logged and counted, never refused).
    pub enforce: bool,
    pub max_uri_length: u64,
    pub max_header_size: u64,
    pub max_headers: u32,
    /// Shared by every API with the same patterns.
    pub regex: Option<Arc<RegexProtector>>,
    pub scan_path: bool,
    pub scan_query: bool,
    pub scan_headers: bool,
    /// The body protectors (`body`): the body size limit, the regex protector over the body
    /// (its first `max_body_scan` bytes), and the JSON and XML protectors (`None`: off).
    pub max_body_size: u64,
    pub scan_body: bool,
    pub max_body_scan: u64,
    pub json: Option<super::json::JsonLimits>,
    pub xml: Option<super::xml::XmlLimits>,
}

/// What a protector found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// `limits` or `regex`.
    pub protector: &'static str,
    /// The limit's or pattern's name.
    pub rule: Arc<str>,
    /// Where: `uri`, `headers`, `path`, `query`, `header`.
    pub location: &'static str,
    pub code: ProblemCode,
}

impl Detection {
    /// The problem: never the payload, only what caught it and where.
    pub fn rejection(&self) -> Rejection {
        let detail = match self.code {
            ProblemCode::UriTooLong => "the request target is longer than the API accepts".to_string(),
            ProblemCode::HeadTooLarge => format!("the request's header fields exceed the {} limit", self.rule),
            ProblemCode::BodyTooLarge => format!("the request body exceeds the {} limit", self.rule),
            _ if self.protector == "regex" => {
                format!("the {} protector's rule {} matched the request's {}", self.protector, self.rule, self.location)
            }
            _ => format!("the request {} breaks the {} protector's rule {}", self.location, self.protector, self.rule),
        };
        let mut r = Rejection::new(self.code, detail);
        r.names = Some(crate::verdict::ProblemNames::Threat { protector: self.protector, rule: self.rule.clone() });
        r
    }
}

fn limit(rule: &'static str, location: &'static str, code: ProblemCode) -> Detection {
    Detection { protector: "limits", rule: Arc::from(rule), location, code }
}

/// Checks the head: limits first, then the regex protector. `raw_path` is the request
/// target's path as sent.
pub fn check_head(p: &ThreatPolicy, req: &dyn RequestHead, raw_path: &str) -> Option<Detection> {
    let query = req.query();
    let uri = raw_path.len() + query.map_or(0, |q| q.len() + 1);
    if uri as u64 > p.max_uri_length {
        return Some(limit("max_uri_length", "uri", ProblemCode::UriTooLong));
    }
    // A declared body beyond the limit is refused before a byte of it is read.
    if req.header("content-length").and_then(crate::request::parse_content_length).is_some_and(|n| n > p.max_body_size) {
        return Some(limit("max_body_size", "body", ProblemCode::BodyTooLarge));
    }
    let (mut count, mut bytes) = (0u32, 0u64);
    let mut found: Option<Detection> = None;
    let regex = p.regex.as_deref().filter(|_| p.scan_headers);
    let _ = req.visit_fields(&mut |name, value| {
        count += 1;
        bytes += (name.len() + value.len() + 4) as u64;
        if let Some(r) = regex {
            if let Some(rule) = r.scan(value, false) {
                found =
                    Some(Detection { protector: "regex", rule: Arc::from(rule), location: "header", code: ProblemCode::ThreatDetected });
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    // The limits win over a pattern found on the way.
    if count > p.max_headers {
        return Some(limit("max_headers", "headers", ProblemCode::HeadTooLarge));
    }
    if bytes > p.max_header_size {
        return Some(limit("max_header_size", "headers", ProblemCode::HeadTooLarge));
    }
    if found.is_some() {
        return found;
    }
    let r = p.regex.as_deref()?;
    if p.scan_path {
        if let Some(rule) = r.scan(raw_path.as_bytes(), false) {
            return Some(Detection { protector: "regex", rule: Arc::from(rule), location: "path", code: ProblemCode::ThreatDetected });
        }
    }
    if p.scan_query {
        if let Some(rule) = query.and_then(|q| r.scan(q.as_bytes(), true)) {
            return Some(Detection { protector: "regex", rule: Arc::from(rule), location: "query", code: ProblemCode::ThreatDetected });
        }
    }
    None
}
