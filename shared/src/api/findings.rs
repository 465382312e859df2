//! What agents write back and read around an alert (api spec §5.2): findings (append-only),
//! the activity log, the alert's indicators with their enrichment results.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::alerts_manage::{alert_id, authorize};
use super::page;
use super::{ApiError, AppState};
use crate::db::{stmt, DbError};
use crate::enrich::providers::iso;

/// Largest `evidence` object.
pub const MAX_EVIDENCE_BYTES: usize = 64 * 1024;

pub(super) fn finding_json(r: &tokio_postgres::Row) -> Value {
    json!({
        "id": r.get::<_, Uuid>(0),
        "agent_name": r.get::<_, String>(1),
        "summary": r.get::<_, String>(2),
        "confidence": r.get::<_, Option<String>>(3),
        "recommended_action": r.get::<_, Option<String>>(4),
        "evidence": r.get::<_, Option<Value>>(5),
        "posted_at": iso(r.get(6)),
    })
}

/// `GET /v1/alerts/{uuid}/findings`: oldest first.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (client, _) = authorize(&state, &headers, &["alerts:read"]).await?;
    let (id, _) = alert_id(&*client, &uuid).await?;
    let rows = stmt::query(
        &*client,
        "SELECT uuid, agent_name, summary, confidence, recommended_action, evidence, posted_at
         FROM findings WHERE alert_id = $1 ORDER BY posted_at, id",
        &[(&id, Type::INT8)],
    )
    .await
    .map_err(DbError::from)?;
    Ok(Json(
        json!({"data": rows.iter().map(finding_json).collect::<Vec<_>>(), "meta": {}}),
    ))
}

fn text(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    max: usize,
    required: bool,
) -> Result<Option<String>, ApiError> {
    let f = format!("body.{field}");
    match obj.get(field) {
        None | Some(Value::Null) if required => Err(ApiError::validation(&f, "field required", "missing")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() && required => {
            Err(ApiError::validation(&f, "must not be empty", "string_too_short"))
        }
        Some(Value::String(s)) if s.chars().count() > max => Err(ApiError::validation(
            &f,
            &format!("at most {max} characters"),
            "string_too_long",
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::validation(&f, "must be a string", "string_type")),
    }
}

/// `POST /v1/alerts/{uuid}/findings`.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (client, principal) = authorize(&state, &headers, &["alerts:write"]).await?;
    let obj = page::strict_body(&body, "FindingCreate")?;
    let agent_name = text(&obj, "agent_name", 255, true)?;
    let summary = text(&obj, "summary", 50_000, true)?;
    let recommended = text(&obj, "recommended_action", 10_000, false)?;
    let confidence = match text(&obj, "confidence", 10, false)? {
        None => None,
        Some(c) => Some(
            ["low", "medium", "high"]
                .into_iter()
                .find(|x| x.eq_ignore_ascii_case(c.trim()))
                .ok_or_else(|| ApiError::validation("body.confidence", "must be one of low, medium, high", "enum"))?
                .to_string(),
        ),
    };
    let evidence = match obj.get("evidence") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => {
            if serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_EVIDENCE_BYTES {
                return Err(ApiError::validation("body.evidence", "at most 64 KB", "value_error"));
            }
            Some(v.clone())
        }
        Some(_) => return Err(ApiError::validation("body.evidence", "must be an object", "dict_type")),
    };
    let (id, alert_uuid) = alert_id(&*client, &uuid).await?;
    // The finding and its activity event in one statement.
    let row = stmt::query_opt(
        &*client,
        "WITH f AS (
             INSERT INTO findings (alert_id, agent_name, summary, confidence, recommended_action, evidence)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING uuid, agent_name, summary, confidence, recommended_action, evidence, posted_at),
         e AS (
             INSERT INTO activity_events (alert_id, event_type, actor_type, actor_key_prefix, \"references\")
             SELECT $1, 'alert_finding_added', 'api', $7, jsonb_build_object('finding_id', f.uuid, 'agent_name', f.agent_name)
             FROM f)
         SELECT * FROM f",
        &[
            (&id, Type::INT8),
            (&agent_name, Type::TEXT),
            (&summary, Type::TEXT),
            (&confidence, Type::TEXT),
            (&recommended, Type::TEXT),
            (&evidence, Type::JSONB),
            (&principal.key_prefix, Type::TEXT),
        ],
    )
    .await
    .map_err(DbError::from)?
    .ok_or_else(ApiError::internal)?;
    tracing::info!(alert_id = id, alert_uuid = %alert_uuid, "finding added");
    Ok((StatusCode::CREATED, Json(page::single(finding_json(&row)))).into_response())
}

