//! The admin HTTP API. `router(state)` builds the whole app, so tests call it in-process.
//!
//! `/healthz`, `/readyz` and `/metrics` are open (probes and scrapers carry no token and the
//! data is not secret); everything under `/v1` needs the bearer token when one is configured.
//! Every error is `application/problem+json`; config errors list every field path.

use crate::problem::Problem;
use crate::store::{render, Applied, ApplyError, Candidate, Source, Store};
use crate::AdminToken;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use policies::Format;
use serde_json::json;
use std::sync::Arc;

pub struct AdminState {
    pub store: Arc<Store>,
    /// `None` only on loopback without `token_env` (development).
    pub token: Option<AdminToken>,
    /// The response cache the purge endpoints act on (`None`: no cache, as in tests of the
    /// config endpoints alone).
    pub cache: Option<&'static dyn policies::cache::Purge>,
}

/// Largest document the API accepts (a 10,000-API config is a few MiB).
const MAX_BODY: usize = 64 << 20;

pub fn router(state: Arc<AdminState>) -> Router {
    let v1 = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/config", get(get_config).put(put_config))
        .route("/v1/config/validate", post(validate_config))
        .route("/v1/revisions", get(list_revisions))
        .route("/v1/revisions/{id}", get(get_revision))
        .route("/v1/revisions/{id}/rollback", post(rollback))
        .route("/v1/apis", get(list_apis))
        .route("/v1/apis/{name}", get(get_api).put(put_api).delete(delete_api))
        .route("/v1/cache", axum::routing::delete(purge_cache))
        .route("/v1/cache/apis/{name}", axum::routing::delete(purge_api_cache))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(backend_jwks))
        .merge(v1)
        .fallback(|| async { Problem::not_found("no such admin endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "admin.method_not_allowed",
                "Method not allowed",
                "this endpoint does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn require_token(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
        if !token.verify_header(given) {
            return Problem::unauthorized().into_response();
        }
    }
    next.run(req).await
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ready", "revision": state.store.load().revision }))
}

async fn metrics() -> Response {
    let families = prometheus::gather();
    let mut out = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response(),
        Err(e) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "admin.metrics", "Metrics unavailable", e.to_string()).into_response(),
    }
}

/// The public keys of backend JWTs, for backends to verify `X-JWT-Assertion` with. Public
/// by nature, so served without the admin token (like `/healthz`).
async fn backend_jwks(State(state): State<Arc<AdminState>>) -> Response {
    let keys = state.store.load().backend_jwt.as_ref().map_or_else(|| json!({ "keys": [] }), |b| b.jwks());
    ([(header::CACHE_CONTROL, "max-age=300")], Json(keys)).into_response()
}

fn no_cache() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "cache.disabled", "No cache", "this gateway has no response cache")
}

fn purged(scope: &'static str, n: usize) -> Response {
    policies::metrics::FAMILIES.cache_purged.with_label_values(&[scope]).inc_by(n as u64);
    Json(json!({ "purged": n, "scope": scope })).into_response()
}

#[derive(serde::Deserialize)]
struct PurgeQuery {
    url: Option<String>,
}

/// `DELETE /v1/cache`: every entry; `DELETE /v1/cache?url=/ctx/v1/path?query` (the URL
/// percent-encoded): the entries of that URL (every consumer, host and variant of it).
async fn purge_cache(State(state): State<Arc<AdminState>>, Query(q): Query<PurgeQuery>) -> Response {
    let Some(cache) = state.cache else { return no_cache().into_response() };
    match q.url {
        None => purged("all", cache.purge_all()),
        Some(url) => match policies::cache::purge_url_tag(&state.store.load(), &url) {
            Ok(tag) => purged("url", cache.purge_tagged(None, Some(&tag))),
            Err(why) => Problem::new(StatusCode::BAD_REQUEST, "cache.bad_url", "Bad purge URL", why).into_response(),
        },
    }
}

/// `DELETE /v1/cache/apis/{name}`: every entry of one API.
async fn purge_api_cache(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    let Some(cache) = state.cache else { return no_cache().into_response() };
    if state.store.load().api_by_name(&name).is_none() {
        return Problem::not_found(format!("no API named `{name}`")).into_response();
    }
    purged("api", cache.purge_tagged(Some(&policies::cache::api_tag_prefix(&name)), None))
}

