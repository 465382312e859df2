//! `migrate` Lambda: the CloudFormation custom resource that applies `migrations/` before
//! traffic. See `calseta::deploy::migrations_resource`.

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use calseta::{config, db, deploy::migrations_resource, secrets::SecretsClient, telemetry};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_from_env();
    let sdk = config::aws_sdk_config().await;
    // A configuration problem must still be reported to CloudFormation, so keep it as a value.
    let secrets = SecretsClient::new(&sdk);
    let pool = match config::DbConfig::from_env(Some(&secrets)).await {
        Ok(cfg) => db::build_pool(&cfg).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let bootstrap = migrations_resource::Bootstrap::from_env(&secrets)
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "bootstrap admin key secret unreadable");
            None
        });
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<CloudFormationCustomResourceRequest>| {
        let pool = pool.as_ref().map_err(String::as_str);
        let (http, bootstrap) = (&http, bootstrap.as_ref());
        async move { Ok::<_, Error>(migrations_resource::handle_with(event.payload, pool, http, bootstrap).await?) }
    }))
    .await
}
