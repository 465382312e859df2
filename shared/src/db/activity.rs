//! `activity_events`: an alert's audit trail. Every writer goes through [`record`] (one
//! statement for any number of events); [`page`] reads an alert's trail, latest first.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::db::stmt::{self, Cached};

/// What happened; the stored `event_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    AlertIngested,
    AlertDeduplicated,
    AlertIndicatorsTruncated,
    AlertIndicatorsAdded,
    AlertStatusUpdated,
    AlertClosed,
    AlertSeverityUpdated,
    AlertMaliceUpdated,
    AlertFindingAdded,
    IndicatorMaliceUpdated,
    AgentWebhookDispatched,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AlertIngested => "alert_ingested",
            EventType::AlertDeduplicated => "alert_deduplicated",
            EventType::AlertIndicatorsTruncated => "alert_indicators_truncated",
            EventType::AlertIndicatorsAdded => "alert_indicators_added",
            EventType::AlertStatusUpdated => "alert_status_updated",
            EventType::AlertClosed => "alert_closed",
            EventType::AlertSeverityUpdated => "alert_severity_updated",
            EventType::AlertMaliceUpdated => "alert_malice_updated",
            EventType::AlertFindingAdded => "alert_finding_added",
            EventType::IndicatorMaliceUpdated => "indicator_malice_updated",
            EventType::AgentWebhookDispatched => "agent_webhook_dispatched",
        }
    }
}

/// Who caused the events (`actor_type` is `system`, `api` or `mcp`; API and MCP callers leave
/// their key prefix).
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub actor_type: &'a str,
    pub key_prefix: Option<&'a str>,
}

impl Actor<'static> {
    pub const SYSTEM: Actor<'static> = Actor {
        actor_type: "system",
        key_prefix: None,
    };
}

/// Events to append, in columns (the shape the one `INSERT … unnest` takes).
#[derive(Debug, Default, Clone)]
pub struct Events {
    alert_ids: Vec<i64>,
    types: Vec<&'static str>,
    refs: Vec<Value>,
}

impl Events {
    pub fn with_capacity(n: usize) -> Self {
        Events {
            alert_ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            refs: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, alert_id: i64, event: EventType, references: Value) {
        self.alert_ids.push(alert_id);
        self.types.push(event.as_str());
        self.refs.push(references);
    }

    pub fn is_empty(&self) -> bool {
        self.alert_ids.is_empty()
    }

    pub fn len(&self) -> usize {
        self.alert_ids.len()
    }
}

/// Appends `events` (nothing when empty) in one statement, in the caller's transaction when
/// `client` is one.
pub async fn record(client: &impl Cached, actor: Actor<'_>, events: &Events) -> Result<(), tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(());
    }
    stmt::execute(
        client,
        "INSERT INTO activity_events (alert_id, event_type, actor_type, actor_key_prefix, \"references\")
         SELECT a, e, $3, $4, r FROM unnest($1::bigint[], $2::text[], $5::jsonb[]) AS t(a, e, r)",
        &[
            (&events.alert_ids, Type::INT8_ARRAY),
            (&events.types, Type::TEXT_ARRAY),
            (&actor.actor_type, Type::TEXT),
            (&actor.key_prefix, Type::TEXT),
            (&events.refs, Type::JSONB_ARRAY),
        ],
    )
    .await?;
    Ok(())
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub uuid: Uuid,
    pub event_type: String,
    pub actor_type: String,
    pub actor_key_prefix: Option<String>,
    pub references: Value,
    pub created_at: DateTime<Utc>,
}

/// The alert's events, latest first, `limit` from `offset`, and the total.
pub async fn page(
    client: &impl Cached,
    alert_id: i64,
    limit: i64,
    offset: i64,
) -> Result<(Vec<EventRow>, i64), tokio_postgres::Error> {
    let rows = stmt::query(
        client,
        "SELECT uuid, event_type, actor_type, actor_key_prefix, \"references\", created_at, count(*) OVER () AS total
         FROM activity_events WHERE alert_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
        &[(&alert_id, Type::INT8), (&limit, Type::INT8), (&offset, Type::INT8)],
    )
    .await?;
    let total = match rows.first() {
        Some(r) => r.try_get("total")?,
        // Past the last page there is no row to carry the window count.
        None => stmt::query(
            client,
            "SELECT count(*) AS total FROM activity_events WHERE alert_id = $1",
            &[(&alert_id, Type::INT8)],
        )
        .await?
        .first()
        .map(|r| r.try_get("total"))
        .transpose()?
        .unwrap_or(0),
    };
    let events = rows
        .iter()
        .map(|r| {
            Ok(EventRow {
                uuid: r.try_get("uuid")?,
                event_type: r.try_get("event_type")?,
                actor_type: r.try_get("actor_type")?,
                actor_key_prefix: r.try_get("actor_key_prefix")?,
                references: r.try_get("references")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok((events, total))
}
