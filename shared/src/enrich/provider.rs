//! The provider contract: one logical lookup of one indicator at one provider.
//!
//! Retries, throttling, caching and the never-send policy live in the engine; a provider only
//! turns one HTTP exchange (or a small fixed set of them) into a [`Lookup`] or a
//! [`ProviderError`].

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

use crate::domain::indicator::IndicatorType;
use crate::domain::malice::Malice;

/// Most bytes of `raw` kept per result (spec §1.2).
pub(crate) const MAX_RAW_BYTES: usize = 64 * 1024;

/// Longest wait the engine re-queues for (spec §1.5). A provider that learns of a longer wait
/// reports [`ProviderError::QuotaExhausted`] instead of [`ProviderError::RateLimited`].
pub(crate) const MAX_REQUEUE_DELAY: Duration = Duration::from_secs(900);

/// Connect timeout of the shared client (spec §1.5).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Whole-request timeout of the shared client (spec §1.5).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The user agent every outbound request carries.
pub(crate) use crate::net::USER_AGENT;

/// Result of one successful lookup (found or not found).
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// `false` when the provider does not know the indicator (verdict then `Pending`).
    pub found: bool,
    /// The compact block an agent sees under the provider's name: the output keys of the spec
    /// tables, never `null` values. `found` and `malice` are added by the engine.
    pub block: Map<String, Value>,
    pub malice: Malice,
    /// Short text naming the verdict rule that fired, e.g. `"malicious=5 >= 2"`.
    pub malice_reason: Option<String>,
    /// Trimmed provider response(s), at most [`MAX_RAW_BYTES`] when serialized.
    pub raw: Value,
}

impl Lookup {
    /// A found result.
    pub fn found(block: Map<String, Value>, malice: Malice, malice_reason: Option<String>, raw: Value) -> Self {
        Lookup {
            found: true,
            block,
            malice,
            malice_reason,
            raw: trim_raw(raw),
        }
    }

    /// A not-found result: always `Pending`, never `Benign` (spec §1.3). `block` holds whatever
    /// output fields the provider still returned (often none).
    pub fn not_found(block: Map<String, Value>, raw: Value) -> Self {
        Lookup {
            found: false,
            block,
            malice: Malice::Pending,
            malice_reason: Some("not found".to_string()),
            raw: trim_raw(raw),
        }
    }
}

/// Why a lookup produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Throttled (HTTP 429 or our own budget); wait `retry_after` (engine default 60 s).
    #[error("rate limited")]
    RateLimited { retry_after: Option<Duration> },
    /// A spent quota whose reset is further away than a re-queue hop (e.g. a daily quota).
    #[error("quota exhausted")]
    QuotaExhausted { retry_after: Option<Duration> },
    /// 401/403: the credentials are wrong or lack permissions (a configuration error).
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    #[error("request timed out")]
    Timeout,
    /// 5xx or a connection error.
    #[error("upstream error{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Upstream { status: Option<u16>, message: String },
    /// The provider answered something we cannot interpret (bad JSON, unexpected status).
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// A provider-specific skip (`unsupported_type`, `invalid_value`, `not_upn`, …).
    #[error("Enrichment skipped: {reason}")]
    Skipped { reason: &'static str },
}

impl ProviderError {
    /// The spec's `error_code` (or the skip reason).
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::QuotaExhausted { .. } => "quota_exhausted",
            ProviderError::AuthFailed(_) => "auth_failed",
            ProviderError::Timeout => "timeout",
            ProviderError::Upstream { .. } => "upstream_error",
            ProviderError::InvalidResponse(_) => "invalid_response",
            ProviderError::Skipped { reason } => reason,
        }
    }

    /// Timeouts, connection errors and 5xx are retried by the engine (spec §1.5).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Timeout | ProviderError::Upstream { .. })
    }

    /// The result `status` this error produces: `"skipped"` for skips, else `"failed"`.
    pub fn status(&self) -> &'static str {
        match self {
            ProviderError::Skipped { .. } => "skipped",
            _ => "failed",
        }
    }

    /// The wait a throttling error asks for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after } | ProviderError::QuotaExhausted { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// `RateLimited`, or `QuotaExhausted` when the wait exceeds [`MAX_REQUEUE_DELAY`].
    pub fn throttled(retry_after: Option<Duration>) -> Self {
        match retry_after {
            Some(d) if d > MAX_REQUEUE_DELAY => ProviderError::QuotaExhausted { retry_after },
            _ => ProviderError::RateLimited { retry_after },
        }
    }

    pub(crate) fn upstream(status: Option<u16>, message: impl Into<String>) -> Self {
        ProviderError::Upstream {
            status,
            message: message.into(),
        }
    }
}

