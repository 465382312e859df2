//! `enrich` Lambda (SQS `enrich` queue, ReportBatchItemFailures): one message = one alert ×
//! indicator. See `calseta::enrich::engine`.

use aws_lambda_events::event::sqs::SqsEvent;
use calseta::{app, telemetry};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_from_env();
    let sdk = calseta::config::aws_sdk_config().await;
    let (engine, runner) = app::lambda::enrich(&sdk).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (engine, runner) = (engine.clone(), runner.clone());
        async move { Ok::<_, Error>(engine.handle_event(&runner, event.payload).await) }
    }))
    .await
}
