//! The only place that writes responses the gateway makes itself: RFC 9457 problem details,
//! mocks and CORS preflights.
//!
//! Pingora does not call `response_filter` after `request_filter` answers, so every local
//! reply adds `X-Request-Id` (and CORS headers for the API's allowed origins) here. Replies go
//! through `Session::write_response_header` + `write_response_body`, not `respond_error`,
//! which would send no body and close a keep-alive connection.

use crate::ctx::RequestCtx;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use policies::metrics::FAMILIES;
use policies::mock::Mock;
use policies::{ProblemCode, Rejection};
use serde::Serialize;

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    request_id: &'a str,
}

/// The problem+json body for a rejection.
pub fn problem_body(code: ProblemCode, detail: &str, request_id: &HeaderValue) -> Bytes {
    let type_ = format!("urn:gateway:problem:{}", code.as_str());
    let body = ProblemBody {
        type_: &type_,
        title: code.title(),
        status: code.status().as_u16(),
        detail,
        code: code.as_str(),
        request_id: request_id.to_str().unwrap_or(""),
    };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// Answers with a problem+json body and counts the rejection.
pub async fn reject(session: &mut Session, ctx: &mut RequestCtx, rejection: Rejection) -> Result<()> {
    let code = rejection.code;
    ctx.problem = Some(code);
    FAMILIES.rejections.with_label_values(&[code.policy(), code.as_str()]).inc();
    let body = problem_body(code, &rejection.detail, &ctx.request_id);
    let mut resp = ResponseHeader::build(code.status(), Some(6))?;
    resp.insert_header(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"))?;
    resp.insert_header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))?;
    for (name, value) in rejection.headers {
        resp.append_header(name, value)?;
    }
    send(session, ctx, resp, body).await
}

/// Answers with a resource's mock.
pub async fn mock(session: &mut Session, ctx: &mut RequestCtx, mock: &Mock) -> Result<()> {
    let mut resp = ResponseHeader::build(mock.status, Some(mock.headers.len() + 4))?;
    for (name, value) in &mock.headers {
        resp.append_header(name.clone(), value.clone())?;
    }
    send(session, ctx, resp, mock.body.clone()).await
}

/// Answers a CORS preflight with 204 and the computed headers.
pub async fn preflight(session: &mut Session, ctx: &mut RequestCtx, headers: Vec<(HeaderName, HeaderValue)>) -> Result<()> {
    let mut resp = ResponseHeader::build(StatusCode::NO_CONTENT, Some(headers.len() + 2))?;
    for (name, value) in headers {
        resp.append_header(name, value)?;
    }
    send(session, ctx, resp, Bytes::new()).await
}

/// Request bodies up to this size are read and discarded before a local reply, so the
/// client keeps its keep-alive connection (Pingora closes it when it answers before the
/// body is read). Larger or chunked bodies are not worth reading: the connection closes.
const DRAIN_LIMIT: u64 = 64 * 1024;
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

async fn drain_small_body(session: &mut Session) {
    if session.is_body_done() {
        return;
    }
    let small = session
        .req_header()
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n <= DRAIN_LIMIT);
    if small {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, session.drain_request_body()).await;
    }
}

/// Adds the headers every response carries and writes header and body.
async fn send(session: &mut Session, ctx: &mut RequestCtx, mut resp: ResponseHeader, body: Bytes) -> Result<()> {
    drain_small_body(session).await;
    resp.insert_header("X-Request-Id", ctx.request_id.clone())?;
    if resp.status != StatusCode::NO_CONTENT {
        resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    }
    if let Some(api) = ctx.api() {
        for (name, value) in &api.lifecycle.headers {
            resp.insert_header(name.clone(), value.clone())?;
        }
        // Preflight headers are already in `resp`; actual requests get the CORS response
        // headers so a browser can read the error.
        if let Some(cors) = &api.cors {
            if !resp.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
                for (name, value) in cors.response_headers(crate::proxy::head(session)) {
                    resp.append_header(name, value)?;
                }
            }
        }
    }
    let head_only = session.req_header().method == http::Method::HEAD || body.is_empty();
    session.write_response_header(Box::new(resp), head_only).await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}
