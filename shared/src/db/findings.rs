//! `findings`: what agents post about an alert (append-only). The `alert_finding_added` event
//! that goes with an insert is the caller's, through [`crate::db::activity::record`] in the same
//! transaction.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::{types::Type, Error, Row};
use uuid::Uuid;

use crate::db::stmt::{self, Cached};

const FINDING_COLUMNS: &str = "uuid, agent_name, summary, confidence, recommended_action, evidence, posted_at";

/// A finding as stored.
#[derive(Debug, Clone)]
pub struct FindingRow {
    pub uuid: Uuid,
    pub agent_name: String,
    pub summary: String,
    pub confidence: Option<String>,
    pub recommended_action: Option<String>,
    pub evidence: Option<Value>,
    pub posted_at: DateTime<Utc>,
}

impl FindingRow {
    fn from_row(r: &Row) -> Result<Self, Error> {
        Ok(FindingRow {
            uuid: r.try_get("uuid")?,
            agent_name: r.try_get("agent_name")?,
            summary: r.try_get("summary")?,
            confidence: r.try_get("confidence")?,
            recommended_action: r.try_get("recommended_action")?,
            evidence: r.try_get("evidence")?,
            posted_at: r.try_get("posted_at")?,
        })
    }
}

/// The alert's findings, oldest first, each with the alert's uuid.
pub async fn list(client: &impl Cached, alert_id: i64) -> Result<Vec<(FindingRow, Uuid)>, Error> {
    stmt::query(
        client,
        &format!(
            "SELECT {FINDING_COLUMNS}, (SELECT uuid FROM alerts WHERE id = $1) AS alert_uuid FROM findings WHERE alert_id = $1 ORDER BY posted_at, id"
        ),
        &[(&alert_id, Type::INT8)],
    )
    .await?
    .iter()
    .map(|r| Ok((FindingRow::from_row(r)?, r.try_get("alert_uuid")?)))
    .collect()
}

/// A finding to insert; the service checks lengths and values first.
#[derive(Debug, Clone)]
pub struct NewFinding {
    pub agent_name: String,
    pub summary: String,
    /// `low`, `medium` or `high` (canonical).
    pub confidence: Option<String>,
    pub recommended_action: Option<String>,
    pub evidence: Option<Value>,
}

/// Appends a finding to the alert; `None` only if the insert returned no row.
pub async fn insert(client: &impl Cached, alert_id: i64, f: &NewFinding) -> Result<Option<FindingRow>, Error> {
    stmt::query_opt(
        client,
        &format!(
            "INSERT INTO findings (alert_id, agent_name, summary, confidence, recommended_action, evidence)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING {FINDING_COLUMNS}"
        ),
        &[
            (&alert_id, Type::INT8),
            (&f.agent_name, Type::TEXT),
            (&f.summary, Type::TEXT),
            (&f.confidence, Type::TEXT),
            (&f.recommended_action, Type::TEXT),
            (&f.evidence, Type::JSONB),
        ],
    )
    .await?
    .map(|r| FindingRow::from_row(&r))
    .transpose()
}
