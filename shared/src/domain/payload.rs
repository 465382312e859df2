//! The agent payload as types ("What Your Agent Receives" in the product README). Built by
//! `context::payload::assemble` from the rows the database returned, serialized with sorted
//! keys (through `serde_json::Value`), and never carrying a null or an empty value: every
//! optional field is skipped when absent, blank or empty, as agents expect.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The whole payload of one alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AgentPayload {
    pub event: &'static str,
    pub alert: PayloadAlert,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub indicators: Vec<PayloadIndicator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detection_rule: Option<PayloadRule>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub past_alerts: Vec<PastAlert>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub context_documents: Vec<PayloadDocument>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workflows: Vec<PayloadWorkflow>,
    pub links: Links,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PayloadAlert {
    pub uuid: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub title: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub severity: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub malice: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub enrichment_status: String,
    /// `succeeded` / `failed` / `skipped` provider counts, as stored.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub enrichment: Map<String, Value>,
    #[serde(skip_serializing_if = "blank")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    pub deep_link: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub source_alert_id: String,
    /// The ingest cap left indicators out: the agent must know the list is not the whole alert.
    #[serde(skip_serializing_if = "empty_value")]
    pub indicators_truncated: Option<Value>,
}

/// One indicator with its provider blocks (keyed by provider name, beside the fixed fields) and
/// the per-provider provenance in `enrichment`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PayloadIndicator {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub uuid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub malice: String,
    /// Only `analyst` is shown (enrichment is the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malice_source: Option<&'static str>,
    /// Only `pending` is shown (a link still waiting at the deadline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrichment_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub enrichment: BTreeMap<String, Map<String, Value>>,
    #[serde(flatten)]
    pub providers: BTreeMap<String, Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PayloadRule {
    #[serde(skip_serializing_if = "blank")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    pub rule_id: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    pub severity: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    pub priority: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mitre_tactics: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mitre_techniques: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub false_positive_tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blind_spots: Vec<String>,
    #[serde(skip_serializing_if = "blank")]
    pub goal: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    pub documentation: Option<String>,
}

/// An earlier alert sharing an indicator with this one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PastAlert {
    pub uuid: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub title: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "blank")]
    pub classification: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// The shared indicator values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub indicators: Vec<String>,
    /// Its findings' summaries, oldest first.
    #[serde(skip_serializing_if = "blank")]
    pub analyst_notes: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PayloadDocument {
    pub uuid: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub title: String,
    #[serde(rename = "type", skip_serializing_if = "str::is_empty")]
    pub document_type: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PayloadWorkflow {
    pub uuid: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "blank")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    pub workflow_type: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub indicator_types: Vec<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub risk_level: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub approval_mode: String,
    #[serde(skip_serializing_if = "blank")]
    pub documentation: Option<String>,
}

/// Where an agent acts: update the alert (status, classification) and post findings. The
/// indicators and this payload are already in hand.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Links {
    pub alert: String,
    pub findings: String,
}

// serde's `skip_serializing_if` passes a reference to the field.
#[allow(clippy::ref_option)]
fn blank(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

#[allow(clippy::ref_option)]
fn empty_value(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}
