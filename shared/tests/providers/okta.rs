use std::time::Duration;

use calseta::domain::indicator::IndicatorType;
use calseta::domain::malice::Malice;
use calseta::enrich::provider::{Provider, ProviderError};
use calseta::enrich::providers::{Okta, OktaAuthScheme, OktaConfig};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

use crate::common::{client, epoch_in, error_matrix, ErrorBodies};

const TOKEN: &str = "okta-test-token";
const NICK: &str = "00u1nick";
const EMILY: &str = "00u1emily";

fn provider(server: &MockServer, timeout: Duration) -> Okta {
    let mut c = OktaConfig::with_base_url(Url::parse(&server.uri()).unwrap(), SecretString::from(TOKEN));
    c.timeout = timeout;
    Okta::with_client(c, client())
}

fn get(p: &str) -> MockBuilder {
    Mock::given(method("GET"))
        .and(path(p.to_string()))
        .and(header("authorization", format!("SSWS {TOKEN}").as_str()))
        .and(header("accept", "application/json"))
}

fn okta_error(code: &str, summary: &str) -> Value {
    json!({"errorCode": code, "errorSummary": summary, "errorLink": code, "errorId": "oae123", "errorCauses": []})
}

fn user(id: &str, profile: Value, base: &str) -> Value {
    json!({
        "id": id, "status": "ACTIVE",
        "created": "2022-03-14T09:00:00.000Z", "activated": null,
        "lastLogin": "2025-01-14T22:31:05.000Z", "passwordChanged": "2024-10-01T11:23:44.000Z",
        "profile": profile,
        "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
        "_links": {"self": {"href": format!("{base}/api/v1/users/{id}")}}
    })
}

fn nick(base: &str) -> Value {
    user(
        NICK,
        json!({
            "firstName": "Nick", "lastName": "Hathaway", "displayName": "Nick Hathaway",
            "login": "nick.hathaway@calseta.com", "email": "nick.hathaway@calseta.com",
            "title": "Senior Software Engineer", "department": "Engineering", "userType": "employee",
            "city": "San Francisco", "state": "CA", "countryCode": "US", "manager": "E. Rhodes (HR field)",
            "mobilePhone": null
        }),
        base,
    )
}

async fn mount_details(server: &MockServer, manager_href: &str) {
    get(&format!("/api/v1/users/{NICK}/factors"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": "opf1", "factorType": "push", "provider": "OKTA", "vendorName": "OKTA", "status": "ACTIVE"},
            {"id": "uft1", "factorType": "token:software:totp", "provider": "GOOGLE", "vendorName": "GOOGLE", "status": "ACTIVE"},
            {"id": "fn1", "factorType": "signed_nonce", "provider": "OKTA", "vendorName": "OKTA", "status": "ACTIVE"}
        ])))
        .expect(1)
        .mount(server)
        .await;
    get(&format!("/api/v1/users/{NICK}/groups"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": "00g1", "type": "OKTA_GROUP", "profile": {"name": "Engineering", "description": "x"}},
            {"id": "00g2", "type": "OKTA_GROUP", "profile": {"name": "VPN-Users", "description": null}},
            {"id": "00g3", "type": "APP_GROUP", "profile": {"name": "github-org-members"}}
        ])))
        .expect(1)
        .mount(server)
        .await;
    get(&format!("/api/v1/users/{NICK}/linkedObjects/manager"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"_links": {"self": {"href": manager_href}}}
        ])))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn found_with_factors_groups_and_linked_manager() {
    let server = MockServer::start().await;
    let base = server.uri();
    get("/api/v1/users/nick.hathaway@calseta.com")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(nick(&base))
                .insert_header("x-rate-limit-limit", "600")
                .insert_header("x-rate-limit-remaining", "20")
                .insert_header("x-rate-limit-reset", epoch_in(40).as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;
    mount_details(&server, &format!("{base}/api/v1/users/{EMILY}")).await;
    get(&format!("/api/v1/users/{EMILY}"))
        .respond_with(ResponseTemplate::new(200).set_body_json(user(
            EMILY,
            json!({"firstName": "Emily", "lastName": "Rhodes", "login": "emily.rhodes@calseta.com", "email": "emily.rhodes@calseta.com"}),
            &base,
        )))
        .expect(1)
        .mount(&server)
        .await;

    let p = provider(&server, Duration::from_secs(5));
    let r = p
        .lookup(IndicatorType::Account, "nick.hathaway@calseta.com")
        .await
        .unwrap();
    assert!(r.found);
    assert_eq!(r.malice, Malice::Pending);
    assert_eq!(r.malice_reason, None);
    assert_eq!(
        Value::Object(r.block),
        json!({
            "user_id": NICK,
            "login": "nick.hathaway@calseta.com",
            "email": "nick.hathaway@calseta.com",
            "status": "ACTIVE",
            "profile": {
                "full_name": "Nick Hathaway",
                "title": "Senior Software Engineer",
                "department": "Engineering",
                "employee_type": "employee",
                "location": "San Francisco, CA, US",
                "manager": "Emily Rhodes",
                "manager_email": "emily.rhodes@calseta.com"
            },
            "account_created": "2022-03-14T09:00:00.000Z",
            "last_login": "2025-01-14T22:31:05.000Z",
            "last_password_change": "2024-10-01T11:23:44.000Z",
            "mfa_factors": [
                {"type": "push", "provider": "OKTA", "status": "ACTIVE"},
                {"type": "totp", "provider": "GOOGLE", "status": "ACTIVE"},
                {"type": "fastpass", "provider": "OKTA", "status": "ACTIVE"}
            ],
            "group_membership": ["Engineering", "VPN-Users", "github-org-members"]
        })
    );
    // 20 of 600 left is below 5 %: the engine is told to pause until the reset.
    let rl = p.rate_limit_state().unwrap();
    assert!(rl.pause_until.is_some());
}

#[tokio::test]
async fn domain_prefix_is_stripped_and_foreign_manager_link_not_followed() {
    let server = MockServer::start().await;
    let base = server.uri();
    let mut body = nick(&base);
    body["profile"]["displayName"] = Value::Null;
    body["profile"]["manager"] = json!("Emily Rhodes");
    body["profile"]["state"] = json!("  ");
    get("/api/v1/users/nick.hathaway")
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    // Factors fail (optional step → omitted), groups empty, manager link off-domain.
    get(&format!("/api/v1/users/{NICK}/factors"))
        .respond_with(ResponseTemplate::new(403).set_body_json(okta_error(
            "E0000006",
            "You do not have permission to perform the requested action",
        )))
        .mount(&server)
        .await;
    get(&format!("/api/v1/users/{NICK}/groups"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    get(&format!("/api/v1/users/{NICK}/linkedObjects/manager"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"_links": {"self": {"href": "https://attacker.example.net/api/v1/users/x"}}}
        ])))
        .mount(&server)
        .await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Account, "calseta\\nick.hathaway")
        .await
        .unwrap();
    assert!(r.found);
    let b = Value::Object(r.block);
    assert_eq!(b["profile"]["full_name"], json!("Nick Hathaway"));
    assert_eq!(b["profile"]["location"], json!("San Francisco, US"));
    assert_eq!(b["profile"]["manager"], json!("Emily Rhodes"));
    assert!(b["profile"].get("manager_email").is_none());
    assert!(b.get("mfa_factors").is_none());
    assert_eq!(b["group_membership"], json!([]));
}

