use std::time::Duration;

use calseta::domain::indicator::IndicatorType;
use calseta::domain::malice::Malice;
use calseta::enrich::provider::{Provider, ProviderError};
use calseta::enrich::providers::virustotal::url_id;
use calseta::enrich::providers::{VirusTotal, VirusTotalConfig};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

use crate::common::{client, error_matrix, ErrorBodies};

const KEY: &str = "vt-test-key";

fn config(server: &MockServer, timeout: Duration) -> VirusTotalConfig {
    let mut c = VirusTotalConfig::new(SecretString::from(KEY))
        .with_base_url(Url::parse(&format!("{}/api/v3", server.uri())).unwrap());
    c.timeout = timeout;
    c
}

fn provider(server: &MockServer, timeout: Duration) -> VirusTotal {
    VirusTotal::with_client(config(server, timeout), client())
}

fn get(p: &str) -> MockBuilder {
    Mock::given(method("GET"))
        .and(path(p.to_string()))
        .and(header("x-apikey", KEY))
        .and(header("accept", "application/json"))
}

fn vt_error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

fn ip_body() -> Value {
    json!({"data": {
        "id": "185.220.101.47", "type": "ip_address",
        "links": {"self": "https://www.virustotal.com/api/v3/ip_addresses/185.220.101.47"},
        "attributes": {
            "last_analysis_stats": {"malicious": 14, "suspicious": 2, "harmless": 54, "undetected": 24, "timeout": 3},
            "last_analysis_results": {"Kaspersky": {"category": "malicious", "result": "malware", "method": "blacklist", "engine_name": "Kaspersky"}},
            "last_analysis_date": 1736905200,
            "reputation": -52,
            "tags": ["tor"],
            "country": "DE", "continent": "EU",
            "as_owner": "Stiftung Erneuerbare Freiheit", "asn": 60729,
            "network": "185.220.101.0/24",
            "whois": "inetnum: 185.220.101.0 - 185.220.101.255"
        }
    }})
}

#[tokio::test]
async fn ip_found_gives_full_block_and_malicious() {
    let server = MockServer::start().await;
    get("/api/v3/ip_addresses/185.220.101.47")
        .respond_with(ResponseTemplate::new(200).set_body_json(ip_body()))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, Duration::from_secs(5));
    let r = p.lookup(IndicatorType::Ip, "185.220.101.47").await.unwrap();
    assert!(r.found);
    assert_eq!(r.malice, Malice::Malicious);
    assert_eq!(r.malice_reason.as_deref(), Some("malicious=14 >= 2"));
    assert_eq!(
        Value::Object(r.block),
        json!({
            "malicious": 14, "suspicious": 2, "harmless": 54, "undetected": 24,
            "score": "14/94", "reputation": -52, "tags": ["tor"],
            "last_analysis_date": "2025-01-15T01:40:00.000Z",
            "link": "https://www.virustotal.com/gui/ip-address/185.220.101.47",
            "country": "DE", "as_owner": "Stiftung Erneuerbare Freiheit", "asn": 60729,
            "network": "185.220.101.0/24"
        })
    );
    // Per-engine results never reach `raw`.
    assert!(r.raw["data"]["attributes"].get("last_analysis_results").is_none());
    assert_eq!(
        r.raw["data"]["attributes"]["whois"],
        json!("inetnum: 185.220.101.0 - 185.220.101.255")
    );
}

#[tokio::test]
async fn ipv6_path_is_a_single_segment() {
    let server = MockServer::start().await;
    get("/api/v3/ip_addresses/2001:4860:4860::8888")
        .respond_with(ResponseTemplate::new(404).set_body_json(vt_error("NotFoundError", "not found")))
        .expect(1)
        .mount(&server)
        .await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Ip, "2001:4860:4860::8888")
        .await
        .unwrap();
    assert!(!r.found);
}

#[tokio::test]
async fn domain_found_with_categories_registrar_and_tag_cap() {
    let server = MockServer::start().await;
    let tags: Vec<String> = (1..=12).map(|i| format!("t{i}")).collect();
    get("/api/v3/domains/evil-login-portal.com")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "id": "evil-login-portal.com", "type": "domain",
            "attributes": {
                "last_analysis_stats": {"malicious": 1, "suspicious": 0, "harmless": 60, "undetected": 30},
                "last_analysis_date": 1736900000,
                "reputation": -3,
                "tags": tags,
                "registrar": "NameSilo, LLC",
                "creation_date": 1735344000,
                "categories": {
                    "A": "Phishing", "B": "phishing", "C": "Malicious Sites", "D": "newly registered",
                    "E": "Parked", "F": "web hosting", "G": "spam"
                }
            }
        }})))
        .mount(&server)
        .await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Domain, "evil-login-portal.com")
        .await
        .unwrap();
    assert_eq!(r.malice, Malice::Suspicious);
    assert_eq!(r.malice_reason.as_deref(), Some("malicious=1 >= 1"));
    let tags10: Vec<String> = (1..=10).map(|i| format!("t{i}")).collect();
    assert_eq!(
        Value::Object(r.block),
        json!({
            "malicious": 1, "suspicious": 0, "harmless": 60, "undetected": 30,
            "score": "1/91", "reputation": -3, "tags": tags10,
            "last_analysis_date": "2025-01-15T00:13:20.000Z",
            "link": "https://www.virustotal.com/gui/domain/evil-login-portal.com",
            "registrar": "NameSilo, LLC",
            "creation_date": "2024-12-28T00:00:00.000Z",
            "categories": ["phishing", "malicious sites", "newly registered", "parked", "web hosting"]
        })
    );
}

