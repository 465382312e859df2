//! Routes of the ingest step: `POST /v1/ingest/{source}` and `POST /v1/alerts` (202). The
//! front door's share: API keys, source credentials (shared secret, HMAC) and rate limits;
//! parsing and storing is `crate::ingest::Ingestor`'s.

use axum::{
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    routing::post,
    Json, Router,
};
use secrecy::SecretString;
use serde_json::{json, value::RawValue, Value};

use super::{
    auth::{self, Principal},
    ApiError, AppState, REQUEST_ID,
};
use crate::{
    db::{self, sources::AuthType, DbError},
    ingest::{
        credentials::{self, Refusal},
        store::Archive,
        IngestResult, Ingestor,
    },
    sources::SourceName,
};

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
pub(crate) fn rejection_reason(status: StatusCode) -> Option<&'static str> {
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
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
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
    ingest_native(&state, req).await.map(accepted)
}

async fn post_alert(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bytes = read_body(body, state.limits.ingest_body_bytes).await?;
    let rid = request_id(&headers);
    ingest_wrapped(&state, &headers, &bytes, &rid).await.map(accepted)
}

fn ingestor(state: &AppState) -> Ingestor<'_> {
    Ingestor {
        limits: &state.limits,
        never_send: &state.never_send,
        outbox: &state.outbox,
    }
}

/// A native SIEM delivery to `POST /v1/ingest/{source}`.
pub(crate) struct NativeRequest<'a> {
    pub source: &'a str,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub request_id: &'a str,
}

fn unknown_source(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "UNKNOWN_SOURCE",
        "Unknown or inactive alert source",
    )
    .with_details(json!({ "source_name": name }))
}

fn invalid_signature(r: Refusal) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "INVALID_SIGNATURE",
        "Source credential missing or invalid",
    )
    .with_details(json!({ "reason": r.reason() }))
}

fn source_allowed(p: &Principal, source: SourceName) -> Result<(), ApiError> {
    match &p.allowed_sources {
        Some(list) if !list.iter().any(|s| s == source.as_str()) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "SOURCE_NOT_ALLOWED",
            "This API key may not ingest for this source",
        )
        .with_details(json!({ "source_name": source.as_str() }))),
        _ => Ok(()),
    }
}

/// Headers worth archiving: everything except credentials.
fn archived_headers(headers: &HeaderMap) -> Value {
    const SECRET: &[&str] = &[
        "authorization",
        "cookie",
        "x-calseta-source-secret",
        "x-splunk-webhook-secret",
        "proxy-authorization",
        "x-api-key",
    ];
    let mut m = serde_json::Map::new();
    for (k, v) in headers {
        if SECRET.contains(&k.as_str()) {
            continue;
        }
        if let Ok(v) = v.to_str() {
            m.insert(k.as_str().to_owned(), Value::String(v.to_owned()));
        }
    }
    Value::Object(m)
}

/// A source's settings, from the per-instance cache when read less than
/// [`AUTH_CACHE_TTL`](crate::api::cache::AUTH_CACHE_TTL) ago.
async fn source_settings(
    state: &AppState,
    client: &impl db::stmt::Cached,
    source: SourceName,
) -> Result<db::sources::SourceSettings, DbError> {
    if let Some(s) = state.auth_cache.sources.get(&source) {
        return Ok(s);
    }
    let s = db::sources::get(client, source).await?;
    state.auth_cache.sources.put(source, s.clone());
    Ok(s)
}

