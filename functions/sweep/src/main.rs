//! `sweep` Lambda (EventBridge, every minute): re-sends unsent outbox rows. See `calseta::sweep`.

use calseta::{app, config, sweep, telemetry};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_from_env();
    let sdk = config::aws_sdk_config().await;
    let outbox = app::lambda::sweep(&sdk).await?;
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| {
        let outbox = outbox.clone();
        async move { Ok::<_, Error>(sweep::run_once(&outbox, sweep::DEFAULT_MIN_AGE).await?) }
    }))
    .await
}
