use std::sync::Arc;
use std::time::Duration;

use calseta::domain::indicator::IndicatorType;
use calseta::domain::malice::Malice;
use calseta::enrich::provider::{Provider, ProviderError};
use calseta::enrich::providers::entra::USER_SELECT;
use calseta::enrich::providers::{Entra, EntraConfig};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockBuilder, MockServer, Request, ResponseTemplate};

use crate::common::{client, error_matrix, ErrorBodies};

const TENANT: &str = "tenant-1";
const CLIENT_ID: &str = "client-1";
const SECRET: &str = "s3cret+value&=";
const NICK: &str = "3f2b8c1e-7a4d-4e9b-9c2f-1d6e8a5b7c40";
const UPN: &str = "nick.hathaway@calseta.com";

fn config(server: &MockServer, timeout: Duration) -> EntraConfig {
    let mut c = EntraConfig::new(TENANT, CLIENT_ID, SecretString::from(SECRET));
    c.base_url = Url::parse(&format!("{}/graph", server.uri())).unwrap();
    c.login_base_url = Url::parse(&format!("{}/login", server.uri())).unwrap();
    c.timeout = timeout;
    c
}

fn provider(server: &MockServer, timeout: Duration) -> Entra {
    Entra::with_client(config(server, timeout), client())
}

fn token_mock(token: &str, expires_in: u64) -> Mock {
    token_req().respond_with(token_ok(token, expires_in))
}

fn token_ok(token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": token
    }))
}

fn token_req() -> MockBuilder {
    Mock::given(method("POST"))
        .and(path(format!("/login/{TENANT}/oauth2/v2.0/token")))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains(format!("client_id={CLIENT_ID}").as_str()))
        .and(body_string_contains("client_secret=s3cret%2Bvalue%26%3D"))
        .and(body_string_contains(
            "scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
        ))
}

fn user_get(token: &str) -> MockBuilder {
    Mock::given(method("GET"))
        .and(path(format!("/graph/v1.0/users/{UPN}")))
        .and(query_param("$select", USER_SELECT))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .and(header("accept", "application/json"))
}

fn graph_error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "innerError": {"date": "2025-01-15T03:42:18", "request-id": "r", "client-request-id": "c"}}})
}

fn user_body() -> Value {
    json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id,displayName)/$entity",
        "id": NICK, "displayName": "Nick Hathaway", "userPrincipalName": UPN,
        "mail": "nick.hathaway@calseta.com", "accountEnabled": true, "department": "Engineering",
        "jobTitle": "Senior Software Engineer", "employeeType": "Employee", "officeLocation": null,
        "city": "San Francisco", "state": "CA", "country": "United States", "userType": "Member",
        "createdDateTime": "2022-03-14T09:00:00Z", "lastPasswordChangeDateTime": "2024-10-01T11:23:44Z",
        "onPremisesSyncEnabled": true
    })
}

/// Manager and memberOf (two pages) for NICK, with any token.
async fn mount_details(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path(format!("/graph/v1.0/users/{NICK}/manager")))
        .and(query_param("$select", "displayName,mail,userPrincipalName"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.type": "#microsoft.graph.user", "displayName": "Emily Rhodes", "mail": null,
            "userPrincipalName": "emily.rhodes@calseta.com"
        })))
        .mount(server)
        .await;
    let next = format!("{}/graph/v1.0/users/{NICK}/memberOf?$skiptoken=page2", server.uri());
    Mock::given(method("GET"))
        .and(path(format!("/graph/v1.0/users/{NICK}/memberOf")))
        .and(query_param("$select", "displayName"))
        .and(query_param("$top", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [
                {"@odata.type": "#microsoft.graph.group", "id": "g1", "displayName": "Engineering"},
                {"@odata.type": "#microsoft.graph.directoryRole", "id": "r1", "displayName": "Security Reader"},
                {"@odata.type": "#microsoft.graph.administrativeUnit", "id": "a1", "displayName": "US West"}
            ],
            "@odata.nextLink": next
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/graph/v1.0/users/{NICK}/memberOf")))
        .and(query_param("$skiptoken", "page2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [
                {"@odata.type": "#microsoft.graph.group", "id": "g2", "displayName": "VPN-Users"},
                {"@odata.type": "#microsoft.graph.group", "id": "g3", "displayName": "github-org-members"}
            ]
        })))
        .mount(server)
        .await;
}

