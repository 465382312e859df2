//! One provider's result for one indicator, in the shapes it is stored, cached, linked and
//! shown to agents (providers spec §1.2).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::domain::malice::Malice;
use crate::enrich::cache::CachedResult;
use crate::enrich::provider::{Lookup, ProviderError};

/// Result status of one provider for one indicator (spec §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultStatus {
    Success,
    Failed,
    Skipped,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Success => "success",
            ResultStatus::Failed => "failed",
            ResultStatus::Skipped => "skipped",
        }
    }
}

/// One provider's result for one indicator (spec §1.2 result record, without `raw`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderResult {
    pub provider: String,
    pub status: ResultStatus,
    /// The compact block plus `found` and `malice` (success only).
    pub extracted: Option<Map<String, Value>>,
    pub malice: Option<Malice>,
    pub malice_reason: Option<String>,
    /// When the data was fetched from the provider.
    pub enriched_at: Option<DateTime<Utc>>,
    pub cache_hit: bool,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub retry_after_seconds: Option<u64>,
}

impl ProviderResult {
    pub(super) fn from_cached(c: &CachedResult, hit: bool) -> Self {
        ProviderResult {
            provider: c.provider.clone(),
            status: ResultStatus::Success,
            extracted: Some(c.block.clone()),
            malice: Some(c.malice),
            malice_reason: c.malice_reason.clone(),
            enriched_at: Some(c.fetched_at),
            cache_hit: hit,
            error_code: None,
            error_message: None,
            retry_after_seconds: None,
        }
    }

    pub(super) fn from_lookup(provider: &str, l: &Lookup, fetched_at: DateTime<Utc>) -> Self {
        ProviderResult {
            provider: provider.to_string(),
            status: ResultStatus::Success,
            extracted: Some(extracted(l)),
            malice: Some(l.malice),
            malice_reason: l.malice_reason.clone(),
            enriched_at: Some(fetched_at),
            cache_hit: false,
            error_code: None,
            error_message: None,
            retry_after_seconds: None,
        }
    }

    pub(super) fn from_error(provider: &str, e: &ProviderError) -> Self {
        ProviderResult::problem(
            provider,
            if matches!(e, ProviderError::Skipped { .. }) {
                ResultStatus::Skipped
            } else {
                ResultStatus::Failed
            },
            e.code(),
            e.to_string(),
            e.retry_after(),
        )
    }

    pub(super) fn problem(
        provider: &str,
        status: ResultStatus,
        code: &str,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        ProviderResult {
            provider: provider.to_string(),
            status,
            extracted: None,
            malice: None,
            malice_reason: None,
            enriched_at: None,
            cache_hit: false,
            error_code: Some(code.to_string()),
            error_message: Some(message.into()),
            retry_after_seconds: retry_after.map(|d| d.as_secs_f64().ceil() as u64),
        }
    }

    /// The spec §1.2 record as JSON (no nulls), with `age_seconds` as of `now`.
    pub fn to_json(&self, now: DateTime<Utc>) -> Value {
        let mut m = Map::new();
        m.insert("provider_name".into(), json!(self.provider));
        m.insert("status".into(), json!(self.status.as_str()));
        m.insert("success".into(), json!(self.status == ResultStatus::Success));
        if let Some(e) = &self.extracted {
            m.insert("extracted".into(), Value::Object(e.clone()));
        }
        if let Some(r) = &self.malice_reason {
            m.insert("malice_reason".into(), json!(r));
        }
        if let Some(at) = self.enriched_at {
            m.insert("enriched_at".into(), json!(crate::enrich::providers::iso(at)));
            m.insert("cache_hit".into(), json!(self.cache_hit));
            m.insert("age_seconds".into(), json!((now - at).num_seconds().max(0)));
        }
        if let Some(c) = &self.error_code {
            m.insert("error_code".into(), json!(c));
        }
        if let Some(msg) = &self.error_message {
            m.insert("error_message".into(), json!(msg));
        }
        if let Some(s) = self.retry_after_seconds {
            m.insert("retry_after_seconds".into(), json!(s));
        }
        Value::Object(m)
    }

    /// What the link keeps per provider (`alert_indicators.provider_status`): status and
    /// provenance; the block itself lives in the cache table.
    pub(super) fn link_entry(&self) -> Value {
        let mut m = Map::new();
        m.insert("status".into(), json!(self.status.as_str()));
        if let Some(e) = &self.extracted {
            m.insert("found".into(), e.get("found").cloned().unwrap_or(Value::Bool(true)));
        }
        if let Some(mal) = self.malice {
            m.insert("malice".into(), json!(mal.as_str()));
        }
        if let Some(at) = self.enriched_at {
            m.insert("enriched_at".into(), json!(crate::enrich::providers::iso(at)));
            m.insert("cache_hit".into(), json!(self.cache_hit));
        }
        if let Some(c) = &self.error_code {
            m.insert("error_code".into(), json!(c));
        }
        if let Some(msg) = &self.error_message {
            m.insert("error_message".into(), json!(msg));
        }
        if let Some(s) = self.retry_after_seconds {
            m.insert("retry_after_seconds".into(), json!(s));
        }
        Value::Object(m)
    }

    /// A result recorded on a link by an earlier delivery that must not be redone: failures and
    /// skips that are final (a success is re-read from the cache instead).
    pub(super) fn from_link_entry(provider: &str, v: &Value) -> Option<Self> {
        let status = match v.get("status")?.as_str()? {
            "failed" => ResultStatus::Failed,
            "skipped" => ResultStatus::Skipped,
            _ => return None,
        };
        let code = v.get("error_code").and_then(Value::as_str).unwrap_or("upstream_error");
        let msg = v.get("error_message").and_then(Value::as_str).unwrap_or("");
        Some(ProviderResult::problem(provider, status, code, msg, None))
    }
}

/// The block shown to agents: the provider's output plus `found` and `malice`.
pub(super) fn extracted(l: &Lookup) -> Map<String, Value> {
    let mut m = l.block.clone();
    m.insert("found".into(), Value::Bool(l.found));
    m.insert("malice".into(), json!(l.malice.as_str()));
    m
}
