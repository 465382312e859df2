//! `deliveries`: one row per (alert, agent) — created at dispatch, claimed per attempt, updated
//! with each attempt's outcome, listed per agent, replayed, and re-driven by the sweeper. Every
//! outcome update is guarded by `attempts = n`, so a stale attempt (or one overtaken by a
//! replay) writes nothing.

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::db::stmt::{self, Cached};

/// Creates the deliveries of a dispatched alert (each with the time the sweeper re-drives it if
/// it makes no progress) and sets the alert's dispatch mark; returns the new rows' ids plus
/// first attempts a crashed earlier run left behind.
pub(crate) async fn create_for_alert(
    client: &impl Cached,
    alert_id: i64,
    agent_ids: &[i64],
    reason: &str,
    redrive_after_seconds: i32,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    stmt::query(
        client,
        "WITH ins AS (
             INSERT INTO deliveries (alert_id, agent_id, trigger, redrive_at)
             SELECT $1, unnest($2::bigint[]), $3, now() + make_interval(secs => $4)
             ON CONFLICT (alert_id, agent_id) DO NOTHING RETURNING id),
         mark AS (
             UPDATE alerts SET dispatched_at = now() WHERE id = $1 AND dispatched_at IS NULL)
         SELECT id FROM ins
         UNION SELECT id FROM deliveries
         WHERE alert_id = $1 AND agent_id = ANY($2) AND status = 'pending' AND attempts = 0",
        &[
            (&alert_id, Type::INT8),
            (&agent_ids, Type::INT8_ARRAY),
            (&reason, Type::TEXT),
            (&redrive_after_seconds, Type::INT4),
        ],
    )
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect()
}

/// A new send of the alert to `agent_ids` (`POST /v1/alerts/{uuid}/trigger-agents`): each
/// delivery is created or reset to a fresh first attempt with a new uuid (the webhook id), since
/// this is a send the agent must not de-duplicate away. Returns (id, uuid) per delivery.
pub(crate) async fn renew_for_trigger(
    client: &impl Cached,
    alert_id: i64,
    agent_ids: &[i64],
    redrive_after_seconds: i32,
) -> Result<Vec<(i64, Uuid)>, tokio_postgres::Error> {
    stmt::query(
        client,
        "INSERT INTO deliveries (alert_id, agent_id, trigger, redrive_at)
         SELECT $1, unnest($2::bigint[]), 'trigger', now() + make_interval(secs => $3)
         ON CONFLICT (alert_id, agent_id) DO UPDATE SET uuid = gen_random_uuid(), status = 'pending', attempts = 0,
             last_status_code = NULL, last_error = NULL, next_attempt_at = now(), delivered_at = NULL,
             trigger = 'trigger', redrive_at = EXCLUDED.redrive_at, updated_at = now()
         RETURNING id, uuid",
        &[
            (&alert_id, Type::INT8),
            (&agent_ids, Type::INT8_ARRAY),
            (&redrive_after_seconds, Type::INT4),
        ],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("uuid")?)))
    .collect()
}

/// Sets the alert's dispatch mark when no agent matched it (the sweeper's repair looks for
/// alerts without it).
pub(crate) async fn mark_dispatched(client: &impl Cached, alert_id: i64) -> Result<(), tokio_postgres::Error> {
    stmt::execute(
        client,
        "UPDATE alerts SET dispatched_at = now() WHERE id = $1 AND dispatched_at IS NULL",
        &[(&alert_id, Type::INT8)],
    )
    .await
}

/// A claimed delivery and the agent it goes to (secrets still sealed; no `Debug`).
#[derive(Clone)]
pub struct Claimed {
    pub delivery_uuid: Uuid,
    pub alert_id: i64,
    pub alert_uuid: Uuid,
    pub agent_uuid: Uuid,
    pub agent_name: String,
    pub endpoint_url: String,
    pub auth_header_name: Option<String>,
    pub auth_header_value: Option<Vec<u8>>,
    pub signing_secret: Vec<u8>,
    /// The previous signing secret while it is still valid.
    pub previous_secret: Option<Vec<u8>>,
    pub timeout_seconds: i32,
    pub retry_count: i32,
    pub retry_schedule: Option<Vec<i32>>,
    pub max_payload_bytes: Option<i32>,
    pub is_active: bool,
    /// When the alert was ingested: delivery latency is measured from here.
    pub ingested_at: DateTime<Utc>,
}