/// Rate-limit state a provider last saw in response headers (AbuseIPDB's `X-RateLimit-*`,
/// Okta's `X-Rate-Limit-*`), for the engine's quota governor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitState {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset_at: Option<DateTime<Utc>>,
    pub observed_at: DateTime<Utc>,
    /// Set when the provider's rule says to stop calling until then (AbuseIPDB: remaining 0;
    /// Okta: remaining ≤ 5 % of limit).
    pub pause_until: Option<DateTime<Utc>>,
}

/// One enrichment provider.
#[async_trait]
pub trait Provider: Send + Sync {
    /// `virustotal`, `abuseipdb`, `greynoise`, `okta`, `entra`.
    fn name(&self) -> &'static str;
    fn display_name(&self) -> &'static str;
    fn supported_types(&self) -> &'static [IndicatorType];
    /// One logical lookup. No retry loops or sleeps (the engine retries and throttles), except
    /// Entra's single token refresh on a Graph 401.
    async fn lookup(&self, kind: IndicatorType, value: &str) -> Result<Lookup, ProviderError>;

    /// Rate-limit headers seen on the latest answer, if the provider sends any.
    fn rate_limit_state(&self) -> Option<RateLimitState> {
        None
    }

    fn supports(&self, kind: IndicatorType) -> bool {
        self.supported_types().contains(&kind)
    }
}

/// The wait a throttled answer asks for: `Retry-After` (delta seconds or an HTTP date), else
/// `X-RateLimit-Reset` / `X-Rate-Limit-Reset` (epoch seconds). A reset value too small to be an
/// epoch (< 10^9) is taken as delta seconds. Times in the past give zero.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    if let Some(v) = header_str(headers, "retry-after") {
        if let Some(d) = parse_delta_seconds(v) {
            return Some(d);
        }
        if let Ok(at) = DateTime::parse_from_rfc2822(v) {
            return Some(until(now, at.with_timezone(&Utc)));
        }
    }
    for name in ["x-ratelimit-reset", "x-rate-limit-reset"] {
        if let Some(v) = header_str(headers, name) {
            if let Some(at) = parse_reset(v, now) {
                return Some(until(now, at));
            }
        }
    }
    None
}

/// Reads `X-RateLimit-{Limit,Remaining,Reset}` or `X-Rate-Limit-{Limit,Remaining,Reset}`.
pub(crate) fn parse_rate_limit_state(headers: &HeaderMap, now: DateTime<Utc>) -> Option<RateLimitState> {
    let get = |suffix: &str| {
        header_str(headers, &format!("x-ratelimit-{suffix}"))
            .or_else(|| header_str(headers, &format!("x-rate-limit-{suffix}")))
    };
    let limit = get("limit").and_then(|v| v.trim().parse::<u64>().ok());
    let remaining = get("remaining").and_then(|v| v.trim().parse::<u64>().ok());
    let reset_at = get("reset").and_then(|v| parse_reset(v, now));
    if limit.is_none() && remaining.is_none() && reset_at.is_none() {
        return None;
    }
    Some(RateLimitState {
        limit,
        remaining,
        reset_at,
        observed_at: now,
        pause_until: None,
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn parse_delta_seconds(v: &str) -> Option<Duration> {
    let secs: f64 = v.parse().ok()?;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return None;
    }
    Some(Duration::from_secs_f64(secs.ceil()))
}

fn parse_reset(v: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let n: f64 = v.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    if n < 1e9 {
        return Some(now + chrono::Duration::milliseconds((n * 1000.0) as i64));
    }
    DateTime::from_timestamp(n.ceil() as i64, 0)
}

fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Time until the next 00:00 UTC (daily quotas of VirusTotal and GreyNoise reset then).
pub fn until_next_utc_midnight(now: DateTime<Utc>) -> Duration {
    let next = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .map(|n| n.and_utc());
    match next {
        Some(next) => until(now, next),
        None => Duration::from_secs(86_400),
    }
}

/// Builds a client with the spec's timeouts: connect 3 s, whole request 10 s, our user agent,
/// no redirects (provider keys travel in custom headers that a redirect would leak).
///
/// # Panics
/// Only when the TLS backend cannot be initialised (as `reqwest::Client::new` does).
#[allow(
    clippy::expect_used,
    reason = "documented panic: a TLS backend that cannot start is a broken build"
)]
pub fn build_http_client(connect: Duration, total: Duration) -> reqwest::Client {
    crate::net::tls::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the TLS backend initialises (reqwest client build)")
}

