//! `migrate` Lambda: the CloudFormation custom resource that applies `migrations/` before
//! traffic. See `calseta::deploy::migrations_resource`.

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use calseta::{app, config, deploy::migrations_resource, telemetry};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_from_env();
    let sdk = config::aws_sdk_config().await;
    let parts = app::lambda::migrate(&sdk).await;
    calseta::net::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<CloudFormationCustomResourceRequest>| {
        let (http, bootstrap) = (&http, parts.bootstrap.as_ref());
        let (pool, app_role) = match (&parts.pool, &parts.app_role) {
            (Ok(p), Ok(r)) => (Ok(p), r.as_ref()),
            (Err(e), _) | (_, Err(e)) => (Err(e.as_str()), None),
        };
        let steps = migrations_resource::Steps { bootstrap, app_role };
        async move { Ok::<_, Error>(migrations_resource::handle_with(event.payload, pool, http, steps).await?) }
    }))
    .await
}
