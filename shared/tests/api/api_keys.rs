//! API keys over HTTP (admin only): created keys are shown once and work with exactly their
//! scopes; expired and revoked keys get 401 with their codes; the stack's bootstrap key is
//! registered once and a revocation sticks.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use calseta::deploy::migrations_resource::Bootstrap;
use calseta::keys::KeyHasher;
use calseta::testing::{call, TestApp};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::json;

#[tokio::test]
async fn a_key_works_with_exactly_its_scopes_until_it_expires_or_is_revoked() {
    let app = TestApp::start().await;
    let admin = app.admin_key.clone();
    let (st, v) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/api-keys",
        Some(json!({"name": "reader", "scopes": ["alerts:read", "workflows:execute"], "key_type": "agent"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let key = v["data"]["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("cai_") && key.len() == 47);
    assert_eq!(v["data"]["show_once"], json!(true));
    assert_eq!(v["data"]["key_prefix"], json!(&key[..8]));
    let uuid = v["data"]["uuid"].as_str().unwrap().to_string();

    // Shown once: never in a list or a detail.
    let (_, list) = call(&app, &admin, Method::GET, "/v1/api-keys", None).await;
    let (_, one) = call(&app, &admin, Method::GET, &format!("/v1/api-keys/{uuid}"), None).await;
    for body in [&list, &one] {
        let text = body.to_string();
        assert!(!text.contains(&key) && !text.contains("key_hash"), "{text}");
    }
    assert_eq!(one["data"]["scopes"], json!(["alerts:read", "workflows:execute"]));

    // alerts:read reads alerts and nothing else.
    assert_eq!(call(&app, &key, Method::GET, "/v1/alerts", None).await.0, 200);
    for (m, p, b) in [
        (
            Method::POST,
            "/v1/agents",
            Some(json!({"name": "x", "endpoint_url": "http://127.0.0.1:1/"})),
        ),
        (Method::GET, "/v1/agents", None),
        (Method::GET, "/v1/api-keys", None),
        (Method::POST, "/v1/ingest/generic", Some(json!({"title": "t"}))),
        (
            Method::POST,
            "/v1/enrichments",
            Some(json!({"type": "ip", "value": "8.8.8.8"})),
        ),
    ] {
        let (st, v) = call(&app, &key, m.clone(), p, b).await;
        assert_eq!(st, 403, "{m} {p}: {v}");
        assert_eq!(v["error"]["code"], json!("FORBIDDEN"));
    }

    // PATCH scopes: takes effect at once.
    let (st, v) = call(
        &app,
        &admin,
        Method::PATCH,
        &format!("/v1/api-keys/{uuid}"),
        Some(json!({"scopes": ["agents:read"], "name": "renamed"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(call(&app, &key, Method::GET, "/v1/agents", None).await.0, 200);
    assert_eq!(call(&app, &key, Method::GET, "/v1/alerts", None).await.0, 403);

    // Expired → 401 KEY_EXPIRED.
    let past = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    let (st, _) = call(
        &app,
        &admin,
        Method::PATCH,
        &format!("/v1/api-keys/{uuid}"),
        Some(json!({"expires_at": past})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, v) = call(&app, &key, Method::GET, "/v1/agents", None).await;
    assert_eq!((st, v["error"]["code"].clone()), (401, json!("KEY_EXPIRED")));
    let (st, _) = call(
        &app,
        &admin,
        Method::PATCH,
        &format!("/v1/api-keys/{uuid}"),
        Some(json!({"expires_at": null})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(call(&app, &key, Method::GET, "/v1/agents", None).await.0, 200);

    // Revoked → 401 UNAUTHORIZED at once, and gone from the list.
    let (st, _) = call(&app, &admin, Method::DELETE, &format!("/v1/api-keys/{uuid}"), None).await;
    assert_eq!(st, 204);
    let (st, v) = call(&app, &key, Method::GET, "/v1/agents", None).await;
    assert_eq!((st, v["error"]["code"].clone()), (401, json!("UNAUTHORIZED")));
    let (_, list) = call(&app, &admin, Method::GET, "/v1/api-keys", None).await;
    assert!(!list.to_string().contains(&uuid));
    assert_eq!(
        call(&app, &admin, Method::DELETE, &format!("/v1/api-keys/{uuid}"), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn key_requests_are_validated_and_admin_only() {
    let app = TestApp::start().await;
    let admin = app.admin_key.clone();
    for (body, field) in [
        (json!({"scopes": ["admin"]}), "body.name"),
        (json!({"name": "x"}), "body.scopes"),
        (json!({"name": "x", "scopes": []}), "body.scopes"),
        (json!({"name": "x", "scopes": ["root"]}), "body.scopes"),
        (
            json!({"name": "x", "scopes": ["admin"], "key_type": "robot"}),
            "body.key_type",
        ),
        (
            json!({"name": "x", "scopes": ["admin"], "allowed_sources": ["qradar"]}),
            "body.allowed_sources",
        ),
        (
            json!({"name": "x", "scopes": ["admin"], "expires_at": "2001-01-01T00:00:00Z"}),
            "body.expires_at",
        ),
    ] {
        let (st, v) = call(&app, &admin, Method::POST, "/v1/api-keys", Some(body)).await;
        assert_eq!(st, 422, "{v}");
        assert_eq!(v["error"]["details"]["errors"][0]["field"], json!(field));
    }
    let writer = app
        .create_key("writer", &["alerts:write", "agents:write"], None, None)
        .await;
    for (m, p) in [(Method::GET, "/v1/api-keys"), (Method::POST, "/v1/api-keys")] {
        let (st, v) = call(&app, &writer, m, p, Some(json!({"name": "x", "scopes": ["admin"]}))).await;
        assert_eq!(st, 403, "{v}");
        assert_eq!(v["error"]["details"]["required_scopes"], json!(["admin"]));
    }
    assert_eq!(call(&app, "", Method::GET, "/v1/api-keys", None).await.0, 401);
}

#[tokio::test]
async fn the_bootstrap_key_is_registered_once_and_a_revocation_sticks() {
    let app = TestApp::start().await;
    let key = format!("cai_{}", "A1b2C3d4E5".repeat(4) + "xyz");
    let b = Bootstrap {
        key: SecretString::from(key.clone()),
        hasher: app.state.hasher.clone(),
    };
    assert!(b.ensure(&app.db.pool).await.unwrap());
    assert!(!b.ensure(&app.db.pool).await.unwrap(), "idempotent");
    let (st, list) = call(&app, &key, Method::GET, "/v1/api-keys", None).await;
    assert_eq!(st, 200, "the bootstrap key is an admin key");
    let me = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "bootstrap-admin")
        .unwrap()
        .clone();
    assert_eq!(me["is_system"], json!(true));
    let uuid = me["uuid"].as_str().unwrap();
    assert_eq!(
        call(
            &app,
            &app.admin_key,
            Method::DELETE,
            &format!("/v1/api-keys/{uuid}"),
            None
        )
        .await
        .0,
        204
    );
    assert!(
        !b.ensure(&app.db.pool).await.unwrap(),
        "a redeploy does not resurrect it"
    );
    assert_eq!(call(&app, &key, Method::GET, "/v1/api-keys", None).await.0, 401);
    // A different hashing secret cannot mint a working key.
    let other = Bootstrap {
        key: SecretString::from(format!("cai_{}", "Z9y8X7w6V5".repeat(4) + "abc")),
        hasher: KeyHasher::new(SecretString::from("another-secret".to_string())),
    };
    assert!(other.ensure(&app.db.pool).await.unwrap());
    let (st, _) = call(
        &app,
        &format!("cai_{}", "Z9y8X7w6V5".repeat(4) + "abc"),
        Method::GET,
        "/v1/api-keys",
        None,
    )
    .await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn nul_characters_are_refused_with_the_field_not_a_server_error() {
    // Postgres text cannot hold U+0000; the API says which field instead of failing.
    let app = TestApp::start().await;
    let admin = app.admin_key.clone();
    let (st, v) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/api-keys",
        Some(json!({"name": "a\u{0}b", "scopes": ["admin"]})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["details"]["errors"][0]["field"], json!("body.name"));
    let (st, v) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/sources",
        Some(json!({"source_name": "elastic", "extra_indicator_fields": {"x": ["\u{0}"]}})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    let (st, v) = call(&app, &admin, Method::GET, "/v1/alerts?tags=a%00b", None).await;
    assert_eq!(st, 422, "{v}");
    let (st, _) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/enrichments",
        Some(json!({"type": "account", "value": "a\u{0}"})),
    )
    .await;
    assert!(st == 422 || st == 503, "{st}");
}

#[tokio::test]
async fn deactivating_a_key_stops_it_at_once_and_reactivating_restores_it() {
    let app = TestApp::start().await;
    let admin = app.admin_key.clone();
    let (st, v) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/api-keys",
        Some(json!({"name": "toggled", "scopes": ["alerts:read", "alerts:write"]})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let key = v["data"]["key"].as_str().unwrap().to_string();
    let uuid = v["data"]["uuid"].as_str().unwrap().to_string();
    let at = format!("/v1/api-keys/{uuid}");
    let ingest = || json!({"title": "t", "source_alert_id": uuid::Uuid::new_v4().to_string()});
    assert_eq!(call(&app, &key, Method::GET, "/v1/alerts", None).await.0, 200);

    // Deactivate: the answer says so, and the key stops on REST and ingest at once.
    let (st, v) = call(&app, &admin, Method::PATCH, &at, Some(json!({"is_active": false}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["is_active"], json!(false), "{v}");
    let (st, v) = call(&app, &key, Method::GET, "/v1/alerts", None).await;
    assert_eq!((st, v["error"]["code"].clone()), (401, json!("UNAUTHORIZED")), "{v}");
    let (st, v) = call(&app, &key, Method::POST, "/v1/ingest/generic", Some(ingest())).await;
    assert_eq!(st, 401, "{v}");
    // Still listed (so it can be reactivated), as inactive.
    let (_, one) = call(&app, &admin, Method::GET, &at, None).await;
    assert_eq!(one["data"]["is_active"], json!(false));
    let (_, list) = call(&app, &admin, Method::GET, "/v1/api-keys", None).await;
    let listed = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["uuid"] == json!(uuid))
        .cloned();
    assert_eq!(listed.map(|k| k["is_active"].clone()), Some(json!(false)));

    // Reactivate: works again on both.
    let (st, v) = call(&app, &admin, Method::PATCH, &at, Some(json!({"is_active": true}))).await;
    assert_eq!((st, v["data"]["is_active"].clone()), (200, json!(true)), "{v}");
    assert_eq!(call(&app, &key, Method::GET, "/v1/alerts", None).await.0, 200);
    let (st, v) = call(&app, &key, Method::POST, "/v1/ingest/generic", Some(ingest())).await;
    assert_eq!(st, 202, "{v}");
    let (st, v) = call(&app, &admin, Method::PATCH, &at, Some(json!({"is_active": "no"}))).await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["details"]["errors"][0]["field"], json!("body.is_active"));

    // Revoked (DELETE) stays dead: it cannot be reactivated.
    assert_eq!(call(&app, &admin, Method::DELETE, &at, None).await.0, 204);
    let (st, _) = call(&app, &admin, Method::PATCH, &at, Some(json!({"is_active": true}))).await;
    assert_eq!(st, 404);
    assert_eq!(call(&app, &key, Method::GET, "/v1/alerts", None).await.0, 401);
}

#[tokio::test]
async fn the_last_admin_key_cannot_be_demoted_deactivated_or_revoked() {
    let app = TestApp::start().await;
    let admin = app.admin_key.clone();
    let (_, list) = call(&app, &admin, Method::GET, "/v1/api-keys", None).await;
    let me = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "test-admin")
        .unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let at = format!("/v1/api-keys/{me}");
    let past = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    for body in [
        json!({"scopes": ["alerts:read"]}),
        json!({"is_active": false}),
        json!({"expires_at": past}),
    ] {
        let (st, v) = call(&app, &admin, Method::PATCH, &at, Some(body.clone())).await;
        assert_eq!(
            (st, v["error"]["code"].clone()),
            (409, json!("LAST_ADMIN_KEY")),
            "{body}: {v}"
        );
    }
    let (st, v) = call(&app, &admin, Method::DELETE, &at, None).await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("another admin key"),
        "{v}"
    );
    // Harmless changes to the last admin key still work.
    let (st, _) = call(&app, &admin, Method::PATCH, &at, Some(json!({"name": "still admin"}))).await;
    assert_eq!(st, 200);
    // A suspended admin key does not count as the other admin.
    let other = app.create_key("second admin", &["admin"], None, None).await;
    let (_, list) = call(&app, &admin, Method::GET, "/v1/api-keys", None).await;
    let other_uuid = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "second admin")
        .unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let other_at = format!("/v1/api-keys/{other_uuid}");
    let (st, _) = call(
        &app,
        &admin,
        Method::PATCH,
        &other_at,
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(call(&app, &admin, Method::DELETE, &at, None).await.0, 409);
    // With another usable admin, the first may go; then the other is the last.
    let (st, _) = call(&app, &admin, Method::PATCH, &other_at, Some(json!({"is_active": true}))).await;
    assert_eq!(st, 200);
    let (st, v) = call(
        &app,
        &admin,
        Method::PATCH,
        &at,
        Some(json!({"scopes": ["alerts:read"]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(call(&app, &other, Method::DELETE, &other_at, None).await.0, 409);
    assert_eq!(call(&app, &other, Method::GET, "/v1/api-keys", None).await.0, 200);
}
