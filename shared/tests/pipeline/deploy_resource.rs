//! The `migrate` Lambda's custom-resource protocol: a local HTTP server stands in for the
//! pre-signed S3 response URL and records what CloudFormation would receive.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::sync::{Arc, Mutex};

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use axum::{body::Bytes, extract::State, http::HeaderMap, routing::put, Router};
use calseta::{config::DbConfig, db, deploy::migrations_resource, testing::TestDb};
use serde_json::{json, Value};

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

async fn response_server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/presigned",
            put(|State(s): State<Seen>, headers: HeaderMap, body: Bytes| async move {
                s.lock()
                    .expect("lock")
                    .push((headers, serde_json::from_slice(&body).expect("json body")));
                ""
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/presigned?X-Amz-Signature=abc",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn request(kind: &str, url: &str) -> CloudFormationCustomResourceRequest {
    let mut r = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:migrate",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/calseta/1",
        "RequestId": format!("req-{kind}"),
        "ResourceType": "Custom::Migrations",
        "LogicalResourceId": "DatabaseMigrations",
        "ResourceProperties": {"ServiceToken": "x", "Version": "2"}
    });
    if kind != "Create" {
        r["PhysicalResourceId"] = json!("calseta-database-migrations");
        r["OldResourceProperties"] = json!({"ServiceToken": "x", "Version": "1"});
    }
    serde_json::from_value(r).expect("request")
}

#[tokio::test]
async fn create_applies_update_is_idempotent_delete_keeps_data() {
    let (_, db_url) = TestDb::empty().await;
    let pool = db::build_pool(&DbConfig::from_url(db_url)).expect("pool");
    let (url, seen) = response_server().await;
    calseta::net::tls::install_crypto_provider();
    let http = reqwest::Client::new();

    let created = migrations_resource::handle(request("Create", &url), Ok(&pool), &http)
        .await
        .expect("create");
    assert_eq!(created.status, "SUCCESS");
    let updated = migrations_resource::handle(request("Update", &url), Ok(&pool), &http)
        .await
        .expect("update");
    assert_eq!(updated.status, "SUCCESS");
    let deleted = migrations_resource::handle(request("Delete", &url), Ok(&pool), &http)
        .await
        .expect("delete");
    assert_eq!(deleted.status, "SUCCESS");

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3);
    let (headers, create) = &seen[0];
    assert_eq!(headers.get("content-type").map(|v| v.as_bytes()), Some(&b""[..]));
    assert_eq!(create["Status"], "SUCCESS");
    assert_eq!(create["PhysicalResourceId"], "calseta-database-migrations");
    assert_eq!(create["RequestId"], "req-Create");
    assert_eq!(create["LogicalResourceId"], "DatabaseMigrations");
    assert_eq!(create["Data"]["Applied"], json!(calseta::db::migrate::all().count()));
    assert_eq!(seen[1].1["Data"]["Applied"], json!(0));
    assert_eq!(seen[1].1["PhysicalResourceId"], "calseta-database-migrations");
    // Delete leaves the schema in place.
    let c = pool.get().await.expect("client");
    let n: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n as usize, calseta::db::migrate::all().count());
}

#[tokio::test]
async fn failures_are_reported_not_swallowed() {
    let (url, seen) = response_server().await;
    calseta::net::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    // Configuration problem at init.
    let r = migrations_resource::handle(
        request("Create", &url),
        Err("DATABASE_SECRET_ARN: access denied"),
        &http,
    )
    .await
    .expect("answered");
    assert_eq!(r.status, "FAILED");
    // Database unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut cfg = DbConfig::from_url(format!("postgres://calseta@127.0.0.1:{port}/calseta"));
    cfg.connect_timeout = std::time::Duration::from_secs(1);
    let pool = db::build_pool(&cfg).expect("pool");
    let r = migrations_resource::handle(request("Update", &url), Ok(&pool), &http)
        .await
        .expect("answered");
    assert_eq!(r.status, "FAILED");
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 2);
    assert!(seen[0].1["Reason"].as_str().expect("reason").contains("access denied"));
    assert_eq!(seen[1].1["Status"], "FAILED");
}

/// A URL for the same database as `url`, logged in as `user` (the test cluster trusts
/// 127.0.0.1, so this proves the role and its grants, not its password).
/// `url` with another login (the test cluster requires passwords).
fn as_user(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}:{password}@{host}")
}

fn request_with(kind: &str, url: &str, props: Value) -> CloudFormationCustomResourceRequest {
    let mut r = serde_json::to_value(request(kind, url)).expect("value");
    r["ResourceProperties"] = props;
    serde_json::from_value(r).expect("request")
}

