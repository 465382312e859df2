//! Message bodies of the pipeline's queues. Versioned, small, and free of secrets.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{outbox::NewMessage, QueueName};
use crate::domain::indicator::IndicatorType;

/// Enrich one indicator of one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichRequest {
    pub v: u8,
    pub alert_id: i64,
    pub alert_uuid: Uuid,
    pub indicator_id: i64,
    #[serde(rename = "type")]
    pub indicator_type: IndicatorType,
    pub value: String,
}

/// Contextualize an alert and deliver it to matching agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchRequest {
    pub v: u8,
    pub alert_id: i64,
    pub alert_uuid: Uuid,
    /// Why now: `enriched`, `no_indicators`, `deadline`, `trigger`.
    pub reason: String,
}

impl EnrichRequest {
    pub fn to_message(&self) -> NewMessage {
        // Serializing a struct of plain fields cannot fail.
        NewMessage::json(QueueName::Enrich, self)
            .unwrap_or_else(|_| unreachable!("EnrichRequest serializes"))
            .with_attribute("alert_uuid", self.alert_uuid.to_string())
            .correlated(self.alert_uuid)
    }
}

impl DispatchRequest {
    pub fn to_message(&self) -> NewMessage {
        NewMessage::json(QueueName::Dispatch, self)
            .unwrap_or_else(|_| unreachable!("DispatchRequest serializes"))
            .with_attribute("alert_uuid", self.alert_uuid.to_string())
            .correlated(self.alert_uuid)
    }
}
