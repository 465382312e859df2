//! Source credentials (sources spec §8.2): shared secrets (header, Bearer, Basic password, URL
//! token) and HMAC signatures over the raw body. Comparisons hash both sides with SHA-256 and
//! compare digests in constant time (hiding length too), checking every configured secret
//! without stopping early.

use axum::http::{header, HeaderMap};
use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::sources::SourceName;

/// Why a source credential was refused (`details.reason` of `INVALID_SIGNATURE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    MissingCredentials,
    SecretMismatch,
    BadSignature,
    StaleTimestamp,
    NotConfigured,
    /// A body-only signature where the source requires the timestamped form.
    MissingTimestamp,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::MissingCredentials => "missing_credentials",
            Refusal::SecretMismatch => "secret_mismatch",
            Refusal::BadSignature => "bad_signature",
            Refusal::StaleTimestamp => "stale_timestamp",
            Refusal::NotConfigured => "not_configured",
            Refusal::MissingTimestamp => "missing_timestamp",
        }
    }
}

/// Largest accepted clock skew for `X-Calseta-Timestamp`.
pub(crate) const MAX_SKEW_SECONDS: i64 = 300;

fn digest_eq(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    bool::from(da.ct_eq(&db))
}

/// The shared secret presented by the request, from the places §8.2 allows.
pub(crate) fn presented_secret(
    headers: &HeaderMap,
    query: Option<&str>,
    source: SourceName,
    url_token_allowed: bool,
) -> Option<SecretString> {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(v) = h("x-calseta-source-secret") {
        return Some(SecretString::from(v.to_owned()));
    }
    if source == SourceName::Splunk {
        if let Some(v) = h("x-splunk-webhook-secret") {
            return Some(SecretString::from(v.to_owned()));
        }
    }
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some((scheme, value)) = auth.split_once(' ') {
            let value = value.trim();
            if scheme.eq_ignore_ascii_case("bearer") && !value.starts_with(crate::keys::KEY_PREFIX) && !value.is_empty()
            {
                return Some(SecretString::from(value.to_owned()));
            }
            if scheme.eq_ignore_ascii_case("basic") {
                let decoded = STANDARD.decode(value).ok().and_then(|b| String::from_utf8(b).ok());
                if let Some((_, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                    if !password.is_empty() {
                        return Some(SecretString::from(password.to_owned()));
                    }
                }
            }
        }
    }
    if url_token_allowed {
        if let Some(q) = query {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                if k == "token" && !v.is_empty() {
                    return Some(SecretString::from(v.into_owned()));
                }
            }
        }
    }
    None
}

/// Checks a presented shared secret against every configured one (current and previous).
pub(crate) fn check_shared_secret(
    presented: Option<&SecretString>,
    configured: &[SecretString],
) -> Result<(), Refusal> {
    if configured.is_empty() {
        return Err(Refusal::NotConfigured);
    }
    let Some(p) = presented else {
        return Err(Refusal::MissingCredentials);
    };
    let mut ok = false;
    for c in configured {
        ok |= digest_eq(p.expose_secret().as_bytes(), c.expose_secret().as_bytes());
    }
    if ok {
        Ok(())
    } else {
        Err(Refusal::SecretMismatch)
    }
}

fn hmac_hex(secret: &SecretString, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes()).into_bytes()
}

