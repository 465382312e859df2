//! `POST /v1/alerts/{uuid}/trigger-agents` (api spec §5.8): a new delivery of the alert to
//! every active agent whose triggers match it now.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::api::extract::{missing, res, Authorized, Id};
use crate::api::page;
use crate::api::{ApiError, AppState};
use crate::context::targeting;
use crate::db::{self, stmt};
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
    let agents = stmt::query(
        &*client,
        "SELECT id, name, trigger_on_sources, trigger_on_severities, trigger_filter FROM agents
         WHERE is_active ORDER BY name, id",
        &[],
    )
    .await?;
    let mut matched: Vec<(i64, String)> = Vec::new();
    for r in &agents {
        let filter: Option<Value> = r.try_get("trigger_filter")?;
        let triggers = Triggers::from_stored(
            r.try_get("trigger_on_sources")?,
            r.try_get("trigger_on_severities")?,
            filter.as_ref(),
        );
        if triggers.matches(&facts) {
            matched.push((r.try_get("id")?, r.try_get("name")?));
        }
    }
    let ids: Vec<i64> = matched.iter().map(|m| m.0).collect();
    let tx = client.transaction().await?;
    // A new delivery for every match: a fresh uuid (webhook-id), since this is a new send the
    // agent should not de-duplicate away.
    let rows = stmt::query(
        &tx,
        "INSERT INTO deliveries (alert_id, agent_id, trigger, redrive_at)
         SELECT $1, unnest($2::bigint[]), 'trigger', now() + make_interval(secs => $3)
         ON CONFLICT (alert_id, agent_id) DO UPDATE SET uuid = gen_random_uuid(), status = 'pending', attempts = 0,
             last_status_code = NULL, last_error = NULL, next_attempt_at = now(), delivered_at = NULL,
             trigger = 'trigger', redrive_at = EXCLUDED.redrive_at, updated_at = now()
         RETURNING id, uuid",
        &[
            (&alert_id, Type::INT8),
            (&ids, Type::INT8_ARRAY),
            (&deliver::REDRIVE_AFTER_SECONDS, Type::INT4),
        ],
    )
    .await?;
    let items = rows
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("uuid")?, uuid)))
        .collect::<Result<Vec<(i64, Uuid, Uuid)>, tokio_postgres::Error>>()?;
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
