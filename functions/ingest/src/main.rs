//! `ingest` Lambda (API Gateway REST proxy): `POST /v1/ingest/{source}` and `POST /v1/alerts`.
//! See `calseta::ingest`.

use calseta::{api, app, config, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init_from_env();
    let sdk = config::aws_sdk_config().await;
    let state = app::lambda::ingest(&sdk).await?;
    lambda_http::run(api::ingest_router(state)).await
}
