//! The built-in providers and the small HTTP/JSON helpers they share.

pub mod abuseipdb;
pub mod entra;
pub mod greynoise;
pub mod okta;
pub mod virustotal;

pub use abuseipdb::{AbuseIpDb, AbuseIpDbConfig};
pub use entra::{Entra, EntraConfig};
pub use greynoise::{GreyNoise, GreyNoiseConfig};
pub use okta::{Okta, OktaAuthScheme, OktaConfig};
pub use virustotal::{VirusTotal, VirusTotalConfig};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};
use url::Url;

use super::provider::ProviderError;

/// Largest response body we read (anything bigger is not a lookup answer).
pub(crate) const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// One HTTP answer, fully read.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as JSON, or `InvalidResponse`.
    pub fn json(&self) -> Result<Value, ProviderError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ProviderError::InvalidResponse(format!("HTTP {}: body is not JSON: {e}", self.status)))
    }

    /// The body as JSON, or `Null` when it is not JSON (for error bodies).
    pub fn json_lenient(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends a request and reads the whole body, mapping transport failures.
pub(crate) async fn execute(req: reqwest::RequestBuilder) -> Result<HttpResponse, ProviderError> {
    let mut resp = req.send().await.map_err(map_transport_error)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(map_transport_error)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ProviderError::InvalidResponse(format!(
                "HTTP {status}: body larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse { status, headers, body })
}

pub(crate) fn map_transport_error(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        return ProviderError::Timeout;
    }
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    // The URL is left out: it carries the indicator value, which belongs in the result, not in
    // the error text.
    ProviderError::upstream(e.status().map(|s| s.as_u16()), format!("{kind}: {}", e.without_url()))
}

/// A 5xx answer as `Upstream` (retryable), with the provider's message when it gave one.
pub(crate) fn upstream_from(resp: &HttpResponse, message: Option<String>) -> ProviderError {
    ProviderError::upstream(
        Some(resp.status),
        message.unwrap_or_else(|| format!("HTTP {}", resp.status)),
    )
}

/// An answer whose status we do not expect (a 3xx, an undocumented 4xx): not retried.
pub(crate) fn unexpected(resp: &HttpResponse, message: Option<String>) -> ProviderError {
    ProviderError::InvalidResponse(match message {
        Some(m) => format!("unexpected HTTP {}: {m}", resp.status),
        None => format!("unexpected HTTP {}", resp.status),
    })
}

/// `base` with `segments` appended as percent-encoded path segments.
pub(crate) fn join_segments(base: &Url, segments: &[&str]) -> Result<Url, ProviderError> {
    let mut url = base.clone();
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|_| ProviderError::InvalidResponse("base URL cannot hold a path".into()))?;
        path.pop_if_empty();
        for s in segments {
            path.push(s);
        }
    }
    Ok(url)
}

/// Parses one of our built-in base URL constants.
#[allow(
    clippy::expect_used,
    reason = "only our own constant URLs, covered by the provider tests"
)]
pub(crate) fn const_url(s: &'static str) -> Url {
    Url::parse(s).expect("built-in base URL constants are valid")
}

/// `true` when `a` and `b` share scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Inserts `value` unless it is `null` (blocks never hold nulls).
pub(crate) fn put(block: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        if !v.is_null() {
            block.insert(key.to_string(), v);
        }
    }
}

/// Inserts a non-blank string.
pub(crate) fn put_str(block: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(s) = value.map(str::trim).filter(|s| !s.is_empty()) {
        block.insert(key.to_string(), Value::String(s.to_string()));
    }
}

/// `v[key]` as a non-blank string.
pub(crate) fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Epoch seconds → ISO 8601 UTC (`2025-01-15T03:42:18.000Z`).
pub(crate) fn epoch_to_iso(v: &Value) -> Option<Value> {
    let secs = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    DateTime::from_timestamp(secs, 0).map(|d| Value::String(iso(d)))
}

/// An RFC 3339 timestamp normalized to ISO 8601 UTC; unparsable strings pass through.
pub(crate) fn normalize_timestamp(v: Option<&Value>) -> Option<Value> {
    let s = v?.as_str()?.trim();
    if s.is_empty() {
        return None;
    }
    Some(Value::String(match DateTime::parse_from_rfc3339(s) {
        Ok(d) => iso(d.with_timezone(&Utc)),
        Err(_) => s.to_string(),
    }))
}

pub(crate) fn iso(d: DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Joins the non-blank parts with `", "`; `None` when all are blank.
pub(crate) fn join_nonblank(parts: &[Option<&str>]) -> Option<String> {
    let kept: Vec<&str> = parts
        .iter()
        .filter_map(|p| p.map(str::trim).filter(|s| !s.is_empty()))
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join(", "))
    }
}

/// `true` for a GUID (`8-4-4-4-12` hex digits), e.g. an Entra object id.
pub(crate) fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    parts.len() == 5
        && parts
            .iter()
            .zip(lens)
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn segments_are_encoded() {
        let base = Url::parse("https://graph.example/v1.0/").unwrap();
        let u = join_segments(&base, &["users", "a#EXT#@b.com"]).unwrap();
        assert_eq!(u.as_str(), "https://graph.example/v1.0/users/a%23EXT%23@b.com");
        let u = join_segments(&base, &["users", "a/b?c"]).unwrap();
        assert_eq!(u.as_str(), "https://graph.example/v1.0/users/a%2Fb%3Fc");
    }

    #[test]
    fn epoch_and_timestamps() {
        assert_eq!(
            epoch_to_iso(&json!(1736912538)),
            Some(json!("2025-01-15T03:42:18.000Z"))
        );
        assert_eq!(
            normalize_timestamp(Some(&json!("2021-05-12T10:35:50Z"))),
            Some(json!("2021-05-12T10:35:50.000Z"))
        );
        assert_eq!(
            normalize_timestamp(Some(&json!("2021-05-12T12:35:50.5+02:00"))),
            Some(json!("2021-05-12T10:35:50.500Z"))
        );
        assert_eq!(normalize_timestamp(Some(&json!(null))), None);
    }

    #[test]
    fn guid() {
        assert!(is_guid("8c7a3b2e-1f4d-4c6b-9a8e-2d5f7c1b3a90"));
        assert!(!is_guid("nick.hathaway"));
    }
}
