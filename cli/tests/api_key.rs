//! `calseta api-key create`: the bootstrap of the first admin key straight into the database,
//! hashed with the deployment's secret; the key is printed once (stdout) and never stored.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::process::Command;

use calseta::keys::KeyHasher;
use calseta::testing::TestDb;
use secrecy::SecretString;

#[tokio::test]
async fn creates_an_admin_key_hashed_with_the_deployment_secret() {
    let db = TestDb::new().await;
    let secret = "0123456789abcdef0123456789abcdef";
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_calseta"))
            .args(["api-key", "create"])
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("CALSETA_KEY_HASH_SECRET", secret)
            .env("CALSETA_ENCRYPTION_KEY", "00".repeat(32))
            .env_remove("CALSETA_SECRETS_ARN")
            .env_remove("DATABASE_SECRET_ARN")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run calseta api-key create")
    };
    let out = run(&["--name", "first-admin"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("cai_") && key.len() == 47, "{key}");
    let c = db.pool.get().await.unwrap();
    let row = c
        .query_one(
            "SELECT name, scopes, key_hash, is_active FROM api_keys WHERE key_prefix = $1",
            &[&&key[..8]],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "first-admin");
    assert_eq!(row.get::<_, Vec<String>>(1), vec!["admin".to_string()]);
    let hasher = KeyHasher::new(SecretString::from(secret.to_string()));
    assert_eq!(row.get::<_, Vec<u8>>(2), hasher.hash(&key));
    assert!(row.get::<_, bool>(3));
    let stored: String = c
        .query_one("SELECT string_agg(t::text, '') FROM api_keys t", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!stored.contains(&key), "the plaintext key is not stored");

    let bad = run(&["--name", "x", "--scopes", "root"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope"));
}
