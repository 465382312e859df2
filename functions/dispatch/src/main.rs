//! `dispatch` Lambda (SQS `dispatch` queue, ReportBatchItemFailures): builds the agent payload
//! and delivers it, signed, to every matching agent; retries travel as delayed messages. See
//! `calseta::dispatch::deliver`.

use aws_lambda_events::event::sqs::SqsEvent;
use calseta::{app, telemetry};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_from_env();
    let sdk = calseta::config::aws_sdk_config().await;
    let (dispatcher, runner) = app::lambda::dispatch(&sdk).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (dispatcher, runner) = (dispatcher.clone(), runner.clone());
        async move { Ok::<_, Error>(dispatcher.handle_event(&runner, event.payload).await) }
    }))
    .await
}
