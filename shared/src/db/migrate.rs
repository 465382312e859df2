//! The one migration runner, used by `calseta migrate`, the local stack, the tests and the
//! `migrate` Lambda. Migrations are embedded at build time from `migrations/`.
//!
//! Safe to run concurrently (an advisory lock serialises runners) and repeatedly (applied
//! versions are skipped). An applied migration whose text changed is refused: editing history
//! would leave deployed databases different from new ones.

use sha2::{Digest, Sha256};

use super::DbError;

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Arbitrary constant: the advisory lock key all migration runners share.
const LOCK_KEY: i64 = 0x0063_616c_7365_7461; // "calseta" in ASCII

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// All migrations in version order.
pub fn all() -> impl Iterator<Item = Migration> {
    MIGRATIONS
        .iter()
        .map(|&(version, name, sql)| Migration { version, name, sql })
}

/// A digest of the whole set: test harnesses key their template database on it.
#[cfg(any(test, feature = "test-support"))]
pub(crate) fn fingerprint() -> String {
    let mut h = Sha256::new();
    for m in all() {
        h.update(m.version.to_be_bytes());
        h.update(m.sql.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<i32>,
    pub already_applied: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("migration {version} ({name}) was changed after it was applied")]
    Modified { version: i32, name: String },
    #[error("database has migration {0}, which this build does not know: refusing to run an older build")]
    Unknown(i32),
}

impl From<deadpool_postgres::PoolError> for MigrateError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        MigrateError::Db(DbError::from(e))
    }
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Db(DbError::Query(e))
    }
}

/// Applies every pending migration, each in its own transaction, under an advisory lock.
pub async fn run(client: &mut tokio_postgres::Client) -> Result<MigrationReport, MigrateError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY]).await?;
    let result = apply(client).await;
    // Unlock even on failure; the session may be reused by a pool.
    let unlock = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await;
    let report = result?;
    unlock?;
    Ok(report)
}

async fn apply(client: &mut tokio_postgres::Client) -> Result<MigrationReport, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let rows = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await?;
    let applied: std::collections::HashMap<i32, String> = rows
        .iter()
        .map(|r| Ok((r.try_get("version")?, r.try_get("checksum")?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let known: std::collections::HashSet<i32> = all().map(|m| m.version).collect();
    if let Some(v) = applied.keys().find(|v| !known.contains(v)) {
        return Err(MigrateError::Unknown(*v));
    }
    let mut report = MigrationReport::default();
    for m in all() {
        match applied.get(&m.version) {
            Some(sum) if *sum == m.checksum() => report.already_applied += 1,
            Some(_) => {
                return Err(MigrateError::Modified {
                    version: m.version,
                    name: m.name.into(),
                })
            }
            None => {
                let tx = client.transaction().await?;
                tx.batch_execute(m.sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    &[&m.version, &m.name, &m.checksum()],
                )
                .await?;
                tx.commit().await?;
                tracing::info!(version = m.version, name = m.name, "migration applied");
                report.applied.push(m.version);
            }
        }
    }
    Ok(report)
}

/// Runs the migrations on a connection taken from a pool.
pub async fn run_on_pool(pool: &super::Pool) -> Result<MigrationReport, MigrateError> {
    let mut client = pool.get().await?;
    let client: &mut tokio_postgres::Client = &mut client;
    run(client).await
}
