//! The enrichment cache (providers spec §1.4): one row per (provider, indicator) in
//! `enrichment_results`, shared by every instance. Only successful lookups are stored (found for
//! the type's TTL, not-found for the shorter negative TTL). Rows outlive their expiry: they stay
//! the indicator's latest known results (verdict recomputation, `GET /v1/indicators`), they are
//! just no longer served as cache hits.
//!
//! Single flight: before calling a provider on a miss, an instance takes a lease on
//! (provider, indicator) in `enrichment_leases`; the others wait for the cached row instead of
//! calling too.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio_postgres::types::Type;

use crate::db::stmt::{self, Cached};
use crate::db::DbError;
use crate::domain::indicator::IndicatorType;
use crate::domain::malice::Malice;

/// Cache lifetimes of one result: (found TTL, not-found TTL).
pub fn ttl(provider: &str, kind: IndicatorType) -> (Duration, Duration) {
    let (found, not_found) = match kind {
        IndicatorType::Ip => (3_600, 3_600),
        IndicatorType::Domain => (21_600, 3_600),
        IndicatorType::Url => (1_800, 1_800),
        IndicatorType::HashMd5 | IndicatorType::HashSha1 | IndicatorType::HashSha256 => (86_400, 3_600),
        IndicatorType::Email => (3_600, 3_600),
        IndicatorType::Account => (900, 300),
    };
    let (found, not_found) = match (provider, kind) {
        // Small daily budget; the data changes daily.
        ("greynoise", IndicatorType::Ip) => (86_400, 86_400),
        _ => (found, not_found),
    };
    (Duration::from_secs(found), Duration::from_secs(not_found))
}

/// One stored result.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedResult {
    pub provider: String,
    pub found: bool,
    /// The compact block, including `found` and `malice`.
    pub block: Map<String, Value>,
    pub malice: Malice,
    pub malice_reason: Option<String>,
    pub fetched_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Fresh (unexpired) results for these indicators, keyed by (indicator id, provider).
pub async fn read_fresh(
    client: &impl Cached,
    indicator_ids: &[i64],
) -> Result<HashMap<(i64, String), CachedResult>, DbError> {
    let rows = stmt::query(
        client,
        "SELECT indicator_id, provider, status, block, verdict, reasons, fetched_at, expires_at
         FROM enrichment_results
         WHERE indicator_id = ANY($1) AND expires_at > now() AND status IN ('found', 'not_found')",
        &[(&indicator_ids, Type::INT8_ARRAY)],
    )
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.get(0);
        let provider: String = r.get(1);
        let status: &str = r.get(2);
        let block = match r.get::<_, Option<Value>>(3) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let malice = r
            .get::<_, Option<&str>>(4)
            .and_then(|v| v.parse().ok())
            .unwrap_or(Malice::Pending);
        let reasons: Value = r.get(5);
        let malice_reason = reasons
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(str::to_string);
        out.insert(
            (id, provider.clone()),
            CachedResult {
                provider,
                found: status == "found",
                block,
                malice,
                malice_reason,
                fetched_at: r.get(6),
                expires_at: r.get(7),
            },
        );
    }
    Ok(out)
}

/// Stores one successful result (replacing the previous one) and returns it as cached.
#[allow(clippy::too_many_arguments)]
pub async fn store(
    client: &impl Cached,
    indicator_id: i64,
    provider: &str,
    found: bool,
    block: &Map<String, Value>,
    malice: Malice,
    malice_reason: Option<&str>,
    raw: &Value,
    ttl: Duration,
) -> Result<CachedResult, DbError> {
    let status = if found { "found" } else { "not_found" };
    let reasons = Value::Array(
        malice_reason
            .map(|r| Value::String(r.to_string()))
            .into_iter()
            .collect(),
    );
    let block_v = Value::Object(block.clone());
    let row = stmt::query_opt(
        client,
        "INSERT INTO enrichment_results (indicator_id, provider, status, block, verdict, reasons, raw, error,
                                         fetched_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, now(), now() + make_interval(secs => $8))
         ON CONFLICT (provider, indicator_id) DO UPDATE SET
            status = EXCLUDED.status, block = EXCLUDED.block, verdict = EXCLUDED.verdict,
            reasons = EXCLUDED.reasons, raw = EXCLUDED.raw, error = NULL,
            fetched_at = EXCLUDED.fetched_at, expires_at = EXCLUDED.expires_at
         RETURNING fetched_at, expires_at",
        &[
            (&indicator_id, Type::INT8),
            (&provider, Type::TEXT),
            (&status, Type::TEXT),
            (&block_v, Type::JSONB),
            (&malice.as_str(), Type::TEXT),
            (&reasons, Type::JSONB),
            (raw, Type::JSONB),
            (&ttl.as_secs_f64(), Type::FLOAT8),
        ],
    )
    .await?;
    let (fetched_at, expires_at) = match row {
        Some(r) => (r.get(0), r.get(1)),
        None => (Utc::now(), Utc::now()),
    };
    Ok(CachedResult {
        provider: provider.to_string(),
        found,
        block: block.clone(),
        malice,
        malice_reason: malice_reason.map(str::to_string),
        fetched_at,
        expires_at,
    })
}

/// Tries to take the fetch lease of (provider, indicator) for `hold`. `true` = ours.
pub async fn try_lease(
    client: &impl Cached,
    provider: &str,
    indicator_id: i64,
    hold: Duration,
) -> Result<bool, DbError> {
    let row = stmt::query_opt(
        client,
        "INSERT INTO enrichment_leases (provider, indicator_id, lease_until)
         VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
         ON CONFLICT (provider, indicator_id) DO UPDATE SET lease_until = EXCLUDED.lease_until
            WHERE enrichment_leases.lease_until < clock_timestamp()
         RETURNING 1",
        &[
            (&provider, Type::TEXT),
            (&indicator_id, Type::INT8),
            (&hold.as_secs_f64(), Type::FLOAT8),
        ],
    )
    .await?;
    Ok(row.is_some())
}

/// Gives a lease back (after the result is stored, or the fetch failed).
pub async fn release_lease(client: &impl Cached, provider: &str, indicator_id: i64) -> Result<(), DbError> {
    stmt::execute(
        client,
        "DELETE FROM enrichment_leases WHERE provider = $1 AND indicator_id = $2",
        &[(&provider, Type::TEXT), (&indicator_id, Type::INT8)],
    )
    .await?;
    Ok(())
}

/// One fresh result, if another instance has stored it meanwhile.
pub async fn read_one(
    client: &impl Cached,
    provider: &str,
    indicator_id: i64,
) -> Result<Option<CachedResult>, DbError> {
    let mut all = read_fresh(client, &[indicator_id]).await?;
    Ok(all.remove(&(indicator_id, provider.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_follow_the_spec() {
        assert_eq!(ttl("virustotal", IndicatorType::Ip).0.as_secs(), 3_600);
        assert_eq!(
            ttl("greynoise", IndicatorType::Ip),
            (Duration::from_secs(86_400), Duration::from_secs(86_400))
        );
        assert_eq!(ttl("virustotal", IndicatorType::Domain).1.as_secs(), 3_600);
        assert_eq!(ttl("virustotal", IndicatorType::HashSha256).0.as_secs(), 86_400);
        assert_eq!(
            ttl("okta", IndicatorType::Account),
            (Duration::from_secs(900), Duration::from_secs(300))
        );
    }
}
