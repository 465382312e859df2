//! `alerts` (with the `detection_rules` join of list and detail): the uuid → id lookup, search
//! and count, the full row, the lifecycle update, and the alert's indicators with their stored
//! enrichment results.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::{types::Type, Error, Row};
use uuid::Uuid;

use crate::db::indicators::IndicatorRow;
use crate::db::stmt::{self, Cached};

/// Severity as a sortable rank (api spec §1): Critical 5 … Informational 1, Pending 0.
pub(crate) const SEVERITY_RANK_SQL: &str =
    "CASE a.severity WHEN 'Critical' THEN 5 WHEN 'High' THEN 4 WHEN 'Medium' THEN 3 \
     WHEN 'Low' THEN 2 WHEN 'Informational' THEN 1 ELSE 0 END";

/// `sort_by` names and their SQL; the first is not the default (`occurred_at` is).
pub(crate) const SORTS: [(&str, &str); 6] = [
    ("title", "a.title"),
    ("status", "a.status"),
    ("severity", SEVERITY_RANK_SQL),
    ("source_name", "a.source_name"),
    ("occurred_at", "a.occurred_at"),
    ("created_at", "a.created_at"),
];

const LIST_COLUMNS: &str = "a.uuid, a.title, a.description, a.severity, a.severity_original, a.status,
    a.enrichment_status, a.source_name, a.occurred_at, a.ingested_at, a.is_enriched, a.duplicate_count, a.tags,
    a.close_classification, a.closed_at, a.created_at, a.updated_at";