/// The process-wide provider client, built once and shared (cheap to clone).
pub fn http_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| build_http_client(CONNECT_TIMEOUT, REQUEST_TIMEOUT))
        .clone()
}

/// Shrinks `raw` until its JSON form is at most [`MAX_RAW_BYTES`]: long arrays and strings are
/// cut ever shorter; as a last resort the value is replaced by a marker.
pub(crate) fn trim_raw(raw: Value) -> Value {
    if json_len(&raw) <= MAX_RAW_BYTES {
        return raw;
    }
    let mut max_items = 100usize;
    let mut max_chars = 4096usize;
    loop {
        let v = cut(&raw, max_items, max_chars);
        if json_len(&v) <= MAX_RAW_BYTES {
            return v;
        }
        if max_items <= 1 && max_chars <= 64 {
            let mut m = Map::new();
            m.insert("_truncated".into(), Value::Bool(true));
            return Value::Object(m);
        }
        max_items = (max_items / 2).max(1);
        max_chars = (max_chars / 2).max(64);
    }
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

fn cut(v: &Value, max_items: usize, max_chars: usize) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().take(max_items).map(|x| cut(x, max_items, max_chars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), cut(x, max_items, max_chars)))
                .collect(),
        ),
        Value::String(s) if s.chars().count() > max_chars => Value::String(s.chars().take(max_chars).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-15T03:42:18Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn retry_after_seconds_date_and_reset() {
        let n = now();
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "30")]), n),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "Wed, 15 Jan 2025 03:44:18 GMT")]), n),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "Wed, 15 Jan 2025 03:00:00 GMT")]), n),
            Some(Duration::ZERO)
        );
        let reset = (n.timestamp() + 45).to_string();
        assert_eq!(
            parse_retry_after(&headers(&[("x-ratelimit-reset", &reset)]), n),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            parse_retry_after(&headers(&[("x-rate-limit-reset", &reset)]), n),
            Some(Duration::from_secs(45))
        );
        // Retry-After wins over the reset header.
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "5"), ("x-ratelimit-reset", &reset)]), n),
            Some(Duration::from_secs(5))
        );
        // Garbage Retry-After falls through to the reset header.
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "soon"), ("x-ratelimit-reset", &reset)]), n),
            Some(Duration::from_secs(45))
        );
        assert_eq!(parse_retry_after(&HeaderMap::new(), n), None);
    }

    #[test]
    fn midnight() {
        assert_eq!(
            until_next_utc_midnight(now()),
            Duration::from_secs(86_400 - (3 * 3600 + 42 * 60 + 18))
        );
    }

    #[test]
    fn throttled_picks_quota_for_long_waits() {
        assert_eq!(
            ProviderError::throttled(Some(Duration::from_secs(60))).code(),
            "rate_limited"
        );
        assert_eq!(
            ProviderError::throttled(Some(Duration::from_secs(3600))).code(),
            "quota_exhausted"
        );
        assert_eq!(ProviderError::throttled(None).code(), "rate_limited");
    }

    #[test]
    fn trim_raw_caps_size() {
        let big = Value::Array((0..10_000).map(|i| Value::String(format!("{i:0>40}"))).collect());
        let t = trim_raw(big);
        assert!(json_len(&t) <= MAX_RAW_BYTES);
        let small = serde_json::json!({"a": 1});
        assert_eq!(trim_raw(small.clone()), small);
    }

    #[test]
    fn error_codes() {
        assert_eq!(ProviderError::Timeout.code(), "timeout");
        assert!(ProviderError::Timeout.is_retryable());
        assert!(ProviderError::upstream(Some(503), "x").is_retryable());
        assert!(!ProviderError::AuthFailed("x".into()).is_retryable());
        let skip = ProviderError::Skipped { reason: "not_upn" };
        assert_eq!(skip.code(), "not_upn");
        assert_eq!(skip.status(), "skipped");
        assert!(skip.to_string().starts_with("Enrichment skipped: "));
    }
}
