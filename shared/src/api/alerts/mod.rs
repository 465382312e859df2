//! Everything under `/v1/alerts` (api spec §5.2), one file per concern:
//!
//! - [`manage`]: list with filters, sorting and pagination; detail with `_metadata`; PATCH with
//!   the lifecycle rules (closing needs a classification; acknowledged/triaged/closed stamps are
//!   write-once; analyst malice override); DELETE;
//! - [`findings`]: findings (append-only), the activity log, the alert's indicators with their
//!   enrichment results;
//! - [`indicators`]: indicators added to an alert, re-enrichment;
//! - [`context`]: the context documents that apply;
//! - [`trigger`]: a new delivery to the matching agents;
//! - here: `GET /v1/alerts/{uuid}/payload` (addition) — the exact payload an agent receives,
//!   built now, not wrapped in the envelope.
//!
//! `POST /v1/alerts` (a source payload wrapped) is an ingest route, in [`super::ingest`].

pub mod context;
pub mod findings;
pub mod indicators;
pub mod manage;
pub mod trigger;

use axum::extract::RawQuery;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::extract::{res, Authorized, Id};
use super::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/alerts", get(manage::list))
        .route(
            "/v1/alerts/{uuid}",
            get(manage::detail).patch(manage::patch).delete(manage::delete),
        )
        .route("/v1/alerts/{uuid}/payload", get(alert_payload))
        .route("/v1/alerts/{uuid}/findings", get(findings::list).post(findings::create))
        .route("/v1/alerts/{uuid}/activity", get(findings::activity))
        .route(
            "/v1/alerts/{uuid}/indicators",
            get(findings::indicators).post(indicators::add),
        )
        .route("/v1/alerts/{uuid}/enrich", post(indicators::reenrich))
        .route("/v1/alerts/{uuid}/context", get(context::for_alert))
        .route("/v1/alerts/{uuid}/trigger-agents", post(trigger::trigger_agents))
}

async fn alert_payload(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Alert>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = crate::api::list_query::ListQuery::parse(raw.as_deref())?;
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
