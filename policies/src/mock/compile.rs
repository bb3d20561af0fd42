//! Mock spec → [`Mock`]: the status, header names and values are checked, and the body
//! encoded, once.

use super::spec::MockSpec;
use super::Mock;
use crate::error::Errors;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

impl Mock {
    /// Errors are `(field, message)` relative to the `mock` key.
    pub fn compile(spec: &MockSpec) -> Result<Mock, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let status = match StatusCode::from_u16(spec.status) {
            Ok(s) if (200..600).contains(&spec.status) => Some(s),
            _ => {
                errors.push(("status".into(), format!("{} is not a final HTTP status (200-599)", spec.status)));
                None
            }
        };
        // RFC 9110 §15.3.5, §15.4.5: a 204 or 304 response ends with its head.
        if matches!(spec.status, 204 | 304) && !spec.body.is_empty() {
            errors.push(("body".into(), format!("a {} response cannot have a body", spec.status)));
        }
        let mut headers = Vec::new();
        for (k, v) in &spec.headers {
            let name = HeaderName::from_bytes(k.as_bytes());
            let value = HeaderValue::from_str(v);
            match (name, value) {
                (Ok(n), Ok(v)) => {
                    if n == http::header::CONTENT_LENGTH || n == http::header::TRANSFER_ENCODING || n == http::header::CONNECTION {
                        errors.push((format!("headers.{k}"), "is set by the gateway from the body".into()));
                    } else {
                        headers.push((n, v));
                    }
                }
                (Err(_), _) => errors.push((format!("headers.{k}"), "not a valid header name".into())),
                (_, Err(_)) => errors.push((format!("headers.{k}"), "not a valid header value".into())),
            }
        }
        match (status, errors.is_empty()) {
            (Some(status), true) => Ok(Mock { status, headers, body: Bytes::from(spec.body.clone()) }),
            _ => Err(errors),
        }
    }
}

/// A resource's `mock:` (at `rpath`, the resource's field path).
pub(crate) fn compile_mock(m: &MockSpec, rpath: &str, errors: &mut Errors) -> Option<Mock> {
    match Mock::compile(m) {
        Ok(m) => Some(m),
        Err(errs) => {
            for (f, msg) in errs {
                errors.push(format!("{rpath}.mock.{f}"), msg);
            }
            None
        }
    }
}