#[tokio::test]
async fn url_uses_unpadded_base64_id_and_link_from_response() {
    let server = MockServer::start().await;
    let u = "https://evil-login-portal.com/office365/login.php?a=1&b=2";
    let id = url_id(u);
    assert!(!id.contains('=') && !id.contains('+') && !id.contains('/'));
    get(&format!("/api/v3/urls/{id}"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "id": "b4fe267e3bba10d27205067689efb3ae7650e6a8d1ddb2c6d5edec72607d8c46", "type": "url",
            "attributes": {
                "url": u,
                "last_final_url": "https://evil-login-portal.com/office365/login.php?session=expired",
                "last_http_response_code": 200,
                "title": "Sign in to your account",
                "last_analysis_stats": {"malicious": 0, "suspicious": 2, "harmless": 50, "undetected": 20},
                "last_analysis_date": 1736903400,
                "reputation": 0,
                "tags": [],
                "categories": {"Sophos": "phishing"}
            }
        }})))
        .expect(1)
        .mount(&server)
        .await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Url, u)
        .await
        .unwrap();
    assert_eq!(r.malice, Malice::Suspicious);
    assert_eq!(r.malice_reason.as_deref(), Some("suspicious=2 >= 1"));
    assert_eq!(
        Value::Object(r.block),
        json!({
            "malicious": 0, "suspicious": 2, "harmless": 50, "undetected": 20,
            "score": "0/72", "reputation": 0, "tags": [],
            "last_analysis_date": "2025-01-15T01:10:00.000Z",
            "link": "https://www.virustotal.com/gui/url/b4fe267e3bba10d27205067689efb3ae7650e6a8d1ddb2c6d5edec72607d8c46",
            "categories": ["phishing"],
            "final_url": "https://evil-login-portal.com/office365/login.php?session=expired",
            "http_status": 200,
            "title": "Sign in to your account"
        })
    );
}

#[tokio::test]
async fn file_found_with_hash_fields_and_excluded_engines() {
    let server = MockServer::start().await;
    get("/api/v3/files/44d88612fea8a8f36de82e1278abb02f")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "id": "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", "type": "file",
            "attributes": {
                "meaningful_name": "eicar.com", "type_description": "Text", "size": 68,
                "first_submission_date": 1148301722, "times_submitted": 1265903,
                "last_analysis_stats": {"malicious": 65, "suspicious": 0, "harmless": 0, "undetected": 7, "type-unsupported": 4, "timeout": 1, "failure": 2},
                "last_analysis_date": 1736908800,
                "reputation": 3470,
                "tags": ["text"],
                "popular_threat_classification": {"suggested_threat_label": "virus.eicar/test"}
            }
        }})))
        .mount(&server)
        .await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::HashMd5, "44d88612fea8a8f36de82e1278abb02f")
        .await
        .unwrap();
    assert_eq!(r.malice, Malice::Malicious);
    assert_eq!(
        Value::Object(r.block),
        json!({
            "malicious": 65, "suspicious": 0, "harmless": 0, "undetected": 7,
            "score": "65/72", "reputation": 3470, "tags": ["text"],
            "last_analysis_date": "2025-01-15T02:40:00.000Z",
            "link": "https://www.virustotal.com/gui/file/44d88612fea8a8f36de82e1278abb02f",
            "meaningful_name": "eicar.com", "type_description": "Text", "size": 68,
            "first_submission_date": "2006-05-22T12:42:02.000Z", "times_submitted": 1265903,
            "threat_label": "virus.eicar/test"
        })
    );
}

