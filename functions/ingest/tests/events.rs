//! The committed `events/ingest-*.json` (API Gateway REST proxy events, as `cargo lambda invoke`
//! sends them) go through lambda_http's own event conversion into the ingest router and are
//! accepted — so the events, the stage handling and the routes agree.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use calseta::{
    api,
    db::sources::{self, AuthType, SourceWrite},
    sources::SourceName,
    testing::TestApp,
};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

#[tokio::test]
async fn committed_events_are_accepted_by_the_ingest_router() {
    // SAFETY (edition 2021: safe call): set before any request conversion, single test.
    std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true");
    let app = TestApp::start().await;
    // The Splunk event authenticates with the URL token, as Splunk must.
    let client = app.db.pool.get().await.expect("client");
    sources::upsert(
        &**client,
        &app.state.sealer,
        SourceName::Splunk,
        &SourceWrite {
            display_name: None,
            is_active: true,
            auth_type: AuthType::SharedSecret,
            url_token_allowed: true,
            shared_secret: Some("REPLACE_WITH_SPLUNK_SOURCE_SECRET".to_owned().into()),
            previous_shared_secret: None,
            hmac_secret: None,
            extra_indicator_fields: serde_json::json!({}),
        },
    )
    .await
    .expect("source");
    let events = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    for source in ["sentinel", "elastic", "splunk", "generic"] {
        let text = std::fs::read_to_string(events.join(format!("ingest-{source}.json")))
            .expect("event file")
            .replace("REPLACE_WITH_CAI_API_KEY", &app.admin_key);
        let req = lambda_http::request::from_str(&text).expect("API Gateway event");
        let resp = api::ingest_router(app.state.clone())
            .oneshot(req)
            .await
            .expect("response");
        let status = resp.status();
        let body: Value =
            serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes()).unwrap_or(Value::Null);
        assert_eq!(status, 202, "{source}: {body}");
        assert_eq!(body["data"]["status"], "queued", "{source}");
    }
    assert!(app.scalar_i64("SELECT count(*) FROM alerts").await >= 4);
}
