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
pub(crate) fn ttl(provider: &str, kind: IndicatorType) -> (Duration, Duration) {
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
pub(crate) struct CachedResult {
    pub indicator_id: i64,
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
pub(crate) async fn read_fresh(
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
        let id: i64 = r.try_get("indicator_id")?;
        let provider: String = r.try_get("provider")?;
        let status: &str = r.try_get("status")?;
        let block = match r.try_get::<_, Option<Value>>("block")? {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let malice = r
            .try_get::<_, Option<&str>>("verdict")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(Malice::Pending);
        let reasons: Value = r.try_get("reasons")?;
        let malice_reason = reasons
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(str::to_string);
        out.insert(
            (id, provider.clone()),
            CachedResult {
                indicator_id: id,
                provider,
                found: status == "found",
                block,
                malice,
                malice_reason,
                fetched_at: r.try_get("fetched_at")?,
                expires_at: r.try_get("expires_at")?,
            },
        );
    }
    Ok(out)
}

/// Takes the fetch leases of these (provider, indicator) pairs where no fresh result is cached
/// and no live lease is held; returns the pairs taken (ours to fetch). One statement, locking in
/// a fixed order so concurrent callers cannot deadlock.
pub(crate) async fn take_leases(
    client: &impl Cached,
    pairs: &[(String, i64)],
    hold: Duration,
) -> Result<Vec<(String, i64)>, DbError> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let providers: Vec<&str> = pairs.iter().map(|(p, _)| p.as_str()).collect();
    let ids: Vec<i64> = pairs.iter().map(|(_, i)| *i).collect();
    let rows = stmt::query(
        client,
        "INSERT INTO enrichment_leases (provider, indicator_id, lease_until)
         SELECT w.p, w.i, clock_timestamp() + make_interval(secs => $3)
         FROM unnest($1::text[], $2::bigint[]) AS w(p, i)
         WHERE NOT EXISTS (SELECT 1 FROM enrichment_results r
                           WHERE r.provider = w.p AND r.indicator_id = w.i AND r.expires_at > now()
                             AND r.status IN ('found', 'not_found'))
         ORDER BY w.i, w.p
         ON CONFLICT (provider, indicator_id) DO UPDATE SET lease_until = EXCLUDED.lease_until
            WHERE enrichment_leases.lease_until < clock_timestamp()
         RETURNING provider, indicator_id",
        &[
            (&providers, Type::TEXT_ARRAY),
            (&ids, Type::INT8_ARRAY),
            (&hold.as_secs_f64(), Type::FLOAT8),
        ],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get("provider")?, r.try_get("indicator_id")?)))
        .collect::<Result<_, tokio_postgres::Error>>()?)
}

/// A successful lookup to store.
#[derive(Debug, Clone)]
pub(crate) struct NewResult {
    pub indicator_id: i64,
    pub provider: String,
    pub found: bool,
    /// The compact block, including `found` and `malice`.
    pub block: Map<String, Value>,
    pub malice: Malice,
    pub malice_reason: Option<String>,
    pub raw: Value,
    pub ttl: Duration,
}

