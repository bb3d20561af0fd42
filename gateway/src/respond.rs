//! The only place that writes responses the gateway makes itself: RFC 9457 problem details,
//! mocks and CORS preflights.
//!
//! A reply is composed once ([`LocalReply`]) and written either through Pingora's session or
//! by the HTTP/1 lane. Pingora does not call `response_filter` after `request_filter`
//! answers, so every local reply adds `X-Request-Id` (and CORS headers for the API's allowed
//! origins) here. Pingora-side replies go through `Session::write_response_header` +
//! `write_response_body`, not `respond_error`, which would send no body and close a
//! keep-alive connection.

use crate::ctx::RequestCtx;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use policies::metrics::FAMILIES;
use policies::verdict::ProblemNames;
use policies::{ProblemCode, Rejection, RequestHead};
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
    /// A throttled request: the level and the tier (or `condition`) that refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
    /// A threat detection: the protector and its rule (never the payload).
    #[serde(skip_serializing_if = "Option::is_none")]
    protector: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
}

/// The problem+json body for a rejection.
pub fn problem_body(code: ProblemCode, detail: &str, request_id: &HeaderValue) -> Bytes {
    problem_body_with(code, detail, request_id, None)
}

/// [`problem_body`] with the members some codes add: a throttled request's level and tier, a
/// threat detection's protector and rule.
pub fn problem_body_with(code: ProblemCode, detail: &str, request_id: &HeaderValue, names: Option<&ProblemNames>) -> Bytes {
    let (throttle, threat) = match names {
        Some(ProblemNames::Throttle { level, tier }) => (Some((*level, &**tier)), None),
        Some(ProblemNames::Threat { protector, rule }) => (None, Some((*protector, &**rule))),
        None => (None, None),
    };
    let type_ = format!("urn:gateway:problem:{}", code.as_str());
    let body = ProblemBody {
        type_: &type_,
        title: code.title(),
        status: code.status().as_u16(),
        detail,
        code: code.as_str(),
        request_id: request_id.to_str().unwrap_or(""),
        level: throttle.map(|t| t.0),
        tier: throttle.map(|t| t.1),
        protector: threat.map(|t| t.0),
        rule: threat.map(|t| t.1),
    };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// A reply the gateway makes itself, composed once and written by either side: Pingora's
/// session ([`send`]) or the HTTP/1 lane.
pub struct LocalReply {
    pub status: StatusCode,
    /// In order; every one is written (names may repeat).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// The problem+json reply for a rejection; counts it and records its code in `ctx`.
pub fn rejection_reply(ctx: &mut RequestCtx, req: &dyn RequestHead, rejection: Rejection) -> LocalReply {
    let code = rejection.code;
    ctx.problem = Some(code);
    FAMILIES.rejections.with_label_values(&[code.policy(), code.as_str()]).inc();
    let body = problem_body_with(code, &rejection.detail, &ctx.request_id, rejection.names.as_ref());
    let mut headers = Vec::with_capacity(8 + rejection.headers.len());
    headers.push((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
    headers.push((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    headers.extend(rejection.headers);
    finish(ctx, req, code.status(), headers, body)
}

/// The matched resource's mock (a problem if the plan named a resource without one).
pub fn mock_reply(ctx: &mut RequestCtx, req: &dyn RequestHead) -> LocalReply {
    let snapshot = std::sync::Arc::clone(&ctx.snapshot);
    match ctx.api.zip(ctx.resource).and_then(|(a, r)| snapshot.api(a)?.resource(r)?.mock.as_ref()) {
        Some(mock) => {
            let headers = mock.headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            finish(ctx, req, mock.status, headers, mock.body.clone())
        }
        None => rejection_reply(ctx, req, Rejection::new(ProblemCode::Internal, "mock missing")),
    }
}

/// A CORS preflight's 204 with the computed headers.
pub fn preflight_reply(ctx: &RequestCtx, req: &dyn RequestHead, headers: Vec<(HeaderName, HeaderValue)>) -> LocalReply {
    finish(ctx, req, StatusCode::NO_CONTENT, headers, Bytes::new())
}

/// Adds the headers every local reply carries: `X-Request-Id`, `Content-Length`, the API's
/// lifecycle headers and, on actual requests, its CORS headers (so a browser can read the
/// error). Pingora does not call `response_filter` after `request_filter` answers, so they
/// are added here.
fn finish(
    ctx: &RequestCtx,
    req: &dyn RequestHead,
    status: StatusCode,
    mut headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
) -> LocalReply {
    fn insert(headers: &mut Vec<(HeaderName, HeaderValue)>, name: HeaderName, value: HeaderValue) {
        headers.retain(|(n, _)| *n != name);
        headers.push((name, value));
    }
    insert(&mut headers, HeaderName::from_static("x-request-id"), ctx.request_id.clone());
    if status != StatusCode::NO_CONTENT {
        insert(&mut headers, header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    if let Some(api) = ctx.api() {
        for (name, value) in &api.lifecycle.headers {
            insert(&mut headers, name.clone(), value.clone());
        }
        // Preflight headers already carry the CORS answer.
        if let Some(cors) = &api.cors {
            if !headers.iter().any(|(n, _)| *n == header::ACCESS_CONTROL_ALLOW_ORIGIN) {
                headers.extend(cors.response_headers(req));
            }
        }
    }
    LocalReply { status, headers, body }
}

/// Answers with a problem+json body and counts the rejection.
pub async fn reject(session: &mut Session, ctx: &mut RequestCtx, rejection: Rejection) -> Result<()> {
    let reply = rejection_reply(ctx, &crate::proxy::head(session), rejection);
    send(session, reply).await
}

/// Answers with a resource's mock.
pub async fn mock(session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
    let reply = mock_reply(ctx, &crate::proxy::head(session));
    send(session, reply).await
}

/// Answers a CORS preflight with 204 and the computed headers.
pub async fn preflight(session: &mut Session, ctx: &mut RequestCtx, headers: Vec<(HeaderName, HeaderValue)>) -> Result<()> {
    let reply = preflight_reply(ctx, &crate::proxy::head(session), headers);
    send(session, reply).await
}

/// Request bodies up to this size are read and discarded before a local reply, so the
/// client keeps its keep-alive connection (Pingora closes it when it answers before the
/// body is read). Larger or chunked bodies are not worth reading: the connection closes.
const DRAIN_LIMIT: u64 = 64 * 1024;
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

async fn drain_small_body(session: &mut Session) {
    // A client that waits for `100 Continue` sends nothing more: there is nothing to drain.
    if session.is_body_done() || session.req_header().headers.get(header::EXPECT).is_some() {
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

/// Writes a local reply through Pingora's session.
async fn send(session: &mut Session, reply: LocalReply) -> Result<()> {
    drain_small_body(session).await;
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len()))?;
    for (name, value) in reply.headers {
        // As the proxied responses spell it (a HeaderName of a non-standard field would be
        // written in lower case).
        if name == "x-request-id" {
            resp.append_header("X-Request-Id", value)?;
        } else {
            resp.append_header(name, value)?;
        }
    }
    let head_only = session.req_header().method == http::Method::HEAD || reply.body.is_empty();
    session.write_response_header(Box::new(resp), head_only).await?;
    if !head_only {
        session.write_response_body(Some(reply.body), true).await?;
    }
    Ok(())
}