/// Claims delivery `id` for attempt `n` (still open, no live claim) for the agent's timeout plus
/// `margin_seconds`; `None` when it is not claimable.
pub async fn claim(
    client: &impl Cached,
    id: i64,
    n: i32,
    margin_seconds: i32,
    redrive_after_seconds: i32,
) -> Result<Option<Claimed>, tokio_postgres::Error> {
    let row = stmt::query_opt(
        client,
        "UPDATE deliveries d SET claimed_until = now() + make_interval(secs => a.timeout_seconds + $3),
                redrive_at = now() + make_interval(secs => a.timeout_seconds + $3 + $4),
                updated_at = now()
         FROM agents a, alerts al
         WHERE d.id = $1 AND d.attempts = $2 AND d.status IN ('pending', 'failed')
           AND (d.claimed_until IS NULL OR d.claimed_until < now())
           AND a.id = d.agent_id AND al.id = d.alert_id
         RETURNING d.uuid AS delivery_uuid, d.alert_id, al.uuid AS alert_uuid, a.uuid AS agent_uuid,
                   a.name AS agent_name, a.endpoint_url, a.auth_header_name,
                   a.auth_header_value_enc, a.signing_secret_enc,
                   CASE WHEN a.previous_secret_expires_at > now() THEN a.previous_signing_secret_enc END
                       AS previous_signing_secret_enc,
                   a.timeout_seconds, a.retry_count, a.max_payload_bytes, a.is_active, a.retry_schedule,
                   al.ingested_at",
        &[
            (&id, Type::INT8),
            (&n, Type::INT4),
            (&margin_seconds, Type::INT4),
            (&redrive_after_seconds, Type::INT4),
        ],
    )
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Claimed {
        delivery_uuid: r.try_get("delivery_uuid")?,
        alert_id: r.try_get("alert_id")?,
        alert_uuid: r.try_get("alert_uuid")?,
        agent_uuid: r.try_get("agent_uuid")?,
        agent_name: r.try_get("agent_name")?,
        endpoint_url: r.try_get("endpoint_url")?,
        auth_header_name: r.try_get("auth_header_name")?,
        auth_header_value: r.try_get("auth_header_value_enc")?,
        signing_secret: r.try_get("signing_secret_enc")?,
        previous_secret: r.try_get("previous_signing_secret_enc")?,
        timeout_seconds: r.try_get("timeout_seconds")?,
        retry_count: r.try_get("retry_count")?,
        max_payload_bytes: r.try_get("max_payload_bytes")?,
        is_active: r.try_get("is_active")?,
        retry_schedule: r.try_get("retry_schedule")?,
        ingested_at: r.try_get("ingested_at")?,
    }))
}

/// Where a delivery that could not be claimed stands.
#[derive(Debug, Clone)]
pub(crate) struct ClaimState {
    pub attempts: i32,
    pub status: String,
    /// Seconds left on a claim (negative when it has lapsed; `None` without one).
    pub claim_left_seconds: Option<f64>,
}

pub(crate) async fn claim_state(client: &impl Cached, id: i64) -> Result<Option<ClaimState>, tokio_postgres::Error> {
    stmt::query_opt(
        client,
        "SELECT attempts, status, EXTRACT(EPOCH FROM claimed_until - now())::float8 AS claim_left_seconds
         FROM deliveries WHERE id = $1",
        &[(&id, Type::INT8)],
    )
    .await?
    .map(|r| {
        Ok(ClaimState {
            attempts: r.try_get("attempts")?,
            status: r.try_get("status")?,
            claim_left_seconds: r.try_get("claim_left_seconds")?,
        })
    })
    .transpose()
}

/// What attempt `n` of a delivery came to, as stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome<'a> {
    pub status_code: Option<i32>,
    pub error: Option<&'a str>,
    pub payload_bytes: Option<i32>,
}

