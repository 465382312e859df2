//! Calseta: the data layer between SIEMs and security agents.
//!
//! Everything that is not a `main()` lives here, so the Lambda functions, the local stack
//! (`calseta dev`) and the tests run the very same code.

pub mod api;
pub mod app;
pub mod config;
pub mod context;
pub mod crypto;
pub mod db;
#[cfg(feature = "local")]
pub mod demo;
pub mod deploy;
pub mod dispatch;
pub mod domain;
pub mod enrich;
#[cfg(feature = "local")]
pub mod esm;
pub mod ingest;
pub mod keys;
#[cfg(feature = "local")]
pub mod lambda_local;
#[cfg(feature = "local")]
pub mod local;
pub mod mcp;
pub mod metrics;
pub mod net;
pub mod queue;
pub mod secrets;
pub mod service;
pub mod sources;
pub mod sweep;
pub mod telemetry;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

/// The version reported by `/health` and the CLI.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
