//! Database credentials that rotate: a warm function whose password was rotated (RDS-managed
//! secret) re-reads the secret on SQLSTATE 28P01 and reconnects, instead of failing until a cold
//! start. Real parts: a Postgres cluster with password auth for the role, and the secret in a
//! moto Secrets Manager read through the same `DbConfig::from_env` path the functions use.
//! One test per binary: it sets process environment variables.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::sync::Arc;

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use calseta::{
    config::{DbConfig, SecretsManagerCredentials},
    db::{
        self,
        embedded::{EmbeddedOptions, EmbeddedPostgres},
    },
    secrets::SecretsClient,
    testing::moto_endpoint,
};

const ROLE: &str = "calseta_rotor";

fn sdk_config() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(calseta::net::tls::aws_http_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "tests",
        )))
        .endpoint_url(moto_endpoint())
        .build()
}

fn secret_json(port: u16, password: &str) -> String {
    serde_json::json!({
        "username": ROLE, "password": password, "engine": "postgres",
        "host": "127.0.0.1", "port": port, "dbname": "postgres",
    })
    .to_string()
}

async fn select_one(pool: &db::Pool) -> Result<i32, String> {
    let client = pool.get().await.map_err(|e| format!("{e:?}"))?;
    let row = client.query_one("SELECT 1", &[]).await.map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn a_rotated_password_is_re_read_and_the_pool_reconnects() {
    let root = std::env::temp_dir().join(format!("calseta-rotation-pg-{}", std::process::id()));
    let mut pg = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&EmbeddedOptions {
            root,
            port: None,
            remove_on_stop: true,
        })
    })
    .await
    .expect("join")
    .expect("embedded postgres");
    let (admin, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
        .await
        .expect("admin connect");
    tokio::spawn(conn);
    // The throwaway cluster trusts loopback; this role must present a password, as on RDS.
    let hba = pg.root().join("data/pg_hba.conf");
    let rest = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(&hba, format!("host all {ROLE} 127.0.0.1/32 scram-sha-256\n{rest}")).expect("write pg_hba.conf");
    admin
        .batch_execute(&format!(
            "SET password_encryption = 'scram-sha-256'; CREATE ROLE {ROLE} LOGIN PASSWORD 'before-rotation'; \
             SELECT pg_reload_conf();"
        ))
        .await
        .expect("role");

    let secrets = SecretsClient::new(&sdk_config());
    let sm = aws_sdk_secretsmanager::Client::new(&sdk_config());
    let name = format!("rds-{}", uuid::Uuid::new_v4().simple());
    let arn = sm
        .create_secret()
        .name(&name)
        .secret_string(secret_json(pg.port(), "before-rotation"))
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    std::env::remove_var("DATABASE_URL");
    std::env::remove_var("DATABASE_HOST");
    std::env::set_var("DATABASE_SECRET_ARN", &arn);
    let cfg = DbConfig::from_env(Some(&secrets))
        .await
        .expect("config from the secret");
    assert!(
        cfg.credentials.is_some(),
        "a secret-backed config must be able to re-read its secret"
    );
    let pool = db::build_pool(&cfg).expect("pool");
    assert_eq!(select_one(&pool).await, Ok(1));

    // Rotation, as RDS does it: the role's password changes and the secret gets the new value.
    // Established connections survive; drop them so the next use opens a new one, as a warm
    // Lambda does after its idle connection is recycled.
    admin
        .batch_execute(&format!("ALTER ROLE {ROLE} PASSWORD 'after-rotation'"))
        .await
        .expect("rotate");
    sm.put_secret_value()
        .secret_id(&arn)
        .secret_string(secret_json(pg.port(), "after-rotation"))
        .send()
        .await
        .expect("put secret");
    pool.retain(|_, _| false);

    // Control: the same stale credentials without a source to re-read fail with 28P01, so the
    // assertion below can only pass through the re-read.
    let mut stale = cfg.clone();
    stale.credentials = None;
    let stale_pool = db::build_pool(&stale).expect("pool");
    let err = select_one(&stale_pool)
        .await
        .expect_err("stale password must be rejected");
    assert!(err.contains("28P01"), "{err}");

    assert_eq!(
        select_one(&pool).await,
        Ok(1),
        "pool must reconnect with the rotated secret"
    );
    // Later connections use the refreshed credentials directly.
    pool.retain(|_, _| false);
    assert_eq!(select_one(&pool).await, Ok(1));

    // A secret that is still wrong surfaces the authentication error instead of looping.
    admin
        .batch_execute(&format!("ALTER ROLE {ROLE} PASSWORD 'rotated-again'"))
        .await
        .expect("rotate");
    pool.retain(|_, _| false);
    let err = select_one(&pool).await.expect_err("wrong secret must fail");
    assert!(err.contains("28P01"), "{err}");

    // An explicit source also works without the environment (e.g. a custom deployment).
    let mut direct = stale.clone();
    direct.credentials = Some(Arc::new(SecretsManagerCredentials::new(secrets.clone(), arn.clone())));
    sm.put_secret_value()
        .secret_id(&arn)
        .secret_string(secret_json(pg.port(), "rotated-again"))
        .send()
        .await
        .expect("put secret");
    assert_eq!(select_one(&db::build_pool(&direct).expect("pool")).await, Ok(1));
    drop(admin);
    tokio::task::spawn_blocking(move || pg.stop()).await.expect("stop");
}
