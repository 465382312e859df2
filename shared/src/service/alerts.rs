//! Alerts (api spec §5.2, MCP §6): search, the full alert, the agent payload, status / severity /
//! malice updates under the lifecycle rules, findings, activity and the alert's indicators.

use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{Actor, ServiceError};
use crate::context::payload::{self, PayloadOptions};
use crate::db::activity::{self, EventType, Events};
use crate::db::alerts::{self as repo, AlertDetailRow, AlertIndicatorRow, AlertListRow, LockedState};
use crate::db::findings::{self as finding_repo, FindingRow};
use crate::db::stmt::Cached;
use crate::enrich::providers::iso;

pub(crate) use crate::db::alerts::{AlertChange, AlertFilter, SEVERITY_RANK_SQL, SORTS};
pub(crate) use crate::db::findings::NewFinding;

pub(crate) const STATUSES: [&str; 4] = ["Open", "Triaging", "Escalated", "Closed"];
pub(crate) const ENRICHMENT_STATUSES: [&str; 4] = ["Pending", "Enriched", "Partial", "Failed"];
pub(crate) const SOURCES: [&str; 4] = ["sentinel", "elastic", "splunk", "generic"];
pub(crate) const CLASSIFICATIONS: [&str; 7] = [
    "True Positive - Suspicious Activity",
    "Benign Positive - Suspicious but Expected",
    "False Positive - Incorrect Detection Logic",
    "False Positive - Inaccurate Data",
    "Undetermined",
    "Duplicate",
    "Not Applicable",
];
/// Largest `evidence` object of a finding.
pub(crate) const MAX_EVIDENCE_BYTES: usize = 64 * 1024;

const NOT_FOUND: ServiceError = ServiceError::NotFound("Alert");

