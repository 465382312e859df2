//! The MCP tools (api spec §6): typed arguments (their JSON schemas, doc comments included, are
//! what the model reads), typed results (their schemas are the tools' output schemas).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How sure the agent is of its finding.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// Arguments of `post_alert_finding`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostFinding {
    /// UUID of the alert the finding is about (the `uuid` field of an alert).
    pub alert_uuid: String,
    /// Your conclusion about the alert in plain prose: what happened, the evidence, why you
    /// believe it (1 to 50,000 characters). Findings are append-only; post a new one to revise.
    pub summary: String,
    /// How sure you are: `low`, `medium` or `high`.
    pub confidence: Confidence,
    /// Name of the agent posting (1 to 255 characters); defaults to "mcp-agent".
    #[serde(default)]
    pub agent_name: Option<String>,
    /// What a human or another agent should do next, e.g. "Isolate host WS-042 and reset the
    /// user's password" (optional, up to 10,000 characters).
    #[serde(default)]
    pub recommended_action: Option<String>,
}

/// Result of `post_alert_finding`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct FindingPosted {
    /// UUID of the new finding.
    pub finding_id: String,
    pub alert_uuid: String,
    /// When it was stored (ISO 8601, UTC).
    pub posted_at: String,
}

/// Alert statuses.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
pub(crate) enum AlertStatus {
    Open,
    Triaging,
    Escalated,
    Closed,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "Open",
            AlertStatus::Triaging => "Triaging",
            AlertStatus::Escalated => "Escalated",
            AlertStatus::Closed => "Closed",
        }
    }
}

/// Why an alert was closed.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
pub(crate) enum CloseClassification {
    #[serde(rename = "True Positive - Suspicious Activity")]
    TruePositive,
    #[serde(rename = "Benign Positive - Suspicious but Expected")]
    BenignPositive,
    #[serde(rename = "False Positive - Incorrect Detection Logic")]
    FalsePositiveLogic,
    #[serde(rename = "False Positive - Inaccurate Data")]
    FalsePositiveData,
    Undetermined,
    Duplicate,
    #[serde(rename = "Not Applicable")]
    NotApplicable,
}

impl CloseClassification {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseClassification::TruePositive => "True Positive - Suspicious Activity",
            CloseClassification::BenignPositive => "Benign Positive - Suspicious but Expected",
            CloseClassification::FalsePositiveLogic => "False Positive - Incorrect Detection Logic",
            CloseClassification::FalsePositiveData => "False Positive - Inaccurate Data",
            CloseClassification::Undetermined => "Undetermined",
            CloseClassification::Duplicate => "Duplicate",
            CloseClassification::NotApplicable => "Not Applicable",
        }
    }
}

/// Arguments of `update_alert_status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateStatus {
    /// UUID of the alert.
    pub alert_uuid: String,
    /// The new status. `Triaging` = being investigated, `Escalated` = handed to humans,
    /// `Closed` = done (needs `close_classification`), `Open` = re-open.
    pub status: AlertStatus,
    /// Required when `status` is `Closed`: the outcome of the investigation. Allowed only
    /// with `Closed` (or to correct the classification of an alert that is already closed).
    #[serde(default)]
    pub close_classification: Option<CloseClassification>,
}

/// Result of `update_alert_status`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct StatusUpdated {
    pub alert_uuid: String,
    pub status: String,
    pub previous_status: String,
    /// ISO 8601, UTC.
    pub updated_at: String,
}

/// Malice verdicts.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
pub(crate) enum MaliceVerdict {
    Pending,
    Benign,
    Suspicious,
    Malicious,
}

impl MaliceVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            MaliceVerdict::Pending => "Pending",
            MaliceVerdict::Benign => "Benign",
            MaliceVerdict::Suspicious => "Suspicious",
            MaliceVerdict::Malicious => "Malicious",
        }
    }
}

/// Arguments of `update_alert_malice`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateAlertMalice {
    /// UUID of the alert.
    pub alert_uuid: String,
    /// Your verdict on the whole alert, which overrides the one computed from its indicators;
    /// `null` (or omitted) removes the override so the computed verdict applies again.
    #[serde(default)]
    pub malice: Option<MaliceVerdict>,
}

/// Result of `update_alert_malice`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct AlertMaliceUpdated {
    pub alert_uuid: String,
    /// The analyst override now in force, or null.
    pub malice_override: Option<String>,
    /// The verdict that applies: the override if set, else the worst indicator verdict.
    pub effective_malice: String,
    /// ISO 8601, UTC.
    pub updated_at: String,
}

/// Arguments of `update_indicator_malice`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateIndicatorMalice {
    /// UUID of the indicator (the `uuid` of an entry in an alert's `indicators`).
    pub indicator_uuid: String,
    /// Your verdict on this indicator; later enrichment keeps it. `null` (or omitted)
    /// recomputes the verdict from the stored provider results.
    #[serde(default)]
    pub malice: Option<MaliceVerdict>,
}

/// Result of `update_indicator_malice`: the indicator after the change.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct IndicatorMaliceUpdated {
    pub uuid: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub malice: String,
    /// `analyst` (an override) or `enrichment` (computed).
    pub malice_source: String,
    pub updated_at: String,
}

