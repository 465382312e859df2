//! Alerts (api spec §5.2): list with filters, sorting and pagination; detail with `_metadata`;
//! PATCH with the lifecycle rules (closing needs a classification; acknowledged/triaged/closed
//! stamps are write-once; analyst malice override); DELETE; and `GET /v1/alerts/{uuid}/payload`
//! (addition) — the exact payload an agent receives, built now, not wrapped in the envelope.

use axum::extract::RawQuery;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::extract::{res, Authorized, Id};
use super::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/alerts", get(super::alerts_manage::list))
        .route(
            "/v1/alerts/{uuid}",
            get(super::alerts_manage::detail)
                .patch(super::alerts_manage::patch)
                .delete(super::alerts_manage::delete),
        )
        .route("/v1/alerts/{uuid}/payload", get(alert_payload))
        .route(
            "/v1/alerts/{uuid}/findings",
            get(super::findings::list).post(super::findings::create),
        )
        .route("/v1/alerts/{uuid}/activity", get(super::findings::activity))
        .route("/v1/alerts/{uuid}/indicators", get(super::findings::indicators))
}

async fn alert_payload(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Alert>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = super::list_query::ListQuery::parse(raw.as_deref())?;
    let max_bytes = match q.one("max_bytes") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<usize>()
                .ok()
                .filter(|n| *n >= 256)
                .ok_or_else(|| ApiError::validation("query.max_bytes", "a whole number >= 256", "int_parsing"))?,
        ),
    };
    let p = crate::service::alerts::agent_payload(&*client, uuid, max_bytes).await?;
    Ok(Json(p))
}
