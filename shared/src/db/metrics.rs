//! The metrics read model (api spec §5.11, §5.5): alert statistics over a window, computed in
//! SQL exactly as the spec defines them, and the platform counts of the summary.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::stmt::{self, Cached};
use super::DbError;

/// The alert statistics shared by every metrics endpoint, for alerts matching `scope` (SQL over
/// alias `a`, parameters $1 = from, $2 = to, $3 = rule id or NULL).
const STATS: &str = "
WITH w AS (SELECT a.* FROM alerts a WHERE a.created_at >= $1 AND a.created_at < $2
                                      AND ($3::bigint IS NULL OR a.detection_rule_id = $3))
SELECT
  (SELECT count(*) FROM w) AS total,
  (SELECT count(*) FROM w WHERE status IN ('Open', 'Triaging', 'Escalated')) AS active,
  (SELECT COALESCE(jsonb_object_agg(status, n), '{}') FROM (SELECT status, count(*) n FROM w GROUP BY 1) x) AS by_status,
  (SELECT COALESCE(jsonb_object_agg(severity, n), '{}') FROM (SELECT severity, count(*) n FROM w GROUP BY 1) x) AS by_severity,
  (SELECT COALESCE(jsonb_object_agg(source_name, n), '{}') FROM (SELECT source_name, count(*) n FROM w GROUP BY 1) x) AS by_source,
  (SELECT COALESCE(jsonb_object_agg(severity, n), '{}') FROM (SELECT severity, count(*) n FROM w
        WHERE status IN ('Open', 'Triaging', 'Escalated') GROUP BY 1) x) AS active_by_severity,
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('date', d, 'count', n) ORDER BY d), '[]')
     FROM (SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') d, count(*) n FROM w GROUP BY 1) x) AS over_time,
  (SELECT CASE WHEN count(*) = 0 THEN 0.0
          ELSE (count(*) FILTER (WHERE close_classification LIKE 'False Positive%'))::float8 / count(*) END
     FROM w WHERE status = 'Closed') AS false_positive_rate,
  (SELECT CASE WHEN count(*) = 0 THEN 0.0
          ELSE (count(*) FILTER (WHERE close_classification LIKE 'True Positive%'))::float8 / count(*) END
     FROM w WHERE status = 'Closed') AS true_positive_rate,
  (SELECT avg(EXTRACT(EPOCH FROM enriched_at - ingested_at))::float8 FROM w WHERE is_enriched AND enriched_at IS NOT NULL)
     AS mean_time_to_enrich,
  (SELECT avg(EXTRACT(EPOCH FROM created_at - occurred_at))::float8 FROM w WHERE NOT occurred_at_inferred)
     AS mean_time_to_detect,
  (SELECT avg(EXTRACT(EPOCH FROM acknowledged_at - created_at))::float8 FROM w WHERE acknowledged_at IS NOT NULL)
     AS mean_time_to_acknowledge,
  (SELECT avg(EXTRACT(EPOCH FROM triaged_at - created_at))::float8 FROM w WHERE triaged_at IS NOT NULL)
     AS mean_time_to_triage,
  (SELECT avg(EXTRACT(EPOCH FROM closed_at - created_at))::float8 FROM w WHERE closed_at IS NOT NULL)
     AS mean_time_to_conclusion,
  (SELECT CASE WHEN count(*) = 0 THEN 0.0 ELSE (count(*) FILTER (WHERE is_enriched))::float8 / count(*) END FROM w)
     AS enrichment_coverage,
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('uuid', r.uuid, 'name', r.name, 'count', x.n) ORDER BY x.n DESC, r.name), '[]')
     FROM (SELECT detection_rule_id, count(*) n FROM w WHERE detection_rule_id IS NOT NULL GROUP BY 1
           ORDER BY 2 DESC LIMIT 10) x JOIN detection_rules r ON r.id = x.detection_rule_id) AS top_detection_rules,
  (SELECT COALESCE(jsonb_object_agg(close_classification, n), '{}') FROM (SELECT close_classification, count(*) n
        FROM w WHERE close_classification IS NOT NULL GROUP BY 1) x) AS close_classifications,
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('date', d, 'count', n) ORDER BY d), '[]')
     FROM (SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') d, count(*) n FROM w
           WHERE close_classification LIKE 'False Positive%' GROUP BY 1) x) AS fp_over_time,
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('type', t, 'value', v, 'count', n, 'malice', m) ORDER BY n DESC, t, v), '[]')
     FROM (SELECT i.type t, i.value v, i.malice m, count(*) n FROM w JOIN alert_indicators l ON l.alert_id = w.id
           JOIN indicators i ON i.id = l.indicator_id GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2 LIMIT 10) x) AS top_indicators";