/// Arguments of `search_alerts`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchAlerts {
    /// Comma-separated statuses: Open, Triaging, Escalated, Closed.
    #[serde(default)]
    pub status: Option<String>,
    /// Comma-separated severities: Critical, High, Medium, Low, Informational, Pending.
    #[serde(default)]
    pub severity: Option<String>,
    /// Comma-separated SIEM sources: sentinel, elastic, splunk, generic.
    #[serde(default)]
    pub source_name: Option<String>,
    /// Comma-separated enrichment states: Pending, Enriched, Partial (dispatched at the deadline with indicators still pending), Failed.
    #[serde(default)]
    pub enrichment_status: Option<String>,
    /// Only alerts whose enrichment finished (true) or not yet (false).
    #[serde(default)]
    pub is_enriched: Option<bool>,
    /// Earliest `occurred_at`, inclusive (RFC 3339, e.g. 2026-01-31T00:00:00Z).
    #[serde(default)]
    pub from_time: Option<String>,
    /// Latest `occurred_at`, inclusive (RFC 3339).
    #[serde(default)]
    pub to_time: Option<String>,
    /// Comma-separated tags; an alert must carry all of them.
    #[serde(default)]
    pub tags: Option<String>,
    /// One of title, status, severity, source_name, occurred_at (default), created_at.
    #[serde(default)]
    pub sort_by: Option<String>,
    /// `asc` or `desc` (default).
    #[serde(default)]
    pub sort_order: Option<String>,
    /// Page number, from 1 (default 1).
    #[serde(default)]
    pub page: Option<i64>,
    /// Alerts per page, 1 to 100 (default 20).
    #[serde(default)]
    pub page_size: Option<i64>,
}

/// Result of `search_alerts`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct AlertPage {
    /// Alert summaries (no raw payloads): uuid, title, description, severity, status,
    /// enrichment_status, source_name, occurred_at, is_enriched, tags, … Read
    /// `calseta://alerts/{uuid}` or call `get_alert_payload` for everything about one alert.
    pub alerts: Vec<Map<String, Value>>,
    /// Matching alerts over all pages.
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
    /// The `page` to ask for next, or null on the last page.
    pub next_page: Option<i64>,
}

/// Arguments of `search_detection_rules`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchRules {
    /// Case-insensitive part of the rule name.
    #[serde(default)]
    pub name: Option<String>,
    /// A MITRE ATT&CK tactic the rule covers, by id or name (e.g. TA0001 or "Initial Access").
    #[serde(default)]
    pub mitre_tactic: Option<String>,
    /// A MITRE ATT&CK technique id; matches the technique and its sub-techniques (T1566 finds
    /// T1566.002).
    #[serde(default)]
    pub mitre_technique: Option<String>,
    /// Comma-separated SIEM sources: sentinel, elastic, splunk, generic.
    #[serde(default)]
    pub source_name: Option<String>,
    /// Only active (true) or inactive (false) rules.
    #[serde(default)]
    pub is_active: Option<bool>,
    /// One of name, source_name, severity, created_at (default).
    #[serde(default)]
    pub sort_by: Option<String>,
    /// `asc` or `desc` (default).
    #[serde(default)]
    pub sort_order: Option<String>,
    /// Page number, from 1 (default 1).
    #[serde(default)]
    pub page: Option<i64>,
    /// Rules per page, 1 to 100 (default 20).
    #[serde(default)]
    pub page_size: Option<i64>,
}

/// Result of `search_detection_rules`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct RulePage {
    /// Detection rules with their documentation, MITRE mapping, false-positive tags and blind
    /// spots.
    pub rules: Vec<Map<String, Value>>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
    /// The `page` to ask for next, or null on the last page.
    pub next_page: Option<i64>,
}

/// Arguments of `get_alert_payload`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetPayload {
    /// UUID of the alert.
    pub alert_uuid: String,
    /// A size budget for the serialized payload in bytes (at least 256): long texts and lists
    /// are trimmed to fit. Omit for the full payload.
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

/// Indicator types.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum IndicatorKind {
    Ip,
    Domain,
    Url,
    HashMd5,
    HashSha1,
    HashSha256,
    Email,
    Account,
}

impl IndicatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorKind::Ip => "ip",
            IndicatorKind::Domain => "domain",
            IndicatorKind::Url => "url",
            IndicatorKind::HashMd5 => "hash_md5",
            IndicatorKind::HashSha1 => "hash_sha1",
            IndicatorKind::HashSha256 => "hash_sha256",
            IndicatorKind::Email => "email",
            IndicatorKind::Account => "account",
        }
    }
}

/// Arguments of `enrich_indicator`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrichIndicator {
    /// What kind of value this is.
    #[serde(rename = "type")]
    pub kind: IndicatorKind,
    /// The value, e.g. 185.220.101.47, evil.example, a URL, a hash, an email address or an
    /// account name (1 to 2,048 characters). Normalized as at ingest.
    pub value: String,
}

/// Result of `enrich_indicator`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Enriched {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    /// Per provider: status, extracted fields and verdict.
    pub results: Map<String, Value>,
    /// How many providers answered.
    pub provider_count: i64,
    /// ISO 8601, UTC.
    pub enriched_at: Option<String>,
}