/// Attempt `n` delivered; returns the alert's id, `None` when the row was no longer at attempt
/// `n` (nothing written).
pub(crate) async fn record_delivered(
    client: &impl Cached,
    id: i64,
    n: i32,
    o: &Outcome<'_>,
) -> Result<Option<i64>, tokio_postgres::Error> {
    stmt::query_opt(
        client,
        "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, last_status_code = $3,
                last_error = NULL, payload_bytes = $4, delivered_at = now(), next_attempt_at = NULL,
                claimed_until = NULL, redrive_at = NULL, updated_at = now()
         WHERE id = $1 AND attempts = $2 RETURNING alert_id",
        &[
            (&id, Type::INT8),
            (&n, Type::INT4),
            (&o.status_code, Type::INT4),
            (&o.payload_bytes, Type::INT4),
        ],
    )
    .await?
    .map(|r| r.try_get("alert_id"))
    .transpose()
}

/// Attempt `n` failed and is retried in `delay_seconds` (re-driven in `redrive_in_seconds` if
/// nothing happens); false when the row was no longer at attempt `n` (nothing written).
pub(crate) async fn record_retry(
    client: &impl Cached,
    id: i64,
    n: i32,
    o: &Outcome<'_>,
    delay_seconds: i32,
    redrive_in_seconds: i32,
) -> Result<bool, tokio_postgres::Error> {
    let updated = stmt::query_opt(
        client,
        "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_status_code = $3,
                last_error = $4, payload_bytes = COALESCE($5, payload_bytes),
                next_attempt_at = now() + make_interval(secs => $6), claimed_until = NULL,
                redrive_at = now() + make_interval(secs => $7), updated_at = now()
         WHERE id = $1 AND attempts = $2 RETURNING id",
        &[
            (&id, Type::INT8),
            (&n, Type::INT4),
            (&o.status_code, Type::INT4),
            (&o.error, Type::TEXT),
            (&o.payload_bytes, Type::INT4),
            (&delay_seconds, Type::INT4),
            (&redrive_in_seconds, Type::INT4),
        ],
    )
    .await?;
    Ok(updated.is_some())
}

/// Attempt `n` failed for good: the delivery is dead (until replayed).
pub(crate) async fn record_dead(
    client: &impl Cached,
    id: i64,
    n: i32,
    o: &Outcome<'_>,
) -> Result<(), tokio_postgres::Error> {
    stmt::execute(
        client,
        "UPDATE deliveries SET status = 'dead', attempts = attempts + 1, last_status_code = $3,
                last_error = $4, payload_bytes = COALESCE($5, payload_bytes), next_attempt_at = NULL,
                claimed_until = NULL, redrive_at = NULL, updated_at = now()
         WHERE id = $1 AND attempts = $2",
        &[
            (&id, Type::INT8),
            (&n, Type::INT4),
            (&o.status_code, Type::INT4),
            (&o.error, Type::TEXT),
            (&o.payload_bytes, Type::INT4),
        ],
    )
    .await
}

/// A delivery whose attempt is (re-)queued: what its message needs.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: i64,
    pub uuid: Uuid,
    pub alert_uuid: Uuid,
}

/// Replays a delivery: same row, same uuid (the webhook-id), a fresh attempt budget; `None`
/// when there is no such delivery.
pub async fn replay(
    client: &impl Cached,
    uuid: Uuid,
    redrive_after_seconds: i32,
) -> Result<Option<Queued>, tokio_postgres::Error> {
    stmt::query_opt(
        client,
        "UPDATE deliveries d SET status = 'pending', attempts = 0, replays = replays + 1, next_attempt_at = now(),
                redrive_at = now() + make_interval(secs => $2), updated_at = now()
         FROM alerts a WHERE d.uuid = $1 AND a.id = d.alert_id
         RETURNING d.id, d.uuid, a.uuid AS alert_uuid",
        &[(&uuid, Type::UUID), (&redrive_after_seconds, Type::INT4)],
    )
    .await?
    .map(|r| {
        Ok(Queued {
            id: r.try_get("id")?,
            uuid: r.try_get("uuid")?,
            alert_uuid: r.try_get("alert_uuid")?,
        })
    })
    .transpose()
}

