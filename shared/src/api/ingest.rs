//! Routes of the ingest step: `POST /v1/ingest/{source}` and `POST /v1/alerts` (202).

use axum::{
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    routing::post,
    Json, Router,
};
use serde_json::{json, Value};

use super::{ApiError, AppState, REQUEST_ID};
use crate::ingest::{self, IngestResult, NativeRequest};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/ingest/{source}", post(ingest_source))
        .route("/v1/alerts", post(post_alert))
        // The limit is enforced below on bytes actually received, with our error envelope.
        .layer(DefaultBodyLimit::disable())
}

/// Reads the body up to `limit` bytes; more → 413 `PAYLOAD_TOO_LARGE`.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "Request body is too large",
        )
        .with_details(json!({ "limit_bytes": limit }))
    })
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn accepted(result: IngestResult) -> (StatusCode, Json<Value>) {
    (StatusCode::ACCEPTED, Json(json!({ "data": result, "meta": {} })))
}

async fn ingest_source(
    State(state): State<AppState>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bytes = read_body(body, state.limits.ingest_body_bytes).await?;
    let rid = request_id(&headers);
    let req = NativeRequest {
        source: &source,
        headers: &headers,
        query: query.as_deref(),
        body: &bytes,
        request_id: &rid,
    };
    ingest::ingest_native(&state, req).await.map(accepted)
}

async fn post_alert(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bytes = read_body(body, state.limits.ingest_body_bytes).await?;
    let rid = request_id(&headers);
    ingest::ingest_wrapped(&state, &headers, &bytes, &rid)
        .await
        .map(accepted)
}
