//! VirusTotal API v3 (spec `providers.md` §2). Only GET lookups: never `POST /urls`,
//! `POST /files` or re-analysis.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::Utc;
use reqwest::header::{HeaderValue, ACCEPT};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use url::Url;

use super::{
    const_url, epoch_to_iso, execute, join_segments, put, put_str, str_at, unexpected, upstream_from, HttpResponse,
};
use crate::domain::indicator::IndicatorType;
use crate::domain::malice::Malice;
use crate::enrich::provider::{
    http_client, parse_retry_after, until_next_utc_midnight, Lookup, Provider, ProviderError, REQUEST_TIMEOUT,
};

pub(crate) const DEFAULT_BASE_URL: &str = "https://www.virustotal.com/api/v3";
/// GUI links always point at the public site, whatever the API base.
pub(crate) const GUI_BASE: &str = "https://www.virustotal.com/gui";

const SUPPORTED: &[IndicatorType] = &[
    IndicatorType::Ip,
    IndicatorType::Domain,
    IndicatorType::Url,
    IndicatorType::HashMd5,
    IndicatorType::HashSha1,
    IndicatorType::HashSha256,
];

/// Settings for [`VirusTotal`].
#[derive(Clone)]
pub struct VirusTotalConfig {
    pub base_url: Url,
    pub api_key: SecretString,
    /// Whole-request timeout (spec: 10 s).
    pub timeout: Duration,
    /// Verdict thresholds: `malicious >= malicious_threshold` → Malicious (default 2).
    pub malicious_threshold: u64,
    /// This many 429s in a row, spread over at least `quota_streak_window`, mean the daily
    /// quota is spent (spec §2 "Limits": 3 after a fresh minute).
    pub quota_streak: u32,
    pub quota_streak_window: Duration,
}

impl VirusTotalConfig {
    pub fn new(api_key: SecretString) -> Self {
        VirusTotalConfig {
            base_url: const_url(DEFAULT_BASE_URL),
            api_key,
            timeout: REQUEST_TIMEOUT,
            malicious_threshold: 2,
            quota_streak: 3,
            quota_streak_window: Duration::from_secs(60),
        }
    }

    pub fn with_base_url(mut self, base_url: Url) -> Self {
        self.base_url = base_url;
        self
    }
}

impl fmt::Debug for VirusTotalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirusTotalConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &"[REDACTED]")
            .field("timeout", &self.timeout)
            .field("malicious_threshold", &self.malicious_threshold)
            .field("quota_streak", &self.quota_streak)
            .field("quota_streak_window", &self.quota_streak_window)
            .finish()
    }
}

/// The VirusTotal provider.
pub struct VirusTotal {
    config: VirusTotalConfig,
    client: reqwest::Client,
    /// Consecutive 429s: (first seen, count).
    streak: Mutex<Option<(Instant, u32)>>,
}

