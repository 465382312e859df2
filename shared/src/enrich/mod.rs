//! Enrichment: provider clients and the rules around them (spec `providers.md`).

pub mod cache;
pub mod engine;
pub mod geo;
pub mod governor;
pub mod never_send;
pub mod provider;
pub mod providers;
pub mod registry;
pub mod simulator;

use crate::domain::indicator::IndicatorType;

/// Whether ingest should queue this indicator for enrichment: no built-in provider takes
/// `email`, and values the never-send policy catches never leave (providers spec §1.1). Such
/// indicators are still stored and linked, with their link marked `skipped`.
pub fn wants_enrichment(policy: &never_send::NeverSendPolicy, kind: IndicatorType, value: &str) -> bool {
    kind != IndicatorType::Email && policy.check(kind, value).is_none()
}

/// Everything the `enrich` Lambda needs, from its environment; called once in `main`. The
/// database, app-level and provider secrets are fetched concurrently.
pub async fn lambda_init(
    sdk: &aws_config::SdkConfig,
) -> Result<(std::sync::Arc<engine::Engine>, crate::queue::batch::BatchRunner), crate::api::InitError> {
    use std::sync::Arc;

    use crate::{
        config,
        queue::{
            batch::{BatchRunner, PgParker},
            outbox::Outbox,
            sqs::SqsQueue,
            QueueName,
        },
        secrets::SecretsClient,
    };
    let secrets = SecretsClient::new(sdk);
    let (db, providers) = tokio::try_join!(
        config::DbConfig::from_env(Some(&secrets)),
        registry::providers_from_env(Some(&secrets))
    )?;
    let pool = crate::db::build_pool(&db)?;
    let queue: Arc<dyn crate::queue::Queue> = Arc::new(SqsQueue::from_config(sdk, &config::QueueConfig::from_env())?);
    let outbox = Outbox::new(pool.clone(), queue.clone());
    let policy = Arc::new(config::never_send_from_env()?);
    tracing::info!(providers = ?providers.names(), "enrichment providers configured");
    let engine = Arc::new(engine::Engine::new(pool.clone(), outbox, providers, policy));
    let runner = BatchRunner::new(
        QueueName::Enrich,
        queue,
        Arc::new(PgParker(pool)),
        crate::queue::MAX_BATCH,
    );
    Ok((engine, runner))
}
