//! The per-request context (`ProxyHttp::CTX`), created once per request in `new_ctx`.

use http::HeaderValue;
use policies::chain::{Admitted, Exchange};
use policies::{ProblemCode, Snapshot};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct RequestCtx {
    /// Pinned for the whole request: a reload never changes a request midway.
    pub snapshot: Arc<Snapshot>,
    pub started: Instant,
    pub request_id: HeaderValue,
    /// The exchange serving the request.
    pub exchange: Exchange,
    /// The API, once routing found one (also for rejections inside an API).
    pub api: Option<u32>,
    /// The matched resource (also for mocks).
    pub resource: Option<u32>,
    /// The decision, once the request was admitted (to be proxied, or answered by a mock):
    /// its plan and who is calling.
    pub admitted: Option<Admitted>,
    /// Targets tried so far (bit i = target i) and how many attempts were made.
    pub tried: u64,
    pub attempts: u32,
    pub target: Option<usize>,
    pub upstream_sent: Option<Instant>,
    pub upstream_elapsed: Option<Duration>,
    /// Request body bytes received so far (Pingora's path counts them against the limit).
    pub body_bytes: u64,
    /// The body protectors of an admitted request, while Pingora reads its body chunk by
    /// chunk (`proxy::request_body_filter`).
    pub body_gate: Option<policies::threat::body::BodyGate>,
    /// The body was read whole before connecting (its bytes go upstream from Pingora's
    /// retry buffer); `Expect` is then not forwarded, the gateway having answered it.
    pub body_preread: bool,
    /// A body refused after the upstream request started: answered by `fail_to_proxy`.
    pub body_refusal: Option<policies::Rejection>,
    /// A request to a cached resource: its key (set once the request is admitted).
    pub cache: Option<Box<policies::cache::RequestKey>>,
    /// How the cache served it (`X-Cache`), once known.
    pub cache_status: Option<policies::cache::CacheStatus>,
    /// Pingora's background refresh of a stale entry (`stale-while-revalidate`): decided
    /// like the client's request but not counted against its quotas a second time.
    pub background: bool,
    /// The problem code when the gateway answered itself.
    pub problem: Option<ProblemCode>,
    /// The application of a valid credential that was refused (403), for the access log.
    pub refused_application: Option<u32>,
}

impl RequestCtx {
    pub fn new(snapshot: Arc<Snapshot>, exchange: Exchange) -> Self {
        RequestCtx {
            snapshot,
            started: Instant::now(),
            request_id: HeaderValue::from_static(""),
            exchange,
            api: None,
            resource: None,
            admitted: None,
            tried: 0,
            attempts: 0,
            target: None,
            upstream_sent: None,
            upstream_elapsed: None,
            body_bytes: 0,
            body_gate: None,
            body_preread: false,
            body_refusal: None,
            cache: None,
            cache_status: None,
            background: false,
            problem: None,
            refused_application: None,
        }
    }

    /// Who is calling, when the resource required a credential.
    pub fn principal(&self) -> Option<&policies::authn::Principal> {
        self.admitted.as_ref()?.principal.as_ref()
    }

    pub fn api(&self) -> Option<&policies::snapshot::Api> {
        self.api.and_then(|i| self.snapshot.api(i))
    }

    /// The upstream's response head arrived: upstream latency and a passive health success.
    pub fn upstream_answered(&mut self) {
        if let Some(sent) = self.upstream_sent {
            let elapsed = sent.elapsed();
            self.upstream_elapsed = Some(elapsed);
            if let Some(api) = self.api() {
                api.metrics.observe_upstream(elapsed.as_secs_f64());
            }
        }
        if let Some(t) = self.target() {
            t.health.record_success();
        }
    }

    pub fn target(&self) -> Option<&policies::upstream::Target> {
        let endpoint = self.api()?.endpoint.as_ref()?;
        endpoint.targets.get(self.target?)
    }
}