#[tokio::test]
async fn clean_is_benign_and_unanalysed_is_pending() {
    let server = MockServer::start().await;
    get("/api/v3/domains/microsoft.com")
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": {"id": "microsoft.com", "type": "domain", "attributes": {
                "last_analysis_stats": {"malicious": 0, "suspicious": 0, "harmless": 67, "undetected": 27}
            }}}),
        ))
        .mount(&server)
        .await;
    get("/api/v3/domains/fresh-domain.com")
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": {"id": "fresh-domain.com", "type": "domain", "attributes": {"reputation": 0}}}),
        ))
        .mount(&server)
        .await;
    let p = provider(&server, Duration::from_secs(5));
    let r = p.lookup(IndicatorType::Domain, "microsoft.com").await.unwrap();
    assert_eq!(r.malice, Malice::Benign);
    assert_eq!(r.malice_reason.as_deref(), Some("malicious=0, suspicious=0 of 94"));
    let r = p.lookup(IndicatorType::Domain, "fresh-domain.com").await.unwrap();
    assert!(r.found);
    assert_eq!(r.malice, Malice::Pending);
    assert_eq!(r.malice_reason.as_deref(), Some("not analysed"));
}

#[tokio::test]
async fn not_found_is_pending_never_benign() {
    let server = MockServer::start().await;
    get("/api/v3/files/0123456789abcdef0123456789abcdef")
        .respond_with(ResponseTemplate::new(404).set_body_json(vt_error(
            "NotFoundError",
            "File \"0123456789abcdef0123456789abcdef\" not found",
        )))
        .mount(&server)
        .await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::HashMd5, "0123456789abcdef0123456789abcdef")
        .await
        .unwrap();
    assert!(!r.found);
    assert_eq!(r.malice, Malice::Pending);
    assert!(r.block.is_empty());
}

#[tokio::test]
async fn bad_request_and_forbidden() {
    let server = MockServer::start().await;
    get("/api/v3/domains/bad..name")
        .respond_with(ResponseTemplate::new(400).set_body_json(vt_error(
            "InvalidArgumentError",
            "Domain \"bad..name\" is not a valid domain pattern",
        )))
        .mount(&server)
        .await;
    get("/api/v3/domains/forbidden.com")
        .respond_with(ResponseTemplate::new(403).set_body_json(vt_error(
            "ForbiddenError",
            "You are not allowed to perform the requested operation",
        )))
        .mount(&server)
        .await;
    let p = provider(&server, Duration::from_secs(5));
    let err = p.lookup(IndicatorType::Domain, "bad..name").await.unwrap_err();
    assert_eq!(
        err,
        ProviderError::Skipped {
            reason: "invalid_value"
        }
    );
    let err = p.lookup(IndicatorType::Domain, "forbidden.com").await.unwrap_err();
    match err {
        ProviderError::AuthFailed(m) => assert!(m.starts_with("ForbiddenError"), "{m}"),
        other => panic!("{other:?}"),
    }
    let err = p.lookup(IndicatorType::Account, "jdoe").await.unwrap_err();
    assert_eq!(err.code(), "unsupported_type");
}

#[tokio::test]
async fn quota_exceeded_without_headers_then_daily_quota_after_a_streak() {
    let server = MockServer::start().await;
    get("/api/v3/ip_addresses/8.8.8.8")
        .respond_with(ResponseTemplate::new(429).set_body_json(vt_error("QuotaExceededError", "Quota exceeded")))
        .mount(&server)
        .await;
    let mut c = config(&server, Duration::from_secs(5));
    c.quota_streak_window = Duration::ZERO;
    let p = VirusTotal::with_client(c, client());
    // VirusTotal sends no rate-limit headers: the engine applies its 60 s default.
    let e1 = p.lookup(IndicatorType::Ip, "8.8.8.8").await.unwrap_err();
    assert_eq!(e1, ProviderError::RateLimited { retry_after: None });
    let e2 = p.lookup(IndicatorType::Ip, "8.8.8.8").await.unwrap_err();
    assert_eq!(e2.code(), "rate_limited");
    let e3 = p.lookup(IndicatorType::Ip, "8.8.8.8").await.unwrap_err();
    assert_eq!(e3.code(), "quota_exhausted");
    let wait = e3.retry_after().unwrap();
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(86_400));
}

#[tokio::test]
async fn error_matrix_virustotal() {
    error_matrix(
        provider,
        |t| get("/api/v3/ip_addresses/185.220.101.47").respond_with(t),
        Vec::new,
        IndicatorType::Ip,
        "185.220.101.47",
        ErrorBodies {
            too_many: vt_error("TooManyRequestsError", "Too many requests"),
            unauthorized: vt_error("WrongCredentialsError", "Wrong API key"),
            server_error: vt_error("TransientError", "Please retry"),
            ok: ip_body(),
            reset_header: "x-ratelimit-reset",
        },
    )
    .await;
}

#[test]
fn config_debug_redacts_the_key() {
    let c = VirusTotalConfig::new(SecretString::from("super-secret-key"));
    let s = format!("{c:?}");
    assert!(!s.contains("super-secret-key"));
    assert!(s.contains("REDACTED"));
}