async fn status(State(state): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let doc = state.store.document();
    let snap = state.store.load();
    Json(json!({
        "revision": snap.revision,
        "etag": doc.etag,
        "source": doc.source,
        "applied_unix": doc.applied_unix,
        "uptime_seconds": state.store.uptime().as_secs(),
        "apis": snap.apis.len(),
        "warnings": snap.warnings,
        "config_path": state.store.config_path().display().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// `Accept: application/yaml` (or `text/yaml`) asks for YAML; anything else gets JSON.
fn wants(headers: &HeaderMap) -> Format {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("yaml") {
        Format::Yaml
    } else {
        Format::Json
    }
}

fn body_format(headers: &HeaderMap) -> Result<Format, Problem> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    match ct {
        None => Ok(Format::Json),
        Some(ct) => Format::from_content_type(ct).ok_or_else(|| {
            Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "admin.unsupported_media_type",
                "Unsupported media type",
                format!("send application/json or application/yaml, not {ct}"),
            )
        }),
    }
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn document_response(value: &serde_json::Value, raw: Option<&[u8]>, format: Format, etag: &str) -> Response {
    let body = match raw {
        Some(b) => b.to_vec(),
        None => match render(value, format) {
            Ok(b) => b,
            Err(e) => return apply_error(e).into_response(),
        },
    };
    let mut resp = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

async fn get_config(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let doc = state.store.document();
    let want = wants(&headers);
    if want == doc.format {
        return document_response(&serde_json::Value::Null, Some(&doc.bytes), want, &doc.etag);
    }
    match doc.value() {
        Ok(value) => document_response(&value, None, want, &doc.etag),
        Err(e) => apply_error(e).into_response(),
    }
}

fn applied_response(applied: Applied, status: StatusCode) -> Response {
    let mut resp = (status, Json(&applied)).into_response();
    if let Ok(v) = HeaderValue::from_str(&applied.etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

fn apply_error(e: ApplyError) -> Problem {
    match e {
        ApplyError::Malformed(errors) => {
            Problem::new(StatusCode::BAD_REQUEST, "config.malformed", "Malformed config", "the document could not be parsed; see errors")
                .with_errors(errors)
        }
        ApplyError::Invalid(errors) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "config.invalid",
            "Invalid config",
            format!("{} error(s); the current config keeps serving", errors.len()),
        )
        .with_errors(errors),
        ApplyError::Stale { current } => Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "config.stale",
            "Config changed",
            format!("If-Match does not match the current etag {current}; read the config again"),
        ),
        ApplyError::NotFound(what) => Problem::not_found(what),
        ApplyError::Persist(msg) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "config.persist_failed", "Cannot persist config", msg),
    }
}

async fn put_config(State(state): State<Arc<AdminState>>, headers: HeaderMap, body: Bytes) -> Response {
    let format = match body_format(&headers) {
        Ok(f) => f,
        Err(p) => return p.into_response(),
    };
    let candidate = Candidate { bytes: body.to_vec(), format, source: Source::Api };
    match state.store.apply(candidate, if_match(&headers).as_deref()).await {
        Ok(applied) => applied_response(applied, StatusCode::OK),
        Err(e) => apply_error(e).into_response(),
    }
}

async fn validate_config(State(state): State<Arc<AdminState>>, headers: HeaderMap, body: Bytes) -> Response {
    let format = match body_format(&headers) {
        Ok(f) => f,
        Err(p) => return p.into_response(),
    };
    let candidate = Candidate { bytes: body.to_vec(), format, source: Source::Api };
    match state.store.validate(candidate).await {
        Ok(summary) => Json(json!({ "valid": true, "summary": summary })).into_response(),
        Err(e) => apply_error(e).into_response(),
    }
}

async fn list_revisions(State(state): State<Arc<AdminState>>) -> Response {
    match state.store.revisions().list() {
        Ok(list) => Json(json!({ "current": state.store.load().revision, "revisions": list })).into_response(),
        Err(e) => apply_error(ApplyError::Persist(e.to_string())).into_response(),
    }
}

fn revision_id(raw: &str) -> Result<u64, Problem> {
    raw.parse().map_err(|_| Problem::not_found(format!("`{raw}` is not a revision id")))
}

async fn get_revision(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    let id = match revision_id(&id) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    match state.store.revisions().read(id) {
        Ok(Some((meta, bytes))) => {
            let document: serde_json::Value = match policies::config::parse_value(&bytes, meta.format()) {
                Ok(v) => v,
                Err(e) => return apply_error(ApplyError::Malformed(vec![e])).into_response(),
            };
            Json(json!({ "revision": meta, "document": document })).into_response()
        }
        Ok(None) => Problem::not_found(format!("revision {id} is not kept on disk")).into_response(),
        Err(e) => apply_error(ApplyError::Persist(e.to_string())).into_response(),
    }
}

async fn rollback(State(state): State<Arc<AdminState>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let id = match revision_id(&id) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    match state.store.rollback(id, if_match(&headers).as_deref()).await {
        Ok(applied) => applied_response(applied, StatusCode::OK),
        Err(e) => apply_error(e).into_response(),
    }
}

fn apis_of(value: &serde_json::Value) -> &[serde_json::Value] {
    value.get("apis").and_then(|a| a.as_array()).map_or(&[], Vec::as_slice)
}

fn name_of(api: &serde_json::Value) -> Option<&str> {
    api.get("name").and_then(|n| n.as_str())
}

async fn list_apis(State(state): State<Arc<AdminState>>) -> Response {
    let doc = state.store.document();
    let value = match doc.value() {
        Ok(v) => v,
        Err(e) => return apply_error(e).into_response(),
    };
    let list: Vec<serde_json::Value> = apis_of(&value)
        .iter()
        .map(|a| {
            json!({
                "name": a.get("name"), "context": a.get("context"), "version": a.get("version"),
                "state": a.get("state").cloned().unwrap_or(json!("published")),
            })
        })
        .collect();
    Json(json!({ "apis": list })).into_response()
}

async fn get_api(State(state): State<Arc<AdminState>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let doc = state.store.document();
    let value = match doc.value() {
        Ok(v) => v,
        Err(e) => return apply_error(e).into_response(),
    };
    match apis_of(&value).iter().find(|a| name_of(a) == Some(&name)) {
        Some(api) => document_response(api, None, wants(&headers), &doc.etag),
        None => Problem::not_found(format!("no API named `{name}`")).into_response(),
    }
}

/// Applies the current document with `edit` made to its `apis` list, in the document's own
/// syntax (so the config file keeps its format).
async fn edit_apis(
    state: &AdminState,
    headers: &HeaderMap,
    edit: impl FnOnce(&mut Vec<serde_json::Value>) -> Result<(), Problem>,
) -> Result<Applied, Problem> {
    let doc = state.store.document();
    let mut value = doc.value().map_err(apply_error)?;
    let Some(obj) = value.as_object_mut() else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "config.not_an_object",
            "Config is not an object",
            "the current document is not a mapping",
        ));
    };
    let apis = obj.entry("apis").or_insert_with(|| json!([]));
    let Some(list) = apis.as_array_mut() else {
        return Err(Problem::new(StatusCode::CONFLICT, "config.apis_not_a_list", "apis is not a list", "the current `apis` is not a list"));
    };
    edit(list)?;
    let bytes = render(&value, doc.format).map_err(apply_error)?;
    // Without If-Match the edit is still safe against lost updates: it is based on `doc`.
    let precondition = if_match(headers).unwrap_or_else(|| doc.etag.clone());
    state.store.apply(Candidate { bytes, format: doc.format, source: Source::Api }, Some(&precondition)).await.map_err(apply_error)
}

