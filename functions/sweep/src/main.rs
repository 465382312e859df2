//! `sweep` Lambda (EventBridge, every minute): re-sends unsent outbox rows. See `calseta::sweep`.

use std::sync::Arc;

use calseta::{
    config, db,
    queue::{outbox::Outbox, sqs::SqsQueue},
    secrets::SecretsClient,
    sweep, telemetry,
};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_from_env();
    let sdk = config::aws_sdk_config().await;
    let db_config = config::DbConfig::from_env(Some(&SecretsClient::new(&sdk))).await?;
    let pool = db::build_pool(&db_config)?;
    let queue = SqsQueue::from_config(&sdk, &config::QueueConfig::from_env())?;
    let outbox = Outbox::new(pool, Arc::new(queue));
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| {
        let outbox = outbox.clone();
        async move { Ok::<_, Error>(sweep::run_once(&outbox, sweep::DEFAULT_MIN_AGE).await?) }
    }))
    .await
}
