use std::time::Duration;

use calseta::domain::indicator::IndicatorType;
use calseta::domain::malice::Malice;
use calseta::enrich::provider::{Provider, ProviderError};
use calseta::enrich::providers::{AbuseIpDb, AbuseIpDbConfig};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

use crate::common::{client, epoch_in, error_matrix, ErrorBodies};

const KEY: &str = "abuse-test-key";

fn provider(server: &MockServer, timeout: Duration) -> AbuseIpDb {
    let mut c = AbuseIpDbConfig::new(SecretString::from(KEY))
        .with_base_url(Url::parse(&format!("{}/api/v2", server.uri())).unwrap());
    c.timeout = timeout;
    AbuseIpDb::with_client(c, client())
}

fn check(ip: &str) -> MockBuilder {
    Mock::given(method("GET"))
        .and(path("/api/v2/check"))
        .and(query_param("ipAddress", ip))
        .and(query_param("maxAgeInDays", "90"))
        .and(query_param("verbose", ""))
        .and(header("key", KEY))
        .and(header("accept", "application/json"))
}

fn errors(detail: &str, status: u16) -> Value {
    json!({"errors": [{"detail": detail, "status": status}]})
}

fn report(categories: &[u64]) -> Value {
    json!({"reportedAt": "2025-01-15T03:12:44+00:00", "comment": "ssh brute force <script>alert(1)</script>", "categories": categories, "reporterId": 1, "reporterCountryCode": "US", "reporterCountryName": "United States of America"})
}

fn tor_body() -> Value {
    json!({"data": {
        "ipAddress": "185.220.101.47", "isPublic": true, "ipVersion": 4, "isWhitelisted": false,
        "abuseConfidenceScore": 97, "countryCode": "DE", "countryName": "Germany",
        "usageType": "Data Center/Web Hosting/Transit", "isp": "Stiftung Erneuerbare Freiheit",
        "domain": "artikel10.org", "hostnames": ["tor-exit-47.for-privacy.net"], "isTor": true,
        "totalReports": 2841, "numDistinctUsers": 412, "lastReportedAt": "2025-01-15T03:12:44+00:00",
        "reports": [report(&[15, 13]), report(&[15]), report(&[13, 15, 99]), report(&[15])]
    }})
}

#[tokio::test]
async fn found_gives_full_block_and_malicious() {
    let server = MockServer::start().await;
    check("185.220.101.47")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(tor_body())
                .insert_header("x-ratelimit-limit", "1000")
                .insert_header("x-ratelimit-remaining", "998")
                .insert_header("x-ratelimit-reset", epoch_in(3600).as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, Duration::from_secs(5));
    let r = p.lookup(IndicatorType::Ip, "185.220.101.47").await.unwrap();
    assert!(r.found);
    assert_eq!(r.malice, Malice::Malicious);
    assert_eq!(r.malice_reason.as_deref(), Some("score=97 >= 75"));
    assert_eq!(
        Value::Object(r.block),
        json!({
            "score": 97,
            "categories": ["hacking", "vpn", "category_99"],
            "total_reports": 2841, "distinct_reporters": 412,
            "is_tor": true, "is_whitelisted": false,
            "usage_type": "Data Center/Web Hosting/Transit",
            "isp": "Stiftung Erneuerbare Freiheit", "domain": "artikel10.org",
            "country_code": "DE", "country_name": "Germany",
            "last_reported_at": "2025-01-15T03:12:44.000Z"
        })
    );
    // Reports (with reporters' free text) stay out of raw.
    assert!(r.raw["data"].get("reports").is_none());
    assert!(!r.raw.to_string().contains("<script>"));
    let rl = p.rate_limit_state().unwrap();
    assert_eq!((rl.limit, rl.remaining), (Some(1000), Some(998)));
    assert!(rl.pause_until.is_none());
}