impl fmt::Debug for VirusTotal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirusTotal")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl VirusTotal {
    /// Uses the shared [`http_client`].
    pub fn new(config: VirusTotalConfig) -> Self {
        Self::with_client(config, http_client())
    }

    pub fn with_client(config: VirusTotalConfig, client: reqwest::Client) -> Self {
        VirusTotal {
            config,
            client,
            streak: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &VirusTotalConfig {
        &self.config
    }

    /// The API path and GUI link for an indicator.
    fn request_for(&self, kind: IndicatorType, value: &str) -> Result<(Url, Option<String>), ProviderError> {
        let base = &self.config.base_url;
        Ok(match kind {
            IndicatorType::Ip => (
                join_segments(base, &["ip_addresses", value])?,
                Some(format!("{GUI_BASE}/ip-address/{value}")),
            ),
            IndicatorType::Domain => (
                join_segments(base, &["domains", value])?,
                Some(format!("{GUI_BASE}/domain/{value}")),
            ),
            // The URL link needs the SHA-256 id from the response.
            IndicatorType::Url => (join_segments(base, &["urls", &url_id(value)])?, None),
            IndicatorType::HashMd5 | IndicatorType::HashSha1 | IndicatorType::HashSha256 => (
                join_segments(base, &["files", value])?,
                Some(format!("{GUI_BASE}/file/{value}")),
            ),
            _ => {
                return Err(ProviderError::Skipped {
                    reason: "unsupported_type",
                })
            }
        })
    }

    fn note_throttled(&self, resp: &HttpResponse) -> ProviderError {
        let now = Utc::now();
        let retry_after = parse_retry_after(&resp.headers, now);
        let mut streak = self.streak.lock().unwrap_or_else(|p| p.into_inner());
        let (first, count) = match *streak {
            Some((first, count)) => (first, count.saturating_add(1)),
            None => (Instant::now(), 1),
        };
        *streak = Some((first, count));
        if count >= self.config.quota_streak && first.elapsed() >= self.config.quota_streak_window {
            return ProviderError::QuotaExhausted {
                retry_after: Some(until_next_utc_midnight(now)),
            };
        }
        ProviderError::throttled(retry_after)
    }

    fn note_answer(&self) {
        let mut streak = self.streak.lock().unwrap_or_else(|p| p.into_inner());
        *streak = None;
    }
}

/// VirusTotal's URL identifier: URL-safe base64 of the URL without `=` padding.
pub fn url_id(url: &str) -> String {
    URL_SAFE_NO_PAD.encode(url.as_bytes())
}

#[async_trait]
impl Provider for VirusTotal {
    fn name(&self) -> &'static str {
        "virustotal"
    }

    fn display_name(&self) -> &'static str {
        "VirusTotal"
    }

    fn supported_types(&self) -> &'static [IndicatorType] {
        SUPPORTED
    }

    async fn lookup(&self, kind: IndicatorType, value: &str) -> Result<Lookup, ProviderError> {
        let (url, link) = self.request_for(kind, value)?;
        let mut key = HeaderValue::from_str(self.config.api_key.expose_secret())
            .map_err(|_| ProviderError::AuthFailed("API key is not a valid header value".into()))?;
        key.set_sensitive(true);
        let req = self
            .client
            .get(url)
            .header("x-apikey", key)
            .header(ACCEPT, "application/json")
            .timeout(self.config.timeout);
        let resp = execute(req).await?;

        if resp.status == 429 {
            return Err(self.note_throttled(&resp));
        }
        self.note_answer();

        match resp.status {
            200 => {
                let body = resp.json()?;
                interpret(kind, link, body, self.config.malicious_threshold)
            }
            404 => Ok(Lookup::not_found(Map::new(), resp.json_lenient())),
            400 => Err(ProviderError::Skipped {
                reason: "invalid_value",
            }),
            401 | 403 => Err(ProviderError::AuthFailed(
                error_message(&resp).unwrap_or_else(|| format!("HTTP {}", resp.status)),
            )),
            s if (500..600).contains(&s) => Err(upstream_from(&resp, error_message(&resp))),
            _ => Err(unexpected(&resp, error_message(&resp))),
        }
    }
}

/// `"Code: message"` from VirusTotal's `{error: {code, message}}`.
fn error_message(resp: &HttpResponse) -> Option<String> {
    let v = resp.json_lenient();
    let e = v.get("error")?;
    match (str_at(e, "code"), str_at(e, "message")) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (Some(c), None) => Some(c.to_string()),
        (None, Some(m)) => Some(m.to_string()),
        (None, None) => None,
    }
}

