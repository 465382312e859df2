//! Postgres: pool, migrations, the embedded throwaway cluster, and one repository module per
//! table group.

pub mod activity;
pub mod agents;
pub mod alerts;
pub mod api_keys;
pub mod catalog;
pub mod deliveries;
#[cfg(feature = "local")]
pub mod embedded;
pub mod findings;
pub mod health;
pub mod indicators;
pub mod metrics;
pub mod migrate;
mod pool;
pub mod rate_limits;
pub mod sources;
pub mod stmt;
mod tls;

pub use deadpool_postgres::{Client, Pool, Transaction};
pub use pool::build_pool;

/// Errors at the database boundary, split into transient (retry later) and permanent.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("database configuration: {0}")]
    Config(String),
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => DbError::from(e),
            other => DbError::Unavailable(other.to_string()),
        }
    }
}

impl DbError {
    /// True when trying again later may succeed (lost connection, timeout, lock conflict).
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Unavailable(_) => true,
            DbError::Config(_) => false,
            DbError::Query(e) => {
                if e.is_closed() {
                    return true;
                }
                match e.code() {
                    // No SQLSTATE: an I/O or protocol failure on the connection.
                    None => true,
                    Some(code) => matches!(
                        code.code(),
                        "40001" // serialization_failure
                            | "40P01" // deadlock_detected
                            | "55P03" // lock_not_available
                            | "57014" // query_canceled (statement timeout)
                            | "57P01" // admin_shutdown
                            | "57P02" // crash_shutdown
                            | "57P03" // cannot_connect_now
                            | "53300" // too_many_connections
                            | "08000" | "08003" | "08006" | "08001" | "08004"
                    ),
                }
            }
        }
    }

    /// True when the statement was refused for the data it carried (data exception, a violated
    /// constraint, a program limit such as an index row too large): the same data always
    /// fails, other data in the same request may not.
    pub fn is_bad_data(&self) -> bool {
        match self {
            DbError::Query(e) => e.code().is_some_and(|c| ["22", "23", "54"].contains(&&c.code()[..2])),
            _ => false,
        }
    }

    /// The name of the violated constraint, when a unique/check/foreign-key constraint failed.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            DbError::Query(e) => e.as_db_error().and_then(|d| d.constraint()),
            _ => None,
        }
    }
}
