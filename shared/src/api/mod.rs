//! HTTP: the axum router served by `calseta dev` (axum::serve), by the Lambdas
//! (lambda_http::run) and by tests (tower oneshot / a random port).

pub mod error;
pub mod health;
pub mod keys;

use std::sync::Arc;

use axum::{
    extract::Request,
    http::{header, HeaderName, HeaderValue},
    middleware::{self, Next},
    response::Response,
    routing::get,
    Router,
};

use crate::{
    db::Pool,
    queue::{outbox::Outbox, Queue},
};
pub use error::ApiError;

/// Everything a request handler may need; built once per process.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub queue: Arc<dyn Queue>,
    pub outbox: Outbox,
}

impl AppState {
    pub fn new(pool: Pool, queue: Arc<dyn Queue>) -> Self {
        let outbox = Outbox::new(pool.clone(), queue.clone());
        Self { pool, queue, outbox }
    }
}

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The full router. Later capabilities merge their routes here.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
        .layer(middleware::from_fn(common_headers))
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
    // Only the path is logged: a query string may carry a source's URL token.
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
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