#[tokio::test]
async fn found_with_manager_and_paged_member_of() {
    let server = MockServer::start().await;
    token_mock("tok-1", 3599).expect(1).mount(&server).await;
    user_get("tok-1")
        .respond_with(ResponseTemplate::new(200).set_body_json(user_body()))
        .expect(1)
        .mount(&server)
        .await;
    mount_details(&server).await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Account, UPN)
        .await
        .unwrap();
    assert!(r.found);
    assert_eq!(r.malice, Malice::Pending);
    assert_eq!(
        Value::Object(r.block),
        json!({
            "object_id": NICK,
            "account_enabled": true,
            "status": "ACTIVE",
            "profile": {
                "full_name": "Nick Hathaway",
                "title": "Senior Software Engineer",
                "department": "Engineering",
                "employee_type": "Employee",
                "location": "San Francisco, CA, United States",
                "manager": "Emily Rhodes",
                "manager_email": "emily.rhodes@calseta.com",
                "user_principal_name": UPN,
                "mail": "nick.hathaway@calseta.com",
                "user_type": "Member"
            },
            "account_created": "2022-03-14T09:00:00.000Z",
            "last_password_change": "2024-10-01T11:23:44.000Z",
            "group_membership": ["Engineering", "VPN-Users", "github-org-members"],
            "directory_roles": ["Security Reader"],
            "on_premises_sync": true
        })
    );
    // The token never reaches raw.
    assert!(!r.raw.to_string().contains("tok-1"));
}

