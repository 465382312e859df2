//! On-demand enrichment (api spec §5.4): synchronous, cache-first, not stored.

use serde_json::Value;

use super::ServiceError;
use crate::domain::indicator::{self, IndicatorType};
use crate::enrich::engine::Engine;

/// Enriches `raw` as an indicator of type `kind` (normalized as at ingest) with every provider
/// that supports it: `{type, value, results, provider_count}`.
pub async fn enrich_now(engine: &Engine, kind: &str, raw: &str) -> Result<Value, ServiceError> {
    let kind = IndicatorType::ALL
        .into_iter()
        .find(|t| t.as_str() == kind.trim())
        .ok_or_else(|| {
            ServiceError::invalid(
                "type",
                "must be one of ip, domain, url, hash_md5, hash_sha1, hash_sha256, email, account",
                "enum",
            )
        })?;
    if raw.is_empty() || raw.len() > indicator::MAX_VALUE_LEN {
        return Err(ServiceError::invalid(
            "value",
            "must be 1 to 2048 characters",
            "string_length",
        ));
    }
    let normalized =
        indicator::normalize(kind, raw).map_err(|e| ServiceError::invalid("value", e.to_string(), "value_error"))?;
    // A value normalizes to one indicator of the asked type (a hash may be re-typed by length).
    let Some((kind, value)) = normalized.into_iter().next() else {
        return Err(ServiceError::invalid(
            "value",
            "not a valid indicator of this type",
            "value_error",
        ));
    };
    let answer = engine.enrich_now(kind, &value).await?;
    Ok(answer.to_json())
}
