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
        .layer(axum::middleware::from_fn(count_rejections))
}

/// Why a whole ingest request was refused (nothing stored), as the `reason` dimension of the
/// `IngestRequestsRejected` metric; `None` for an accepted request.
pub fn rejection_reason(status: StatusCode) -> Option<&'static str> {
    match status.as_u16() {
        401 | 403 => Some("auth"),
        429 => Some("rate_limited"),
        413 => Some("too_large"),
        400 | 415 | 422 => Some("invalid"),
        404 | 405 => Some("unknown_source"),
        500..=599 => Some("error"),
        _ => None,
    }
}

/// Counts refused ingest requests by reason (CloudWatch EMF): an alarm on `auth` or
/// `rate_limited` catches a SIEM with a stale key or a flood before alerts go missing.
async fn count_rejections(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let resp = next.run(req).await;
    if let Some(reason) = rejection_reason(resp.status()) {
        crate::metrics::count("IngestRequestsRejected", Some(("reason", reason)), 1);
    }
    resp
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_request_rejections_have_a_reason_and_accepted_requests_none() {
        for (status, reason) in [
            (401, "auth"),
            (403, "auth"),
            (429, "rate_limited"),
            (413, "too_large"),
            (400, "invalid"),
            (422, "invalid"),
            (404, "unknown_source"),
            (503, "error"),
        ] {
            assert_eq!(
                rejection_reason(StatusCode::from_u16(status).unwrap()),
                Some(reason),
                "{status}"
            );
            let doc = crate::metrics::document(
                "ingest",
                &[("reason", reason)],
                &[("IngestRequestsRejected", 1.0, crate::metrics::Unit::Count)],
                1,
            );
            crate::metrics::validate(&doc).expect("valid EMF");
            assert_eq!(
                doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                json!([["service", "reason"]])
            );
        }
        assert_eq!(rejection_reason(StatusCode::ACCEPTED), None);
        assert_eq!(rejection_reason(StatusCode::OK), None);
    }
}