#[tokio::test]
async fn migrate_creates_a_least_privilege_app_role() {
    use calseta::deploy::app_role::AppRole;
    let (_, db_url) = TestDb::empty().await;
    let pool = db::build_pool(&DbConfig::from_url(db_url.clone())).expect("pool");
    let (url, _seen) = response_server().await;
    calseta::net::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    // Roles are cluster-wide: a unique name per run.
    let name = format!("app_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let role = AppRole::new(&name, "first-password-0123456789".to_owned().into()).expect("role");
    let steps = migrations_resource::Steps {
        bootstrap: None,
        app_role: Some(&role),
    };
    let r = migrations_resource::handle_with(request("Create", &url), Ok(&pool), &http, steps)
        .await
        .expect("answered");
    assert_eq!(r.status, "SUCCESS", "{}", r.reason);
    assert_eq!(r.data["AppRole"], json!(name));
    let verifier = |pool: db::Pool, name: String| async move {
        let c = pool.get().await.expect("admin");
        let v: String = c
            .query_one("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&name])
            .await
            .expect("rolpassword")
            .get(0);
        v
    };
    let first = verifier(pool.clone(), name.clone()).await;
    assert!(first.starts_with("SCRAM-SHA-256$4096:"), "{first}");
    // A second run (password rotated) is idempotent.
    let rotated = AppRole::new(&name, "second-password-0123456789".to_owned().into()).expect("role");
    let steps = migrations_resource::Steps {
        bootstrap: None,
        app_role: Some(&rotated),
    };
    let r = migrations_resource::handle_with(request("Update", &url), Ok(&pool), &http, steps)
        .await
        .expect("answered");
    assert_eq!(r.status, "SUCCESS", "{}", r.reason);
    assert_ne!(
        verifier(pool.clone(), name.clone()).await,
        first,
        "the rotated password is set"
    );

    let app = db::build_pool(&DbConfig::from_url(as_user(
        &db_url,
        &name,
        "second-password-0123456789",
    )))
    .expect("app pool");
    let c = app.get().await.expect("app connects");
    // Data access on the migrated tables ...
    c.batch_execute("DELETE FROM api_keys WHERE false")
        .await
        .expect("delete");
    c.query_one("SELECT count(*) FROM alerts", &[]).await.expect("select");
    c.query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .expect("reads schema versions");
    // ... but no DDL and no tampering with the migration history.
    for denied in [
        "CREATE TABLE app_owned (id int)",
        "DROP TABLE alerts",
        "ALTER TABLE alerts ADD COLUMN x int",
        "DELETE FROM schema_migrations",
        "CREATE ROLE sneaky",
    ] {
        let e = c.batch_execute(denied).await.expect_err(denied);
        let code = e.code().map(|c| c.code().to_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{denied}: {e}");
    }
    let is_super: bool = c
        .query_one(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("attrs")
        .get(0);
    assert!(!is_super);
    drop(c);
    drop(app);
    // Leave the cluster clean: the role owns nothing, so it can go.
    let admin = pool.get().await.expect("admin");
    admin
        .batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}"))
        .await
        .expect("drop role");
}

#[tokio::test]
async fn a_connection_budget_over_max_connections_fails_the_deployment() {
    let (_, db_url) = TestDb::empty().await;
    let pool = db::build_pool(&DbConfig::from_url(db_url)).expect("pool");
    let (url, seen) = response_server().await;
    calseta::net::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let c = pool.get().await.expect("client");
    let max: i64 = c
        .query_one("SELECT current_setting('max_connections')::bigint - current_setting('superuser_reserved_connections')::bigint", &[])
        .await
        .expect("max")
        .get(0);
    drop(c);
    let fits = json!({"ServiceToken": "x", "ConnectionBudget": format!("ingest={}x1,sweep=1x1", max - 1)});
    let r = migrations_resource::handle(request_with("Create", &url, fits), Ok(&pool), &http)
        .await
        .expect("answered");
    assert_eq!(r.status, "SUCCESS", "{}", r.reason);
    assert_eq!(r.data["ConnectionBudget"], json!(max));

    let over = json!({"ServiceToken": "x", "ConnectionBudget": format!("ingest={}x1,sweep=1x1", max)});
    let r = migrations_resource::handle(request_with("Update", &url, over.clone()), Ok(&pool), &http)
        .await
        .expect("answered");
    assert_eq!(r.status, "FAILED");
    assert!(r.reason.contains("exceeds"), "{}", r.reason);
    // The provider's own reserve counts too.
    let reserved = json!({"ServiceToken": "x", "ConnectionReserve": "1",
                          "ConnectionBudget": format!("ingest={}x1", max)});
    let r = migrations_resource::handle(request_with("Update", &url, reserved), Ok(&pool), &http)
        .await
        .expect("answered");
    assert_eq!(r.status, "FAILED");
    let bad = json!({"ServiceToken": "x", "ConnectionBudget": "ingest=lots"});
    let r = migrations_resource::handle(request_with("Update", &url, bad), Ok(&pool), &http)
        .await
        .expect("answered");
    assert_eq!(r.status, "FAILED");
    assert_eq!(seen.lock().expect("lock").len(), 4);
}