/// Stores successful results (replacing older ones) and settles the leases of `release`, in one
/// statement: a stored pair keeps its lease until the result expires (so a waiter that raced the
/// store cannot take it and fetch again); a pair without a result gives its lease back. Returns
/// the stored rows as cached results.
pub(crate) async fn store_and_release(
    client: &impl Cached,
    results: &[NewResult],
    release: &[(String, i64)],
) -> Result<Vec<CachedResult>, DbError> {
    let mut results: Vec<&NewResult> = results.iter().collect();
    results.sort_by(|a, b| (a.indicator_id, &a.provider).cmp(&(b.indicator_id, &b.provider)));
    let ids: Vec<i64> = results.iter().map(|r| r.indicator_id).collect();
    let providers: Vec<&str> = results.iter().map(|r| r.provider.as_str()).collect();
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| if r.found { "found" } else { "not_found" })
        .collect();
    let blocks: Vec<Value> = results.iter().map(|r| Value::Object(r.block.clone())).collect();
    let verdicts: Vec<&str> = results.iter().map(|r| r.malice.as_str()).collect();
    let reasons: Vec<Value> = results
        .iter()
        .map(|r| Value::Array(r.malice_reason.iter().map(|x| Value::String(x.clone())).collect()))
        .collect();
    let raws: Vec<&Value> = results.iter().map(|r| &r.raw).collect();
    let ttls: Vec<f64> = results.iter().map(|r| r.ttl.as_secs_f64()).collect();
    let rel_p: Vec<&str> = release.iter().map(|(p, _)| p.as_str()).collect();
    let rel_i: Vec<i64> = release.iter().map(|(_, i)| *i).collect();
    let rows = stmt::query(
        client,
        "WITH stored AS (
            INSERT INTO enrichment_results (indicator_id, provider, status, block, verdict, reasons, raw, error,
                                            fetched_at, expires_at)
            SELECT t.i, t.p, t.s, t.b, t.v, t.r, t.raw, NULL, now(), now() + make_interval(secs => t.ttl)
            FROM unnest($1::bigint[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::jsonb[], $7::jsonb[],
                        $8::float8[]) AS t(i, p, s, b, v, r, raw, ttl)
            ON CONFLICT (provider, indicator_id) DO UPDATE SET
               status = EXCLUDED.status, block = EXCLUDED.block, verdict = EXCLUDED.verdict,
               reasons = EXCLUDED.reasons, raw = EXCLUDED.raw, error = NULL,
               fetched_at = EXCLUDED.fetched_at, expires_at = EXCLUDED.expires_at
            RETURNING indicator_id, provider, fetched_at, expires_at),
         held AS (
            UPDATE enrichment_leases l SET lease_until = s.expires_at
            FROM stored s WHERE l.provider = s.provider AND l.indicator_id = s.indicator_id),
         released AS (
            DELETE FROM enrichment_leases l USING unnest($9::text[], $10::bigint[]) AS x(p, i)
            WHERE l.provider = x.p AND l.indicator_id = x.i
              AND NOT EXISTS (SELECT 1 FROM stored s WHERE s.provider = x.p AND s.indicator_id = x.i))
         SELECT indicator_id, provider, fetched_at, expires_at FROM stored",
        &[
            (&ids, Type::INT8_ARRAY),
            (&providers, Type::TEXT_ARRAY),
            (&statuses, Type::TEXT_ARRAY),
            (&blocks, Type::JSONB_ARRAY),
            (&verdicts, Type::TEXT_ARRAY),
            (&reasons, Type::JSONB_ARRAY),
            (&raws, Type::JSONB_ARRAY),
            (&ttls, Type::FLOAT8_ARRAY),
            (&rel_p, Type::TEXT_ARRAY),
            (&rel_i, Type::INT8_ARRAY),
        ],
    )
    .await?;
    let when: HashMap<(i64, String), (DateTime<Utc>, DateTime<Utc>)> = rows
        .iter()
        .map(|r| {
            let key = (r.try_get("indicator_id")?, r.try_get("provider")?);
            Ok((key, (r.try_get("fetched_at")?, r.try_get("expires_at")?)))
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok(results
        .iter()
        .map(|r| {
            let (fetched_at, expires_at) = when
                .get(&(r.indicator_id, r.provider.clone()))
                .copied()
                .unwrap_or_else(|| (Utc::now(), Utc::now()));
            CachedResult {
                indicator_id: r.indicator_id,
                provider: r.provider.clone(),
                found: r.found,
                block: r.block.clone(),
                malice: r.malice,
                malice_reason: r.malice_reason.clone(),
                fetched_at,
                expires_at,
            }
        })
        .collect())
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
