//! Dispatch: agent matching, signing and delivery of the agent payload.

pub mod deliver;
pub mod matching;
pub mod signing;

pub use deliver::{DispatchSettings, Dispatcher};

/// Builds the dispatcher of a Lambda from its environment; called once in `main`.
pub async fn lambda_init(
    sdk: &aws_config::SdkConfig,
) -> Result<(std::sync::Arc<Dispatcher>, crate::queue::batch::BatchRunner), crate::api::InitError> {
    use std::sync::Arc;

    use crate::{
        config::{self, AppSecrets},
        crypto::Sealer,
        queue::{
            batch::{BatchRunner, PgParker},
            outbox::Outbox,
            sqs::SqsQueue,
            QueueName,
        },
        secrets::SecretsClient,
    };
    let secrets = SecretsClient::new(sdk);
    let (db, app) = tokio::try_join!(
        config::DbConfig::from_env(Some(&secrets)),
        AppSecrets::from_env(Some(&secrets))
    )?;
    let pool = crate::db::build_pool(&db)?;
    let queue: Arc<dyn crate::queue::Queue> = Arc::new(SqsQueue::from_config(sdk, &config::QueueConfig::from_env())?);
    let outbox = Outbox::new(pool.clone(), queue.clone());
    let settings = DispatchSettings::from_env()?;
    let dispatcher = Arc::new(Dispatcher::new(
        pool.clone(),
        outbox,
        Sealer::from_hex(&app.encryption_key)?,
        settings,
    ));
    let runner = BatchRunner::new(
        QueueName::Dispatch,
        queue,
        Arc::new(PgParker(pool)),
        crate::queue::MAX_BATCH,
    );
    Ok((dispatcher, runner))
}