/// `POST /v1/ingest/{source}`. The body has already passed the size check.
#[allow(
    clippy::too_many_lines,
    reason = "one linear front door: source, key, credentials, limits, then the ingestor"
)]
async fn ingest_native(state: &AppState, req: NativeRequest<'_>) -> Result<IngestResult, ApiError> {
    let source: SourceName = req.source.parse().map_err(|_| unknown_source(req.source))?;
    // One connection for the whole request.
    let mut client = state.pool.get().await?;
    // Source settings and the API key (a `cai_` bearer is always an API key, never falls
    // through to other checks) are read together: one round trip.
    let key = auth::bearer(req.headers).filter(|t| t.starts_with(crate::keys::KEY_PREFIX));
    let (settings, principal) = tokio::join!(source_settings(state, &*client, source), async {
        match key {
            Some(token) => auth::verify_key(state, &*client, req.headers, token).await.map(Some),
            None => Ok(None),
        }
    });
    let settings = settings?;
    if !settings.is_active {
        return Err(unknown_source(req.source));
    }
    let principal = principal?;
    if let Some(p) = &principal {
        p.require(&["alerts:write"])?;
        source_allowed(p, source)?;
    }
    let open = |sealed: &Option<Vec<u8>>| -> Result<Option<SecretString>, ApiError> {
        match sealed {
            None => Ok(None),
            Some(b) => state.sealer.open(b).map(Some).map_err(|e| {
                tracing::error!(error = %e, source = source.as_str(), "source secret cannot be decrypted");
                ApiError::unavailable("The secret store")
            }),
        }
    };
    match settings.auth_type {
        AuthType::ApiKey => {
            if principal.is_none() {
                return Err(auth::unauthorized());
            }
        }
        AuthType::SharedSecret if principal.is_some() => {}
        AuthType::SharedSecret => {
            let configured: Vec<SecretString> =
                [open(&settings.shared_secret)?, open(&settings.previous_shared_secret)?]
                    .into_iter()
                    .flatten()
                    .collect();
            let presented = credentials::presented_secret(req.headers, req.query, source, settings.url_token_allowed);
            credentials::check_shared_secret(presented.as_ref(), &configured).map_err(invalid_signature)?;
        }
        AuthType::Hmac => {
            let secret = open(&settings.hmac_secret)?;
            credentials::check_hmac(
                req.headers,
                req.body,
                source,
                secret.as_ref(),
                chrono::Utc::now().timestamp(),
                settings.hmac_body_only,
            )
            .map_err(invalid_signature)?;
        }
        AuthType::None => {
            tracing::warn!(source = source.as_str(), "unauthenticated ingest (auth_type none)");
        }
    }
    match &principal {
        Some(p) => {
            state
                .limiter
                .check(
                    &*client,
                    &format!("key:{}:ingest", p.key_prefix),
                    state.limits.ingest_per_key_per_minute,
                )
                .await?
        }
        None => {
            state
                .limiter
                .check(
                    &*client,
                    &format!("source:{}", source.as_str()),
                    state.limits.ingest_per_source_per_minute,
                )
                .await?
        }
    }

    let text = std::str::from_utf8(req.body).map_err(|_| ApiError::invalid_json())?;
    let archive = Archive {
        request_id: req.request_id,
        source,
        headers: archived_headers(req.headers),
        body: req.body,
        write: true,
    };
    ingestor(state)
        .ingest(
            &mut client,
            source,
            &settings.extra_indicator_fields,
            text,
            principal.as_ref().map(|p| p.key_prefix.as_str()),
            &archive,
        )
        .await
        .map_err(ApiError::from)
}

/// `POST /v1/alerts`: `{source_name, payload}` with an API key holding `alerts:write`.
async fn ingest_wrapped(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Result<IngestResult, ApiError> {
    let mut client = state.pool.get().await?;
    let principal = auth::require_key(state, &*client, headers).await?;
    principal.require(&["alerts:write"])?;
    state
        .limiter
        .check(
            &*client,
            &format!("key:{}:ingest", principal.key_prefix),
            state.limits.ingest_per_key_per_minute,
        )
        .await?;
    let text = std::str::from_utf8(body).map_err(|_| ApiError::invalid_json())?;
    #[derive(serde::Deserialize)]
    struct Wrapped<'a> {
        source_name: Option<Value>,
        #[serde(borrow)]
        payload: Option<&'a RawValue>,
    }
    let w: Wrapped = serde_json::from_str(text).map_err(|_| ApiError::invalid_json())?;
    // Any other top-level field is refused (422 naming it), never silently ignored.
    let keys: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
        serde_json::from_str(text).map_err(|_| ApiError::invalid_json())?;
    let top: serde_json::Map<String, Value> = keys.into_keys().map(|k| (k, Value::Null)).collect();
    super::fields::strict(&top, "AlertIngest")?;
    let missing = |field: &str| ApiError::validation(&format!("body.{field}"), "field required", "missing");
    let name = match &w.source_name {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ApiError::validation(
                "body.source_name",
                "must be a string",
                "string_type",
            ))
        }
        None => return Err(missing("source_name")),
    };
    let payload = w.payload.ok_or_else(|| missing("payload"))?;
    let source: SourceName = name.parse().map_err(|_| unknown_source(&name))?;
    let settings = source_settings(state, &*client, source).await?;
    if !settings.is_active {
        return Err(unknown_source(&name));
    }
    source_allowed(&principal, source)?;
    let archive = Archive {
        request_id,
        source,
        headers: archived_headers(headers),
        body,
        write: true,
    };
    ingestor(state)
        .ingest(
            &mut client,
            source,
            &settings.extra_indicator_fields,
            payload.get(),
            Some(principal.key_prefix.as_str()),
            &archive,
        )
        .await
        .map_err(ApiError::from)
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
