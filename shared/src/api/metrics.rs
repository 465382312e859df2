//! Metrics (api spec §5.11, and per-rule metrics §5.5), computed in SQL exactly as the spec
//! defines them: window on `created_at` (`from <= created_at < to`), durations as mean seconds
//! (null without rows), rates 0.0 without closed alerts. `alerts:read`.

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use tokio_postgres::types::Type;

use super::extract::{missing, res, Authorized, Id};
use super::list_query::ListQuery;
use super::{ApiError, AppState};
use crate::db::stmt;
use crate::enrich::providers::iso;
use crate::service::metrics::{self, Stats};

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

async fn alerts(Authorized { client, .. }: Authorized, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let q = ListQuery::parse(q.as_deref())?;
    let (from, to) = window(&q, "from_time", "to_time")?;
    let s = Stats::load(&*client, from, to, None).await?;
    Ok(Json(json!({"data": {
        "period_from": iso(from), "period_to": iso(to), "total_alerts": s.i(0),
        "alerts_by_status": s.v(2), "alerts_by_severity": s.v(3), "alerts_by_source": s.v(4),
        "alerts_over_time": s.v(6), "false_positive_rate": s.f(7).unwrap_or(0.0),
        "mean_time_to_enrich": s.f(9), "mean_time_to_detect": s.f(10), "mean_time_to_acknowledge": s.f(11),
        "mean_time_to_triage": s.f(12), "mean_time_to_conclusion": s.f(13),
        "active_alerts_by_severity": s.v(5), "top_detection_rules": s.v(15), "enrichment_coverage": s.f(14).unwrap_or(0.0),
    }, "meta": {}})))
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
    let r = stmt::query_opt(
        &*client,
        "SELECT id, name FROM detection_rules WHERE uuid = $1",
        &[(&uuid, Type::UUID)],
    )
    .await?
    .ok_or_else(missing::<res::DetectionRule>)?;
    let s = Stats::load(&*client, from, to, Some(r.get(0))).await?;
    Ok(Json(json!({"data": {
        "detection_rule_uuid": uuid, "detection_rule_name": r.get::<_, String>(1),
        "period_from": iso(from), "period_to": iso(to), "total_alerts": s.i(0), "active_alerts": s.i(1),
        "alerts_by_status": s.v(2), "alerts_by_severity": s.v(3),
        "false_positive_rate": s.f(7).unwrap_or(0.0), "true_positive_rate": s.f(8).unwrap_or(0.0),
        "close_classifications": s.v(16), "alerts_over_time": s.v(6), "fp_over_time": s.v(17),
        "mtta_seconds": s.f(11), "mttc_seconds": s.f(13), "severity_distribution": s.v(5),
        "top_indicators": s.v(18), "alert_sources": s.v(4),
    }, "meta": {}})))
}
