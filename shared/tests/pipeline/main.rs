//! The pipeline below HTTP, one test binary: queues and the outbox, the enrichment engine,
//! dispatch, the durable local queue, migrations and the deploy-time custom resource. Each
//! test uses its own database (`calseta::testing::TestDb`).

mod deploy_resource;
mod dispatch;
mod durable;
mod enrich_engine;
mod memory_queue;
mod migrations;
mod outbox;