/// An alert in a list (no raw payload, indicators or findings).
#[derive(Debug, Clone, Serialize)]
pub struct AlertSummary {
    pub uuid: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub severity: String,
    pub severity_original: Option<String>,
    pub status: String,
    pub enrichment_status: String,
    pub source_name: String,
    pub occurred_at: String,
    pub ingested_at: String,
    pub is_enriched: bool,
    pub duplicate_count: i32,
    pub tags: Vec<String>,
    pub close_classification: Option<String>,
    pub closed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<AlertListRow> for AlertSummary {
    fn from(r: AlertListRow) -> Self {
        AlertSummary {
            uuid: r.uuid,
            title: r.title,
            description: r.description,
            severity: r.severity,
            severity_original: r.severity_original,
            status: r.status,
            enrichment_status: r.enrichment_status,
            source_name: r.source_name,
            occurred_at: iso(r.occurred_at),
            ingested_at: iso(r.ingested_at),
            is_enriched: r.is_enriched,
            duplicate_count: r.duplicate_count,
            tags: r.tags,
            close_classification: r.close_classification,
            closed_at: r.closed_at.map(iso),
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
        }
    }
}

/// The alert's internal id; unknown or malformed uuids are not found.
pub async fn alert_id(client: &impl Cached, uuid: Uuid) -> Result<(i64, Uuid), ServiceError> {
    let id = repo::id_by_uuid(client, uuid).await?.ok_or(NOT_FOUND)?;
    Ok((id, uuid))
}

/// One page of a list: the items and the total over all pages.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// The `ORDER BY` of a search: `sort_by` (one of [`SORTS`]) and the direction, with a stable
/// tiebreak. Unknown names are invalid.
pub(crate) fn order_by(sort_by: Option<&str>, descending: bool) -> Result<String, ServiceError> {
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
) -> Result<Listed<AlertSummary>, ServiceError> {
    let (rows, total) = repo::search(client, f, order, limit, offset).await?;
    let items = rows.into_iter().map(AlertSummary::from).collect();
    Ok(Listed { items, total })
}

/// An item of the MCP `calseta://alerts` summary.
#[derive(Debug, Clone, Serialize)]
pub struct RecentAlert {
    pub uuid: Uuid,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub enrichment_status: String,
    pub source_name: String,
    pub occurred_at: String,
    pub is_enriched: bool,
    pub tags: Vec<String>,
    pub created_at: String,
}

/// The MCP `calseta://alerts` summary of the most recent alerts.
pub async fn recent(client: &impl Cached, limit: i64) -> Result<Vec<RecentAlert>, ServiceError> {
    let order = order_by(Some("occurred_at"), true)?;
    let listed = search(client, &AlertFilter::default(), &order, limit, 0).await?;
    Ok(listed
        .items
        .into_iter()
        .map(|a| RecentAlert {
            uuid: a.uuid,
            title: a.title,
            severity: a.severity,
            status: a.status,
            enrichment_status: a.enrichment_status,
            source_name: a.source_name,
            occurred_at: a.occurred_at,
            is_enriched: a.is_enriched,
            tags: a.tags,
            created_at: a.created_at,
        })
        .collect())
}

/// An indicator of the alert with each provider's stored result (no raw responses).
#[derive(Debug, Clone, Serialize)]
pub struct IndicatorWithResults {
    #[serde(flatten)]
    pub indicator: super::indicators::Indicator,
    pub enrichment_state: String,
    pub provider_status: Value,
}

impl From<AlertIndicatorRow> for IndicatorWithResults {
    fn from(r: AlertIndicatorRow) -> Self {
        IndicatorWithResults {
            indicator: r.indicator.into(),
            enrichment_state: r.enrichment_state,
            provider_status: r.provider_status,
        }
    }
}

/// The alert's indicators with their enrichment results (no raw responses), shared by the
/// detail and `GET /v1/alerts/{uuid}/indicators`.
pub async fn indicators(client: &impl Cached, alert_id: i64) -> Result<Vec<IndicatorWithResults>, ServiceError> {
    let rows = repo::indicators(client, alert_id).await?;
    Ok(rows.into_iter().map(IndicatorWithResults::from).collect())
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

fn finding(r: FindingRow, alert_uuid: Uuid) -> Finding {
    Finding {
        id: r.uuid,
        alert_uuid,
        agent_name: r.agent_name,
        summary: r.summary,
        confidence: r.confidence,
        recommended_action: r.recommended_action,
        evidence: r.evidence,
        posted_at: iso(r.posted_at),
    }
}

/// The alert's findings, oldest first.
pub async fn findings(client: &impl Cached, alert_id: i64) -> Result<Vec<Finding>, ServiceError> {
    let rows = finding_repo::list(client, alert_id).await?;
    Ok(rows.into_iter().map(|(r, alert_uuid)| finding(r, alert_uuid)).collect())
}

/// The detection rule of an alert, as the detail shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionRuleRef {
    pub uuid: Uuid,
    pub name: Option<String>,
    pub source_rule_id: Option<String>,
    pub severity: Option<String>,
    pub mitre_tactics: Option<Vec<String>>,
    pub mitre_techniques: Option<Vec<String>>,
    pub documentation: Option<String>,
}

/// A context document that applies to the alert (the full document is under `/context`).
#[derive(Debug, Clone, Serialize)]
pub struct ContextDocumentRef {
    pub uuid: Uuid,
    pub title: String,
    pub document_type: String,
}

/// The full alert, as `GET /v1/alerts/{uuid}` and `calseta://alerts/{uuid}` show it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertDetail {
    #[serde(flatten)]
    pub summary: AlertSummary,
    pub source_alert_id: String,
    pub occurred_at_inferred: bool,
    pub enriched_at: Option<String>,
    pub last_seen_at: String,
    pub acknowledged_at: Option<String>,
    pub triaged_at: Option<String>,
    pub detection_rule_uuid: Option<Uuid>,
    pub mitre: Value,
    pub deep_link: Option<String>,
    pub extra: Value,
    /// The analyst's override when set, else the computed verdict.
    pub malice: String,
    pub malice_override: Option<String>,
    pub malice_override_source: Option<String>,
    pub malice_override_at: Option<String>,
    pub raw_payload: Value,
    pub indicators: Vec<IndicatorWithResults>,
    pub detection_rule: Option<DetectionRuleRef>,
    pub context_documents: Vec<ContextDocumentRef>,
    pub agent_findings: Vec<Finding>,
}

