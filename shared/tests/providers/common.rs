//! Shared test helpers: clients, dates, and the error matrix every provider must pass.

use std::time::Duration;

use calseta::domain::indicator::IndicatorType;
use calseta::enrich::provider::{build_http_client, Provider, ProviderError};
use chrono::Utc;
use serde_json::Value;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A fresh client per test (the shared one is bound to the first test's runtime's pool).
pub fn client() -> reqwest::Client {
    build_http_client(Duration::from_secs(3), Duration::from_secs(10))
}

/// An IMF-fixdate `secs` from now, as `Retry-After` carries it.
pub fn http_date_in(secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(secs))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

pub fn epoch_in(secs: i64) -> String {
    (Utc::now().timestamp() + secs).to_string()
}

/// `RateLimited` with a wait close to `secs`.
pub fn assert_rate_limited(err: &ProviderError, secs: u64) {
    match err {
        ProviderError::RateLimited { retry_after: Some(d) } => {
            let got = d.as_secs_f64();
            assert!(
                got >= secs as f64 - 3.0 && got <= secs as f64 + 1.0,
                "retry_after {got}s, want ~{secs}s"
            );
        }
        other => panic!("want RateLimited(~{secs}s), got {other:?}"),
    }
    assert_eq!(err.code(), "rate_limited");
    assert!(!err.is_retryable());
}

/// One provider's error answers, in its own wire format.
pub struct ErrorBodies {
    pub too_many: Value,
    pub unauthorized: Value,
    pub server_error: Value,
    /// A valid 200 body, served slowly for the timeout case.
    pub ok: Value,
    /// The reset header this provider uses (`x-ratelimit-reset` / `x-rate-limit-reset`).
    pub reset_header: &'static str,
}

/// Runs the shared error matrix: 429 with `Retry-After` seconds, with an HTTP date, with a
/// reset header; 500; a slow answer beyond the timeout; malformed JSON; 401.
///
/// `make` builds the provider for a server with the given timeout; `target` is the mock for
/// the lookup's first request with a given answer; `setup` mocks anything else needed (e.g.
/// a token endpoint).
pub async fn error_matrix<P, F, T, S>(
    make: F,
    target: T,
    setup: S,
    kind: IndicatorType,
    value: &str,
    bodies: ErrorBodies,
) where
    P: Provider,
    F: Fn(&MockServer, Duration) -> P,
    T: Fn(ResponseTemplate) -> Mock,
    S: Fn() -> Vec<Mock>,
{
    async fn run<P: Provider>(
        p: &P,
        server: &MockServer,
        setup: Vec<Mock>,
        target: Mock,
        kind: IndicatorType,
        value: &str,
    ) -> Result<calseta::enrich::provider::Lookup, ProviderError> {
        for m in setup {
            m.mount(server).await;
        }
        target.mount(server).await;
        p.lookup(kind, value).await
    }
    let normal = Duration::from_secs(5);

    // 429 + Retry-After seconds
    let server = MockServer::start().await;
    let p = make(&server, normal);
    let t = target(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "30")
            .set_body_json(&bodies.too_many),
    );
    let err = run(&p, &server, setup(), t, kind, value).await.unwrap_err();
    assert_rate_limited(&err, 30);

    // 429 + Retry-After HTTP date
    let server = MockServer::start().await;
    let p = make(&server, normal);
    let t = target(
        ResponseTemplate::new(429)
            .insert_header("retry-after", http_date_in(120).as_str())
            .set_body_json(&bodies.too_many),
    );
    let err = run(&p, &server, setup(), t, kind, value).await.unwrap_err();
    assert_rate_limited(&err, 120);

    // 429 + reset header (epoch seconds)
    let server = MockServer::start().await;
    let p = make(&server, normal);
    let t = target(
        ResponseTemplate::new(429)
            .insert_header(bodies.reset_header, epoch_in(45).as_str())
            .set_body_json(&bodies.too_many),
    );
    let err = run(&p, &server, setup(), t, kind, value).await.unwrap_err();
    assert_rate_limited(&err, 45);

    // 500 → Upstream, retryable
    let server = MockServer::start().await;
    let p = make(&server, normal);
    let t = target(ResponseTemplate::new(500).set_body_json(&bodies.server_error));
    let err = run(&p, &server, setup(), t, kind, value).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Upstream { status: Some(500), .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(err.code(), "upstream_error");

    // Slow answer beyond the timeout → Timeout, retryable
    let server = MockServer::start().await;
    let p = make(&server, Duration::from_millis(300));
    let t = target(
        ResponseTemplate::new(200)
            .set_body_json(&bodies.ok)
            .set_delay(Duration::from_secs(3)),
    );
    let err = run(&p, &server, setup(), t, kind, value).await.unwrap_err();
    assert_eq!(err, ProviderError::Timeout);
    assert!(err.is_retryable());

    // Malformed JSON → InvalidResponse
    let server = MockServer::start().await;
    let p = make(&server, normal);
    let t = target(ResponseTemplate::new(200).set_body_raw("{\"data\": {\"attributes\": ", "application/json"));
    let err = run(&p, &server, setup(), t, kind, value).await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidResponse(_)), "{err:?}");
    assert_eq!(err.code(), "invalid_response");
    assert!(!err.is_retryable());

    // 401 → AuthFailed
    let server = MockServer::start().await;
    let p = make(&server, normal);
    let t = target(ResponseTemplate::new(401).set_body_json(&bodies.unauthorized));
    let err = run(&p, &server, setup(), t, kind, value).await.unwrap_err();
    assert!(matches!(err, ProviderError::AuthFailed(_)), "{err:?}");
    assert_eq!(err.code(), "auth_failed");
    assert!(!err.is_retryable());
}
