//! Metrics (api spec §5.11), computed in SQL exactly as the spec defines them: window on
//! `created_at` (`from <= created_at < to`), durations as mean seconds (null without rows),
//! rates 0.0 without closed alerts.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use tokio_postgres::types::Type;

use super::ServiceError;
use crate::db::stmt::{self, Cached};
use crate::db::DbError;
use crate::enrich::engine::Engine;

/// The alert statistics shared by every metrics endpoint, for alerts matching `scope` (SQL over
/// alias `a`, parameters $1 = from, $2 = to, $3 = rule id or NULL).
const STATS: &str = "
WITH w AS (SELECT a.* FROM alerts a WHERE a.created_at >= $1 AND a.created_at < $2
                                      AND ($3::bigint IS NULL OR a.detection_rule_id = $3))
SELECT
  (SELECT count(*) FROM w),
  (SELECT count(*) FROM w WHERE status IN ('Open', 'Triaging', 'Escalated')),
  (SELECT COALESCE(jsonb_object_agg(status, n), '{}') FROM (SELECT status, count(*) n FROM w GROUP BY 1) x),
  (SELECT COALESCE(jsonb_object_agg(severity, n), '{}') FROM (SELECT severity, count(*) n FROM w GROUP BY 1) x),
  (SELECT COALESCE(jsonb_object_agg(source_name, n), '{}') FROM (SELECT source_name, count(*) n FROM w GROUP BY 1) x),
  (SELECT COALESCE(jsonb_object_agg(severity, n), '{}') FROM (SELECT severity, count(*) n FROM w
        WHERE status IN ('Open', 'Triaging', 'Escalated') GROUP BY 1) x),
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('date', d, 'count', n) ORDER BY d), '[]')
     FROM (SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') d, count(*) n FROM w GROUP BY 1) x),
  (SELECT CASE WHEN count(*) = 0 THEN 0.0
          ELSE (count(*) FILTER (WHERE close_classification LIKE 'False Positive%'))::float8 / count(*) END
     FROM w WHERE status = 'Closed'),
  (SELECT CASE WHEN count(*) = 0 THEN 0.0
          ELSE (count(*) FILTER (WHERE close_classification LIKE 'True Positive%'))::float8 / count(*) END
     FROM w WHERE status = 'Closed'),
  (SELECT avg(EXTRACT(EPOCH FROM enriched_at - ingested_at))::float8 FROM w WHERE is_enriched AND enriched_at IS NOT NULL),
  (SELECT avg(EXTRACT(EPOCH FROM created_at - occurred_at))::float8 FROM w WHERE NOT occurred_at_inferred),
  (SELECT avg(EXTRACT(EPOCH FROM acknowledged_at - created_at))::float8 FROM w WHERE acknowledged_at IS NOT NULL),
  (SELECT avg(EXTRACT(EPOCH FROM triaged_at - created_at))::float8 FROM w WHERE triaged_at IS NOT NULL),
  (SELECT avg(EXTRACT(EPOCH FROM closed_at - created_at))::float8 FROM w WHERE closed_at IS NOT NULL),
  (SELECT CASE WHEN count(*) = 0 THEN 0.0 ELSE (count(*) FILTER (WHERE is_enriched))::float8 / count(*) END FROM w),
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('uuid', r.uuid, 'name', r.name, 'count', x.n) ORDER BY x.n DESC, r.name), '[]')
     FROM (SELECT detection_rule_id, count(*) n FROM w WHERE detection_rule_id IS NOT NULL GROUP BY 1
           ORDER BY 2 DESC LIMIT 10) x JOIN detection_rules r ON r.id = x.detection_rule_id),
  (SELECT COALESCE(jsonb_object_agg(close_classification, n), '{}') FROM (SELECT close_classification, count(*) n
        FROM w WHERE close_classification IS NOT NULL GROUP BY 1) x),
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('date', d, 'count', n) ORDER BY d), '[]')
     FROM (SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') d, count(*) n FROM w
           WHERE close_classification LIKE 'False Positive%' GROUP BY 1) x),
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('type', t, 'value', v, 'count', n, 'malice', m) ORDER BY n DESC, t, v), '[]')
     FROM (SELECT i.type t, i.value v, i.malice m, count(*) n FROM w JOIN alert_indicators l ON l.alert_id = w.id
           JOIN indicators i ON i.id = l.indicator_id GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2 LIMIT 10) x)";

pub struct Stats(tokio_postgres::Row);

impl Stats {
    pub async fn load(
        client: &impl stmt::Cached,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        rule: Option<i64>,
    ) -> Result<Self, ServiceError> {
        let row = stmt::query_opt(
            client,
            STATS,
            &[
                (&from, Type::TIMESTAMPTZ),
                (&to, Type::TIMESTAMPTZ),
                (&rule, Type::INT8),
            ],
        )
        .await?
        .ok_or(ServiceError::Db(DbError::Config(
            "statistics query returned no row".into(),
        )))?;
        Ok(Self(row))
    }
    pub fn i(&self, k: usize) -> i64 {
        self.0.get(k)
    }
    pub fn v(&self, k: usize) -> Value {
        self.0.get(k)
    }
    pub fn f(&self, k: usize) -> Option<f64> {
        self.0.get(k)
    }
}

/// `/v1/metrics/summary` over the last 30 days, without the queue block (the adapter adds it
/// where it has an outbox). `engine` reports the configured providers.
pub async fn summary(client: &impl Cached, engine: Option<&Engine>) -> Result<Value, ServiceError> {
    let to = Utc::now();
    let from = to - Duration::days(30);
    let s = Stats::load(client, from, to, None).await?;
    let platform = stmt::query_opt(
        client,
        "SELECT (SELECT count(*) FROM context_documents), (SELECT count(*) FROM detection_rules),
                (SELECT count(*) FROM agents WHERE is_active), (SELECT count(*) FROM workflows),
                (SELECT count(*) FROM workflows WHERE state = 'active')",
        &[],
    )
    .await?
    .ok_or(ServiceError::Db(DbError::Config(
        "platform counts returned no row".into(),
    )))?;
    let (providers, by_type) = match engine {
        Some(engine) => {
            let names = engine.providers().names();
            let mut by_type = serde_json::Map::new();
            for t in crate::domain::indicator::IndicatorType::ALL {
                let n = engine.providers().providers.iter().filter(|p| p.supports(t)).count();
                by_type.insert(t.as_str().into(), json!(n));
            }
            (names.len(), Value::Object(by_type))
        }
        None => (0, json!({})),
    };
    Ok(json!({
        "period": "last_30_days",
        "alerts": {
            "total": s.i(0), "active": s.i(1), "by_severity": s.v(5), "by_status": s.v(2), "by_source": s.v(4),
            "enrichment_coverage": s.f(14).unwrap_or(0.0), "mean_time_to_enrich_seconds": s.f(9),
            "false_positive_rate": s.f(7).unwrap_or(0.0), "mttd_seconds": s.f(10), "mtta_seconds": s.f(11),
            "mttt_seconds": s.f(12), "mttc_seconds": s.f(13),
        },
        "workflows": {"total_configured": platform.get::<_, i64>(4)},
        "platform": {
            "context_documents": platform.get::<_, i64>(0), "detection_rules": platform.get::<_, i64>(1),
            "enrichment_providers": providers, "enrichment_providers_by_indicator_type": by_type,
            "agents": platform.get::<_, i64>(2), "workflows": platform.get::<_, i64>(3),
        },
    }))
}