/// The alert's internal id, if the uuid is known.
pub(crate) async fn id_by_uuid(client: &impl Cached, uuid: Uuid) -> Result<Option<i64>, Error> {
    stmt::query_opt(client, "SELECT id FROM alerts WHERE uuid = $1", &[(&uuid, Type::UUID)])
        .await?
        .map(|r| r.try_get("id"))
        .transpose()
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

/// The columns of an alert in a list.
#[derive(Debug, Clone)]
pub struct AlertListRow {
    pub uuid: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub severity: String,
    pub severity_original: Option<String>,
    pub status: String,
    pub enrichment_status: String,
    pub source_name: String,
    pub occurred_at: DateTime<Utc>,
    pub ingested_at: DateTime<Utc>,
    pub is_enriched: bool,
    pub duplicate_count: i32,
    pub tags: Vec<String>,
    pub close_classification: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AlertListRow {
    fn from_row(r: &Row) -> Result<Self, Error> {
        Ok(AlertListRow {
            uuid: r.try_get("uuid")?,
            title: r.try_get("title")?,
            description: r.try_get("description")?,
            severity: r.try_get("severity")?,
            severity_original: r.try_get("severity_original")?,
            status: r.try_get("status")?,
            enrichment_status: r.try_get("enrichment_status")?,
            source_name: r.try_get("source_name")?,
            occurred_at: r.try_get("occurred_at")?,
            ingested_at: r.try_get("ingested_at")?,
            is_enriched: r.try_get("is_enriched")?,
            duplicate_count: r.try_get("duplicate_count")?,
            tags: r.try_get("tags")?,
            close_classification: r.try_get("close_classification")?,
            closed_at: r.try_get("closed_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

/// Alerts matching `f`, ordered by `order` (an `ORDER BY` built from [`SORTS`]), `limit` from
/// `offset`, and the total over all pages.
pub async fn search(
    client: &impl Cached,
    f: &AlertFilter,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AlertListRow>, i64), Error> {
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
    let sql =
        format!("SELECT {LIST_COLUMNS}, count(*) OVER () AS total {from_where} ORDER BY {order} LIMIT $10 OFFSET $11");
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
        Some(r) => r.try_get("total")?,
        // Past the last page there is no row to carry the window count.
        None => stmt::query(client, &format!("SELECT count(*) AS total {from_where}"), &params[..9])
            .await?
            .first()
            .map(|r| r.try_get("total"))
            .transpose()?
            .unwrap_or(0),
    };
    let items = rows.iter().map(AlertListRow::from_row).collect::<Result<_, Error>>()?;
    Ok((items, total))
}

/// The alert's detection rule, as joined (every column `NULL` when the alert has none).
#[derive(Debug, Clone)]
pub struct RuleColumns {
    pub uuid: Option<Uuid>,
    pub name: Option<String>,
    pub source_rule_id: Option<String>,
    pub severity: Option<String>,
    pub mitre_tactics: Option<Vec<String>>,
    pub mitre_techniques: Option<Vec<String>>,
    pub documentation: Option<String>,
}

/// The full alert row with its detection rule.
#[derive(Debug, Clone)]
pub struct AlertDetailRow {
    pub list: AlertListRow,
    pub source_alert_id: String,
    pub occurred_at_inferred: bool,
    pub enriched_at: Option<DateTime<Utc>>,
    pub last_seen_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub triaged_at: Option<DateTime<Utc>>,
    pub mitre: Value,
    pub deep_link: Option<String>,
    pub extra: Value,
    /// The analyst's override when set, else the computed verdict.
    pub effective_malice: String,
    pub malice_override: Option<String>,
    pub malice_override_source: Option<String>,
    pub malice_override_at: Option<DateTime<Utc>>,
    pub raw_payload: Value,
    pub enrichment_summary: Value,
    pub rule: RuleColumns,
}

impl AlertDetailRow {
    fn from_row(r: &Row) -> Result<Self, Error> {
        Ok(AlertDetailRow {
            list: AlertListRow::from_row(r)?,
            source_alert_id: r.try_get("source_alert_id")?,
            occurred_at_inferred: r.try_get("occurred_at_inferred")?,
            enriched_at: r.try_get("enriched_at")?,
            last_seen_at: r.try_get("last_seen_at")?,
            acknowledged_at: r.try_get("acknowledged_at")?,
            triaged_at: r.try_get("triaged_at")?,
            mitre: r.try_get("mitre")?,
            deep_link: r.try_get("deep_link")?,
            extra: r.try_get("extra")?,
            effective_malice: r.try_get("effective_malice")?,
            malice_override: r.try_get("malice_override")?,
            malice_override_source: r.try_get("malice_override_source")?,
            malice_override_at: r.try_get("malice_override_at")?,
            raw_payload: r.try_get("raw_payload")?,
            enrichment_summary: r.try_get("enrichment_summary")?,
            rule: RuleColumns {
                uuid: r.try_get("rule_uuid")?,
                name: r.try_get("rule_name")?,
                source_rule_id: r.try_get("rule_source_rule_id")?,
                severity: r.try_get("rule_severity")?,
                mitre_tactics: r.try_get("rule_mitre_tactics")?,
                mitre_techniques: r.try_get("rule_mitre_techniques")?,
                documentation: r.try_get("rule_documentation")?,
            },
        })
    }
}

/// The full alert, if it exists.
pub async fn detail(client: &impl Cached, id: i64) -> Result<Option<AlertDetailRow>, Error> {
    let sql = format!(
        "SELECT {LIST_COLUMNS}, a.source_alert_id, a.occurred_at_inferred, a.enriched_at, a.last_seen_at,
                a.acknowledged_at, a.triaged_at, r.uuid AS rule_uuid, a.mitre, a.deep_link, a.extra,
                COALESCE(a.malice_override, a.malice) AS effective_malice, a.malice_override, a.malice_override_source,
                a.malice_override_at, a.raw_payload, a.enrichment_summary,
                r.name AS rule_name, r.source_rule_id AS rule_source_rule_id, r.severity AS rule_severity,
                r.mitre_tactics AS rule_mitre_tactics, r.mitre_techniques AS rule_mitre_techniques,
                r.documentation AS rule_documentation
         FROM alerts a LEFT JOIN detection_rules r ON r.id = a.detection_rule_id WHERE a.id = $1"
    );
    stmt::query_opt(client, &sql, &[(&id, Type::INT8)])
        .await?
        .map(|r| AlertDetailRow::from_row(&r))
        .transpose()
}

/// The fields the lifecycle rules look at, read under a row lock.
#[derive(Debug, Clone)]
pub(crate) struct LockedState {
    pub status: String,
    pub severity: String,
    pub effective_malice: String,
}

/// Locks the alert for an update (`FOR UPDATE`, in the caller's transaction) and reads its state.
pub(crate) async fn lock_state(tx: &impl Cached, id: i64) -> Result<Option<LockedState>, Error> {
    let Some(r) = stmt::query_opt(
        tx,
        "SELECT status, severity, COALESCE(malice_override, malice) AS effective_malice FROM alerts WHERE id = $1 FOR UPDATE",
        &[(&id, Type::INT8)],
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(LockedState {
        status: r.try_get("status")?,
        severity: r.try_get("severity")?,
        effective_malice: r.try_get("effective_malice")?,
    }))
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

/// The alert after an update.
#[derive(Debug, Clone)]
pub(crate) struct ChangedRow {
    pub effective_malice: String,
    pub status: String,
    pub malice_override: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Writes `change`; the acknowledged/triaged/closed stamps are set once, the first time the
/// status reaches them. The caller checks the lifecycle rules first.
pub(crate) async fn apply_change(tx: &impl Cached, id: i64, change: &AlertChange) -> Result<Option<ChangedRow>, Error> {
    let Some(r) = stmt::query_opt(
        tx,
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
         WHERE id = $1 RETURNING COALESCE(malice_override, malice) AS effective_malice, status, malice_override, updated_at",
        &[
            (&id, Type::INT8),
            (&change.status, Type::TEXT),
            (&change.close_classification, Type::TEXT),
            (&change.severity, Type::TEXT),
            (&change.tags, Type::TEXT_ARRAY),
            (&change.malice_override, Type::TEXT),
            (&change.reset_malice_override, Type::BOOL),
        ],
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(ChangedRow {
        effective_malice: r.try_get("effective_malice")?,
        status: r.try_get("status")?,
        malice_override: r.try_get("malice_override")?,
        updated_at: r.try_get("updated_at")?,
    }))
}

/// An alert's indicators with each provider's stored result, without raw responses. The
/// timestamps inside `enrichment_results` are formatted here, as the API shows them.
const INDICATORS_SQL: &str = "SELECT i.uuid, i.type, i.value, i.malice, i.malice_source, i.malice_overridden_at, i.first_seen, i.last_seen,
                i.is_enriched, i.created_at, i.updated_at,
                COALESCE((SELECT jsonb_object_agg(r.provider, jsonb_build_object(
                              'status', r.status, 'extracted', r.block, 'malice', r.verdict,
                              'enriched_at', to_char(r.fetched_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                              'expires_at', to_char(r.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')))
                          FROM enrichment_results r WHERE r.indicator_id = i.id), '{}'::jsonb) AS enrichment_results,
                l.enrichment_state, l.provider_status
         FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id
         WHERE l.alert_id = $1 ORDER BY i.type, i.value";

/// One indicator of an alert (stored results without raw responses), with its link state.
#[derive(Debug, Clone)]
pub struct AlertIndicatorRow {
    pub indicator: IndicatorRow,
    pub enrichment_state: String,
    pub provider_status: Value,
}

/// The alert's indicators, by type then value.
pub async fn indicators(client: &impl Cached, alert_id: i64) -> Result<Vec<AlertIndicatorRow>, Error> {
    stmt::query(client, INDICATORS_SQL, &[(&alert_id, Type::INT8)])
        .await?
        .iter()
        .map(|r| {
            Ok(AlertIndicatorRow {
                indicator: IndicatorRow::from_row(r)?,
                enrichment_state: r.try_get("enrichment_state")?,
                provider_status: r.try_get("provider_status")?,
            })
        })
        .collect()
}

/// Deletes the alert (its links, findings, activity and deliveries go with it; indicators
/// stay); `false` when there is no such alert.
pub async fn delete(client: &impl Cached, uuid: Uuid) -> Result<bool, Error> {
    Ok(stmt::query_opt(
        client,
        "DELETE FROM alerts WHERE uuid = $1 RETURNING id",
        &[(&uuid, Type::UUID)],
    )
    .await?
    .is_some())
}

/// New work re-opens the alert's enrichment until `deadline_secs` from now.
pub(crate) async fn reopen_enrichment(tx: &impl Cached, alert_id: i64, deadline_secs: f64) -> Result<(), Error> {
    stmt::execute(
        tx,
        "UPDATE alerts SET enrichment_status = 'Pending',
                enrichment_deadline_at = now() + make_interval(secs => $2), updated_at = now()
         WHERE id = $1",
        &[(&alert_id, Type::INT8), (&deadline_secs, Type::FLOAT8)],
    )
    .await
}

/// The sweeper's repair: completed alerts never dispatched, idle for `after_secs` and not
/// re-driven within it, at most `limit`, marked re-driven now; returns (id, uuid) of each.
pub(crate) async fn claim_undispatched(
    tx: &impl Cached,
    limit: i64,
    after_secs: f64,
) -> Result<Vec<(i64, Uuid)>, Error> {
    stmt::query(
        tx,
        "WITH due AS (
             SELECT id FROM alerts
             WHERE dispatched_at IS NULL AND enrichment_status <> 'Pending'
               AND COALESCE(enriched_at, ingested_at) < now() - make_interval(secs => $2)
               AND (dispatch_redriven_at IS NULL OR dispatch_redriven_at < now() - make_interval(secs => $2))
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
         UPDATE alerts a SET dispatch_redriven_at = now() FROM due WHERE a.id = due.id
         RETURNING a.id, a.uuid",
        &[(&limit, Type::INT8), (&after_secs, Type::FLOAT8)],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("uuid")?)))
    .collect()
}