/// The enrichment part of an alert's metadata: provider names from the stored summary.
#[derive(Debug, Clone, Serialize)]
pub struct EnrichmentMeta {
    pub succeeded: Value,
    pub failed: Value,
    pub skipped: Value,
    pub enriched_at: Option<String>,
}

/// The metadata of the full alert (`meta`, or `_metadata` in the MCP resource).
#[derive(Debug, Clone, Serialize)]
pub struct AlertMeta {
    pub generated_at: String,
    pub alert_source: String,
    pub indicator_count: usize,
    pub enrichment: EnrichmentMeta,
    pub detection_rule_matched: bool,
    pub context_documents_applied: usize,
}

/// The full alert (`data`) and its metadata (`meta`), as `GET /v1/alerts/{uuid}` and the MCP
/// resource `calseta://alerts/{uuid}` show it.
pub async fn detail(client: &impl Cached, id: i64) -> Result<(AlertDetail, AlertMeta), ServiceError> {
    let (a, inds, finds) = tokio::join!(repo::detail(client, id), indicators(client, id), findings(client, id));
    let a = a?.ok_or(NOT_FOUND)?;
    let (inds, finds) = (inds?, finds?);
    // Context documents that apply, as the agent payload computes them.
    let docs: Vec<ContextDocumentRef> = payload::applicable_documents(client, id)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|d| ContextDocumentRef {
            uuid: d.uuid,
            title: d.title,
            document_type: d.document_type,
        })
        .collect();
    let summary = &a.enrichment_summary;
    let list_of = |k: &str| summary.get(k).cloned().filter(Value::is_array).unwrap_or(json!([]));
    let meta = AlertMeta {
        generated_at: iso(Utc::now()),
        alert_source: a.list.source_name.clone(),
        indicator_count: inds.len(),
        enrichment: EnrichmentMeta {
            succeeded: list_of("succeeded"),
            failed: list_of("failed"),
            skipped: list_of("skipped"),
            enriched_at: a.enriched_at.map(iso),
        },
        detection_rule_matched: a.rule.uuid.is_some(),
        context_documents_applied: docs.len(),
    };
    Ok((full_alert(a, inds, docs, finds), meta))
}

fn full_alert(
    a: AlertDetailRow,
    indicators: Vec<IndicatorWithResults>,
    context_documents: Vec<ContextDocumentRef>,
    agent_findings: Vec<Finding>,
) -> AlertDetail {
    let rule = a.rule;
    let detection_rule = rule.uuid.map(|uuid| DetectionRuleRef {
        uuid,
        name: rule.name,
        source_rule_id: rule.source_rule_id,
        severity: rule.severity,
        mitre_tactics: rule.mitre_tactics,
        mitre_techniques: rule.mitre_techniques,
        documentation: rule.documentation,
    });
    AlertDetail {
        summary: AlertSummary::from(a.list),
        source_alert_id: a.source_alert_id,
        occurred_at_inferred: a.occurred_at_inferred,
        enriched_at: a.enriched_at.map(iso),
        last_seen_at: iso(a.last_seen_at),
        acknowledged_at: a.acknowledged_at.map(iso),
        triaged_at: a.triaged_at.map(iso),
        detection_rule_uuid: rule.uuid,
        mitre: a.mitre,
        deep_link: a.deep_link,
        extra: a.extra,
        malice: a.effective_malice,
        malice_override: a.malice_override,
        malice_override_source: a.malice_override_source,
        malice_override_at: a.malice_override_at.map(iso),
        raw_payload: a.raw_payload,
        indicators,
        detection_rule,
        context_documents,
        agent_findings,
    }
}

