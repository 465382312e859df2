use std::time::Duration;

use calseta::domain::indicator::IndicatorType;
use calseta::domain::malice::Malice;
use calseta::enrich::provider::{Provider, ProviderError};
use calseta::enrich::providers::{GreyNoise, GreyNoiseConfig};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, Request, ResponseTemplate};

use crate::common::{client, error_matrix, ErrorBodies};

const KEY: &str = "gn-test-key";

fn provider_with_key(server: &MockServer, timeout: Duration, key: Option<&str>) -> GreyNoise {
    let mut c = GreyNoiseConfig::new(key.map(|k| SecretString::from(k.to_string())))
        .with_base_url(Url::parse(&format!("{}/v3", server.uri())).unwrap());
    c.timeout = timeout;
    GreyNoise::with_client(c, client())
}

fn provider(server: &MockServer, timeout: Duration) -> GreyNoise {
    provider_with_key(server, timeout, Some(KEY))
}

fn community(ip: &str) -> MockBuilder {
    Mock::given(method("GET"))
        .and(path(format!("/v3/community/{ip}")))
        .and(header("accept", "application/json"))
}

fn tor_body() -> Value {
    json!({
        "ip": "185.220.101.47", "noise": true, "riot": false, "classification": "malicious",
        "name": "TOR Exit Node", "link": "https://viz.greynoise.io/ip/185.220.101.47",
        "last_seen": "2025-01-14", "message": "Success"
    })
}

#[tokio::test]
async fn found_gives_full_block_and_malicious() {
    let server = MockServer::start().await;
    community("185.220.101.47")
        .and(header("key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(tor_body()))
        .expect(1)
        .mount(&server)
        .await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Ip, "185.220.101.47")
        .await
        .unwrap();
    assert!(r.found);
    assert_eq!(r.malice, Malice::Malicious);
    assert_eq!(r.malice_reason.as_deref(), Some("classification=malicious"));
    assert_eq!(
        Value::Object(r.block),
        json!({
            "classification": "malicious", "name": "TOR Exit Node", "noise": true, "riot": false,
            "last_seen": "2025-01-14", "link": "https://viz.greynoise.io/ip/185.220.101.47"
        })
    );
}

#[tokio::test]
async fn riot_is_benign_and_no_key_header_without_a_key() {
    let server = MockServer::start().await;
    community("8.8.8.8")
        .and(|req: &Request| !req.headers.contains_key("key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ip": "8.8.8.8", "noise": false, "riot": true, "classification": "benign",
            "name": "Google Public DNS", "link": "https://viz.greynoise.io/ip/8.8.8.8",
            "last_seen": "2025-01-14", "message": "Success"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let r = provider_with_key(&server, Duration::from_secs(5), None)
        .lookup(IndicatorType::Ip, "8.8.8.8")
        .await
        .unwrap();
    assert_eq!(r.malice, Malice::Benign);
    assert_eq!(r.malice_reason.as_deref(), Some("riot=true"));
}

#[tokio::test]
async fn noise_only_is_suspicious() {
    let server = MockServer::start().await;
    community("45.155.205.233")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ip": "45.155.205.233", "noise": true, "riot": false, "classification": "unknown",
            "name": "unknown", "link": "https://viz.greynoise.io/ip/45.155.205.233",
            "last_seen": "2025-01-15", "message": "Success"
        })))
        .mount(&server)
        .await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Ip, "45.155.205.233")
        .await
        .unwrap();
    assert_eq!(r.malice, Malice::Suspicious);
    assert_eq!(r.malice_reason.as_deref(), Some("noise=true"));
}

#[tokio::test]
async fn not_seen_is_not_found_with_returned_flags() {
    let server = MockServer::start().await;
    community("67.180.201.3")
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "ip": "67.180.201.3", "noise": false, "riot": false,
            "message": "IP not observed scanning the internet or contained in RIOT data set."
        })))
        .mount(&server)
        .await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Ip, "67.180.201.3")
        .await
        .unwrap();
    assert!(!r.found);
    assert_eq!(r.malice, Malice::Pending);
    assert_eq!(Value::Object(r.block), json!({"noise": false, "riot": false}));
}

#[tokio::test]
async fn ipv6_is_skipped_without_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let p = provider(&server, Duration::from_secs(5));
    let err = p.lookup(IndicatorType::Ip, "2606:4700:4700::1111").await.unwrap_err();
    assert_eq!(
        err,
        ProviderError::Skipped {
            reason: "unsupported_type"
        }
    );
    assert_eq!(err.to_string(), "Enrichment skipped: unsupported_type");
}

#[tokio::test]
async fn bad_request_is_invalid_value_and_429_without_headers_waits_for_midnight() {
    let server = MockServer::start().await;
    community("1.1.1.1")
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"message": "Request is not a valid routable IPv4 address"})),
        )
        .mount(&server)
        .await;
    community("9.9.9.9")
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(json!({"message": "You have hit your daily rate limit of 50 requests per day."})),
        )
        .mount(&server)
        .await;
    let p = provider(&server, Duration::from_secs(5));
    assert_eq!(
        p.lookup(IndicatorType::Ip, "1.1.1.1").await.unwrap_err(),
        ProviderError::Skipped {
            reason: "invalid_value"
        }
    );
    let err = p.lookup(IndicatorType::Ip, "9.9.9.9").await.unwrap_err();
    assert_eq!(err.code(), "quota_exhausted");
    let wait = err.retry_after().unwrap();
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(86_400));
}

#[tokio::test]
async fn error_matrix_greynoise() {
    error_matrix(
        provider,
        |t| community("185.220.101.47").respond_with(t),
        Vec::new,
        IndicatorType::Ip,
        "185.220.101.47",
        ErrorBodies {
            too_many: json!({"message": "rate limit exceeded"}),
            unauthorized: json!({"message": "Authentication failed"}),
            server_error: json!({"message": "internal error"}),
            ok: tor_body(),
            reset_header: "x-ratelimit-reset",
        },
    )
    .await;
}