#[tokio::test]
async fn suspicious_benign_whitelisted_and_unreported() {
    let server = MockServer::start().await;
    let body = |ip: &str, score: u64, white: Value, total: u64| {
        json!({"data": {"ipAddress": ip, "isPublic": true, "ipVersion": 4, "isWhitelisted": white,
            "abuseConfidenceScore": score, "countryCode": "US", "countryName": "United States of America",
            "usageType": null, "isp": "Example ISP", "domain": null, "hostnames": [], "isTor": false,
            "totalReports": total, "numDistinctUsers": total, "lastReportedAt": null, "reports": []}})
    };
    for (ip, score, white, total) in [
        ("45.155.205.233", 40, json!(false), 20),
        ("8.8.8.8", 0, json!(true), 52),
        ("67.180.201.3", 4, json!(null), 1),
        ("1.2.3.4", 0, json!(false), 0),
    ] {
        check(ip)
            .respond_with(ResponseTemplate::new(200).set_body_json(body(ip, score, white, total)))
            .mount(&server)
            .await;
    }
    let p = provider(&server, Duration::from_secs(5));
    let r = p.lookup(IndicatorType::Ip, "45.155.205.233").await.unwrap();
    assert_eq!(
        (r.malice, r.malice_reason.as_deref()),
        (Malice::Suspicious, Some("score=40 >= 25"))
    );
    let r = p.lookup(IndicatorType::Ip, "8.8.8.8").await.unwrap();
    assert_eq!(
        (r.malice, r.malice_reason.as_deref()),
        (Malice::Benign, Some("whitelisted"))
    );
    let r = p.lookup(IndicatorType::Ip, "67.180.201.3").await.unwrap();
    assert_eq!(
        (r.malice, r.malice_reason.as_deref()),
        (Malice::Benign, Some("score=4 < 25"))
    );
    // isWhitelisted null is omitted, never written as null.
    assert!(r.block.get("is_whitelisted").is_none());
    assert!(r.block.get("domain").is_none());
    assert_eq!(r.block["categories"], json!([]));
    // AbuseIPDB has no not-found: an unreported IP is found, with no verdict.
    let r = p.lookup(IndicatorType::Ip, "1.2.3.4").await.unwrap();
    assert!(r.found);
    assert_eq!(
        (r.malice, r.malice_reason.as_deref()),
        (Malice::Pending, Some("no reports"))
    );
    assert!(r.block.get("last_reported_at").is_none());
}

#[tokio::test]
async fn invalid_address_is_skipped_and_exhausted_remaining_pauses() {
    let server = MockServer::start().await;
    check("10.0.0.1")
        .respond_with(
            ResponseTemplate::new(422)
                .set_body_json(json!({"errors": [{"detail": "The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888).", "source": {"parameter": "ipAddress"}, "status": 422}]}))
                .insert_header("x-ratelimit-limit", "1000")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", epoch_in(600).as_str()),
        )
        .mount(&server)
        .await;
    let p = provider(&server, Duration::from_secs(5));
    let err = p.lookup(IndicatorType::Ip, "10.0.0.1").await.unwrap_err();
    assert_eq!(
        err,
        ProviderError::Skipped {
            reason: "invalid_value"
        }
    );
    assert_eq!(err.status(), "skipped");
    let rl = p.rate_limit_state().unwrap();
    assert_eq!(rl.remaining, Some(0));
    assert_eq!(rl.pause_until, rl.reset_at);
    assert!(rl.pause_until.is_some());
    // Only ip is supported.
    let err = p.lookup(IndicatorType::Domain, "a.com").await.unwrap_err();
    assert_eq!(err.code(), "unsupported_type");
}

#[tokio::test]
async fn daily_limit_far_away_is_quota_exhausted() {
    let server = MockServer::start().await;
    check("8.8.4.4")
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(errors(
                    "Daily rate limit of 1000 requests exceeded for this endpoint. See headers for additional details.",
                    429,
                ))
                .insert_header("retry-after", "29000")
                .insert_header("x-ratelimit-remaining", "0"),
        )
        .mount(&server)
        .await;
    let err = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Ip, "8.8.4.4")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::QuotaExhausted {
            retry_after: Some(Duration::from_secs(29000))
        }
    );
}

#[tokio::test]
async fn error_matrix_abuseipdb() {
    error_matrix(
        provider,
        |t| check("185.220.101.47").respond_with(t),
        Vec::new,
        IndicatorType::Ip,
        "185.220.101.47",
        ErrorBodies {
            too_many: errors("Daily rate limit of 1000 requests exceeded for this endpoint. See headers for additional details.", 429),
            unauthorized: errors("Authentication failed. Your API key is either missing, incorrect, or revoked. Note: The APIv2 key differs from the APIv1 key.", 401),
            server_error: errors("Internal server error", 500),
            ok: tor_body(),
            reset_header: "x-ratelimit-reset",
        },
    )
    .await;
}