/// `GET /v1/alerts/{uuid}/activity`: latest first, paginated.
pub async fn activity(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (client, _) = authorize(&state, &headers, &["alerts:read"]).await?;
    let page = super::list_query::ListQuery::parse(q.as_deref())?.page()?;
    let (id, _) = alert_id(&*client, &uuid).await?;
    let rows = stmt::query(
        &*client,
        "SELECT uuid, event_type, actor_type, actor_key_prefix, \"references\", created_at, count(*) OVER ()
         FROM activity_events WHERE alert_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
        &[
            (&id, Type::INT8),
            (&page.page_size, Type::INT8),
            (&page.offset(), Type::INT8),
        ],
    )
    .await
    .map_err(DbError::from)?;
    let total = page::total(
        &*client,
        &rows,
        6,
        "SELECT count(*) FROM activity_events WHERE alert_id = $1",
        &[(&id, Type::INT8)],
    )
    .await?;
    let data = rows
        .iter()
        .map(|r| {
            json!({"uuid": r.get::<_, Uuid>(0), "event_type": r.get::<_, String>(1), "actor_type": r.get::<_, String>(2),
                   "actor_key_prefix": r.get::<_, Option<String>>(3), "references": r.get::<_, Value>(4),
                   "created_at": iso(r.get(5))})
        })
        .collect();
    Ok(Json(page.envelope(data, total)))
}

/// `GET /v1/alerts/{uuid}/indicators`: with each provider's stored result (no raw response).
pub async fn indicators(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (client, _) = authorize(&state, &headers, &["alerts:read"]).await?;
    let (id, _) = alert_id(&*client, &uuid).await?;
    let rows = stmt::query(
        &*client,
        "SELECT i.uuid, i.type, i.value, i.malice, i.malice_source, i.malice_overridden_at, i.first_seen, i.last_seen,
                i.is_enriched, i.created_at, i.updated_at,
                COALESCE((SELECT jsonb_object_agg(r.provider, jsonb_build_object(
                              'status', r.status, 'extracted', r.block, 'malice', r.verdict,
                              'enriched_at', to_char(r.fetched_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                              'expires_at', to_char(r.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')))
                          FROM enrichment_results r WHERE r.indicator_id = i.id), '{}'::jsonb),
                l.enrichment_state, l.provider_status
         FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id
         WHERE l.alert_id = $1 ORDER BY i.type, i.value",
        &[(&id, Type::INT8)],
    )
    .await
    .map_err(DbError::from)?;
    let ts = |v: Option<chrono::DateTime<chrono::Utc>>| v.map(iso);
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"uuid": r.get::<_, Uuid>(0), "type": r.get::<_, String>(1), "value": r.get::<_, String>(2),
                   "malice": r.get::<_, String>(3), "malice_source": r.get::<_, String>(4),
                   "malice_overridden_at": ts(r.get(5)), "first_seen": iso(r.get(6)), "last_seen": iso(r.get(7)),
                   "is_enriched": r.get::<_, bool>(8), "created_at": iso(r.get(9)), "updated_at": iso(r.get(10)),
                   "enrichment_results": r.get::<_, Value>(11), "enrichment_state": r.get::<_, String>(12),
                   "provider_status": r.get::<_, Value>(13)})
        })
        .collect();
    Ok(Json(json!({"data": data, "meta": {}})))
}
