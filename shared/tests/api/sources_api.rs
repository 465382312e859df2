//! Source settings over HTTP: secrets are write-only, ingest honours what the API set (Splunk's
//! URL token, rotation with the previous secret, HMAC), and deleting the row fails back to API
//! keys only.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use calseta::testing::{call, TestApp};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

fn splunk_alert(sid: &str) -> Value {
    json!({"result": {"_time": "1705312200.000", "src_ip": "45.155.205.233", "severity": "high"},
           "sid": sid, "search_name": "Brute Force Login Attempt"})
}

async fn post_splunk(app: &TestApp, query: &str, sid: &str) -> u16 {
    app.http
        .post(app.url(&format!("/v1/ingest/splunk{query}")))
        .json(&splunk_alert(sid))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn source_secrets_are_write_only_and_ingest_honours_them() {
    let app = TestApp::start().await;
    let admin = app.admin_key.clone();
    let old = "old-splunk-token-0123456789abcdef0123456789";
    let new = "new-splunk-token-0123456789abcdef0123456789";
    assert_eq!(
        post_splunk(&app, &format!("?token={old}"), "s-0").await,
        401,
        "no row: API keys only"
    );

    let (st, v) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/sources",
        Some(json!({"source_name": "qradar"})),
    )
    .await;
    assert_eq!((st, v["error"]["code"].clone()), (400, json!("INVALID_SOURCE")));
    let (st, v) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/sources",
        Some(json!({"source_name": "splunk", "auth_type": "shared_secret", "auth_config": {"shared_secret": "short"}})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    let (st, v) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/sources",
        Some(
            json!({"source_name": "splunk", "auth_type": "shared_secret", "auth_config": {"shared_secret": old},
                    "extra_indicator_fields": {"result.dest_host": "domain"}}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["data"]["url_token_allowed"], json!(true), "splunk's default");
    assert_eq!(v["data"]["has_shared_secret"], json!(true));
    let uuid = v["data"]["uuid"].as_str().unwrap().to_string();
    let (st, _) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/sources",
        Some(json!({"source_name": "splunk"})),
    )
    .await;
    assert_eq!(st, 409);
    let (_, list) = call(&app, &admin, Method::GET, "/v1/sources", None).await;
    let (_, one) = call(&app, &admin, Method::GET, &format!("/v1/sources/{uuid}"), None).await;
    for body in [&list, &one] {
        assert!(!body.to_string().contains(old), "secrets are never returned");
    }

    assert_eq!(post_splunk(&app, &format!("?token={old}"), "s-1").await, 202);
    assert_eq!(
        post_splunk(&app, "?token=wrong-token-0123456789abcdef0123456789", "s-2").await,
        401
    );

    // Rotation: new secret, the old one kept as previous — both work; clearing previous ends it.
    let (st, v) = call(
        &app,
        &admin,
        Method::PATCH,
        &format!("/v1/sources/{uuid}"),
        Some(json!({"auth_config": {"shared_secret": new, "previous_shared_secret": old}})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["has_previous_shared_secret"], json!(true));
    assert_eq!(post_splunk(&app, &format!("?token={new}"), "s-3").await, 202);
    assert_eq!(post_splunk(&app, &format!("?token={old}"), "s-4").await, 202);
    call(
        &app,
        &admin,
        Method::PATCH,
        &format!("/v1/sources/{uuid}"),
        Some(json!({"auth_config": {"previous_shared_secret": null}})),
    )
    .await;
    assert_eq!(post_splunk(&app, &format!("?token={old}"), "s-5").await, 401);
    // URL tokens can be switched off.
    call(
        &app,
        &admin,
        Method::PATCH,
        &format!("/v1/sources/{uuid}"),
        Some(json!({"url_token_allowed": false})),
    )
    .await;
    assert_eq!(post_splunk(&app, &format!("?token={new}"), "s-6").await, 401);

    // Deleting the row: back to API keys only.
    assert_eq!(
        call(&app, &admin, Method::DELETE, &format!("/v1/sources/{uuid}"), None)
            .await
            .0,
        204
    );
    assert_eq!(post_splunk(&app, &format!("?token={new}"), "s-7").await, 401);

    // HMAC on the generic source: a signature is required, an API key alone is not enough.
    let secret = "hmac-secret-0123456789abcdef0123456789abcd";
    let (st, _) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/sources",
        Some(json!({"source_name": "generic", "auth_type": "hmac", "auth_config": {"hmac_secret": secret}})),
    )
    .await;
    assert_eq!(st, 201);
    let source_uuid = call(&app, &admin, Method::GET, "/v1/sources", None).await.1["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source_name"] == "generic")
        .unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let sign = |ts: Option<&str>, body: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        if let Some(ts) = ts {
            mac.update(format!("{ts}.").as_bytes());
        }
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let post = |body: Vec<u8>, sig: String, ts: Option<String>| {
        let mut r = app
            .http
            .post(app.url("/v1/ingest/generic"))
            .header("x-calseta-signature", sig)
            .header("content-type", "application/json");
        if let Some(ts) = ts {
            r = r.header("x-calseta-timestamp", ts);
        }
        r.body(body).send()
    };
    // A body-only signature has no freshness (a captured request replays): refused by default.
    let body = serde_json::to_vec(&json!({"title": "signed", "source_alert_id": "h-1"})).unwrap();
    let r = post(body.clone(), sign(None, &body), None).await.unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["details"]["reason"], json!("missing_timestamp"), "{v}");
    // The timestamped form passes.
    let now = chrono::Utc::now().timestamp().to_string();
    let r = post(body.clone(), sign(Some(&now), &body), Some(now.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // A source may opt into the legacy body-only mode.
    let (st, v) = call(
        &app,
        &admin,
        Method::PATCH,
        &format!("/v1/sources/{source_uuid}"),
        Some(json!({"hmac_body_only": true})),
    )
    .await;
    assert_eq!((st, v["data"]["hmac_body_only"].clone()), (200, json!(true)), "{v}");
    let body = serde_json::to_vec(&json!({"title": "legacy", "source_alert_id": "h-2"})).unwrap();
    let r = post(body.clone(), sign(None, &body), None).await.unwrap();
    assert_eq!(r.status(), 202);
    let (st, _) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/ingest/generic",
        Some(json!({"title": "unsigned"})),
    )
    .await;
    assert_eq!(st, 401);

    // Reading needs alerts:read; writing is admin.
    let reader = app.create_key("r", &["alerts:read"], None, None).await;
    assert_eq!(call(&app, &reader, Method::GET, "/v1/sources", None).await.0, 200);
    let (st, v) = call(
        &app,
        &reader,
        Method::POST,
        "/v1/sources",
        Some(json!({"source_name": "elastic"})),
    )
    .await;
    assert_eq!(
        (st, v["error"]["details"]["required_scopes"].clone()),
        (403, json!(["admin"]))
    );
}