/// Alert statistics of one window. Durations are mean seconds (`None` without rows); the
/// rates are 0.0 without closed (or any) alerts.
#[derive(Debug, Clone)]
pub(crate) struct StatsRow {
    pub total: i64,
    /// Open, Triaging or Escalated.
    pub active: i64,
    pub by_status: Value,
    pub by_severity: Value,
    pub by_source: Value,
    pub active_by_severity: Value,
    /// `[{date, count}]` per UTC day.
    pub over_time: Value,
    pub false_positive_rate: Option<f64>,
    pub true_positive_rate: Option<f64>,
    pub mean_time_to_enrich: Option<f64>,
    pub mean_time_to_detect: Option<f64>,
    pub mean_time_to_acknowledge: Option<f64>,
    pub mean_time_to_triage: Option<f64>,
    pub mean_time_to_conclusion: Option<f64>,
    pub enrichment_coverage: Option<f64>,
    pub top_detection_rules: Value,
    pub close_classifications: Value,
    pub fp_over_time: Value,
    pub top_indicators: Value,
}

/// The statistics of alerts created in `[from, to)`, of the rule `rule` when given.
pub(crate) async fn stats(
    client: &impl Cached,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rule: Option<i64>,
) -> Result<StatsRow, DbError> {
    let r = stmt::query_opt(
        client,
        STATS,
        &[
            (&from, Type::TIMESTAMPTZ),
            (&to, Type::TIMESTAMPTZ),
            (&rule, Type::INT8),
        ],
    )
    .await?
    .ok_or(DbError::Config("statistics query returned no row".into()))?;
    Ok(StatsRow {
        total: r.try_get("total")?,
        active: r.try_get("active")?,
        by_status: r.try_get("by_status")?,
        by_severity: r.try_get("by_severity")?,
        by_source: r.try_get("by_source")?,
        active_by_severity: r.try_get("active_by_severity")?,
        over_time: r.try_get("over_time")?,
        false_positive_rate: r.try_get("false_positive_rate")?,
        true_positive_rate: r.try_get("true_positive_rate")?,
        mean_time_to_enrich: r.try_get("mean_time_to_enrich")?,
        mean_time_to_detect: r.try_get("mean_time_to_detect")?,
        mean_time_to_acknowledge: r.try_get("mean_time_to_acknowledge")?,
        mean_time_to_triage: r.try_get("mean_time_to_triage")?,
        mean_time_to_conclusion: r.try_get("mean_time_to_conclusion")?,
        enrichment_coverage: r.try_get("enrichment_coverage")?,
        top_detection_rules: r.try_get("top_detection_rules")?,
        close_classifications: r.try_get("close_classifications")?,
        fp_over_time: r.try_get("fp_over_time")?,
        top_indicators: r.try_get("top_indicators")?,
    })
}

/// What the platform holds, for the summary.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlatformCounts {
    pub context_documents: i64,
    pub detection_rules: i64,
    pub active_agents: i64,
    pub workflows: i64,
    pub active_workflows: i64,
}

pub(crate) async fn platform_counts(client: &impl Cached) -> Result<PlatformCounts, DbError> {
    let r = stmt::query_opt(
        client,
        "SELECT (SELECT count(*) FROM context_documents) AS context_documents,
                (SELECT count(*) FROM detection_rules) AS detection_rules,
                (SELECT count(*) FROM agents WHERE is_active) AS active_agents,
                (SELECT count(*) FROM workflows) AS workflows,
                (SELECT count(*) FROM workflows WHERE state = 'active') AS active_workflows",
        &[],
    )
    .await?
    .ok_or(DbError::Config("platform counts returned no row".into()))?;
    Ok(PlatformCounts {
        context_documents: r.try_get("context_documents")?,
        detection_rules: r.try_get("detection_rules")?,
        active_agents: r.try_get("active_agents")?,
        workflows: r.try_get("workflows")?,
        active_workflows: r.try_get("active_workflows")?,
    })
}

/// The detection rule whose metrics are asked for.
#[derive(Debug, Clone)]
pub struct RuleRef {
    pub id: i64,
    pub name: String,
}

pub async fn rule(client: &impl Cached, uuid: Uuid) -> Result<Option<RuleRef>, tokio_postgres::Error> {
    stmt::query_opt(
        client,
        "SELECT id, name FROM detection_rules WHERE uuid = $1",
        &[(&uuid, Type::UUID)],
    )
    .await?
    .map(|r| {
        Ok(RuleRef {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
        })
    })
    .transpose()
}
