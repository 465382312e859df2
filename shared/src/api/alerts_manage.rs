//! `GET /v1/alerts`, `GET/PATCH/DELETE /v1/alerts/{uuid}` (api spec §5.2).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::auth::{self, Principal};
use super::list_query::ListQuery;
use super::page;
use super::{ApiError, AppState};
use crate::db::{stmt, DbError};
use crate::domain::malice::Malice;
use crate::domain::severity::Severity;
use crate::enrich::providers::iso;

/// Severity as a sortable rank (api spec §1): Critical 5 … Informational 1, Pending 0.
pub const SEVERITY_RANK_SQL: &str = "CASE a.severity WHEN 'Critical' THEN 5 WHEN 'High' THEN 4 WHEN 'Medium' THEN 3 \
     WHEN 'Low' THEN 2 WHEN 'Informational' THEN 1 ELSE 0 END";

pub const STATUSES: [&str; 4] = ["Open", "Triaging", "Escalated", "Closed"];
pub const ENRICHMENT_STATUSES: [&str; 4] = ["Pending", "Enriched", "Partial", "Failed"];
pub const SOURCES: [&str; 4] = ["sentinel", "elastic", "splunk", "generic"];
pub const CLASSIFICATIONS: [&str; 7] = [
    "True Positive - Suspicious Activity",
    "Benign Positive - Suspicious but Expected",
    "False Positive - Incorrect Detection Logic",
    "False Positive - Inaccurate Data",
    "Undetermined",
    "Duplicate",
    "Not Applicable",
];

const LIST_COLUMNS: &str = "a.uuid, a.title, a.description, a.severity, a.severity_original, a.status,
    a.enrichment_status, a.source_name, a.occurred_at, a.ingested_at, a.is_enriched, a.duplicate_count, a.tags,
    a.close_classification, a.closed_at, a.created_at, a.updated_at";

fn ts(v: Option<DateTime<Utc>>) -> Value {
    v.map(|d| Value::String(iso(d))).unwrap_or(Value::Null)
}

fn list_item(r: &tokio_postgres::Row) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(r.get::<_, Uuid>(0)));
    m.insert("title".into(), json!(r.get::<_, String>(1)));
    m.insert("description".into(), json!(r.get::<_, Option<String>>(2)));
    m.insert("severity".into(), json!(r.get::<_, String>(3)));
    m.insert("severity_original".into(), json!(r.get::<_, Option<String>>(4)));
    m.insert("status".into(), json!(r.get::<_, String>(5)));
    m.insert("enrichment_status".into(), json!(r.get::<_, String>(6)));
    m.insert("source_name".into(), json!(r.get::<_, String>(7)));
    m.insert("occurred_at".into(), ts(Some(r.get(8))));
    m.insert("ingested_at".into(), ts(Some(r.get(9))));
    m.insert("is_enriched".into(), json!(r.get::<_, bool>(10)));
    m.insert("duplicate_count".into(), json!(r.get::<_, i32>(11)));
    m.insert("tags".into(), json!(r.get::<_, Vec<String>>(12)));
    m.insert("close_classification".into(), json!(r.get::<_, Option<String>>(13)));
    m.insert("closed_at".into(), ts(r.get(14)));
    m.insert("created_at".into(), ts(Some(r.get(15))));
    m.insert("updated_at".into(), ts(Some(r.get(16))));
    m
}

pub(super) fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "Alert not found")
}

/// Authenticates and checks one of `scopes`; returns the connection and the caller.
pub(super) async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    scopes: &[&str],
) -> Result<(deadpool_postgres::Object, Principal), ApiError> {
    let client = state.pool.get().await.map_err(DbError::from)?;
    let p = auth::require_key(state, &*client, headers).await?;
    p.require(scopes)?;
    Ok((client, p))
}