/// One delivery as listed for its agent.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryRow {
    pub uuid: Uuid,
    pub alert_uuid: Uuid,
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    /// As stored: may quote the target's response body.
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub payload_bytes: Option<i32>,
    pub trigger: String,
    pub replays: i32,
}

/// The agent's deliveries in `statuses`, newest first, `limit` from `offset`, and the total.
pub(crate) async fn list_for_agent(
    client: &impl Cached,
    agent_id: i64,
    statuses: &[String],
    limit: i64,
    offset: i64,
) -> Result<(Vec<DeliveryRow>, i64), tokio_postgres::Error> {
    let rows = stmt::query(
        client,
        "SELECT d.uuid, a.uuid AS alert_uuid, d.status, d.attempts, d.last_status_code, d.last_error,
                d.next_attempt_at, d.delivered_at, d.created_at, d.payload_bytes, d.trigger, d.replays,
                count(*) OVER () AS total
         FROM deliveries d JOIN alerts a ON a.id = d.alert_id
         WHERE d.agent_id = $1 AND d.status = ANY($2)
         ORDER BY d.created_at DESC, d.id DESC LIMIT $3 OFFSET $4",
        &[
            (&agent_id, Type::INT8),
            (&statuses, Type::TEXT_ARRAY),
            (&limit, Type::INT8),
            (&offset, Type::INT8),
        ],
    )
    .await?;
    let total = match rows.first() {
        Some(r) => r.try_get("total")?,
        // Past the last page there is no row to carry the window count.
        None => stmt::query(
            client,
            "SELECT count(*) AS total FROM deliveries WHERE agent_id = $1 AND status = ANY($2)",
            &[(&agent_id, Type::INT8), (&statuses, Type::TEXT_ARRAY)],
        )
        .await?
        .first()
        .map(|r| r.try_get("total"))
        .transpose()?
        .unwrap_or(0),
    };
    let deliveries = rows
        .iter()
        .map(|r| {
            Ok(DeliveryRow {
                uuid: r.try_get("uuid")?,
                alert_uuid: r.try_get("alert_uuid")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                last_status_code: r.try_get("last_status_code")?,
                last_error: r.try_get("last_error")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                delivered_at: r.try_get("delivered_at")?,
                created_at: r.try_get("created_at")?,
                payload_bytes: r.try_get("payload_bytes")?,
                trigger: r.try_get("trigger")?,
                replays: r.try_get("replays")?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok((deliveries, total))
}

/// An open delivery the sweeper re-drives.
#[derive(Debug, Clone)]
pub(crate) struct Due {
    pub id: i64,
    pub uuid: Uuid,
    pub alert_id: i64,
    pub alert_uuid: Uuid,
    /// Attempts made: the number of the attempt to queue.
    pub attempts: i32,
}

/// Up to `limit` open deliveries whose `redrive_at` passed with no live claim, locked and marked
/// so they are not re-driven again for `after_seconds`.
pub(crate) async fn redrive_due(
    client: &impl Cached,
    limit: i64,
    after_seconds: f64,
) -> Result<Vec<Due>, tokio_postgres::Error> {
    stmt::query(
        client,
        "WITH due AS (
             SELECT id FROM deliveries
             WHERE redrive_at <= now() AND status IN ('pending', 'failed')
               AND (claimed_until IS NULL OR claimed_until < now())
             ORDER BY redrive_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         UPDATE deliveries d SET redrive_at = now() + make_interval(secs => $2)
         FROM due, alerts a WHERE d.id = due.id AND a.id = d.alert_id
         RETURNING d.id, d.uuid, a.uuid AS alert_uuid, d.attempts, d.alert_id",
        &[(&limit, Type::INT8), (&after_seconds, Type::FLOAT8)],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Due {
            id: r.try_get("id")?,
            uuid: r.try_get("uuid")?,
            alert_id: r.try_get("alert_id")?,
            alert_uuid: r.try_get("alert_uuid")?,
            attempts: r.try_get("attempts")?,
        })
    })
    .collect()
}
