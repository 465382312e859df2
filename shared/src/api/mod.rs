//! HTTP: the axum router served by `calseta dev` (`net::server::serve`), by the Lambdas
//! (lambda_http::run) and by tests (tower oneshot / a random port).

pub mod agents;
pub mod alerts;
pub mod api_keys;
pub mod auth;
pub mod cache;
pub mod context_documents;
pub mod detection_rules;
pub mod enrichments;
pub mod error;
pub mod extract;
pub mod fields;
pub mod health;
pub mod indicators;
pub mod ingest;
pub mod list_query;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod rate_limit;
pub mod sources;
pub mod workflows;

use std::sync::Arc;

use axum::{
    extract::Request,
    http::{header, HeaderName, HeaderValue},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use crate::keys::KeyHasher;
use crate::{
    config::{AppSecrets, Limits},
    crypto::{CryptoError, Sealer},
    db::Pool,
    enrich::never_send::NeverSendPolicy,
    queue::{outbox::Outbox, Queue},
};
pub use error::ApiError;

/// Everything a request handler may need; built once per process.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub queue: Arc<dyn Queue>,
    pub outbox: Outbox,
    pub hasher: KeyHasher,
    pub sealer: Sealer,
    pub limits: Limits,
    /// Values that must never reach an outside service (providers spec §1.1).
    pub never_send: Arc<NeverSendPolicy>,
    /// The enrichment engine, where this process serves `/v1/enrichments` (not the ingest Lambda).
    pub enrichment: Option<Arc<crate::enrich::engine::Engine>>,
    /// The dispatcher, where this process serves agent tests and checks agent URLs.
    pub dispatch: Option<Arc<crate::dispatch::Dispatcher>>,
    /// A trusted proxy (API Gateway, a load balancer) appends the caller's address to
    /// `X-Forwarded-For`: failed authentications are then also limited per address.
    pub trust_forwarded_for: bool,
    /// Key rows, address states and source settings trusted for a few seconds (`cache`).
    pub auth_cache: Arc<cache::AuthCache>,
    /// Ingest rate limits, counted locally and synced with Postgres in batches (`rate_limit`).
    pub limiter: Arc<rate_limit::Limiter>,
}

impl AppState {
    pub fn new(pool: Pool, queue: Arc<dyn Queue>, secrets: &AppSecrets, limits: Limits) -> Result<Self, CryptoError> {
        let outbox = Outbox::new(pool.clone(), queue.clone());
        Ok(Self {
            pool,
            queue,
            outbox,
            hasher: KeyHasher::new(secrets.key_hash_secret.clone()),
            sealer: Sealer::from_hex(&secrets.encryption_key)?,
            limits,
            never_send: Arc::new(NeverSendPolicy::default()),
            enrichment: None,
            dispatch: None,
            trust_forwarded_for: false,
            auth_cache: Arc::new(cache::AuthCache::default()),
            limiter: Arc::new(rate_limit::Limiter::default()),
        })
    }

    /// Replaces the never-send policy (deployment settings `INTERNAL_CIDRS`, `INTERNAL_DOMAIN_SUFFIXES`).
    pub fn with_never_send(mut self, policy: NeverSendPolicy) -> Self {
        self.never_send = Arc::new(policy);
        self
    }

    /// Limits failed authentications per `X-Forwarded-For` address too (only behind a trusted proxy).
    pub fn with_trusted_forwarded_for(mut self, trust: bool) -> Self {
        self.trust_forwarded_for = trust;
        self
    }

    /// Tests agent deliveries and checks agent URLs with this dispatcher.
    pub fn with_dispatch(mut self, dispatcher: Arc<crate::dispatch::Dispatcher>) -> Self {
        self.dispatch = Some(dispatcher);
        self
    }

    /// Serves on-demand enrichment with this engine and reports its providers in `/health`.
    pub fn with_enrichment(mut self, engine: Arc<crate::enrich::engine::Engine>) -> Self {
        self.enrichment = Some(engine);
        self
    }
}

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The full router (`calseta dev`, the `api` Lambda). Later capabilities merge their routes here.
pub fn router(state: AppState) -> Router {
    with_common(
        Router::new()
            .route("/health", get(health::health))
            .route("/openapi.json", get(openapi::serve))
            .merge(ingest::routes())
            .merge(enrichments::routes())
            .merge(alerts::routes())
            .merge(agents::routes())
            .merge(api_keys::routes())
            .merge(context_documents::routes())
            .merge(workflows::routes())
            .merge(detection_rules::routes())
            .merge(sources::routes())
            .merge(indicators::routes())
            .merge(metrics::routes()),
        state,
    )
}

/// Only what the `ingest` Lambda serves.
pub fn ingest_router(state: AppState) -> Router {
    with_common(ingest::routes(), state)
}

fn with_common(routes: Router<AppState>, state: AppState) -> Router {
    let limit = state.limits.request_timeout;
    routes
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            deadline(limit, req, next)
        }))
        .layer(middleware::from_fn(common_headers))
}

/// Bounds a request (`Limits::request_timeout`). The pool bounds connection waits, and
/// `statement_timeout` is enforced by a server that may not be running: a frozen database
/// (stopped process, dead network path) would otherwise hold the request, its connection and
/// its caller until the freeze ends. Dropping the handler rolls its transaction back.
///
/// Not for the two routes that wait on an outside service by design, each under its own
/// bound: an agent test (the agent's `timeout_seconds`, up to 300 s) and on-demand
/// enrichment (the providers' timeouts).
async fn deadline(limit: std::time::Duration, req: Request, next: Next) -> Response {
    if waits_outside(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(limit_ms = limit.as_millis() as u64, "request timed out");
            ApiError::unavailable("The service").into_response()
        }
    }
}

fn waits_outside(method: &axum::http::Method, path: &str) -> bool {
    if method != axum::http::Method::POST {
        return false;
    }
    path == "/v1/enrichments"
        || path
            .strip_prefix("/v1/agents/")
            .and_then(|rest| rest.strip_suffix("/test"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Request id (honoured or generated, echoed back) and the security headers of api spec §1.
async fn common_headers(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    // The alerts this request creates carry its id and X-Ray trace (API Gateway's header, or the
    // invocation's under Lambda) into the messages for enrich and dispatch.
    let trace = req
        .headers()
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| std::env::var("_X_AMZN_TRACE_ID").ok());
    let ids = crate::queue::correlation::Ids::new(trace.as_deref(), Some(&id));
    // Only the path is logged: a query string may carry a source's URL token.
    let resp = crate::queue::correlation::scope(
        crate::queue::correlation::Correlation::request(ids),
        tracing::Instrument::instrument(next.run(req), span),
    )
    .await;
    let mut resp = enveloped(resp).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert(REQUEST_ID.clone(), v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
    resp
}

/// axum's own extractor rejections (a path segment that is not UTF-8, a malformed query, a body
/// over the size limit) answer in plain text; the API answers only in the error envelope, so
/// they are rewrapped with their status and axum's short reason.
async fn enveloped(resp: Response) -> Response {
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/plain"));
    let status = resp.status();
    if !plain || !status.is_client_error() {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap_or_default();
    let reason: String = String::from_utf8_lossy(&text).chars().take(300).collect();
    let code = match status.as_u16() {
        413 => "PAYLOAD_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        422 => "VALIDATION_ERROR",
        _ => "BAD_REQUEST",
    };
    axum::response::IntoResponse::into_response(ApiError::new(status, code, reason))
}
