//! Indicators (api spec §5.3) and re-enrichment (§5.2).
//!
//! - `GET /v1/indicators/{uuid}` (`enrichments:read`): one global indicator with every provider
//!   result, raw responses included.
//! - `PATCH /v1/indicators/{uuid}` (`alerts:write`): `{malice}` sets an analyst verdict that later
//!   enrichment keeps; `null` recomputes from stored results. Linked alerts' malice follows.
//! - `POST /v1/alerts/{uuid}/indicators` (`alerts:write`): links more indicators to an alert,
//!   normalized as at ingest; `?enrich=false` skips enrichment.
//! - `POST /v1/alerts/{uuid}/enrich` (`alerts:write`, 60/min per key): re-queues the alert's
//!   enrichable indicators (cache first). Completing again does not re-deliver to agents.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::alerts_manage::{alert_id, authorize};
use super::fields::{self, err};
use super::page;
use super::{rate_limit, ApiError, AppState};
use crate::db::{stmt, DbError};
use crate::domain::malice::Malice;
use crate::enrich::providers::iso;
use crate::queue::messages::EnrichRequest;
use crate::queue::outbox::{self, NewMessage};

/// `POST /v1/alerts/{uuid}/enrich` per key per minute (api spec §1).
pub const REENRICH_PER_MINUTE: u32 = 60;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/indicators/{uuid}", get(detail).patch(patch))
        .route("/v1/alerts/{uuid}/enrich", post(reenrich))
        .route("/v1/alerts/{uuid}/indicators", post(add))
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "Indicator not found")
}