/// The exact payload an agent receives for this alert, built now; `max_bytes` applies the
/// size budget (at least 256).
pub(crate) async fn agent_payload(
    client: &impl Cached,
    uuid: Uuid,
    max_bytes: Option<usize>,
) -> Result<Value, ServiceError> {
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
pub(crate) async fn applicable_documents(
    client: &impl Cached,
    alert_id: i64,
) -> Result<Vec<payload::ApplicableDocument>, ServiceError> {
    payload::applicable_documents(client, alert_id).await?.ok_or(NOT_FOUND)
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

/// The lifecycle rules a change must follow, given the current status: closing needs a
/// classification; a classification alone only corrects a closed alert.
fn check_lifecycle(cur_status: &str, change: &AlertChange) -> Result<(), ServiceError> {
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
    let final_status = status.as_deref().unwrap_or(cur_status);
    if classification.is_some() && final_status != "Closed" {
        return Err(ServiceError::invalid(
            "close_classification",
            "only with status Closed (or on an alert that is already closed)",
            "value_error",
        ));
    }
    Ok(())
}

/// One activity event per effective change of alert `id` (was `cur`, malice is now `new_malice`).
fn change_events(id: i64, cur: &LockedState, change: &AlertChange, new_malice: &str) -> Events {
    let mut events = Events::default();
    if let Some(s) = change.status.as_deref().filter(|s| *s != cur.status) {
        let kind = if s == "Closed" {
            EventType::AlertClosed
        } else {
            EventType::AlertStatusUpdated
        };
        events.push(
            id,
            kind,
            json!({"from": cur.status, "to": s, "close_classification": change.close_classification}),
        );
    }
    if let Some(s) = change.severity.as_deref().filter(|s| *s != cur.severity) {
        events.push(
            id,
            EventType::AlertSeverityUpdated,
            json!({"from": cur.severity, "to": s}),
        );
    }
    // An analyst verdict is recorded even when it confirms the computed one.
    let reset = change.reset_malice_override;
    if change.malice_override.is_some() || reset || new_malice != cur.effective_malice {
        events.push(
            id,
            EventType::AlertMaliceUpdated,
            json!({"from": cur.effective_malice, "to": new_malice, "override": change.malice_override, "reset": reset}),
        );
    }
    events
}

/// Applies `change` under the lifecycle rules (closing needs a classification; a classification
/// alone only corrects a closed alert; acknowledged/triaged/closed stamps are write-once) and
/// records one activity event per effective change, in one transaction.
pub async fn update(
    client: &mut deadpool_postgres::Object,
    actor: &Actor,
    uuid: Uuid,
    change: &AlertChange,
) -> Result<AlertUpdated, ServiceError> {
    let (id, alert_uuid) = alert_id(&**client, uuid).await?;
    let tx = client.transaction().await?;
    let cur = repo::lock_state(&tx, id).await?.ok_or(NOT_FOUND)?;
    check_lifecycle(&cur.status, change)?;
    let row = repo::apply_change(&tx, id, change).await?.ok_or(NOT_FOUND)?;
    let events = change_events(id, &cur, change, &row.effective_malice);
    activity::record(&tx, actor.as_activity(), &events).await?;
    tx.commit().await?;
    tracing::info!(alert_id = id, alert_uuid = %alert_uuid, actor = actor.kind.as_str(), "alert updated");
    Ok(AlertUpdated {
        id,
        alert_uuid,
        previous_status: cur.status,
        status: row.status,
        malice_override: row.malice_override,
        effective_malice: row.effective_malice,
        updated_at: iso(row.updated_at),
    })
}

/// Checks a finding's lengths and values (the REST handler checks them too, with its own
/// field paths; MCP relies on these).
fn check_finding(f: &NewFinding) -> Result<(), ServiceError> {
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
    Ok(())
}

/// Appends a finding and its activity event in one transaction.
pub(crate) async fn add_finding(
    client: &mut deadpool_postgres::Object,
    actor: &Actor,
    uuid: Uuid,
    f: &NewFinding,
) -> Result<Finding, ServiceError> {
    check_finding(f)?;
    let (id, alert_uuid) = alert_id(&**client, uuid).await?;
    let tx = client.transaction().await?;
    let row = finding_repo::insert(&tx, id, f)
        .await?
        .ok_or(ServiceError::Db(crate::db::DbError::Config(
            "finding insert returned no row".into(),
        )))?;
    let mut events = Events::with_capacity(1);
    events.push(
        id,
        EventType::AlertFindingAdded,
        json!({"finding_id": row.uuid, "agent_name": row.agent_name}),
    );
    activity::record(&tx, actor.as_activity(), &events).await?;
    tx.commit().await?;
    tracing::info!(alert_id = id, alert_uuid = %alert_uuid, actor = actor.kind.as_str(), "finding added");
    Ok(finding(row, alert_uuid))
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