/// The alert's internal id; unknown or malformed uuids are 404.
pub(super) async fn alert_id(client: &impl stmt::Cached, uuid: &str) -> Result<(i64, Uuid), ApiError> {
    let uuid = Uuid::parse_str(uuid).map_err(|_| not_found())?;
    let row = stmt::query_opt(client, "SELECT id FROM alerts WHERE uuid = $1", &[(&uuid, Type::UUID)])
        .await
        .map_err(DbError::from)?
        .ok_or_else(not_found)?;
    Ok((row.get(0), uuid))
}

/// `GET /v1/alerts`.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (client, _) = authorize(&state, &headers, &["alerts:read"]).await?;
    let q = ListQuery::parse(q.as_deref())?;
    let page = q.page()?;
    let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    let status = q.list("status", &STATUSES)?;
    let severity = q.list("severity", &severities)?;
    let source = q.list("source_name", &SOURCES)?;
    let enrichment = q.list("enrichment_status", &ENRICHMENT_STATUSES)?;
    let is_enriched = q.boolean("is_enriched")?;
    let rule = q.uuid("detection_rule_uuid")?;
    let from = q.timestamp("from_time")?;
    let to = q.timestamp("to_time")?;
    let tags = q.all("tags");
    let sort = q.sort(
        &[
            ("title", "a.title"),
            ("status", "a.status"),
            ("severity", SEVERITY_RANK_SQL),
            ("source_name", "a.source_name"),
            ("occurred_at", "a.occurred_at"),
            ("created_at", "a.created_at"),
        ],
        "occurred_at",
        "a.id",
    )?;
    let from_where = "FROM alerts a LEFT JOIN detection_rules r ON r.id = a.detection_rule_id
         WHERE ($1::text[] IS NULL OR a.status = ANY($1))
           AND ($2::text[] IS NULL OR a.severity = ANY($2))
           AND ($3::text[] IS NULL OR a.source_name = ANY($3))
           AND ($4::text[] IS NULL OR a.enrichment_status = ANY($4))
           AND ($5::bool IS NULL OR a.is_enriched = $5)
           AND ($6::uuid IS NULL OR r.uuid = $6)
           AND ($7::timestamptz IS NULL OR a.occurred_at >= $7)
           AND ($8::timestamptz IS NULL OR a.occurred_at <= $8)
           AND ($9::text[] IS NULL OR a.tags @> $9)";
    let sql = format!("SELECT {LIST_COLUMNS}, count(*) OVER () {from_where} ORDER BY {sort} LIMIT $10 OFFSET $11");
    let params: [stmt::Param<'_>; 11] = [
        (&status, Type::TEXT_ARRAY),
        (&severity, Type::TEXT_ARRAY),
        (&source, Type::TEXT_ARRAY),
        (&enrichment, Type::TEXT_ARRAY),
        (&is_enriched, Type::BOOL),
        (&rule, Type::UUID),
        (&from, Type::TIMESTAMPTZ),
        (&to, Type::TIMESTAMPTZ),
        (&tags, Type::TEXT_ARRAY),
        (&page.page_size, Type::INT8),
        (&page.offset(), Type::INT8),
    ];
    let rows = stmt::query(&*client, &sql, &params).await.map_err(DbError::from)?;
    let total = page::total(
        &*client,
        &rows,
        17,
        &format!("SELECT count(*) {from_where}"),
        &params[..9],
    )
    .await?;
    let data = rows.iter().map(|r| Value::Object(list_item(r))).collect();
    Ok(Json(page.envelope(data, total)))
}