/// Verifies `X-Calseta-Signature` over `timestamp.body` (with `X-Calseta-Timestamp`). The
/// body-only forms (no timestamp, or the legacy per-source headers) carry no freshness, so a
/// captured request could be replayed: they pass only when the source opts in (`body_only`).
pub(crate) fn check_hmac(
    headers: &HeaderMap,
    body: &[u8],
    source: SourceName,
    secret: Option<&SecretString>,
    now_unix: i64,
    body_only: bool,
) -> Result<(), Refusal> {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let legacy = match source {
        SourceName::Sentinel => h("x-sentinel-signature"),
        SourceName::Elastic => h("x-elastic-signature"),
        _ => None,
    };
    let (signature, timestamp) = match (h("x-calseta-signature"), legacy) {
        (Some(sig), _) => (sig, h("x-calseta-timestamp")),
        (None, Some(sig)) => (sig, None),
        (None, None) => return Err(Refusal::MissingCredentials),
    };
    let Some(secret) = secret else {
        return Err(Refusal::NotConfigured);
    };
    let presented = signature
        .strip_prefix("sha256=")
        .unwrap_or(signature)
        .to_ascii_lowercase();
    let expected = match timestamp {
        Some(ts) => {
            let t: i64 = ts.parse().map_err(|_| Refusal::StaleTimestamp)?;
            if (now_unix - t).abs() > MAX_SKEW_SECONDS {
                return Err(Refusal::StaleTimestamp);
            }
            hmac_hex(secret, &[ts.as_bytes(), b".", body])
        }
        None if body_only => hmac_hex(secret, &[body]),
        None => return Err(Refusal::MissingTimestamp),
    };
    if digest_eq(presented.as_bytes(), &expected) {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

/// Signs a body the way senders must (used by tests, the CLI and docs examples).
pub fn sign(secret: &SecretString, timestamp: Option<i64>, body: &[u8]) -> String {
    let hex = match timestamp {
        Some(ts) => hmac_hex(secret, &[ts.to_string().as_bytes(), b".", body]),
        None => hmac_hex(secret, &[body]),
    };
    format!("sha256={}", String::from_utf8_lossy(&hex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_owned())
    }

    #[test]
    fn shared_secret_places_and_rotation() {
        let mut h = HeaderMap::new();
        assert!(presented_secret(&h, Some("token=abc"), SourceName::Splunk, false).is_none());
        let t = presented_secret(&h, Some("a=1&token=abc"), SourceName::Splunk, true).expect("token");
        assert_eq!(t.expose_secret(), "abc");
        h.insert("authorization", HeaderValue::from_static("Basic dXNlcjpwYXNz")); // user:pass
        assert_eq!(
            presented_secret(&h, None, SourceName::Elastic, false)
                .expect("basic")
                .expose_secret(),
            "pass"
        );
        h.insert("authorization", HeaderValue::from_static("Bearer cai_notasecret"));
        assert!(presented_secret(&h, None, SourceName::Elastic, false).is_none());
        h.insert("x-splunk-webhook-secret", HeaderValue::from_static("legacy"));
        assert!(presented_secret(&h, None, SourceName::Elastic, false).is_none());
        assert_eq!(
            presented_secret(&h, None, SourceName::Splunk, false)
                .expect("legacy")
                .expose_secret(),
            "legacy"
        );

        let configured = [s("new-secret"), s("old-secret")];
        assert_eq!(check_shared_secret(Some(&s("old-secret")), &configured), Ok(()));
        assert_eq!(check_shared_secret(Some(&s("new-secret")), &configured), Ok(()));
        assert_eq!(
            check_shared_secret(Some(&s("nope")), &configured),
            Err(Refusal::SecretMismatch)
        );
        assert_eq!(check_shared_secret(None, &configured), Err(Refusal::MissingCredentials));
        assert_eq!(check_shared_secret(Some(&s("x")), &[]), Err(Refusal::NotConfigured));
    }

    #[test]
    fn hmac_with_and_without_timestamp() {
        let secret = s("k3y");
        let body = br#"{"title":"x"}"#;
        let mut h = HeaderMap::new();
        assert_eq!(
            check_hmac(&h, body, SourceName::Generic, Some(&secret), 1000, true),
            Err(Refusal::MissingCredentials)
        );
        h.insert(
            "x-calseta-signature",
            HeaderValue::from_str(&sign(&secret, None, body)).expect("hv"),
        );
        assert_eq!(
            check_hmac(&h, body, SourceName::Generic, Some(&secret), 1000, true),
            Ok(())
        );
        assert_eq!(
            check_hmac(&h, b"{}", SourceName::Generic, Some(&secret), 1000, true),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check_hmac(&h, body, SourceName::Generic, None, 1000, true),
            Err(Refusal::NotConfigured)
        );
        h.insert(
            "x-calseta-signature",
            HeaderValue::from_str(&sign(&secret, Some(1000), body)).expect("hv"),
        );
        h.insert("x-calseta-timestamp", HeaderValue::from_static("1000"));
        assert_eq!(
            check_hmac(&h, body, SourceName::Generic, Some(&secret), 1200, true),
            Ok(())
        );
        assert_eq!(
            check_hmac(&h, body, SourceName::Generic, Some(&secret), 1400, true),
            Err(Refusal::StaleTimestamp)
        );
        // Without the source's opt-in, a body-only signature is refused even when it is right.
        h.remove("x-calseta-timestamp");
        h.insert(
            "x-calseta-signature",
            HeaderValue::from_str(&sign(&secret, None, body)).expect("hv"),
        );
        assert_eq!(
            check_hmac(&h, body, SourceName::Generic, Some(&secret), 1000, false),
            Err(Refusal::MissingTimestamp)
        );
        // Legacy header: hex without prefix, no timestamp, only for its own source.
        let mut legacy = HeaderMap::new();
        let hex = sign(&secret, None, body).trim_start_matches("sha256=").to_owned();
        legacy.insert("x-elastic-signature", HeaderValue::from_str(&hex).expect("hv"));
        assert_eq!(
            check_hmac(&legacy, body, SourceName::Elastic, Some(&secret), 0, true),
            Ok(())
        );
        assert_eq!(
            check_hmac(&legacy, body, SourceName::Elastic, Some(&secret), 0, false),
            Err(Refusal::MissingTimestamp)
        );
        assert_eq!(
            check_hmac(&legacy, body, SourceName::Sentinel, Some(&secret), 0, true),
            Err(Refusal::MissingCredentials)
        );
    }
}
