//! On-demand enrichment (api spec §5.4): `POST /v1/enrichments` (synchronous, cache-first, not
//! stored) and `GET /v1/enrichments/providers`. Both need `enrichments:read`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::{auth, rate_limit, ApiError, AppState};
use crate::enrich::cache;
use crate::enrich::registry::BUILT_IN;

/// `POST /v1/enrichments` per key per minute (api spec §1).
pub(crate) const ON_DEMAND_PER_MINUTE: u32 = 60;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/enrichments", post(enrich_now))
        .route("/v1/enrichments/providers", get(list_providers))
}

fn validation(field: &str, message: &str, kind: &str) -> ApiError {
    ApiError::validation(&format!("body.{field}"), message, kind)
}

fn engine(state: &AppState) -> Result<&std::sync::Arc<crate::enrich::engine::Engine>, ApiError> {
    state
        .enrichment
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("enrichment"))
}

async fn enrich_now(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    {
        let client = state.pool.get().await?;
        let principal = auth::require_key(&state, &*client, &headers).await?;
        principal.require(&["enrichments:read"])?;
        rate_limit::check(
            &*client,
            &format!("key:{}:enrich", principal.key_prefix),
            ON_DEMAND_PER_MINUTE,
        )
        .await?;
    }
    let v: Value = serde_json::from_slice(&body).map_err(|_| ApiError::invalid_json())?;
    if let Some(path) = super::page::nul_path(&v, "body") {
        return Err(ApiError::validation(
            &path,
            "must not contain NUL characters",
            "string_type",
        ));
    }
    let Value::Object(obj) = v else {
        return Err(validation("", "body must be an object", "dict_type"));
    };
    super::fields::strict(&obj, "EnrichmentRequest")?;
    let engine = engine(&state)?;
    let pick = |a: &str, b: &str| obj.get(a).or_else(|| obj.get(b)).cloned();
    let text = |a: &str, b: &str, field: &str| match pick(a, b) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(validation(field, "must be a string", "string_type")),
        None => Err(validation(field, "field required", "missing")),
    };
    let (kind, raw) = (
        text("type", "indicator_type", "type")?,
        text("value", "indicator_value", "value")?,
    );
    let answer = crate::service::enrichments::enrich_now(engine, &kind, &raw).await?;
    Ok(Json(json!({"data": answer, "meta": {}})))
}

async fn list_providers(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    {
        let client = state.pool.get().await?;
        auth::require_key(&state, &*client, &headers)
            .await?
            .require(&["enrichments:read"])?;
    }
    let configured = |name: &str| {
        state
            .enrichment
            .as_ref()
            .is_some_and(|e| e.providers().is_configured(name))
    };
    let data: Vec<Value> = BUILT_IN
        .iter()
        .map(|p| {
            let by_type: Map<String, Value> = p
                .supported_types
                .iter()
                .map(|t| {
                    let (found, not_found) = cache::ttl(p.name, *t);
                    (
                        t.as_str().to_string(),
                        json!({"found": found.as_secs(), "not_found": not_found.as_secs()}),
                    )
                })
                .collect();
            // The headline TTL: the first supported type's found TTL (the reference had one per provider).
            let headline = p
                .supported_types
                .first()
                .map(|t| cache::ttl(p.name, *t).0.as_secs())
                .unwrap_or(3600);
            json!({
                "provider_name": p.name,
                "display_name": p.display_name,
                "supported_types": p.supported_types.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                "is_configured": configured(p.name),
                "cache_ttl_seconds": headline,
                "cache_ttl_by_type": by_type,
            })
        })
        .collect();
    Ok(Json(json!({"data": data, "meta": {}})))
}