/// The full alert and its `_metadata` (shared by GET and PATCH).
async fn full(client: &impl stmt::Cached, id: i64) -> Result<Value, ApiError> {
    let sql = format!(
        "SELECT {LIST_COLUMNS}, a.source_alert_id, a.occurred_at_inferred, a.enriched_at, a.last_seen_at,
                a.acknowledged_at, a.triaged_at, r.uuid, a.mitre, a.deep_link, a.extra,
                COALESCE(a.malice_override, a.malice), a.malice_override, a.malice_override_source, a.malice_override_at,
                a.raw_payload, a.enrichment_summary,
                r.name, r.source_rule_id, r.severity, r.mitre_tactics, r.mitre_techniques, r.documentation
         FROM alerts a LEFT JOIN detection_rules r ON r.id = a.detection_rule_id WHERE a.id = $1"
    );
    let ind_sql = "SELECT i.uuid, i.type, i.value, i.malice, i.malice_source, i.first_seen, i.last_seen, i.is_enriched
         FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id WHERE l.alert_id = $1 ORDER BY i.type, i.value";
    let f_sql = "SELECT uuid, agent_name, summary, confidence, recommended_action, evidence, posted_at
         FROM findings WHERE alert_id = $1 ORDER BY posted_at, id";
    let p = [(&id as _, Type::INT8)];
    let (a, inds, finds) = tokio::join!(
        stmt::query_opt(client, &sql, &p),
        stmt::query(client, ind_sql, &p),
        stmt::query(client, f_sql, &p),
    );
    let a = a.map_err(DbError::from)?.ok_or_else(not_found)?;
    let (inds, finds) = (inds.map_err(DbError::from)?, finds.map_err(DbError::from)?);
    // Context documents that apply, as the agent payload computes them.
    let docs: Vec<Value> = crate::context::payload::applicable_documents(client, id)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|d| json!({"uuid": d.uuid, "title": d.title, "document_type": d.document_type}))
        .collect();
    let mut m = list_item(&a);
    m.insert("source_alert_id".into(), json!(a.get::<_, String>(17)));
    m.insert("occurred_at_inferred".into(), json!(a.get::<_, bool>(18)));
    m.insert("enriched_at".into(), ts(a.get(19)));
    m.insert("last_seen_at".into(), ts(Some(a.get(20))));
    m.insert("acknowledged_at".into(), ts(a.get(21)));
    m.insert("triaged_at".into(), ts(a.get(22)));
    m.insert("detection_rule_uuid".into(), json!(a.get::<_, Option<Uuid>>(23)));
    m.insert("mitre".into(), a.get::<_, Value>(24));
    m.insert("deep_link".into(), json!(a.get::<_, Option<String>>(25)));
    m.insert("extra".into(), a.get::<_, Value>(26));
    m.insert("malice".into(), json!(a.get::<_, String>(27)));
    m.insert("malice_override".into(), json!(a.get::<_, Option<String>>(28)));
    m.insert("malice_override_source".into(), json!(a.get::<_, Option<String>>(29)));
    m.insert("malice_override_at".into(), ts(a.get(30)));
    m.insert("raw_payload".into(), a.get::<_, Value>(31));
    m.insert(
        "indicators".into(),
        Value::Array(
            inds.iter()
                .map(|r| {
                    json!({"uuid": r.get::<_, Uuid>(0), "type": r.get::<_, String>(1), "value": r.get::<_, String>(2),
                           "malice": r.get::<_, String>(3), "malice_source": r.get::<_, String>(4),
                           "first_seen": ts(Some(r.get(5))), "last_seen": ts(Some(r.get(6))),
                           "is_enriched": r.get::<_, bool>(7)})
                })
                .collect(),
        ),
    );
    let rule = a.get::<_, Option<Uuid>>(23).map(|u| {
        json!({"uuid": u, "name": a.get::<_, Option<String>>(33), "source_rule_id": a.get::<_, Option<String>>(34),
               "severity": a.get::<_, Option<String>>(35), "mitre_tactics": a.get::<_, Option<Vec<String>>>(36),
               "mitre_techniques": a.get::<_, Option<Vec<String>>>(37), "documentation": a.get::<_, Option<String>>(38)})
    });
    m.insert("detection_rule".into(), rule.clone().unwrap_or(Value::Null));
    m.insert("context_documents".into(), Value::Array(docs.clone()));
    m.insert(
        "agent_findings".into(),
        Value::Array(finds.iter().map(super::findings::finding_json).collect()),
    );
    let summary: Value = a.get(32);
    let list_of = |k: &str| summary.get(k).cloned().filter(Value::is_array).unwrap_or(json!([]));
    let meta = json!({
        "generated_at": iso(Utc::now()),
        "alert_source": a.get::<_, String>(7),
        "indicator_count": inds.len(),
        "enrichment": {"succeeded": list_of("succeeded"), "failed": list_of("failed"), "skipped": list_of("skipped"),
                       "enriched_at": ts(a.get(19))},
        "detection_rule_matched": rule.is_some(),
        "context_documents_applied": docs.len(),
    });
    Ok(json!({"data": Value::Object(m), "meta": {"_metadata": meta}}))
}

