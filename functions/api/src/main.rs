//! `api` Lambda (API Gateway REST proxy): the REST API under `/v1` and `/health` — the same
//! router `calseta dev` serves. See `calseta::api`.

use calseta::{api, app, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init_from_env();
    let sdk = calseta::config::aws_sdk_config().await;
    let state = app::lambda::api(&sdk).await?;
    lambda_http::run(api::router(state)).await
}