const SQL: &str = "SELECT i.uuid, i.type, i.value, i.malice, i.malice_source, i.malice_overridden_at, i.first_seen,
        i.last_seen, i.is_enriched, i.created_at, i.updated_at,
        COALESCE((SELECT jsonb_object_agg(r.provider, jsonb_build_object(
                      'status', r.status, 'extracted', r.block, 'malice', r.verdict, 'reasons', r.reasons,
                      'raw', r.raw, 'error', r.error,
                      'enriched_at', to_char(r.fetched_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                      'expires_at', to_char(r.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')))
                  FROM enrichment_results r WHERE r.indicator_id = i.id), '{}'::jsonb)
    FROM indicators i WHERE i.uuid = $1";

fn indicator_json(r: &tokio_postgres::Row) -> Value {
    let ts = |v: Option<chrono::DateTime<chrono::Utc>>| v.map(iso);
    json!({
        "uuid": r.get::<_, Uuid>(0), "type": r.get::<_, String>(1), "value": r.get::<_, String>(2),
        "malice": r.get::<_, String>(3), "malice_source": r.get::<_, String>(4),
        "malice_overridden_at": ts(r.get(5)), "first_seen": iso(r.get(6)), "last_seen": iso(r.get(7)),
        "is_enriched": r.get::<_, bool>(8), "created_at": iso(r.get(9)), "updated_at": iso(r.get(10)),
        "enrichment_results": r.get::<_, Value>(11),
    })
}

async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (client, _) = authorize(&state, &headers, &["enrichments:read"]).await?;
    let uuid = Uuid::parse_str(&uuid).map_err(|_| not_found())?;
    let row = stmt::query_opt(&*client, SQL, &[(&uuid, Type::UUID)])
        .await
        .map_err(DbError::from)?
        .ok_or_else(not_found)?;
    Ok(Json(page::single(indicator_json(&row))))
}

async fn patch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (mut client, principal) = authorize(&state, &headers, &["alerts:write"]).await?;
    let obj = page::strict_body(&body, "IndicatorPatch")?;
    let malices: Vec<&str> = Malice::ALL.iter().map(|m| m.as_str()).collect();
    let malice = match fields::one_of(&obj, "malice", &malices)? {
        None => {
            return Err(err(
                "malice",
                "field required (a verdict, or null to recompute)",
                "missing",
            ))
        }
        Some(m) => m,
    };
    let uuid = Uuid::parse_str(&uuid).map_err(|_| not_found())?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    // An override, or back to the worst verdict among stored results.
    let row = stmt::query_opt(
        &tx,
        "WITH cur AS (SELECT id, malice FROM indicators WHERE uuid = $1 FOR UPDATE),
         upd AS (
             UPDATE indicators i SET
                 malice = COALESCE($2, (SELECT COALESCE((ARRAY['Pending','Benign','Suspicious','Malicious'])[
                     MAX(CASE r.verdict WHEN 'Malicious' THEN 4 WHEN 'Suspicious' THEN 3 WHEN 'Benign' THEN 2 ELSE 1 END)], 'Pending')
                     FROM enrichment_results r WHERE r.indicator_id = i.id AND r.status IN ('found', 'not_found'))),
                 malice_source = CASE WHEN $2::text IS NULL THEN 'enrichment' ELSE 'analyst' END,
                 malice_overridden_at = CASE WHEN $2::text IS NULL THEN NULL ELSE now() END,
                 updated_at = now()
             FROM cur WHERE i.id = cur.id RETURNING i.id, cur.malice AS old, i.malice AS new)
         SELECT id, old, new FROM upd",
        &[(&uuid, Type::UUID), (&malice, Type::TEXT)],
    )
    .await
    .map_err(DbError::from)?
    .ok_or_else(not_found)?;
    let (id, old, new): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    // Linked enriched alerts take the worst of their indicators again; each gets an event.
    stmt::execute(
        &tx,
        "WITH linked AS (SELECT alert_id FROM alert_indicators WHERE indicator_id = $1),
         upd AS (
             UPDATE alerts a SET malice = (SELECT COALESCE((ARRAY['Pending','Benign','Suspicious','Malicious'])[
                     MAX(CASE i.malice WHEN 'Malicious' THEN 4 WHEN 'Suspicious' THEN 3 WHEN 'Benign' THEN 2 ELSE 1 END)], 'Pending')
                     FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id WHERE l.alert_id = a.id),
                 updated_at = now()
             FROM linked WHERE a.id = linked.alert_id AND a.enrichment_status <> 'Pending' RETURNING a.id)
         INSERT INTO activity_events (alert_id, event_type, actor_type, actor_key_prefix, \"references\")
         SELECT l.alert_id, 'indicator_malice_updated', 'api', $2,
                jsonb_build_object('indicator_uuid', $3::uuid, 'from', $4::text, 'to', $5::text)
         FROM linked l",
        &[
            (&id, Type::INT8),
            (&principal.key_prefix, Type::TEXT),
            (&uuid, Type::UUID),
            (&old, Type::TEXT),
            (&new, Type::TEXT),
        ],
    )
    .await
    .map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    let row = stmt::query_opt(&*client, SQL, &[(&uuid, Type::UUID)])
        .await
        .map_err(DbError::from)?
        .ok_or_else(not_found)?;
    Ok(Json(page::single(indicator_json(&row))))
}

async fn reenrich(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    let (mut client, principal) = authorize(&state, &headers, &["alerts:write"]).await?;
    rate_limit::check(
        &*client,
        &format!("key:{}:reenrich", principal.key_prefix),
        REENRICH_PER_MINUTE,
    )
    .await?;
    let (id, alert_uuid) = alert_id(&*client, &uuid).await?;
    let deadline = state.limits.enrichment_deadline.as_secs_f64();
    let tx = client.transaction().await.map_err(DbError::from)?;
    stmt::execute(
        &tx,
        "UPDATE alerts SET enrichment_status = 'Pending',
                enrichment_deadline_at = now() + make_interval(secs => $2), updated_at = now()
         WHERE id = $1",
        &[(&id, Type::INT8), (&deadline, Type::FLOAT8)],
    )
    .await
    .map_err(DbError::from)?;
    let links = stmt::query(
        &tx,
        "UPDATE alert_indicators l SET enrichment_state = 'pending', provider_status = '{}'::jsonb
         FROM indicators i WHERE l.alert_id = $1 AND i.id = l.indicator_id AND i.is_enrichable
         RETURNING i.id, i.type, i.value",
        &[(&id, Type::INT8)],
    )
    .await
    .map_err(DbError::from)?;
    let mut messages: Vec<NewMessage> = Vec::with_capacity(links.len());
    for l in &links {
        let Ok(kind) = l.get::<_, &str>(1).parse() else {
            continue;
        };
        messages.push(
            EnrichRequest {
                v: 1,
                alert_id: id,
                alert_uuid,
                indicator_id: l.get(0),
                indicator_type: kind,
                value: l.get(2),
            }
            .to_message(),
        );
    }
    let rows: Vec<(i64, NewMessage)> = if messages.is_empty() {
        // Nothing to look up: complete now (its dispatch finds the deliveries already made).
        let done = stmt::query(
            &tx,
            "SELECT alert_id, alert_uuid, outbox_id, body, attributes
             FROM calseta_complete_alerts(ARRAY[$1::bigint], 'enrichment')",
            &[(&id, Type::INT8)],
        )
        .await
        .map_err(DbError::from)?;
        crate::enrich::engine::completions(&done)
            .into_iter()
            .map(|(_, _, m)| m)
            .collect()
    } else {
        let ids = outbox::enqueue(&*tx, &messages).await?;
        ids.into_iter().zip(messages).collect()
    };
    tx.commit().await.map_err(DbError::from)?;
    if let Err(e) = state.outbox.send_committed(&*client, &rows).await {
        tracing::warn!(error = %e, "re-enrichment messages left for the sweeper");
    }
    tracing::info!(alert_id = id, alert_uuid = %alert_uuid, indicators = links.len(), "re-enrichment queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(page::single(json!({"message": "Enrichment queued"}))),
    )
        .into_response())
}

/// Most indicators one request may add.
pub const MAX_ADDED: usize = 100;

async fn add(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    use crate::domain::indicator::{self, IndicatorType};
    let (mut client, principal) = authorize(&state, &headers, &["alerts:write"]).await?;
    let enrich = super::list_query::ListQuery::parse(raw.as_deref())?
        .boolean("enrich")?
        .unwrap_or(true);
    let obj = page::strict_body(&body, "IndicatorsAdd")?;
    let items = match obj.get("indicators") {
        Some(Value::Array(xs)) if !xs.is_empty() && xs.len() <= MAX_ADDED => xs,
        Some(Value::Array(_)) => return Err(err("indicators", "1 to 100 items", "too_long")),
        Some(_) => return Err(err("indicators", "must be a list of {type, value}", "list_type")),
        None => return Err(err("indicators", "field required", "missing")),
    };
    // Normalized as at ingest; an invalid value is a 422 naming the item.
    let mut wanted: Vec<(IndicatorType, String)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let f = |k: &str| format!("indicators[{i}].{k}");
        let kind = match it.get("type").and_then(Value::as_str) {
            Some(t) => t.trim().to_ascii_lowercase().parse::<IndicatorType>().map_err(|_| {
                err(
                    &f("type"),
                    "one of ip, domain, url, hash_md5, hash_sha1, hash_sha256, email, account",
                    "enum",
                )
            })?,
            None => return Err(err(&f("type"), "field required", "missing")),
        };
        let value = match it.get("value").and_then(Value::as_str) {
            Some(v) if !v.is_empty() && v.len() <= indicator::MAX_VALUE_LEN => v,
            Some(_) => return Err(err(&f("value"), "1 to 2048 characters", "string_length")),
            None => return Err(err(&f("value"), "field required", "missing")),
        };
        let normalized =
            indicator::normalize(kind, value).map_err(|e| err(&f("value"), &e.to_string(), "value_error"))?;
        for n in normalized {
            if !wanted.contains(&n) {
                wanted.push(n);
            }
        }
    }
    if wanted.is_empty() {
        return Err(err("indicators", "no valid indicator", "value_error"));
    }
    wanted.sort();
    let (id, alert_uuid) = alert_id(&*client, &uuid).await?;
    let types: Vec<&str> = wanted.iter().map(|(t, _)| t.as_str()).collect();
    let values: Vec<&str> = wanted.iter().map(|(_, v)| v.as_str()).collect();
    let enrichable: Vec<bool> = wanted
        .iter()
        .map(|(t, v)| crate::enrich::wants_enrichment(&state.never_send, *t, v))
        .collect();
    let tx = client.transaction().await.map_err(DbError::from)?;
    // Upsert in a fixed order (no deadlocks with concurrent ingest), then link the new ones.
    let rows = stmt::query(
        &tx,
        "WITH ins AS (
             INSERT INTO indicators (type, value, is_enrichable)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bool[])
             ON CONFLICT (type, value) DO UPDATE SET last_seen = now()
             RETURNING id, uuid, type, value, is_enrichable),
         link AS (
             INSERT INTO alert_indicators (alert_id, indicator_id, source_field, enrichment_state)
             SELECT $4, ins.id, 'api', CASE WHEN ins.is_enrichable AND $5 THEN 'pending' ELSE 'skipped' END FROM ins
             ON CONFLICT DO NOTHING RETURNING indicator_id, enrichment_state)
         SELECT ins.id, ins.uuid, ins.type, ins.value, link.enrichment_state
         FROM ins LEFT JOIN link ON link.indicator_id = ins.id ORDER BY ins.type, ins.value",
        &[
            (&types, Type::TEXT_ARRAY),
            (&values, Type::TEXT_ARRAY),
            (&enrichable, Type::BOOL_ARRAY),
            (&id, Type::INT8),
            (&enrich, Type::BOOL),
        ],
    )
    .await
    .map_err(DbError::from)?;
    let added: Vec<&tokio_postgres::Row> = rows
        .iter()
        .filter(|r| r.get::<_, Option<String>>(4).is_some())
        .collect();
    let mut messages: Vec<NewMessage> = Vec::new();
    for r in added.iter().filter(|r| r.get::<_, Option<&str>>(4) == Some("pending")) {
        let Ok(kind) = r.get::<_, &str>(2).parse() else {
            continue;
        };
        messages.push(
            EnrichRequest {
                v: 1,
                alert_id: id,
                alert_uuid,
                indicator_id: r.get(0),
                indicator_type: kind,
                value: r.get(3),
            }
            .to_message(),
        );
    }
    if !added.is_empty() {
        let deadline = state.limits.enrichment_deadline.as_secs_f64();
        // New work re-opens enrichment; the alert completes (again) when it is done. Agents
        // already served are not sent it again (deliveries are per alert and agent).
        if !messages.is_empty() {
            stmt::execute(
                &tx,
                "UPDATE alerts SET enrichment_status = 'Pending', enrichment_deadline_at = now() + make_interval(secs => $2),
                        updated_at = now() WHERE id = $1",
                &[(&id, Type::INT8), (&deadline, Type::FLOAT8)],
            )
            .await
            .map_err(DbError::from)?;
        }
        let refs = json!({"indicators": added.iter().map(|r| json!({"type": r.get::<_, String>(2), "value": r.get::<_, String>(3)})).collect::<Vec<_>>()});
        stmt::execute(
            &tx,
            "INSERT INTO activity_events (alert_id, event_type, actor_type, actor_key_prefix, \"references\")
             VALUES ($1, 'alert_indicators_added', 'api', $2, $3)",
            &[
                (&id, Type::INT8),
                (&principal.key_prefix, Type::TEXT),
                (&refs, Type::JSONB),
            ],
        )
        .await
        .map_err(DbError::from)?;
    }
    let ids = outbox::enqueue(&*tx, &messages).await?;
    tx.commit().await.map_err(DbError::from)?;
    let sent: Vec<(i64, NewMessage)> = ids.into_iter().zip(messages).collect();
    if let Err(e) = state.outbox.send_committed(&*client, &sent).await {
        tracing::warn!(error = %e, "enrichment messages left for the sweeper");
    }
    let list: Vec<Value> = added
        .iter()
        .map(|r| {
            json!({"uuid": r.get::<_, Uuid>(1), "type": r.get::<_, String>(2), "value": r.get::<_, String>(3),
                        "enrichment_state": r.get::<_, String>(4)})
        })
        .collect();
    tracing::info!(alert_id = id, alert_uuid = %alert_uuid, added = list.len(), "indicators added");
    Ok((
        StatusCode::CREATED,
        Json(page::single(
            json!({"added_count": list.len(), "indicators": list, "enrich_requested": enrich && !sent.is_empty()}),
        )),
    )
        .into_response())
}
