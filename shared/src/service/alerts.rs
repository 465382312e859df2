//! Alerts (api spec §5.2, MCP §6): search, the full alert, the agent payload, status / severity /
//! malice updates under the lifecycle rules, findings, activity and the alert's indicators.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{Actor, ServiceError};
use crate::context::payload::{self, PayloadOptions};
use crate::db::activity::{self, EventType, Events};
use crate::db::stmt::{self, Cached};
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
/// `sort_by` names and their SQL; the first is not the default (`occurred_at` is).
pub const SORTS: [(&str, &str); 6] = [
    ("title", "a.title"),
    ("status", "a.status"),
    ("severity", SEVERITY_RANK_SQL),
    ("source_name", "a.source_name"),
    ("occurred_at", "a.occurred_at"),
    ("created_at", "a.created_at"),
];
/// Largest `evidence` object of a finding.
pub const MAX_EVIDENCE_BYTES: usize = 64 * 1024;

const NOT_FOUND: ServiceError = ServiceError::NotFound("Alert");

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

/// The alert's internal id; unknown or malformed uuids are not found.
pub async fn alert_id(client: &impl Cached, uuid: Uuid) -> Result<(i64, Uuid), ServiceError> {
    let row = stmt::query_opt(client, "SELECT id FROM alerts WHERE uuid = $1", &[(&uuid, Type::UUID)])
        .await?
        .ok_or(NOT_FOUND)?;
    Ok((row.get(0), uuid))
}

/// Filters of an alert search; `None` means "any". List values are canonical already.
#[derive(Debug, Default, Clone)]
pub struct AlertFilter {
    pub status: Option<Vec<String>>,
    pub severity: Option<Vec<String>>,
    pub source_name: Option<Vec<String>>,
    pub enrichment_status: Option<Vec<String>>,
    pub is_enriched: Option<bool>,
    pub detection_rule_uuid: Option<Uuid>,
    pub from_time: Option<DateTime<Utc>>,
    pub to_time: Option<DateTime<Utc>>,
    /// Alerts carrying every one of these tags.
    pub tags: Option<Vec<String>>,
}

/// One page of a list: the items and the total over all pages.
#[derive(Debug, Clone)]
pub struct Listed {
    pub items: Vec<Value>,
    pub total: i64,
}

/// The `ORDER BY` of a search: `sort_by` (one of [`SORTS`]) and the direction, with a stable
/// tiebreak. Unknown names are invalid.
pub fn order_by(sort_by: Option<&str>, descending: bool) -> Result<String, ServiceError> {
    let by = sort_by.unwrap_or("occurred_at");
    let expr = SORTS.iter().find(|(n, _)| *n == by).map(|(_, e)| *e).ok_or_else(|| {
        let names: Vec<&str> = SORTS.iter().map(|c| c.0).collect();
        ServiceError::invalid("sort_by", format!("{by:?} is not one of {}", names.join(", ")), "enum")
    })?;
    let dir = if descending { "DESC" } else { "ASC" };
    Ok(format!("{expr} {dir}, a.id {dir}"))
}

