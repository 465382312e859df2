//! The migration runner against a real Postgres.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use calseta::{
    db::migrate::{self, MigrateError},
    testing::TestDb,
};

async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    c
}

#[tokio::test]
async fn applies_everything_once_then_nothing() {
    let (_, url) = TestDb::empty().await;
    let mut c = connect(&url).await;
    let first = migrate::run(&mut c).await.expect("first run");
    let all: Vec<i32> = migrate::all().map(|m| m.version).collect();
    assert_eq!(first.applied, all);
    let second = migrate::run(&mut c).await.expect("second run");
    assert!(second.applied.is_empty());
    assert_eq!(second.already_applied, all.len());
    // Every table of the design exists.
    for table in [
        "alerts",
        "indicators",
        "alert_indicators",
        "enrichment_results",
        "provider_quotas",
        "detection_rules",
        "context_documents",
        "workflows",
        "agents",
        "deliveries",
        "findings",
        "api_keys",
        "sources",
        "outbox",
        "activity_events",
        "ingest_archive",
        "parked_messages",
    ] {
        let row = c
            .query_one("SELECT to_regclass($1)::text", &[&table])
            .await
            .expect("regclass");
        assert_eq!(
            row.get::<_, Option<String>>(0).as_deref(),
            Some(table),
            "missing table {table}"
        );
    }
}

#[tokio::test]
async fn concurrent_runners_apply_each_migration_once() {
    let (_, url) = TestDb::empty().await;
    let mut handles = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            let mut c = connect(&url).await;
            migrate::run(&mut c).await.expect("run")
        }));
    }
    let mut applied = 0;
    for h in handles {
        applied += h.await.expect("join").applied.len();
    }
    assert_eq!(applied, migrate::all().count());
    let c = connect(&url).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n as usize, migrate::all().count());
}

#[tokio::test]
async fn refuses_edited_and_unknown_migrations() {
    let db = TestDb::new().await;
    let mut c = connect(&db.url).await;
    c.execute(
        "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
        &[],
    )
    .await
    .expect("edit");
    assert!(matches!(
        migrate::run(&mut c).await,
        Err(MigrateError::Modified { version: 1, .. })
    ));

    let db = TestDb::new().await;
    let mut c = connect(&db.url).await;
    c.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')",
        &[],
    )
    .await
    .expect("insert");
    assert!(matches!(migrate::run(&mut c).await, Err(MigrateError::Unknown(9999))));
}

#[tokio::test]
async fn key_constraints_hold() {
    let db = TestDb::new().await;
    let c = db.pool.get().await.expect("client");
    let insert = "INSERT INTO alerts (source_name, source_alert_id, title, occurred_at, raw_payload)
                  VALUES ('elastic', 'a-1', 't', now(), '{}')";
    c.execute(insert, &[]).await.expect("first alert");
    let dup = c.execute(insert, &[]).await.expect_err("duplicate alert");
    let err = calseta::db::DbError::from(dup);
    assert_eq!(err.constraint(), Some("alerts_source_alert_key"));
    assert!(!err.is_transient());

    let ind = "INSERT INTO indicators (type, value) VALUES ('ip', '185.220.101.47')";
    c.execute(ind, &[]).await.expect("indicator");
    let err = calseta::db::DbError::from(c.execute(ind, &[]).await.expect_err("dup indicator"));
    assert_eq!(err.constraint(), Some("indicators_type_value_key"));

    let bad = c
        .execute("INSERT INTO indicators (type, value) VALUES ('ipv9', 'x')", &[])
        .await
        .expect_err("bad type");
    assert!(bad.as_db_error().is_some());
}
