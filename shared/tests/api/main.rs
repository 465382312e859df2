//! The REST API through HTTP, one test binary (zero2prod's `tests/api/main.rs`): each module was
//! its own binary, each linking the whole crate. Every test builds its own app on its own
//! database (`calseta::testing::TestApp`), so they share nothing but the process. Tests that
//! need a process of their own stay apart: `ingest` (captures the global log subscriber),
//! `ingest_unnamed_statements` (the statement mode is process-wide), `db_rotation` and
//! `sqs_moto` (they set environment variables).

mod alerts_api;
mod api_keys;
mod api_security;
mod catalog_api;
mod health;
mod ingest_limits;
mod ingest_real_payloads;
mod scope_matrix;
mod sources_api;
