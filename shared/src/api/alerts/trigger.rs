//! `POST /v1/alerts/{uuid}/trigger-agents` (api spec §5.8): a new delivery of the alert to
//! every active agent whose triggers match it now.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use uuid::Uuid;

use crate::api::extract::{missing, res, Authorized, Id};
use crate::api::page;
use crate::api::{ApiError, AppState};
use crate::context::targeting;
use crate::db;
use crate::dispatch::{deliver, matching::Triggers};

/// Re-sends this alert to the agents that match it (a fresh webhook id per delivery).
pub(super) async fn trigger_agents(
    State(state): State<AppState>,
    Authorized { mut client, .. }: Authorized,
    Id(uuid, _): Id<res::Alert>,
) -> Result<Response, ApiError> {
    let alert_id = db::alerts::id_by_uuid(&*client, uuid)
        .await?
        .ok_or_else(missing::<res::Alert>)?;
    let facts = targeting::facts_of(&*client, alert_id)
        .await?
        .ok_or_else(missing::<res::Alert>)?;
    let mut matched: Vec<(i64, String)> = Vec::new();
    for a in db::agents::active_triggers(&*client).await? {
        let triggers = Triggers::from_stored(a.trigger_on_sources, a.trigger_on_severities, a.trigger_filter.as_ref());
        if triggers.matches(&facts) {
            matched.push((a.id, a.name));
        }
    }
    let ids: Vec<i64> = matched.iter().map(|m| m.0).collect();
    let tx = client.transaction().await?;
    let items: Vec<(i64, Uuid, Uuid)> =
        db::deliveries::renew_for_trigger(&tx, alert_id, &ids, deliver::REDRIVE_AFTER_SECONDS)
            .await?
            .into_iter()
            .map(|(id, delivery)| (id, delivery, uuid))
            .collect();
    let outbox_rows = deliver::enqueue_attempts(&*tx, &items).await?;
    tx.commit().await?;
    if let Err(e) = state.outbox.send_committed(&*client, &outbox_rows).await {
        tracing::warn!(error = %e, "trigger messages left for the sweeper");
    }
    tracing::info!(alert_id, alert_uuid = %uuid, agents = ids.len(), "agents triggered");
    let names: Vec<String> = matched.into_iter().map(|m| m.1).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(page::single(
            json!({"queued_agent_count": names.len(), "agent_names": names}),
        )),
    )
        .into_response())
}
