//! The RDS Proxy mode (`DATABASE_PREPARED_STATEMENTS=false`: unnamed typed statements) runs the
//! same ingest path. Its own test binary, because the statement mode is process-wide.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use calseta::{config::Limits, testing::TestApp};
use serde_json::Value;

#[tokio::test]
async fn ingest_and_dedupe_without_prepared_statements() {
    let app = TestApp::with_options(Limits::default(), false).await;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sources");
    for (source, case) in [
        ("sentinel", "security_alert_row"),
        ("elastic", "array_of_two"),
        ("splunk", "es_notable"),
    ] {
        let body = std::fs::read(fixtures.join(source).join(format!("{case}.json"))).expect("fixture");
        let mut uuids = Vec::new();
        for expected in ["queued", "deduplicated"] {
            let r = app
                .http
                .post(app.url(&format!("/v1/ingest/{source}")))
                .bearer_auth(&app.admin_key)
                .body(body.clone())
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 202, "{source}");
            let b: Value = r.json().await.expect("json");
            assert_eq!(b["data"]["status"], expected, "{source}: {b}");
            uuids.push(b["data"]["alert_uuid"].clone());
        }
        assert_eq!(uuids[0], uuids[1], "{source}");
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM alerts").await, 4);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .await,
        0
    );
    assert!(app.scalar_i64("SELECT count(*) FROM detection_rules").await >= 3);
}
