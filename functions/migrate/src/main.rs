//! `migrate` Lambda: the CloudFormation custom resource that applies `migrations/` before
//! traffic. See `calseta::deploy::migrations_resource`.

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use calseta::{
    config, db,
    deploy::{app_role::AppRole, migrations_resource},
    secrets::SecretsClient,
    telemetry,
};
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
    // Unreadable means the functions could not log in: fail the deployment, not later traffic.
    let app_role = migrations_resource_app_role(&secrets).await;
    calseta::net::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<CloudFormationCustomResourceRequest>| {
        let (http, bootstrap) = (&http, bootstrap.as_ref());
        let (pool, app_role) = match (&pool, &app_role) {
            (Ok(p), Ok(r)) => (Ok(p), r.as_ref()),
            (Err(e), _) | (_, Err(e)) => (Err(e.as_str()), None),
        };
        let steps = migrations_resource::Steps { bootstrap, app_role };
        async move { Ok::<_, Error>(migrations_resource::handle_with(event.payload, pool, http, steps).await?) }
    }))
    .await
}

async fn migrations_resource_app_role(secrets: &SecretsClient) -> Result<Option<AppRole>, String> {
    AppRole::from_env(secrets)
        .await
        .map_err(|e| format!("CALSETA_APP_DB_SECRET_ARN: {e}"))
}
