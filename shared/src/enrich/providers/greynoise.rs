//! GreyNoise Community API v3 (spec `providers.md` §4). IPv4 only.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::{HeaderValue, ACCEPT};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use url::Url;

use super::{const_url, execute, join_segments, put, put_str, str_at, unexpected, upstream_from};
use crate::domain::indicator::IndicatorType;
use crate::domain::malice::Malice;
use crate::enrich::provider::{
    http_client, parse_retry_after, until_next_utc_midnight, Lookup, Provider, ProviderError, REQUEST_TIMEOUT,
};

pub(crate) const DEFAULT_BASE_URL: &str = "https://api.greynoise.io/v3";

const SUPPORTED: &[IndicatorType] = &[IndicatorType::Ip];

/// Settings for [`GreyNoise`]. The key is optional (lower limits without it).
#[derive(Clone)]
pub struct GreyNoiseConfig {
    pub base_url: Url,
    pub api_key: Option<SecretString>,
    pub timeout: Duration,
}

impl GreyNoiseConfig {
    pub fn new(api_key: Option<SecretString>) -> Self {
        GreyNoiseConfig {
            base_url: const_url(DEFAULT_BASE_URL),
            api_key,
            timeout: REQUEST_TIMEOUT,
        }
    }

    pub fn with_base_url(mut self, base_url: Url) -> Self {
        self.base_url = base_url;
        self
    }
}

impl fmt::Debug for GreyNoiseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreyNoiseConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The GreyNoise Community provider.
pub struct GreyNoise {
    config: GreyNoiseConfig,
    client: reqwest::Client,
}

impl fmt::Debug for GreyNoise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreyNoise")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GreyNoise {
    pub fn new(config: GreyNoiseConfig) -> Self {
        Self::with_client(config, http_client())
    }

    pub fn with_client(config: GreyNoiseConfig, client: reqwest::Client) -> Self {
        GreyNoise { config, client }
    }
}

const OUTPUT_KEYS: [&str; 6] = ["classification", "name", "noise", "riot", "last_seen", "link"];

#[async_trait]
impl Provider for GreyNoise {
    fn name(&self) -> &'static str {
        "greynoise"
    }

    fn display_name(&self) -> &'static str {
        "GreyNoise"
    }

    fn supported_types(&self) -> &'static [IndicatorType] {
        SUPPORTED
    }

    async fn lookup(&self, kind: IndicatorType, value: &str) -> Result<Lookup, ProviderError> {
        if kind != IndicatorType::Ip {
            return Err(ProviderError::Skipped {
                reason: "unsupported_type",
            });
        }
        match value.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => {}
            Ok(IpAddr::V6(_)) => {
                return Err(ProviderError::Skipped {
                    reason: "unsupported_type",
                })
            }
            Err(_) => {
                return Err(ProviderError::Skipped {
                    reason: "invalid_value",
                })
            }
        }
        let url = join_segments(&self.config.base_url, &["community", value.trim()])?;
        let mut req = self
            .client
            .get(url)
            .header(ACCEPT, "application/json")
            .timeout(self.config.timeout);
        if let Some(key) = &self.config.api_key {
            let mut key = HeaderValue::from_str(key.expose_secret())
                .map_err(|_| ProviderError::AuthFailed("API key is not a valid header value".into()))?;
            key.set_sensitive(true);
            req = req.header("key", key);
        }
        let resp = execute(req).await?;
        let message = || str_at(&resp.json_lenient(), "message").map(str::to_string);

        match resp.status {
            200 => {
                let body = resp.json()?;
                if !body.is_object() {
                    return Err(ProviderError::InvalidResponse("answer is not an object".into()));
                }
                let block = block_of(&body);
                let (malice, reason) = verdict(&body);
                Ok(Lookup::found(block, malice, Some(reason.to_string()), body))
            }
            // Not seen: `{ip, noise: false, riot: false, message}`; keep what it said.
            404 => {
                let body = resp.json_lenient();
                Ok(Lookup::not_found(block_of(&body), body))
            }
            400 => Err(ProviderError::Skipped {
                reason: "invalid_value",
            }),
            401 | 403 => Err(ProviderError::AuthFailed(
                message().unwrap_or_else(|| format!("HTTP {}", resp.status)),
            )),
            429 => {
                let now = Utc::now();
                Err(match parse_retry_after(&resp.headers, now) {
                    Some(d) => ProviderError::throttled(Some(d)),
                    // No reset header is documented: assume a daily window (spec §4).
                    None => ProviderError::QuotaExhausted {
                        retry_after: Some(until_next_utc_midnight(now)),
                    },
                })
            }
            s if (500..600).contains(&s) => Err(upstream_from(&resp, message())),
            _ => Err(unexpected(&resp, message())),
        }
    }
}

fn block_of(body: &Value) -> Map<String, Value> {
    let mut block = Map::new();
    for key in OUTPUT_KEYS {
        match body.get(key) {
            Some(Value::String(s)) => put_str(&mut block, key, Some(s)),
            other => put(&mut block, key, other.cloned()),
        }
    }
    block
}

fn verdict(body: &Value) -> (Malice, &'static str) {
    let classification = str_at(body, "classification").map(str::to_ascii_lowercase);
    let flag = |k: &str| body.get(k).and_then(Value::as_bool).unwrap_or(false);
    match classification.as_deref() {
        Some("malicious") => (Malice::Malicious, "classification=malicious"),
        _ if flag("riot") => (Malice::Benign, "riot=true"),
        Some("benign") => (Malice::Benign, "classification=benign"),
        _ if flag("noise") => (Malice::Suspicious, "noise=true"),
        _ => (Malice::Pending, "no classification"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verdict_rules() {
        let v = |b: Value| verdict(&b).0;
        assert_eq!(
            v(json!({"classification": "malicious", "riot": true})),
            Malice::Malicious
        );
        assert_eq!(v(json!({"classification": "unknown", "riot": true})), Malice::Benign);
        assert_eq!(v(json!({"classification": "benign"})), Malice::Benign);
        assert_eq!(
            v(json!({"classification": "unknown", "noise": true})),
            Malice::Suspicious
        );
        assert_eq!(v(json!({"classification": "unknown"})), Malice::Pending);
    }
}