/// Alerts matching `f`, ordered by `order` (from [`order_by`]), `limit` from `offset`.
pub async fn search(
    client: &impl Cached,
    f: &AlertFilter,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<Listed, ServiceError> {
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
    let sql = format!("SELECT {LIST_COLUMNS}, count(*) OVER () {from_where} ORDER BY {order} LIMIT $10 OFFSET $11");
    let params: [stmt::Param<'_>; 11] = [
        (&f.status, Type::TEXT_ARRAY),
        (&f.severity, Type::TEXT_ARRAY),
        (&f.source_name, Type::TEXT_ARRAY),
        (&f.enrichment_status, Type::TEXT_ARRAY),
        (&f.is_enriched, Type::BOOL),
        (&f.detection_rule_uuid, Type::UUID),
        (&f.from_time, Type::TIMESTAMPTZ),
        (&f.to_time, Type::TIMESTAMPTZ),
        (&f.tags, Type::TEXT_ARRAY),
        (&limit, Type::INT8),
        (&offset, Type::INT8),
    ];
    let rows = stmt::query(client, &sql, &params).await?;
    let total = match rows.first() {
        Some(r) => r.get(17),
        // Past the last page there is no row to carry the window count.
        None => stmt::query(client, &format!("SELECT count(*) {from_where}"), &params[..9])
            .await?
            .first()
            .map(|r| r.get(0))
            .unwrap_or(0),
    };
    let items = rows.iter().map(|r| Value::Object(list_item(r))).collect();
    Ok(Listed { items, total })
}

/// The MCP `calseta://alerts` summary of the most recent alerts.
pub async fn recent(client: &impl Cached, limit: i64) -> Result<Vec<Value>, ServiceError> {
    let order = order_by(Some("occurred_at"), true)?;
    let keep = [
        "uuid",
        "title",
        "severity",
        "status",
        "enrichment_status",
        "source_name",
        "occurred_at",
        "is_enriched",
        "tags",
        "created_at",
    ];
    let listed = search(client, &AlertFilter::default(), &order, limit, 0).await?;
    Ok(listed
        .items
        .into_iter()
        .map(|v| match v {
            Value::Object(m) => Value::Object(m.into_iter().filter(|(k, _)| keep.contains(&k.as_str())).collect()),
            other => other,
        })
        .collect())
}

/// The SQL of an alert's indicators with each provider's stored result, without raw responses
/// (shared by the detail and `GET /v1/alerts/{uuid}/indicators`).
const INDICATORS_SQL: &str = "SELECT i.uuid, i.type, i.value, i.malice, i.malice_source, i.malice_overridden_at, i.first_seen, i.last_seen,
                i.is_enriched, i.created_at, i.updated_at,
                COALESCE((SELECT jsonb_object_agg(r.provider, jsonb_build_object(
                              'status', r.status, 'extracted', r.block, 'malice', r.verdict,
                              'enriched_at', to_char(r.fetched_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                              'expires_at', to_char(r.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')))
                          FROM enrichment_results r WHERE r.indicator_id = i.id), '{}'::jsonb),
                l.enrichment_state, l.provider_status
         FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id
         WHERE l.alert_id = $1 ORDER BY i.type, i.value";

fn indicator_json(r: &tokio_postgres::Row) -> Value {
    let ts = |v: Option<DateTime<Utc>>| v.map(iso);
    json!({"uuid": r.get::<_, Uuid>(0), "type": r.get::<_, String>(1), "value": r.get::<_, String>(2),
           "malice": r.get::<_, String>(3), "malice_source": r.get::<_, String>(4),
           "malice_overridden_at": ts(r.get(5)), "first_seen": iso(r.get(6)), "last_seen": iso(r.get(7)),
           "is_enriched": r.get::<_, bool>(8), "created_at": iso(r.get(9)), "updated_at": iso(r.get(10)),
           "enrichment_results": r.get::<_, Value>(11), "enrichment_state": r.get::<_, String>(12),
           "provider_status": r.get::<_, Value>(13)})
}

/// The alert's indicators with their enrichment results (no raw responses).
pub async fn indicators(client: &impl Cached, alert_id: i64) -> Result<Vec<Value>, ServiceError> {
    let rows = stmt::query(client, INDICATORS_SQL, &[(&alert_id, Type::INT8)]).await?;
    Ok(rows.iter().map(indicator_json).collect())
}

/// A finding as stored (append-only).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub id: Uuid,
    /// The alert it is about (not part of the REST body).
    #[serde(skip)]
    pub alert_uuid: Uuid,
    pub agent_name: String,
    pub summary: String,
    pub confidence: Option<String>,
    pub recommended_action: Option<String>,
    pub evidence: Option<Value>,
    pub posted_at: String,
}

const FINDING_COLUMNS: &str = "uuid, agent_name, summary, confidence, recommended_action, evidence, posted_at";

fn finding(r: &tokio_postgres::Row, alert_uuid: Uuid) -> Finding {
    Finding {
        id: r.get(0),
        alert_uuid,
        agent_name: r.get(1),
        summary: r.get(2),
        confidence: r.get(3),
        recommended_action: r.get(4),
        evidence: r.get(5),
        posted_at: iso(r.get(6)),
    }
}

/// The alert's findings, oldest first.
pub async fn findings(client: &impl Cached, alert_id: i64) -> Result<Vec<Finding>, ServiceError> {
    let rows = stmt::query(
        client,
        &format!(
            "SELECT {FINDING_COLUMNS}, (SELECT uuid FROM alerts WHERE id = $1) FROM findings WHERE alert_id = $1 ORDER BY posted_at, id"
        ),
        &[(&alert_id, Type::INT8)],
    )
    .await?;
    Ok(rows.iter().map(|r| finding(r, r.get(7))).collect())
}

/// The full alert (`data`) and its metadata (`meta`), as `GET /v1/alerts/{uuid}` and the MCP
/// resource `calseta://alerts/{uuid}` show it.
pub async fn detail(client: &impl Cached, id: i64) -> Result<(Value, Value), ServiceError> {
    let sql = format!(
        "SELECT {LIST_COLUMNS}, a.source_alert_id, a.occurred_at_inferred, a.enriched_at, a.last_seen_at,
                a.acknowledged_at, a.triaged_at, r.uuid, a.mitre, a.deep_link, a.extra,
                COALESCE(a.malice_override, a.malice), a.malice_override, a.malice_override_source, a.malice_override_at,
                a.raw_payload, a.enrichment_summary,
                r.name, r.source_rule_id, r.severity, r.mitre_tactics, r.mitre_techniques, r.documentation
         FROM alerts a LEFT JOIN detection_rules r ON r.id = a.detection_rule_id WHERE a.id = $1"
    );
    let p = [(&id as _, Type::INT8)];
    let (a, inds, finds) = tokio::join!(
        stmt::query_opt(client, &sql, &p),
        indicators(client, id),
        findings(client, id),
    );
    let a = a?.ok_or(NOT_FOUND)?;
    let (inds, finds) = (inds?, finds?);
    // Context documents that apply, as the agent payload computes them.
    let docs: Vec<Value> = payload::applicable_documents(client, id)
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
    let indicator_count = inds.len();
    m.insert("indicators".into(), Value::Array(inds));
    let rule = a.get::<_, Option<Uuid>>(23).map(|u| {
        json!({"uuid": u, "name": a.get::<_, Option<String>>(33), "source_rule_id": a.get::<_, Option<String>>(34),
               "severity": a.get::<_, Option<String>>(35), "mitre_tactics": a.get::<_, Option<Vec<String>>>(36),
               "mitre_techniques": a.get::<_, Option<Vec<String>>>(37), "documentation": a.get::<_, Option<String>>(38)})
    });
    let rule_matched = rule.is_some();
    m.insert("detection_rule".into(), rule.unwrap_or(Value::Null));
    let docs_applied = docs.len();
    m.insert("context_documents".into(), Value::Array(docs));
    m.insert("agent_findings".into(), json!(finds));
    let summary: Value = a.get(32);
    let list_of = |k: &str| summary.get(k).cloned().filter(Value::is_array).unwrap_or(json!([]));
    let meta = json!({
        "generated_at": iso(Utc::now()),
        "alert_source": a.get::<_, String>(7),
        "indicator_count": indicator_count,
        "enrichment": {"succeeded": list_of("succeeded"), "failed": list_of("failed"), "skipped": list_of("skipped"),
                       "enriched_at": ts(a.get(19))},
        "detection_rule_matched": rule_matched,
        "context_documents_applied": docs_applied,
    });
    Ok((Value::Object(m), meta))
}

/// The exact payload an agent receives for this alert, built now; `max_bytes` applies the
/// size budget (at least 256).
pub async fn agent_payload(client: &impl Cached, uuid: Uuid, max_bytes: Option<usize>) -> Result<Value, ServiceError> {
    if max_bytes.is_some_and(|n| n < 256) {
        return Err(ServiceError::invalid(
            "max_bytes",
            "a whole number >= 256",
            "int_parsing",
        ));
    }
    let (id, _) = alert_id(client, uuid).await?;
    payload::build(client, id, &PayloadOptions { max_bytes })
        .await?
        .ok_or(NOT_FOUND)
}

/// The documents that apply to an alert (full, with content and targeting rules).
pub async fn applicable_documents(
    client: &impl Cached,
    alert_id: i64,
) -> Result<Vec<payload::ApplicableDocument>, ServiceError> {
    payload::applicable_documents(client, alert_id).await?.ok_or(NOT_FOUND)
}

/// A change to an alert; `None` leaves a field as it is. Values are canonical already.
#[derive(Debug, Default, Clone)]
pub struct AlertChange {
    pub status: Option<String>,
    pub severity: Option<String>,
    pub close_classification: Option<String>,
    pub tags: Option<Vec<String>>,
    pub malice_override: Option<String>,
    /// Clears the analyst's malice override (the computed verdict applies again).
    pub reset_malice_override: bool,
}

/// What an update changed.
#[derive(Debug, Clone, Serialize)]
pub struct AlertUpdated {
    #[serde(skip)]
    pub id: i64,
    pub alert_uuid: Uuid,
    pub previous_status: String,
    pub status: String,
    pub malice_override: Option<String>,
    pub effective_malice: String,
    pub updated_at: String,
}

/// Applies `change` under the lifecycle rules (closing needs a classification; a classification
/// alone only corrects a closed alert; acknowledged/triaged/closed stamps are write-once) and
/// records one activity event per effective change, in one transaction.
#[allow(
    clippy::too_many_lines,
    reason = "long but linear; a split along its phases is issue #11's next step"
)]
pub async fn update(
    client: &mut deadpool_postgres::Object,
    actor: &Actor,
    uuid: Uuid,
    change: &AlertChange,
) -> Result<AlertUpdated, ServiceError> {
    let (id, alert_uuid) = alert_id(&**client, uuid).await?;
    let tx = client.transaction().await?;
    let cur = stmt::query_opt(
        &tx,
        "SELECT status, severity, COALESCE(malice_override, malice) FROM alerts WHERE id = $1 FOR UPDATE",
        &[(&id, Type::INT8)],
    )
    .await?
    .ok_or(NOT_FOUND)?;
    let (cur_status, cur_severity, cur_malice): (String, String, String) = (cur.get(0), cur.get(1), cur.get(2));
    let status = &change.status;
    let classification = &change.close_classification;
    let closing = status.as_deref() == Some("Closed") && cur_status != "Closed";
    if closing && classification.is_none() {
        return Err(ServiceError::invalid(
            "close_classification",
            "required when setting status to Closed",
            "missing",
        ));
    }
    let final_status = status.clone().unwrap_or_else(|| cur_status.clone());
    if classification.is_some() && final_status != "Closed" {
        return Err(ServiceError::invalid(
            "close_classification",
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
         WHERE id = $1 RETURNING COALESCE(malice_override, malice), status, malice_override, updated_at",
        &[
            (&id, Type::INT8),
            (status, Type::TEXT),
            (classification, Type::TEXT),
            (&change.severity, Type::TEXT),
            (&change.tags, Type::TEXT_ARRAY),
            (&change.malice_override, Type::TEXT),
            (&change.reset_malice_override, Type::BOOL),
        ],
    )
    .await?
    .ok_or(NOT_FOUND)?;
    let new_malice: String = row.get(0);
    let mut events = Events::default();
    if let Some(s) = status.as_deref().filter(|s| *s != cur_status) {
        let kind = if s == "Closed" {
            EventType::AlertClosed
        } else {
            EventType::AlertStatusUpdated
        };
        events.push(
            id,
            kind,
            json!({"from": cur_status, "to": s, "close_classification": classification}),
        );
    }
    if let Some(s) = change.severity.as_deref().filter(|s| *s != cur_severity) {
        events.push(
            id,
            EventType::AlertSeverityUpdated,
            json!({"from": cur_severity, "to": s}),
        );
    }
    // An analyst verdict is recorded even when it confirms the computed one.
    let reset = change.reset_malice_override;
    if change.malice_override.is_some() || reset || new_malice != cur_malice {
        events.push(
            id,
            EventType::AlertMaliceUpdated,
            json!({"from": cur_malice, "to": new_malice, "override": change.malice_override, "reset": reset}),
        );
    }
    activity::record(&tx, actor.as_activity(), &events).await?;
    tx.commit().await?;
    tracing::info!(alert_id = id, alert_uuid = %alert_uuid, actor = actor.kind.as_str(), "alert updated");
    Ok(AlertUpdated {
        id,
        alert_uuid,
        previous_status: cur_status,
        status: row.get(1),
        malice_override: row.get(2),
        effective_malice: new_malice,
        updated_at: iso(row.get(3)),
    })
}

/// A finding to post; lengths are checked here.
#[derive(Debug, Clone)]
pub struct NewFinding {
    pub agent_name: String,
    pub summary: String,
    /// `low`, `medium` or `high` (canonical).
    pub confidence: Option<String>,
    pub recommended_action: Option<String>,
    pub evidence: Option<Value>,
}

/// Appends a finding and its activity event in one statement.
pub async fn add_finding(
    client: &impl Cached,
    actor: &Actor,
    uuid: Uuid,
    f: &NewFinding,
) -> Result<Finding, ServiceError> {
    let bounded = |field: &'static str, v: &str, max: usize| {
        if v.trim().is_empty() {
            Err(ServiceError::invalid(field, "must not be empty", "string_too_short"))
        } else if v.chars().count() > max {
            Err(ServiceError::invalid(
                field,
                format!("at most {max} characters"),
                "string_too_long",
            ))
        } else {
            Ok(())
        }
    };
    bounded("agent_name", &f.agent_name, 255)?;
    bounded("summary", &f.summary, 50_000)?;
    if let Some(r) = &f.recommended_action {
        if r.chars().count() > 10_000 {
            return Err(ServiceError::invalid(
                "recommended_action",
                "at most 10000 characters",
                "string_too_long",
            ));
        }
    }
    if let Some(c) = &f.confidence {
        if !["low", "medium", "high"].contains(&c.as_str()) {
            return Err(ServiceError::invalid(
                "confidence",
                "must be one of low, medium, high",
                "enum",
            ));
        }
    }
    match &f.evidence {
        None => {}
        Some(v @ Value::Object(_))
            if serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_EVIDENCE_BYTES =>
        {
            return Err(ServiceError::invalid("evidence", "at most 64 KB", "value_error"));
        }
        Some(Value::Object(_)) => {}
        Some(_) => return Err(ServiceError::invalid("evidence", "must be an object", "dict_type")),
    }
    let (id, alert_uuid) = alert_id(client, uuid).await?;
    let row = stmt::query_opt(
        client,
        &format!(
            "WITH f AS (
             INSERT INTO findings (alert_id, agent_name, summary, confidence, recommended_action, evidence)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING {FINDING_COLUMNS}),
         e AS (
             INSERT INTO activity_events (alert_id, event_type, actor_type, actor_key_prefix, \"references\")
             SELECT $1, 'alert_finding_added', $8, $7, jsonb_build_object('finding_id', f.uuid, 'agent_name', f.agent_name)
             FROM f)
         SELECT * FROM f"
        ),
        &[
            (&id, Type::INT8),
            (&f.agent_name, Type::TEXT),
            (&f.summary, Type::TEXT),
            (&f.confidence, Type::TEXT),
            (&f.recommended_action, Type::TEXT),
            (&f.evidence, Type::JSONB),
            (&actor.key_prefix, Type::TEXT),
            (&actor.kind.as_str(), Type::TEXT),
        ],
    )
    .await?
    .ok_or(ServiceError::Db(crate::db::DbError::Config("finding insert returned no row".into())))?;
    tracing::info!(alert_id = id, alert_uuid = %alert_uuid, actor = actor.kind.as_str(), "finding added");
    Ok(finding(&row, alert_uuid))
}

/// An activity event of an alert.
#[derive(Debug, Clone, Serialize)]
pub struct ActivityEvent {
    pub uuid: Uuid,
    pub event_type: String,
    pub actor_type: String,
    pub actor_key_prefix: Option<String>,
    pub references: Value,
    pub created_at: String,
}

/// The alert's activity, latest first, and the total.
pub async fn activity(
    client: &impl Cached,
    alert_id: i64,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ActivityEvent>, i64), ServiceError> {
    let (rows, total) = activity::page(client, alert_id, limit, offset).await?;
    let events = rows
        .into_iter()
        .map(|r| ActivityEvent {
            uuid: r.uuid,
            event_type: r.event_type,
            actor_type: r.actor_type,
            actor_key_prefix: r.actor_key_prefix,
            references: r.references,
            created_at: iso(r.created_at),
        })
        .collect();
    Ok((events, total))
}
