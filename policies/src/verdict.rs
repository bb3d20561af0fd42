//! A policy's decision is a value: `ControlFlow<Rejection>`, so `?` short-circuits the chain
//! and exactly one module in the gateway turns a [`Rejection`] into a response.

use http::{HeaderName, HeaderValue, StatusCode};
use std::borrow::Cow;
use std::ops::ControlFlow;

/// `Continue(())` to go on, `Break(rejection)` to answer locally.
pub type Verdict = ControlFlow<Rejection>;

/// The catalogue of gateway-generated errors. Each has a stable machine code (the `code`
/// member of the problem+json body and the `reason` label of the rejection metric), an HTTP
/// status and a title. Codes never change meaning once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemCode {
    /// The path could not be normalised safely (encoded slash, NUL, bad escape).
    BadPath,
    RouteNotFound,
    MethodNotAllowed,
    /// The API exists but is `created` or `retired`: answered like an unknown route.
    ApiNotAvailable,
    ApiBlocked,
    CorsOriginNotAllowed,
    CorsMethodNotAllowed,
    CorsHeadersNotAllowed,
    /// No credential where one is needed (401).
    AuthMissing,
    /// A bearer token that fails verification (401).
    AuthInvalidToken,
    /// An API key that matches no application (401).
    AuthInvalidApiKey,
    /// The token lacks a scope the resource requires (403).
    AuthInsufficientScope,
    AuthNotSubscribed,
    AuthApplicationBlocked,
    AuthDomainNotAllowed,
    /// An application credential where a user token is required, or the reverse (403).
    AuthWrongCredentialType,
    /// The introspection endpoint failed or timed out (503): not a verdict on the token.
    AuthIntrospectionUnavailable,
    /// No target could be used (none configured, or every attempt failed to connect).
    UpstreamUnavailable,
    UpstreamTimeout,
    /// The upstream broke the exchange (reset, malformed response).
    UpstreamError,
    /// The client sent something that could not be read as HTTP.
    BadRequest,
    /// The request body is larger than `server.max_request_body` (413).
    BodyTooLarge,
    /// The request head is larger than the gateway reads (431).
    HeadTooLarge,
    /// The client did not send its request head or body in time (408).
    RequestTimeout,
    ThrottleDenied,
    Throttled,
    UriTooLong,
    ThreatDetected,
    Internal,
}

impl ProblemCode {
    pub const fn status(self) -> StatusCode {
        match self {
            Self::BadPath | Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::ThrottleDenied => StatusCode::FORBIDDEN,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::ThreatDetected => StatusCode::BAD_REQUEST,
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Self::RouteNotFound | Self::ApiNotAvailable => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::ApiBlocked => StatusCode::SERVICE_UNAVAILABLE,
            Self::CorsOriginNotAllowed | Self::CorsMethodNotAllowed | Self::CorsHeadersNotAllowed => StatusCode::FORBIDDEN,
            Self::AuthMissing | Self::AuthInvalidToken | Self::AuthInvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::AuthInsufficientScope
            | Self::AuthNotSubscribed
            | Self::AuthApplicationBlocked
            | Self::AuthDomainNotAllowed
            | Self::AuthWrongCredentialType => StatusCode::FORBIDDEN,
            Self::AuthIntrospectionUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::UpstreamError => StatusCode::BAD_GATEWAY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine code, `area.reason`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadPath => "request.bad_path",
            Self::BadRequest => "request.malformed",
            Self::BodyTooLarge => "request.body_too_large",
            Self::HeadTooLarge => "request.head_too_large",
            Self::RequestTimeout => "request.timeout",
            Self::ThrottleDenied => "throttle.denied",
            Self::UriTooLong => "request.uri_too_long",
            Self::ThreatDetected => "threat.detected",
            Self::Throttled => "throttle.limited",
            Self::RouteNotFound => "route.not_found",
            Self::MethodNotAllowed => "route.method_not_allowed",
            Self::ApiNotAvailable => "lifecycle.not_available",
            Self::ApiBlocked => "lifecycle.blocked",
            Self::CorsOriginNotAllowed => "cors.origin_not_allowed",
            Self::CorsMethodNotAllowed => "cors.method_not_allowed",
            Self::CorsHeadersNotAllowed => "cors.headers_not_allowed",
            Self::AuthMissing => "auth.credentials_missing",
            Self::AuthInvalidToken => "auth.invalid_token",
            Self::AuthInvalidApiKey => "auth.invalid_api_key",
            Self::AuthInsufficientScope => "auth.insufficient_scope",
            Self::AuthNotSubscribed => "auth.not_subscribed",
            Self::AuthApplicationBlocked => "auth.application_blocked",
            Self::AuthDomainNotAllowed => "auth.domain_not_allowed",
            Self::AuthWrongCredentialType => "auth.wrong_credential_type",
            Self::AuthIntrospectionUnavailable => "auth.introspection_unavailable",
            Self::UpstreamUnavailable => "upstream.unavailable",
            Self::UpstreamTimeout => "upstream.timeout",
            Self::UpstreamError => "upstream.error",
            Self::Internal => "gateway.internal",
        }
    }

