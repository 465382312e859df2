//! API-key authentication (api spec §2): `Bearer` form → `cai_` shape → an active key with this
//! prefix → constant-time comparison of the keyed hash → expiry → `last_used_at` (at most once a
//! minute). Scopes are checked per route; `admin` satisfies any requirement.

use axum::http::{header, HeaderMap, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::db::api_keys;
use crate::keys;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: i64,
    pub key_prefix: String,
    pub scopes: Vec<String>,
    pub allowed_sources: Option<Vec<String>>,
}

impl Principal {
    /// True when the key holds any of `required` (or `admin`).
    pub fn has_any(&self, required: &[&str]) -> bool {
        self.scopes
            .iter()
            .any(|s| s == "admin" || required.contains(&s.as_str()))
    }

    pub fn require(&self, required: &[&str]) -> Result<(), ApiError> {
        if self.has_any(required) {
            Ok(())
        } else {
            Err(
                ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", "The API key lacks a required scope")
                    .with_details(json!({ "required_scopes": required })),
            )
        }
    }
}

pub fn unauthorized() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "A valid API key is required")
}

/// The `Bearer` token of the Authorization header, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Failed authentications allowed per client address and per presented key prefix each minute;
/// past it the answer is 429 (shared via Postgres like the other rate limits).
pub const FAILED_AUTH_PER_MINUTE: u32 = 20;

/// The caller's address, when known: the right-most `X-Forwarded-For` entry (the one the
/// trusted proxy — API Gateway, a load balancer — appended), only when the deployment says a
/// trusted proxy is in front (`CALSETA_TRUST_FORWARDED_FOR`); otherwise a client could pick it.
pub(crate) fn client_ip(state: &AppState, headers: &HeaderMap) -> Option<std::net::IpAddr> {
    if !state.trust_forwarded_for {
        return None;
    }
    let xff = headers.get("x-forwarded-for")?.to_str().ok()?;
    xff.rsplit(',').next()?.trim().parse().ok()
}

/// Counts one failed authentication against the caller's buckets: `refusal` (401), or 429 once a
/// bucket is over [`FAILED_AUTH_PER_MINUTE`].
async fn failed(
    state: &AppState,
    client: &impl crate::db::stmt::Cached,
    ip: Option<std::net::IpAddr>,
    prefix: Option<&str>,
    refusal: ApiError,
) -> ApiError {
    if let Some(i) = ip {
        let bucket = format!("authfail:ip:{i}");
        if let Err(e) = super::rate_limit::check(client, &bucket, FAILED_AUTH_PER_MINUTE).await {
            tracing::warn!(bucket = %bucket, "failed authentication rate limited");
            // Refused at once by this instance, even with a valid key, until the entry expires.
            state.auth_cache.addresses.put(i, true);
            return e;
        }
    }
    if let Some(p) = prefix {
        let bucket = format!("authfail:key:{p}");
        if let Err(e) = super::rate_limit::check(client, &bucket, FAILED_AUTH_PER_MINUTE).await {
            tracing::warn!(bucket = %bucket, "failed authentication rate limited");
            return e;
        }
    }
    refusal
}

/// Verifies a presented API key, on the caller's connection. A client address over its
/// failed-authentication limit is refused (429) before any key is compared; the check rides on
/// the key lookup, so successful requests pay no extra round trip. A key row (and the address's
/// state) read less than [`cache::AUTH_CACHE_TTL`] ago is not read again: no round trip at all.
///
/// [`cache::AUTH_CACHE_TTL`]: super::cache::AUTH_CACHE_TTL
pub(crate) async fn verify_key(
    state: &AppState,
    client: &impl crate::db::stmt::Cached,
    headers: &HeaderMap,
    presented: &str,
) -> Result<Principal, ApiError> {
    let ip = client_ip(state, headers);
    if !keys::is_well_formed(presented) {
        return Err(failed(state, client, ip, None, unauthorized()).await);
    }
    let prefix = keys::lookup_prefix(presented);
    let address_blocked = match ip {
        None => Some(false),
        Some(i) => state.auth_cache.addresses.get(&i),
    };
    if address_blocked == Some(true) {
        return Err(super::rate_limit::limited(60));
    }
    if address_blocked == Some(false) {
        if let Some(k) = state.auth_cache.keys.get(&prefix.to_owned()) {
            return accept(state, client, ip, prefix, presented, k).await;
        }
    }
    let ip_bucket = ip.map(|i| format!("authfail:ip:{i}"));
    let found = api_keys::lookup(client, prefix, ip_bucket.as_deref()).await?;
    let Some(found) = found else { return Err(unauthorized()) };
    let blocked = found.failed_this_minute.unwrap_or(0) as i64 >= FAILED_AUTH_PER_MINUTE as i64;
    if let Some(i) = ip {
        state.auth_cache.addresses.put(i, blocked);
    }
    if blocked {
        return Err(super::rate_limit::limited(60));
    }
    // An unknown prefix is counted per address only: per-prefix rows exist only for real keys,
    // so guessed prefixes cannot grow the rate-limit table.
    let Some(row) = found.key else {
        return Err(failed(state, client, ip, None, unauthorized()).await);
    };
    let key_id = row.id;
    let key = super::cache::CachedKey {
        id: key_id,
        key_hash: row.key_hash,
        scopes: row.scopes,
        allowed_sources: row.allowed_sources,
        expires_at: row.expires_at,
    };
    if row.last_used_stale {
        // Best effort, off the request path: a lost update only delays the timestamp.
        let pool = state.pool.clone();
        tokio::spawn(async move {
            if let Ok(c) = pool.get().await {
                let _ = api_keys::touch(&**c, key_id).await;
            }
        });
    }
    let principal = accept(state, client, ip, prefix, presented, key.clone()).await?;
    // Only a key just presented correctly is kept: wrong guesses never fill the cache.
    state.auth_cache.keys.put(prefix.to_owned(), key);
    Ok(principal)
}

/// Compares the presented key with the stored hash (constant time) and checks expiry.
async fn accept(
    state: &AppState,
    client: &impl crate::db::stmt::Cached,
    ip: Option<std::net::IpAddr>,
    prefix: &str,
    presented: &str,
    key: super::cache::CachedKey,
) -> Result<Principal, ApiError> {
    let computed = state.hasher.hash(presented);
    if !bool::from(key.key_hash.ct_eq(&computed)) {
        return Err(failed(state, client, ip, Some(prefix), unauthorized()).await);
    }
    if key.expires_at.is_some_and(|t| t <= chrono::Utc::now()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "KEY_EXPIRED",
            "The API key has expired",
        ));
    }
    Ok(Principal {
        key_id: key.id,
        key_prefix: prefix.to_owned(),
        scopes: key.scopes,
        allowed_sources: key.allowed_sources,
    })
}

/// Authenticates a request that must carry an API key.
pub(crate) async fn require_key(
    state: &AppState,
    client: &impl crate::db::stmt::Cached,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    match bearer(headers) {
        Some(token) => verify_key(state, client, headers, token).await,
        None => Err(failed(state, client, client_ip(state, headers), None, unauthorized()).await),
    }
}