/// Builds the block and verdict from a 200 answer.
fn interpret(
    kind: IndicatorType,
    link: Option<String>,
    mut body: Value,
    malicious_threshold: u64,
) -> Result<Lookup, ProviderError> {
    let data = body
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| ProviderError::InvalidResponse("no `data` object".into()))?;
    let attrs = data.get("attributes").cloned().unwrap_or(Value::Null);
    let mut block = Map::new();

    let stats = attrs.get("last_analysis_stats").filter(|s| s.is_object());
    let count = |k: &str| stats.and_then(|s| s.get(k)).and_then(Value::as_u64).unwrap_or(0);
    let (malicious, suspicious, harmless, undetected) = (
        count("malicious"),
        count("suspicious"),
        count("harmless"),
        count("undetected"),
    );
    let total = malicious + suspicious + harmless + undetected;
    block.insert("malicious".into(), malicious.into());
    block.insert("suspicious".into(), suspicious.into());
    block.insert("harmless".into(), harmless.into());
    block.insert("undetected".into(), undetected.into());
    block.insert("score".into(), format!("{malicious}/{total}").into());
    put(&mut block, "reputation", attrs.get("reputation").cloned());
    if let Some(tags) = attrs.get("tags").and_then(Value::as_array) {
        let tags: Vec<Value> = tags.iter().filter(|t| t.is_string()).take(10).cloned().collect();
        block.insert("tags".into(), Value::Array(tags));
    }
    put(
        &mut block,
        "last_analysis_date",
        attrs.get("last_analysis_date").and_then(epoch_to_iso),
    );
    let link = link.or_else(|| str_at(data, "id").map(|id| format!("{GUI_BASE}/url/{id}")));
    put(&mut block, "link", link.map(Value::String));

    match kind {
        IndicatorType::Ip => {
            put_str(&mut block, "country", str_at(&attrs, "country"));
            put_str(&mut block, "as_owner", str_at(&attrs, "as_owner"));
            put(&mut block, "asn", attrs.get("asn").cloned());
            put_str(&mut block, "network", str_at(&attrs, "network"));
        }
        IndicatorType::Domain => {
            put_str(&mut block, "registrar", str_at(&attrs, "registrar"));
            put(
                &mut block,
                "creation_date",
                attrs.get("creation_date").and_then(epoch_to_iso),
            );
            put(&mut block, "categories", categories(&attrs));
        }
        IndicatorType::Url => {
            put(&mut block, "categories", categories(&attrs));
            put_str(&mut block, "final_url", str_at(&attrs, "last_final_url"));
            put(&mut block, "http_status", attrs.get("last_http_response_code").cloned());
            put_str(&mut block, "title", str_at(&attrs, "title"));
        }
        _ => {
            put_str(&mut block, "meaningful_name", str_at(&attrs, "meaningful_name"));
            put_str(&mut block, "type_description", str_at(&attrs, "type_description"));
            put(&mut block, "size", attrs.get("size").cloned());
            put(
                &mut block,
                "first_submission_date",
                attrs.get("first_submission_date").and_then(epoch_to_iso),
            );
            put(&mut block, "times_submitted", attrs.get("times_submitted").cloned());
            put_str(
                &mut block,
                "threat_label",
                attrs
                    .get("popular_threat_classification")
                    .and_then(|p| str_at(p, "suggested_threat_label")),
            );
        }
    }

    let (malice, reason) = if stats.is_none() || total == 0 {
        (Malice::Pending, "not analysed".to_string())
    } else if malicious >= malicious_threshold {
        (
            Malice::Malicious,
            format!("malicious={malicious} >= {malicious_threshold}"),
        )
    } else if malicious >= 1 {
        (Malice::Suspicious, format!("malicious={malicious} >= 1"))
    } else if suspicious >= 1 {
        (Malice::Suspicious, format!("suspicious={suspicious} >= 1"))
    } else {
        (Malice::Benign, format!("malicious=0, suspicious=0 of {total}"))
    };

    // 70+ per-engine entries: dropped before storing `raw`.
    if let Some(a) = body
        .get_mut("data")
        .and_then(|d| d.get_mut("attributes"))
        .and_then(Value::as_object_mut)
    {
        a.remove("last_analysis_results");
    }
    Ok(Lookup::found(block, malice, Some(reason), body))
}

/// Distinct lowercased category labels (vendor → label map), at most 5.
fn categories(attrs: &Value) -> Option<Value> {
    let map = attrs.get("categories")?.as_object()?;
    let mut out: Vec<String> = Vec::new();
    for label in map.values().filter_map(Value::as_str) {
        let l = label.trim().to_lowercase();
        if !l.is_empty() && !out.contains(&l) {
            out.push(l);
        }
        if out.len() == 5 {
            break;
        }
    }
    Some(Value::Array(out.into_iter().map(Value::String).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn url_id_is_unpadded_urlsafe_base64() {
        assert_eq!(url_id("http://www.example.com/"), "aHR0cDovL3d3dy5leGFtcGxlLmNvbS8");
        assert!(!url_id("https://a.b/?x=1>").contains('='));
    }

    #[test]
    fn verdict_rules() {
        let mk = |m: u64, s: u64| {
            json!({"data": {"id": "x", "type": "file", "attributes": {
                "last_analysis_stats": {"malicious": m, "suspicious": s, "harmless": 0, "undetected": 10}
            }}})
        };
        let v = |m, s| interpret(IndicatorType::HashMd5, None, mk(m, s), 2).unwrap();
        assert_eq!(v(5, 0).malice, Malice::Malicious);
        assert_eq!(v(5, 0).malice_reason.as_deref(), Some("malicious=5 >= 2"));
        assert_eq!(v(1, 0).malice, Malice::Suspicious);
        assert_eq!(v(0, 1).malice, Malice::Suspicious);
        assert_eq!(v(0, 0).malice, Malice::Benign);
        let none = interpret(
            IndicatorType::Domain,
            None,
            json!({"data": {"id": "a.com", "attributes": {}}}),
            2,
        )
        .unwrap();
        assert_eq!(none.malice, Malice::Pending);
        assert_eq!(none.malice_reason.as_deref(), Some("not analysed"));
        assert_eq!(none.block["score"], json!("0/0"));
    }
}
