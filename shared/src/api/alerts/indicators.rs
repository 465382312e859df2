//! An alert's indicators, written (api spec §5.2):
//!
//! - `POST /v1/alerts/{uuid}/indicators` (`alerts:write`): links more indicators to an alert,
//!   normalized as at ingest; `?enrich=false` skips enrichment.
//! - `POST /v1/alerts/{uuid}/enrich` (`alerts:write`, 60/min per key): re-queues the alert's
//!   enrichable indicators (cache first). Completing again does not re-deliver to agents.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::manage::alert_id;
use crate::api::extract::{res, Authorized, Id};
use crate::api::fields::err;
use crate::api::page;
use crate::api::{rate_limit, ApiError, AppState};
use crate::db::stmt;
use crate::queue::messages::EnrichRequest;
use crate::queue::outbox::{self, NewMessage};

/// `POST /v1/alerts/{uuid}/enrich` per key per minute (api spec §1).
pub const REENRICH_PER_MINUTE: u32 = 60;

pub(super) async fn reenrich(
    State(state): State<AppState>,
    Authorized { mut client, principal }: Authorized,
    Id(uuid, _): Id<res::Alert>,
) -> Result<Response, ApiError> {
    rate_limit::check(
        &*client,
        &format!("key:{}:reenrich", principal.key_prefix),
        REENRICH_PER_MINUTE,
    )
    .await?;
    let (id, alert_uuid) = alert_id(&*client, uuid).await?;
    let deadline = state.limits.enrichment_deadline.as_secs_f64();
    let tx = client.transaction().await?;
    stmt::execute(
        &tx,
        "UPDATE alerts SET enrichment_status = 'Pending',
                enrichment_deadline_at = now() + make_interval(secs => $2), updated_at = now()
         WHERE id = $1",
        &[(&id, Type::INT8), (&deadline, Type::FLOAT8)],
    )
    .await?;
    let links = stmt::query(
        &tx,
        "UPDATE alert_indicators l SET enrichment_state = 'pending', provider_status = '{}'::jsonb
         FROM indicators i WHERE l.alert_id = $1 AND i.id = l.indicator_id AND i.is_enrichable
         RETURNING i.id, i.type, i.value",
        &[(&id, Type::INT8)],
    )
    .await?;
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
        .await?;
        crate::enrich::engine::completions(&done)
            .into_iter()
            .map(|(_, _, m)| m)
            .collect()
    } else {
        let ids = outbox::enqueue(&*tx, &messages).await?;
        ids.into_iter().zip(messages).collect()
    };
    tx.commit().await?;
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

#[allow(
    clippy::too_many_lines,
    reason = "long but linear; a split along its phases is issue #11's next step"
)]
pub(super) async fn add(
    State(state): State<AppState>,
    Authorized { mut client, principal }: Authorized,
    Id(uuid, _): Id<res::Alert>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    use crate::domain::indicator::{self, IndicatorType};
    let enrich = crate::api::list_query::ListQuery::parse(raw.as_deref())?
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
        // A URL brings its host too, as at ingest (reputation services know domains better).
        let hosts: Vec<_> = normalized
            .iter()
            .filter(|(t, _)| *t == IndicatorType::Url)
            .filter_map(|(_, v)| indicator::url_host_indicator(v))
            .collect();
        for n in normalized.into_iter().chain(hosts) {
            if !wanted.contains(&n) {
                wanted.push(n);
            }
        }
    }
    if wanted.is_empty() {
        return Err(err("indicators", "no valid indicator", "value_error"));
    }
    wanted.sort();
    let (id, alert_uuid) = alert_id(&*client, uuid).await?;
    let types: Vec<&str> = wanted.iter().map(|(t, _)| t.as_str()).collect();
    let values: Vec<&str> = wanted.iter().map(|(_, v)| v.as_str()).collect();
    let enrichable: Vec<bool> = wanted
        .iter()
        .map(|(t, v)| crate::enrich::wants_enrichment(&state.never_send, *t, v))
        .collect();
    let tx = client.transaction().await?;
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
    .await?;
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
            .await?;
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
        .await?;
    }
    let ids = outbox::enqueue(&*tx, &messages).await?;
    tx.commit().await?;
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