/// `GET /v1/alerts/{uuid}`.
pub async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (client, _) = authorize(&state, &headers, &["alerts:read"]).await?;
    let (id, _) = alert_id(&*client, &uuid).await?;
    Ok(Json(full(&*client, id).await?))
}

fn enum_field(obj: &Map<String, Value>, field: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(s.trim()))
            .map(|a| Some(a.to_string()))
            .ok_or_else(|| {
                ApiError::validation(
                    &format!("body.{field}"),
                    &format!("must be one of {}", allowed.join(", ")),
                    "enum",
                )
            }),
        Some(_) => Err(ApiError::validation(
            &format!("body.{field}"),
            "must be a string",
            "string_type",
        )),
    }
}

/// `PATCH /v1/alerts/{uuid}`.
pub async fn patch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (mut client, principal) = authorize(&state, &headers, &["alerts:write"]).await?;
    let obj = page::strict_body(&body, "AlertPatch")?;
    let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    let malices: Vec<&str> = Malice::ALL.iter().map(|m| m.as_str()).collect();
    let status = enum_field(&obj, "status", &STATUSES)?;
    let severity = enum_field(&obj, "severity", &severities)?;
    let classification = enum_field(&obj, "close_classification", &CLASSIFICATIONS)?;
    let malice_override = enum_field(&obj, "malice_override", &malices)?;
    let reset = match obj.get("reset_malice_override") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            return Err(ApiError::validation(
                "body.reset_malice_override",
                "must be true or false",
                "bool_type",
            ))
        }
    };
    let tags: Option<Vec<String>> = match obj.get("tags") {
        None | Some(Value::Null) => None,
        Some(Value::Array(xs)) => {
            let mut out: Vec<String> = Vec::new();
            for x in xs {
                let Some(t) = x.as_str().map(str::trim).filter(|t| !t.is_empty() && t.len() <= 255) else {
                    return Err(ApiError::validation(
                        "body.tags",
                        "must be a list of non-empty strings",
                        "list_type",
                    ));
                };
                if !out.iter().any(|o| o == t) {
                    out.push(t.to_string());
                }
            }
            Some(out)
        }
        Some(_) => {
            return Err(ApiError::validation(
                "body.tags",
                "must be a list of strings",
                "list_type",
            ))
        }
    };
    let (id, alert_uuid) = alert_id(&*client, &uuid).await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let cur = stmt::query_opt(
        &tx,
        "SELECT status, severity, COALESCE(malice_override, malice) FROM alerts WHERE id = $1 FOR UPDATE",
        &[(&id, Type::INT8)],
    )
    .await
    .map_err(DbError::from)?
    .ok_or_else(not_found)?;
    let (cur_status, cur_severity, cur_malice): (String, String, String) = (cur.get(0), cur.get(1), cur.get(2));
    // Closing needs a classification in the same request; a classification alone only corrects
    // an alert that is already closed.
    let closing = status.as_deref() == Some("Closed") && cur_status != "Closed";
    if closing && classification.is_none() {
        return Err(ApiError::validation(
            "body.close_classification",
            "required when setting status to Closed",
            "missing",
        ));
    }
    let final_status = status.clone().unwrap_or_else(|| cur_status.clone());
    if classification.is_some() && final_status != "Closed" {
        return Err(ApiError::validation(
            "body.close_classification",
            "only with status Closed (or on an alert that is already closed)",
            "value_error",
        ));
    }
    let row = stmt::query_opt(
        &tx,
        "UPDATE alerts SET
             status = COALESCE($2, status),
             acknowledged_at = CASE WHEN acknowledged_at IS NULL AND COALESCE($2, status) <> 'Open' THEN now() ELSE acknowledged_at END,
             triaged_at = CASE WHEN triaged_at IS NULL AND $2 = 'Triaging' THEN now() ELSE triaged_at END,
             closed_at = CASE WHEN closed_at IS NULL AND $2 = 'Closed' THEN now() ELSE closed_at END,
             close_classification = COALESCE($3, close_classification),
             severity = COALESCE($4, severity),
             tags = COALESCE($5, tags),
             malice_override = CASE WHEN $7 THEN NULL WHEN $6::text IS NOT NULL THEN $6 ELSE malice_override END,
             malice_override_source = CASE WHEN $7 THEN NULL WHEN $6::text IS NOT NULL THEN 'analyst' ELSE malice_override_source END,
             malice_override_at = CASE WHEN $7 THEN NULL WHEN $6::text IS NOT NULL THEN now() ELSE malice_override_at END,
             updated_at = now()
         WHERE id = $1 RETURNING COALESCE(malice_override, malice)",
        &[
            (&id, Type::INT8),
            (&status, Type::TEXT),
            (&classification, Type::TEXT),
            (&severity, Type::TEXT),
            (&tags, Type::TEXT_ARRAY),
            (&malice_override, Type::TEXT),
            (&reset, Type::BOOL),
        ],
    )
    .await
    .map_err(DbError::from)?
    .ok_or_else(not_found)?;
    let new_malice: String = row.get(0);
    let mut events: Vec<(&str, Value)> = Vec::new();
    if let Some(s) = status.as_deref().filter(|s| *s != cur_status) {
        let kind = if s == "Closed" {
            "alert_closed"
        } else {
            "alert_status_updated"
        };
        events.push((
            kind,
            json!({"from": cur_status, "to": s, "close_classification": classification}),
        ));
    }
    if let Some(s) = severity.as_deref().filter(|s| *s != cur_severity) {
        events.push(("alert_severity_updated", json!({"from": cur_severity, "to": s})));
    }
    // An analyst verdict is recorded even when it confirms the computed one.
    if malice_override.is_some() || reset || new_malice != cur_malice {
        events.push((
            "alert_malice_updated",
            json!({"from": cur_malice, "to": new_malice, "override": malice_override, "reset": reset}),
        ));
    }
    if !events.is_empty() {
        let types: Vec<&str> = events.iter().map(|e| e.0).collect();
        let refs: Vec<Value> = events.into_iter().map(|e| e.1).collect();
        stmt::execute(
            &tx,
            "INSERT INTO activity_events (alert_id, event_type, actor_type, actor_key_prefix, \"references\")
             SELECT $1, e, 'api', $3, r FROM unnest($2::text[], $4::jsonb[]) AS t(e, r)",
            &[
                (&id, Type::INT8),
                (&types, Type::TEXT_ARRAY),
                (&principal.key_prefix, Type::TEXT),
                (&refs, Type::JSONB_ARRAY),
            ],
        )
        .await
        .map_err(DbError::from)?;
    }
    tx.commit().await.map_err(DbError::from)?;
    tracing::info!(alert_id = id, alert_uuid = %alert_uuid, "alert updated");
    Ok(Json(full(&*client, id).await?))
}

/// `DELETE /v1/alerts/{uuid}`: indicator links go, indicators stay; the idempotency key is freed.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (client, _) = authorize(&state, &headers, &["alerts:write"]).await?;
    page::delete_by_uuid(&*client, "alerts", &uuid, not_found).await
}
