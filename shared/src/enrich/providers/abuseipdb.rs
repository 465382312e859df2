//! AbuseIPDB API v2 `/check` (spec `providers.md` §3). Never reports anything.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::{HeaderValue, ACCEPT};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use url::Url;

use super::{
    const_url, execute, join_segments, normalize_timestamp, put, put_str, str_at, unexpected, upstream_from,
    HttpResponse,
};
use crate::domain::indicator::IndicatorType;
use crate::domain::malice::Malice;
use crate::enrich::provider::{
    http_client, parse_rate_limit_state, parse_retry_after, Lookup, Provider, ProviderError, RateLimitState,
    REQUEST_TIMEOUT,
};

pub(crate) const DEFAULT_BASE_URL: &str = "https://api.abuseipdb.com/api/v2";

const SUPPORTED: &[IndicatorType] = &[IndicatorType::Ip];

/// Settings for [`AbuseIpDb`].
#[derive(Clone)]
pub struct AbuseIpDbConfig {
    pub base_url: Url,
    pub api_key: SecretString,
    pub timeout: Duration,
    /// `maxAgeInDays` (default 90).
    pub max_age_days: u32,
    /// `score >= malicious_score` → Malicious (default 75).
    pub malicious_score: u64,
    /// `score >= suspicious_score` → Suspicious (default 25).
    pub suspicious_score: u64,
}

impl AbuseIpDbConfig {
    pub fn new(api_key: SecretString) -> Self {
        AbuseIpDbConfig {
            base_url: const_url(DEFAULT_BASE_URL),
            api_key,
            timeout: REQUEST_TIMEOUT,
            max_age_days: 90,
            malicious_score: 75,
            suspicious_score: 25,
        }
    }

    pub fn with_base_url(mut self, base_url: Url) -> Self {
        self.base_url = base_url;
        self
    }
}

impl fmt::Debug for AbuseIpDbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbuseIpDbConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &"[REDACTED]")
            .field("timeout", &self.timeout)
            .field("max_age_days", &self.max_age_days)
            .field("malicious_score", &self.malicious_score)
            .field("suspicious_score", &self.suspicious_score)
            .finish()
    }
}

/// The AbuseIPDB provider.
pub struct AbuseIpDb {
    config: AbuseIpDbConfig,
    client: reqwest::Client,
    rate_limit: Mutex<Option<RateLimitState>>,
}

impl fmt::Debug for AbuseIpDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbuseIpDb")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AbuseIpDb {
    pub fn new(config: AbuseIpDbConfig) -> Self {
        Self::with_client(config, http_client())
    }

    pub fn with_client(config: AbuseIpDbConfig, client: reqwest::Client) -> Self {
        AbuseIpDb {
            config,
            client,
            rate_limit: Mutex::new(None),
        }
    }

    fn check_url(&self, ip: &str) -> Result<Url, ProviderError> {
        let mut url = join_segments(&self.config.base_url, &["check"])?;
        url.query_pairs_mut()
            .append_pair("ipAddress", ip)
            .append_pair("maxAgeInDays", &self.config.max_age_days.to_string())
            .append_key_only("verbose");
        Ok(url)
    }

    fn record_rate_limit(&self, resp: &HttpResponse) {
        let Some(mut state) = parse_rate_limit_state(&resp.headers, Utc::now()) else {
            return;
        };
        // Spec §3: stop calling when Remaining reaches 0 and resume at Reset.
        if state.remaining == Some(0) {
            state.pause_until = state.reset_at;
        }
        *self.rate_limit.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }
}

/// The output name of an AbuseIPDB category id (`category_<n>` for unknown ids).
pub(crate) fn category_name(id: u64) -> String {
    let name = match id {
        1 => "dns_compromise",
        2 => "dns_poisoning",
        3 => "fraud_orders",
        4 => "ddos_attack",
        5 => "ftp_brute_force",
        6 => "ping_of_death",
        7 => "phishing",
        8 => "fraud_voip",
        9 => "open_proxy",
        10 => "web_spam",
        11 => "email_spam",
        12 => "blog_spam",
        13 => "vpn",
        14 => "port_scan",
        15 => "hacking",
        16 => "sql_injection",
        17 => "spoofing",
        18 => "brute_force",
        19 => "bad_web_bot",
        20 => "exploited_host",
        21 => "web_app_attack",
        22 => "ssh",
        23 => "iot_targeted",
        n => return format!("category_{n}"),
    };
    name.to_string()
}

#[async_trait]
impl Provider for AbuseIpDb {
    fn name(&self) -> &'static str {
        "abuseipdb"
    }

    fn display_name(&self) -> &'static str {
        "AbuseIPDB"
    }

    fn supported_types(&self) -> &'static [IndicatorType] {
        SUPPORTED
    }

    fn rate_limit_state(&self) -> Option<RateLimitState> {
        self.rate_limit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn lookup(&self, kind: IndicatorType, value: &str) -> Result<Lookup, ProviderError> {
        if kind != IndicatorType::Ip {
            return Err(ProviderError::Skipped {
                reason: "unsupported_type",
            });
        }
        let mut key = HeaderValue::from_str(self.config.api_key.expose_secret())
            .map_err(|_| ProviderError::AuthFailed("API key is not a valid header value".into()))?;
        key.set_sensitive(true);
        let req = self
            .client
            .get(self.check_url(value)?)
            .header("Key", key)
            .header(ACCEPT, "application/json")
            .timeout(self.config.timeout);
        let resp = execute(req).await?;
        self.record_rate_limit(&resp);

        match resp.status {
            200 => interpret(resp.json()?, &self.config),
            422 | 400 => Err(ProviderError::Skipped {
                reason: "invalid_value",
            }),
            401 | 403 => Err(ProviderError::AuthFailed(
                error_message(&resp).unwrap_or_else(|| format!("HTTP {}", resp.status)),
            )),
            429 => Err(ProviderError::throttled(parse_retry_after(&resp.headers, Utc::now()))),
            s if (500..600).contains(&s) => Err(upstream_from(&resp, error_message(&resp))),
            _ => Err(unexpected(&resp, error_message(&resp))),
        }
    }
}