    pub const fn title(self) -> &'static str {
        match self {
            Self::BadPath => "Bad request path",
            Self::BadRequest => "Malformed request",
            Self::BodyTooLarge => "Request body too large",
            Self::HeadTooLarge => "Request head too large",
            Self::RequestTimeout => "Request timed out",
            Self::ThrottleDenied => "Denied",
            Self::UriTooLong => "Request target too long",
            Self::ThreatDetected => "Threat detected",
            Self::Throttled => "Too many requests",
            Self::RouteNotFound => "No route for this path",
            Self::MethodNotAllowed => "Method not allowed",
            Self::ApiNotAvailable => "No route for this path",
            Self::ApiBlocked => "API blocked",
            Self::CorsOriginNotAllowed => "CORS origin not allowed",
            Self::CorsMethodNotAllowed => "CORS method not allowed",
            Self::CorsHeadersNotAllowed => "CORS headers not allowed",
            Self::AuthMissing => "Credentials required",
            Self::AuthInvalidToken => "Invalid token",
            Self::AuthInvalidApiKey => "Invalid API key",
            Self::AuthInsufficientScope => "Insufficient scope",
            Self::AuthNotSubscribed => "Not subscribed",
            Self::AuthApplicationBlocked => "Application blocked",
            Self::AuthDomainNotAllowed => "Domain not allowed",
            Self::AuthWrongCredentialType => "Wrong credential type",
            Self::AuthIntrospectionUnavailable => "Token check unavailable",
            Self::UpstreamUnavailable => "Upstream unavailable",
            Self::UpstreamTimeout => "Upstream timed out",
            Self::UpstreamError => "Upstream error",
            Self::Internal => "Internal gateway error",
        }
    }

    /// The policy that produced it: the `policy` label of `gateway_policy_rejections_total`.
    pub const fn policy(self) -> &'static str {
        match self {
            Self::BadPath | Self::BadRequest | Self::BodyTooLarge | Self::HeadTooLarge | Self::RequestTimeout => "request",
            Self::RouteNotFound | Self::MethodNotAllowed => "route",
            Self::ApiNotAvailable | Self::ApiBlocked => "lifecycle",
            Self::CorsOriginNotAllowed | Self::CorsMethodNotAllowed | Self::CorsHeadersNotAllowed => "cors",
            Self::AuthMissing | Self::AuthInvalidToken | Self::AuthInvalidApiKey | Self::AuthIntrospectionUnavailable => "authn",
            Self::AuthInsufficientScope
            | Self::AuthNotSubscribed
            | Self::AuthApplicationBlocked
            | Self::AuthDomainNotAllowed
            | Self::AuthWrongCredentialType => "authz",
            Self::UpstreamUnavailable | Self::UpstreamTimeout | Self::UpstreamError => "upstream",
            Self::ThrottleDenied | Self::Throttled => "throttle",
            Self::UriTooLong | Self::ThreatDetected => "threat",
            Self::Internal => "gateway",
        }
    }

    /// Every code, for docs and for pre-registering metric series.
    pub const ALL: &'static [ProblemCode] = &[
        Self::BadPath,
        Self::BadRequest,
        Self::BodyTooLarge,
        Self::HeadTooLarge,
        Self::RequestTimeout,
        Self::ThrottleDenied,
        Self::Throttled,
        Self::UriTooLong,
        Self::ThreatDetected,
        Self::RouteNotFound,
        Self::MethodNotAllowed,
        Self::ApiNotAvailable,
        Self::ApiBlocked,
        Self::CorsOriginNotAllowed,
        Self::CorsMethodNotAllowed,
        Self::CorsHeadersNotAllowed,
        Self::AuthMissing,
        Self::AuthInvalidToken,
        Self::AuthInvalidApiKey,
        Self::AuthInsufficientScope,
        Self::AuthNotSubscribed,
        Self::AuthApplicationBlocked,
        Self::AuthDomainNotAllowed,
        Self::AuthWrongCredentialType,
        Self::AuthIntrospectionUnavailable,
        Self::UpstreamUnavailable,
        Self::UpstreamTimeout,
        Self::UpstreamError,
        Self::Internal,
    ];
}

/// Why a request is answered by the gateway instead of the upstream.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub code: ProblemCode,
    /// Client-safe explanation; never echoes credentials.
    pub detail: Cow<'static, str>,
    /// Extra response headers (`Allow`, `Retry-After`, `WWW-Authenticate`...).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The application whose valid credential was refused (403s), for the access log.
    pub application: Option<u32>,
    /// What the problem body names besides the code.
    pub names: Option<ProblemNames>,
}

/// The members a problem body adds for some codes (one field: `Rejection` stays small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemNames {
    /// A throttled request: the level and the tier (or `condition`) that refused it.
    Throttle { level: &'static str, tier: std::sync::Arc<str> },
    /// A threat detection: the protector and the rule (never the payload).
    Threat { protector: &'static str, rule: std::sync::Arc<str> },
}

impl Rejection {
    pub fn new(code: ProblemCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self { code, detail: detail.into(), headers: Vec::new(), application: None, names: None }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Shorthand for `ControlFlow::Break(Rejection::new(..))`.
pub fn reject(code: ProblemCode, detail: impl Into<Cow<'static, str>>) -> Verdict {
    ControlFlow::Break(Rejection::new(code, detail))
}