#[tokio::test]
async fn bearer_scheme_and_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/ghost@calseta.com"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(404).set_body_json(okta_error(
            "E0000007",
            "Not found: Resource not found: ghost@calseta.com (User)",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = OktaConfig::with_base_url(Url::parse(&server.uri()).unwrap(), SecretString::from(TOKEN));
    c.auth_scheme = OktaAuthScheme::Bearer;
    let r = Okta::with_client(c, client())
        .lookup(IndicatorType::Account, "ghost@calseta.com")
        .await
        .unwrap();
    assert!(!r.found);
    assert_eq!(r.malice, Malice::Pending);
    assert!(r.block.is_empty());
}

#[tokio::test]
async fn guid_and_other_types_are_skipped() {
    let server = MockServer::start().await;
    let p = provider(&server, Duration::from_secs(5));
    assert_eq!(
        p.lookup(IndicatorType::Account, "3f2b8c1e-7a4d-4e9b-9c2f-1d6e8a5b7c40")
            .await
            .unwrap_err(),
        ProviderError::Skipped {
            reason: "unsupported_type"
        }
    );
    assert_eq!(
        p.lookup(IndicatorType::Ip, "8.8.8.8").await.unwrap_err().code(),
        "unsupported_type"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn special_characters_are_one_path_segment() {
    let server = MockServer::start().await;
    get("/api/v1/users/a%2Fb%3Fc@x.com")
        .respond_with(ResponseTemplate::new(404).set_body_json(okta_error("E0000007", "Not found")))
        .expect(1)
        .mount(&server)
        .await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Account, "a/b?c@x.com")
        .await
        .unwrap();
    assert!(!r.found);
}

#[test]
fn config_from_domain_and_redacted_debug() {
    let c = OktaConfig::new("calseta.okta.com", SecretString::from("tok-123")).unwrap();
    assert_eq!(c.base_url.as_str(), "https://calseta.okta.com/");
    assert!(!format!("{c:?}").contains("tok-123"));
}

#[tokio::test]
async fn error_matrix_okta() {
    error_matrix(
        provider,
        |t| get("/api/v1/users/nick.hathaway@calseta.com").respond_with(t),
        Vec::new,
        IndicatorType::Account,
        "nick.hathaway@calseta.com",
        ErrorBodies {
            too_many: okta_error("E0000047", "API call exceeded rate limit due to too many requests."),
            unauthorized: okta_error("E0000011", "Invalid token provided"),
            server_error: okta_error("E0000009", "Internal Server Error"),
            ok: nick("http://127.0.0.1"),
            reset_header: "x-rate-limit-reset",
        },
    )
    .await;
}