/// `errors[0].detail` from AbuseIPDB's `{errors: [{detail, status}]}`.
fn error_message(resp: &HttpResponse) -> Option<String> {
    let v = resp.json_lenient();
    let first = v.get("errors")?.as_array()?.first()?;
    str_at(first, "detail").map(str::to_string)
}

fn interpret(mut body: Value, config: &AbuseIpDbConfig) -> Result<Lookup, ProviderError> {
    let data = body
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| ProviderError::InvalidResponse("no `data` object".into()))?;
    let score = data
        .get("abuseConfidenceScore")
        .and_then(Value::as_u64)
        .ok_or_else(|| ProviderError::InvalidResponse("no `abuseConfidenceScore`".into()))?;
    let total_reports = data.get("totalReports").and_then(Value::as_u64);
    let whitelisted = data.get("isWhitelisted").and_then(Value::as_bool);

    let mut block = Map::new();
    block.insert("score".into(), score.into());
    block.insert("categories".into(), categories(data));
    put(&mut block, "total_reports", total_reports.map(Value::from));
    put(&mut block, "distinct_reporters", data.get("numDistinctUsers").cloned());
    put(&mut block, "is_tor", data.get("isTor").cloned());
    put(&mut block, "is_whitelisted", whitelisted.map(Value::from));
    put_str(&mut block, "usage_type", str_at(data, "usageType"));
    put_str(&mut block, "isp", str_at(data, "isp"));
    put_str(&mut block, "domain", str_at(data, "domain"));
    put_str(&mut block, "country_code", str_at(data, "countryCode"));
    put_str(&mut block, "country_name", str_at(data, "countryName"));
    put(
        &mut block,
        "last_reported_at",
        normalize_timestamp(data.get("lastReportedAt")),
    );

    let (malice, reason) = if score >= config.malicious_score {
        (
            Malice::Malicious,
            format!("score={score} >= {}", config.malicious_score),
        )
    } else if score >= config.suspicious_score {
        (
            Malice::Suspicious,
            format!("score={score} >= {}", config.suspicious_score),
        )
    } else if whitelisted == Some(true) {
        (Malice::Benign, "whitelisted".to_string())
    } else if total_reports.unwrap_or(0) == 0 {
        (Malice::Pending, "no reports".to_string())
    } else {
        (Malice::Benign, format!("score={score} < {}", config.suspicious_score))
    };

    // Reporters' free text and the report list stay out of `raw`.
    if let Some(d) = body.get_mut("data").and_then(Value::as_object_mut) {
        d.remove("reports");
    }
    Ok(Lookup::found(block, malice, Some(reason), body))
}

/// Names of the distinct category ids in `reports[].categories`, most frequent first (ties:
/// lower id first), at most 10.
fn categories(data: &Value) -> Value {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for report in data.get("reports").and_then(Value::as_array).into_iter().flatten() {
        for id in report
            .get("categories")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
        {
            *counts.entry(id).or_default() += 1;
        }
    }
    let mut ids: Vec<(u64, usize)> = counts.into_iter().collect();
    ids.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Value::Array(
        ids.into_iter()
            .take(10)
            .map(|(id, _)| Value::String(category_name(id)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use serde_json::json;

    fn cfg() -> AbuseIpDbConfig {
        AbuseIpDbConfig::new(SecretString::from("k"))
    }

    #[test]
    fn names() {
        assert_eq!(category_name(18), "brute_force");
        assert_eq!(category_name(23), "iot_targeted");
        assert_eq!(category_name(99), "category_99");
    }

    #[test]
    fn verdicts() {
        let v = |score: u64, white: bool, total: u64| {
            interpret(
                json!({"data": {"abuseConfidenceScore": score, "isWhitelisted": white, "totalReports": total}}),
                &cfg(),
            )
            .unwrap()
        };
        assert_eq!(v(75, false, 3).malice, Malice::Malicious);
        assert_eq!(v(25, false, 3).malice, Malice::Suspicious);
        assert_eq!(v(24, true, 3).malice, Malice::Benign);
        assert_eq!(v(24, true, 3).malice_reason.as_deref(), Some("whitelisted"));
        assert_eq!(v(0, false, 0).malice, Malice::Pending);
        assert_eq!(v(0, false, 0).malice_reason.as_deref(), Some("no reports"));
        assert_eq!(v(4, false, 1).malice, Malice::Benign);
    }

    #[test]
    fn categories_by_frequency() {
        let d = json!({"reports": [
            {"categories": [18, 22]}, {"categories": [22]}, {"categories": [14, 22, 18]}, {"categories": [99]}
        ]});
        assert_eq!(
            categories(&d),
            json!(["ssh", "brute_force", "port_scan", "category_99"])
        );
    }
}
