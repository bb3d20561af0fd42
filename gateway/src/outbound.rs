//! Outbound HTTP calls of the control plane and of authentication (JWKS, OIDC discovery,
//! token introspection), over Pingora's connector (http and https, system roots).

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use std::time::Duration;

/// Largest response body read.
const MAX_BODY: usize = 1 << 20;

pub struct Response {
    pub status: u16,
    /// `Cache-Control: max-age`, in seconds.
    pub max_age: Option<u64>,
    pub body: Vec<u8>,
}

/// One request; `headers` are added to `Host`. The whole exchange is bounded by `timeout`.
pub async fn call(
    connector: &Connector,
    method: &str,
    uri: &http::Uri,
    headers: &[(&'static str, http::HeaderValue)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, String> {
    match tokio::time::timeout(timeout, exchange(connector, method, uri, headers, body, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
    }
}

async fn exchange(
    connector: &Connector,
    method: &str,
    uri: &http::Uri,
    headers: &[(&'static str, http::HeaderValue)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, String> {
    let tls = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or("no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to nothing"))?;
    let mut peer = HttpPeer::new(addr, tls, if tls { host.clone() } else { String::new() });
    peer.options.connection_timeout = Some(timeout.min(Duration::from_secs(2)));
    peer.options.read_timeout = Some(timeout);
    let (mut session, _) = connector.get_http_session(&peer).await.map_err(|e| e.to_string())?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = RequestHeader::build(method, path.as_bytes(), None).map_err(|e| e.to_string())?;
    req.insert_header("Host", uri.authority().map_or(host.as_str(), |a| a.as_str())).map_err(|e| e.to_string())?;
    for (name, value) in headers {
        req.insert_header(*name, value.clone()).map_err(|e| e.to_string())?;
    }
    if let Some(b) = body {
        req.insert_header("Content-Length", b.len()).map_err(|e| e.to_string())?;
    }
    session.write_request_header(Box::new(req)).await.map_err(|e| e.to_string())?;
    if let Some(b) = body {
        session.write_request_body(bytes::Bytes::copy_from_slice(b), true).await.map_err(|e| e.to_string())?;
    }
    session.finish_request_body().await.map_err(|e| e.to_string())?;
    session.read_response_header().await.map_err(|e| e.to_string())?;
    let (status, max_age) = match session.response_header() {
        Some(h) => (h.status.as_u16(), h.headers.get(http::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).and_then(max_age)),
        None => return Err("no response".into()),
    };
    let mut out = Vec::new();
    while let Some(chunk) = session.read_response_body().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > MAX_BODY {
            return Err("the response is larger than 1 MiB".into());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Response { status, max_age, body: out })
}

fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.trim_matches('"').parse().ok())
}