async fn put_api(State(state): State<Arc<AdminState>>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let format = match body_format(&headers) {
        Ok(f) => f,
        Err(p) => return p.into_response(),
    };
    let mut api: serde_json::Value = match policies::config::parse_value(&body, format) {
        Ok(v) => v,
        Err(e) => return apply_error(ApplyError::Malformed(vec![e])).into_response(),
    };
    let Some(obj) = api.as_object_mut() else {
        return apply_error(ApplyError::Malformed(vec![policies::ConfigError::new("", "an API must be a mapping")])).into_response();
    };
    match obj.get("name").and_then(|n| n.as_str()) {
        Some(n) if n != name => {
            return apply_error(ApplyError::Invalid(vec![policies::ConfigError::new(
                "name",
                format!("`{n}` does not match the name in the URL (`{name}`)"),
            )]))
            .into_response()
        }
        _ => {
            obj.insert("name".into(), json!(name));
        }
    }
    let mut created = false;
    let result = edit_apis(&state, &headers, |list| {
        match list.iter_mut().find(|a| name_of(a) == Some(&name)) {
            Some(slot) => *slot = api,
            None => {
                created = true;
                list.push(api);
            }
        }
        Ok(())
    })
    .await;
    match result {
        Ok(applied) => applied_response(applied, if created { StatusCode::CREATED } else { StatusCode::OK }),
        Err(p) => p.into_response(),
    }
}

async fn delete_api(State(state): State<Arc<AdminState>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = edit_apis(&state, &headers, |list| {
        let before = list.len();
        list.retain(|a| name_of(a) != Some(&name));
        if list.len() == before {
            return Err(Problem::not_found(format!("no API named `{name}`")));
        }
        Ok(())
    })
    .await;
    match result {
        Ok(applied) => applied_response(applied, StatusCode::OK),
        Err(p) => p.into_response(),
    }
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
