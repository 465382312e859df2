//! Metrics (api spec §5.11, and per-rule metrics §5.5), computed in SQL exactly as the spec
//! defines them: window on `created_at` (`from <= created_at < to`), durations as mean seconds
//! (null without rows), rates 0.0 without closed alerts. `alerts:read`.

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::extract::{missing, res, Authorized, Id};
use super::list_query::ListQuery;
use super::{ApiError, AppState};
use crate::db;
use crate::enrich::providers::iso;
use crate::service::metrics;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/metrics/alerts", get(alerts))
        .route("/v1/metrics/summary", get(summary))
        .route("/v1/detection-rules/{uuid}/metrics", get(rule))
}

fn window(q: &ListQuery, from_key: &str, to_key: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let (from, to) = (q.timestamp(from_key)?, q.timestamp(to_key)?);
    // Both default to the last 30 days when either is missing.
    let (from, to) = match (from, to) {
        (Some(f), Some(t)) => (f, t),
        _ => {
            let now = Utc::now();
            (now - Duration::days(30), now)
        }
    };
    if from >= to {
        return Err(ApiError::validation(
            &format!("query.{from_key}"),
            "must be before the end of the window",
            "value_error",
        ));
    }
    Ok((from, to))
}

/// `GET /v1/metrics/alerts`.
#[derive(Debug, Serialize)]
struct AlertMetrics {
    period_from: String,
    period_to: String,
    total_alerts: i64,
    alerts_by_status: Value,
    alerts_by_severity: Value,
    alerts_by_source: Value,
    alerts_over_time: Value,
    false_positive_rate: f64,
    mean_time_to_enrich: Option<f64>,
    mean_time_to_detect: Option<f64>,
    mean_time_to_acknowledge: Option<f64>,
    mean_time_to_triage: Option<f64>,
    mean_time_to_conclusion: Option<f64>,
    active_alerts_by_severity: Value,
    top_detection_rules: Value,
    enrichment_coverage: f64,
}

/// `GET /v1/detection-rules/{uuid}/metrics`.
#[derive(Debug, Serialize)]
struct RuleMetrics {
    detection_rule_uuid: Uuid,
    detection_rule_name: String,
    period_from: String,
    period_to: String,
    total_alerts: i64,
    active_alerts: i64,
    alerts_by_status: Value,
    alerts_by_severity: Value,
    false_positive_rate: f64,
    true_positive_rate: f64,
    close_classifications: Value,
    alerts_over_time: Value,
    fp_over_time: Value,
    mtta_seconds: Option<f64>,
    mttc_seconds: Option<f64>,
    severity_distribution: Value,
    top_indicators: Value,
    alert_sources: Value,
}

async fn alerts(Authorized { client, .. }: Authorized, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let q = ListQuery::parse(q.as_deref())?;
    let (from, to) = window(&q, "from_time", "to_time")?;
    let s = metrics::stats(&*client, from, to, None).await?;
    let data = AlertMetrics {
        period_from: iso(from),
        period_to: iso(to),
        total_alerts: s.total,
        alerts_by_status: s.by_status,
        alerts_by_severity: s.by_severity,
        alerts_by_source: s.by_source,
        alerts_over_time: s.over_time,
        false_positive_rate: s.false_positive_rate.unwrap_or(0.0),
        mean_time_to_enrich: s.mean_time_to_enrich,
        mean_time_to_detect: s.mean_time_to_detect,
        mean_time_to_acknowledge: s.mean_time_to_acknowledge,
        mean_time_to_triage: s.mean_time_to_triage,
        mean_time_to_conclusion: s.mean_time_to_conclusion,
        active_alerts_by_severity: s.active_by_severity,
        top_detection_rules: s.top_detection_rules,
        enrichment_coverage: s.enrichment_coverage.unwrap_or(0.0),
    };
    Ok(Json(json!({"data": data, "meta": {}})))
}

async fn summary(
    State(state): State<AppState>,
    Authorized { client, .. }: Authorized,
) -> Result<Json<Value>, ApiError> {
    let mut data = metrics::summary(&*client, state.enrichment.as_deref()).await?;
    let queue = state
        .outbox
        .backlog()
        .await
        .ok()
        .map(|b| json!({"pending": b.unsent, "oldest_pending_age_seconds": b.oldest_unsent_age_seconds}));
    if let Value::Object(m) = &mut data {
        m.insert("queue".into(), queue.unwrap_or(Value::Null));
    }
    Ok(Json(json!({"data": data, "meta": {}})))
}

async fn rule(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::DetectionRule>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = ListQuery::parse(q.as_deref())?;
    let (from, to) = window(&q, "from", "to")?;
    let r = db::metrics::rule(&*client, uuid)
        .await?
        .ok_or_else(missing::<res::DetectionRule>)?;
    let s = metrics::stats(&*client, from, to, Some(r.id)).await?;
    let data = RuleMetrics {
        detection_rule_uuid: uuid,
        detection_rule_name: r.name,
        period_from: iso(from),
        period_to: iso(to),
        total_alerts: s.total,
        active_alerts: s.active,
        alerts_by_status: s.by_status,
        alerts_by_severity: s.by_severity,
        false_positive_rate: s.false_positive_rate.unwrap_or(0.0),
        true_positive_rate: s.true_positive_rate.unwrap_or(0.0),
        close_classifications: s.close_classifications,
        alerts_over_time: s.over_time,
        fp_over_time: s.fp_over_time,
        mtta_seconds: s.mean_time_to_acknowledge,
        mttc_seconds: s.mean_time_to_conclusion,
        severity_distribution: s.active_by_severity,
        top_indicators: s.top_indicators,
        alert_sources: s.by_source,
    };
    Ok(Json(json!({"data": data, "meta": {}})))
}