#[tokio::test]
async fn sign_in_activity_and_auth_methods_when_enabled() {
    let server = MockServer::start().await;
    token_mock("tok-1", 3599).mount(&server).await;
    let mut body = user_body();
    body["signInActivity"] =
        json!({"lastSignInDateTime": "2025-01-15T03:40:02Z", "lastSuccessfulSignInDateTime": "2025-01-14T22:31:05Z"});
    Mock::given(method("GET"))
        .and(path(format!("/graph/v1.0/users/{UPN}")))
        .and(query_param("$select", format!("{USER_SELECT},signInActivity").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    mount_details(&server).await;
    Mock::given(method("GET"))
        .and(path(format!("/graph/v1.0/users/{NICK}/authentication/methods")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"@odata.type": "#microsoft.graph.passwordAuthenticationMethod", "id": "p"},
            {"@odata.type": "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod", "id": "m"},
            {"@odata.type": "#microsoft.graph.fido2AuthenticationMethod", "id": "f"}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = config(&server, Duration::from_secs(5));
    c.sign_in_activity = true;
    c.auth_methods = true;
    let r = Entra::with_client(c, client())
        .lookup(IndicatorType::Account, UPN)
        .await
        .unwrap();
    assert_eq!(r.block["last_login"], json!("2025-01-14T22:31:05.000Z"));
    assert_eq!(
        r.block["mfa_factors"],
        json!([
            {"type": "push", "provider": "MICROSOFT", "status": "registered"},
            {"type": "webauthn", "provider": "MICROSOFT", "status": "registered"}
        ])
    );
}

#[tokio::test]
async fn sign_in_activity_403_falls_back_and_is_not_asked_again() {
    let server = MockServer::start().await;
    token_mock("tok-1", 3599).mount(&server).await;
    Mock::given(method("GET"))
        .and(path(format!("/graph/v1.0/users/{UPN}")))
        .and(query_param("$select", format!("{USER_SELECT},signInActivity").as_str()))
        .respond_with(ResponseTemplate::new(403).set_body_json(graph_error(
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        )))
        .expect(1)
        .mount(&server)
        .await;
    user_get("tok-1")
        .respond_with(ResponseTemplate::new(200).set_body_json(user_body()))
        .expect(2)
        .mount(&server)
        .await;
    mount_details(&server).await;
    let mut c = config(&server, Duration::from_secs(5));
    c.sign_in_activity = true;
    let p = Entra::with_client(c, client());
    let r = p.lookup(IndicatorType::Account, UPN).await.unwrap();
    assert!(r.found);
    assert!(r.block.get("last_login").is_none());
    p.lookup(IndicatorType::Account, UPN).await.unwrap();
}

#[tokio::test]
async fn token_is_cached_across_lookups_and_shared_by_concurrent_ones() {
    let server = MockServer::start().await;
    token_req()
        .respond_with(token_ok("tok-1", 3599).set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;
    user_get("tok-1")
        .respond_with(ResponseTemplate::new(200).set_body_json(user_body()))
        .expect(7)
        .mount(&server)
        .await;
    mount_details(&server).await;
    let p = Arc::new(provider(&server, Duration::from_secs(5)));
    let lookups = (0..5).map(|_| {
        let p = p.clone();
        async move { p.lookup(IndicatorType::Account, UPN).await }
    });
    for r in futures::future::join_all(lookups).await {
        assert!(r.unwrap().found);
    }
    p.lookup(IndicatorType::Account, UPN).await.unwrap();
    p.lookup(IndicatorType::Account, UPN).await.unwrap();
}

#[tokio::test]
async fn expired_token_is_refreshed() {
    let server = MockServer::start().await;
    // expires_in 1 s: reused for at most half its life, then replaced.
    token_mock("tok-short", 1).expect(2).mount(&server).await;
    user_get("tok-short")
        .respond_with(ResponseTemplate::new(200).set_body_json(user_body()))
        .expect(2)
        .mount(&server)
        .await;
    mount_details(&server).await;
    let p = provider(&server, Duration::from_secs(5));
    p.lookup(IndicatorType::Account, UPN).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    p.lookup(IndicatorType::Account, UPN).await.unwrap();
}

#[tokio::test]
async fn graph_401_refreshes_the_token_once_and_retries() {
    let server = MockServer::start().await;
    // First token is rejected by Graph, the second works.
    token_mock("tok-old", 3599)
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    token_mock("tok-new", 3599)
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    user_get("tok-old")
        .respond_with(ResponseTemplate::new(401).set_body_json(graph_error(
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
        )))
        .expect(1)
        .mount(&server)
        .await;
    user_get("tok-new")
        .respond_with(ResponseTemplate::new(200).set_body_json(user_body()))
        .expect(1)
        .mount(&server)
        .await;
    mount_details(&server).await;
    let r = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Account, UPN)
        .await
        .unwrap();
    assert!(r.found);
}

#[tokio::test]
async fn graph_401_after_refresh_is_auth_failed() {
    let server = MockServer::start().await;
    token_mock("tok-1", 3599).expect(2).mount(&server).await;
    user_get("tok-1")
        .respond_with(ResponseTemplate::new(401).set_body_json(graph_error(
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
        )))
        .expect(2)
        .mount(&server)
        .await;
    let err = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Account, UPN)
        .await
        .unwrap_err();
    match err {
        ProviderError::AuthFailed(m) => assert!(m.contains("InvalidAuthenticationToken"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn wrong_client_secret_is_auth_failed_without_graph_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/login/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: abc\r\nCorrelation ID: def\r\nTimestamp: 2025-01-15 03:42:18Z",
            "error_codes": [7000215]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let err = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Account, UPN)
        .await
        .unwrap_err();
    match &err {
        ProviderError::AuthFailed(m) => {
            assert!(m.contains("invalid_client") && m.contains("AADSTS7000215"), "{m}");
            assert!(!m.contains("Trace ID"));
            assert!(!m.contains(SECRET));
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn token_endpoint_throttling_and_outage_are_retryable_or_rate_limited() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/login/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": "temporarily_unavailable"})))
        .mount(&server)
        .await;
    let err = provider(&server, Duration::from_secs(5))
        .lookup(IndicatorType::Account, UPN)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn not_found_and_no_manager() {
    let server = MockServer::start().await;
    token_mock("tok-1", 3599).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/graph/v1.0/users/ghost@calseta.com"))
        .respond_with(ResponseTemplate::new(404).set_body_json(graph_error(
            "Request_ResourceNotFound",
            "Resource 'ghost@calseta.com' does not exist or one of its queried reference-property objects are not present.",
        )))
        .mount(&server)
        .await;
    let p = provider(&server, Duration::from_secs(5));
    let r = p.lookup(IndicatorType::Account, "ghost@calseta.com").await.unwrap();
    assert!(!r.found);
    assert_eq!(r.malice, Malice::Pending);
    assert!(r.block.is_empty());

    // A 404 on the manager means "no manager": the user is still found.
    user_get("tok-1")
        .respond_with(ResponseTemplate::new(200).set_body_json(user_body()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/graph/v1.0/users/{NICK}/manager")))
        .respond_with(ResponseTemplate::new(404).set_body_json(graph_error(
            "Request_ResourceNotFound",
            "Resource 'manager' does not exist or one of its queried reference-property objects are not present.",
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/graph/v1.0/users/{NICK}/memberOf")))
        .respond_with(ResponseTemplate::new(403).set_body_json(graph_error(
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )))
        .mount(&server)
        .await;
    let r = p.lookup(IndicatorType::Account, UPN).await.unwrap();
    assert!(r.found);
    assert!(r.block["profile"].get("manager").is_none());
    assert!(r.block.get("group_membership").is_none());
    assert!(r.block.get("directory_roles").is_none());
}

#[tokio::test]
async fn guest_upn_is_encoded_and_non_upn_is_skipped() {
    let server = MockServer::start().await;
    token_mock("tok-1", 3599).mount(&server).await;
    Mock::given(method("GET"))
        .and(|req: &Request| req.url.path() == "/graph/v1.0/users/partner_acme.com%23EXT%23@calseta.onmicrosoft.com")
        .respond_with(ResponseTemplate::new(404).set_body_json(graph_error("Request_ResourceNotFound", "x")))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, Duration::from_secs(5));
    let r = p
        .lookup(IndicatorType::Account, "partner_acme.com#EXT#@calseta.onmicrosoft.com")
        .await
        .unwrap();
    assert!(!r.found);
    assert_eq!(
        p.lookup(IndicatorType::Account, "corp\\jdoe").await.unwrap_err(),
        ProviderError::Skipped { reason: "not_upn" }
    );
}

#[tokio::test]
async fn bad_request_is_invalid_value_and_403_is_auth_failed() {
    let server = MockServer::start().await;
    token_mock("tok-1", 3599).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/graph/v1.0/users/bad@x.com"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(graph_error("Request_BadRequest", "Invalid object identifier")),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/graph/v1.0/users/denied@x.com"))
        .respond_with(ResponseTemplate::new(403).set_body_json(graph_error(
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )))
        .mount(&server)
        .await;
    let p = provider(&server, Duration::from_secs(5));
    assert_eq!(
        p.lookup(IndicatorType::Account, "bad@x.com").await.unwrap_err(),
        ProviderError::Skipped {
            reason: "invalid_value"
        }
    );
    assert_eq!(
        p.lookup(IndicatorType::Account, "denied@x.com")
            .await
            .unwrap_err()
            .code(),
        "auth_failed"
    );
}

#[test]
fn config_debug_redacts_the_secret() {
    let c = EntraConfig::new("t", "c", SecretString::from("very-secret"));
    assert!(!format!("{c:?}").contains("very-secret"));
}

#[tokio::test]
async fn error_matrix_entra() {
    error_matrix(
        provider,
        |t| user_get("tok-1").respond_with(t),
        || vec![token_mock("tok-1", 3599)],
        IndicatorType::Account,
        UPN,
        ErrorBodies {
            too_many: graph_error("TooManyRequests", "Too many requests."),
            unauthorized: graph_error("InvalidAuthenticationToken", "Access token is empty."),
            server_error: graph_error("generalException", "General exception while processing."),
            ok: user_body(),
            reset_header: "x-ratelimit-reset",
        },
    )
    .await;
}
