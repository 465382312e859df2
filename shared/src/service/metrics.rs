//! Metrics (api spec §5.11), computed in SQL exactly as the spec defines them: window on
//! `created_at` (`from <= created_at < to`), durations as mean seconds (null without rows),
//! rates 0.0 without closed alerts.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::ServiceError;
use crate::db::metrics::{self, StatsRow};
use crate::db::stmt::Cached;
use crate::enrich::engine::Engine;

/// The alert statistics of alerts created in `[from, to)`, of the rule `rule` when given.
pub(crate) async fn stats(
    client: &impl Cached,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rule: Option<i64>,
) -> Result<StatsRow, ServiceError> {
    Ok(metrics::stats(client, from, to, rule).await?)
}

#[derive(Debug, Serialize)]
struct Summary {
    period: &'static str,
    alerts: SummaryAlerts,
    workflows: SummaryWorkflows,
    platform: SummaryPlatform,
}

#[derive(Debug, Serialize)]
struct SummaryAlerts {
    total: i64,
    active: i64,
    by_severity: Value,
    by_status: Value,
    by_source: Value,
    enrichment_coverage: f64,
    mean_time_to_enrich_seconds: Option<f64>,
    false_positive_rate: f64,
    mttd_seconds: Option<f64>,
    mtta_seconds: Option<f64>,
    mttt_seconds: Option<f64>,
    mttc_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
struct SummaryWorkflows {
    total_configured: i64,
}

#[derive(Debug, Serialize)]
struct SummaryPlatform {
    context_documents: i64,
    detection_rules: i64,
    enrichment_providers: usize,
    enrichment_providers_by_indicator_type: Value,
    agents: i64,
    workflows: i64,
}

/// `/v1/metrics/summary` over the last 30 days, without the queue block (the adapter adds it
/// where it has an outbox). `engine` reports the configured providers.
pub async fn summary(client: &impl Cached, engine: Option<&Engine>) -> Result<Value, ServiceError> {
    let to = Utc::now();
    let from = to - Duration::days(30);
    let s = metrics::stats(client, from, to, None).await?;
    let platform = metrics::platform_counts(client).await?;
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
    Ok(json!(Summary {
        period: "last_30_days",
        alerts: SummaryAlerts {
            total: s.total,
            active: s.active,
            by_severity: s.active_by_severity,
            by_status: s.by_status,
            by_source: s.by_source,
            enrichment_coverage: s.enrichment_coverage.unwrap_or(0.0),
            mean_time_to_enrich_seconds: s.mean_time_to_enrich,
            false_positive_rate: s.false_positive_rate.unwrap_or(0.0),
            mttd_seconds: s.mean_time_to_detect,
            mtta_seconds: s.mean_time_to_acknowledge,
            mttt_seconds: s.mean_time_to_triage,
            mttc_seconds: s.mean_time_to_conclusion,
        },
        workflows: SummaryWorkflows {
            total_configured: platform.active_workflows,
        },
        platform: SummaryPlatform {
            context_documents: platform.context_documents,
            detection_rules: platform.detection_rules,
            enrichment_providers: providers,
            enrichment_providers_by_indicator_type: by_type,
            agents: platform.active_agents,
            workflows: platform.workflows,
        },
    }))
}
