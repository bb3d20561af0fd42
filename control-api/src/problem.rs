//! RFC 9457 problem details for the admin API, the same shape the data plane uses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use policies::ConfigError;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    /// Every config error, with its field path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ConfigError>,
    #[serde(skip)]
    pub www_authenticate: bool,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            type_: format!("urn:gateway:problem:{code}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            code,
            errors: Vec::new(),
            www_authenticate: false,
        }
    }

    pub fn with_errors(mut self, errors: Vec<ConfigError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "admin.not_found", "Not found", what)
    }

    pub fn unauthorized() -> Self {
        let mut p = Self::new(StatusCode::UNAUTHORIZED, "admin.unauthorized", "Unauthorized", "a valid admin bearer token is required");
        p.www_authenticate = true;
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.www_authenticate {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"gateway-admin\""));
        }
        resp
    }
}
