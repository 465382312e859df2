//! The one assembly point (DESIGN "Layers", 6): the parts every front door runs on are built
//! here, from configuration, and nowhere else. Each Lambda `main` calls one function of
//! [`lambda`]; `calseta dev`, the test harness and the benches build their parts with [`Core`].
//! Nothing below this module knows how the process was started.

use std::sync::Arc;

use crate::{
    api::AppState,
    config::{self, AppSecrets, ConfigError, Limits},
    crypto::{CryptoError, Sealer},
    db::{DbError, Pool},
    dispatch::{DispatchSettings, Dispatcher},
    enrich::{
        engine::{Engine, EngineSettings},
        never_send::NeverSendPolicy,
        registry::ProviderSet,
    },
    queue::{
        batch::{BatchRunner, PgParker},
        outbox::Outbox,
        Queue, QueueName,
    },
};

/// Why a process could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The never-send policy from `INTERNAL_CIDRS` and `INTERNAL_DOMAIN_SUFFIXES` (comma- or
/// space-separated; the organisation's own public ranges and internal DNS suffixes).
pub(crate) fn never_send_from_env() -> Result<NeverSendPolicy, ConfigError> {
    NeverSendPolicy::from_settings(
        &config::var("INTERNAL_CIDRS").unwrap_or_default(),
        &config::var("INTERNAL_DOMAIN_SUFFIXES").unwrap_or_default(),
    )
    .map_err(|e| ConfigError::Invalid {
        name: "INTERNAL_CIDRS",
        problem: e.to_string(),
    })
}

/// The database and the queues, with the outbox over both: what every part is built on.
#[derive(Clone)]
pub struct Core {
    pub pool: Pool,
    pub queue: Arc<dyn Queue>,
    pub outbox: Outbox,
}

impl Core {
    pub fn new(pool: Pool, queue: Arc<dyn Queue>) -> Self {
        let outbox = Outbox::new(pool.clone(), queue.clone());
        Self { pool, queue, outbox }
    }

    /// The HTTP state (REST and MCP) without the engine or the dispatcher.
    pub fn state(
        &self,
        secrets: &AppSecrets,
        limits: Limits,
        never_send: NeverSendPolicy,
    ) -> Result<AppState, CryptoError> {
        let mut state =
            AppState::new(self.pool.clone(), self.queue.clone(), secrets, limits)?.with_never_send(never_send);
        state.outbox = self.outbox.clone();
        Ok(state)
    }

    pub fn engine(
        &self,
        providers: ProviderSet,
        never_send: Arc<NeverSendPolicy>,
        settings: EngineSettings,
    ) -> Arc<Engine> {
        Arc::new(Engine::with_settings(
            self.pool.clone(),
            self.outbox.clone(),
            providers,
            never_send,
            settings,
        ))
    }

    pub fn dispatcher(&self, sealer: Sealer, settings: DispatchSettings) -> Arc<Dispatcher> {
        Arc::new(Dispatcher::new(
            self.pool.clone(),
            self.outbox.clone(),
            sealer,
            settings,
        ))
    }

    /// The batch runner of a queue consumer (partial failures, parking over the database).
    pub fn runner(&self, queue: QueueName) -> BatchRunner {
        BatchRunner::new(
            queue,
            self.queue.clone(),
            Arc::new(PgParker(self.pool.clone())),
            crate::queue::MAX_BATCH,
        )
    }

    /// The state with the engine and the dispatcher, as `calseta dev`, the `api` Lambda and the
    /// test harness serve it.
    pub fn full_state(
        &self,
        state: AppState,
        providers: ProviderSet,
        engine_settings: EngineSettings,
        dispatch_settings: DispatchSettings,
    ) -> (AppState, Arc<Engine>, Arc<Dispatcher>) {
        let engine = self.engine(providers, state.never_send.clone(), engine_settings);
        let dispatcher = self.dispatcher(state.sealer.clone(), dispatch_settings);
        let state = state.with_enrichment(engine.clone()).with_dispatch(dispatcher.clone());
        (state, engine, dispatcher)
    }
}

/// What each Lambda (and the MCP container) builds once in `main`, from its environment.
/// Secrets are fetched concurrently to keep init short.
pub mod lambda {
    use super::*;
    use crate::{
        config::{DbConfig, QueueConfig},
        deploy::{app_role::AppRole, migrations_resource::Bootstrap},
        enrich::registry,
        queue::sqs::SqsQueue,
        secrets::SecretsClient,
    };

    fn core(sdk: &aws_config::SdkConfig, db: &DbConfig) -> Result<Core, InitError> {
        let pool = crate::db::build_pool(db)?;
        let queue: Arc<dyn Queue> = Arc::new(SqsQueue::from_config(sdk, &QueueConfig::from_env())?);
        Ok(Core::new(pool, queue))
    }

    async fn state_with_secrets(sdk: &aws_config::SdkConfig) -> Result<(Core, AppState, AppSecrets), InitError> {
        let secrets = SecretsClient::new(sdk);
        let (db, app) = tokio::try_join!(DbConfig::from_env(Some(&secrets)), AppSecrets::from_env(Some(&secrets)))?;
        let core = core(sdk, &db)?;
        let trust = match config::var("CALSETA_TRUST_FORWARDED_FOR") {
            Some(v) => registry::parse_bool("CALSETA_TRUST_FORWARDED_FOR", &v)?,
            None => false,
        };
        let state = core
            .state(&app, Limits::from_env()?, never_send_from_env()?)?
            .with_trusted_forwarded_for(trust);
        Ok((core, state, app))
    }

    /// The `ingest` Lambda: the HTTP state, without engine or dispatcher.
    pub async fn ingest(sdk: &aws_config::SdkConfig) -> Result<AppState, InitError> {
        Ok(state_with_secrets(sdk).await?.1)
    }

    /// The `api` Lambda and the MCP container: the state plus the dispatcher (agent URL checks,
    /// test deliveries) and the enrichment engine (on-demand lookups).
    pub async fn api(sdk: &aws_config::SdkConfig) -> Result<AppState, InitError> {
        let secrets = SecretsClient::new(sdk);
        let ((core, state, _), providers) = tokio::try_join!(state_with_secrets(sdk), async {
            Ok::<_, InitError>(registry::providers_from_env(Some(&secrets)).await?)
        })?;
        let (state, _, _) = core.full_state(
            state,
            providers,
            EngineSettings::default(),
            DispatchSettings::from_env()?,
        );
        Ok(state)
    }

    /// The `enrich` Lambda: the engine and its batch runner. The database and provider
    /// secrets are fetched concurrently.
    pub async fn enrich(sdk: &aws_config::SdkConfig) -> Result<(Arc<Engine>, BatchRunner), InitError> {
        let secrets = SecretsClient::new(sdk);
        let (db, providers) = tokio::try_join!(
            DbConfig::from_env(Some(&secrets)),
            registry::providers_from_env(Some(&secrets))
        )?;
        let core = core(sdk, &db)?;
        let policy = Arc::new(never_send_from_env()?);
        tracing::info!(providers = ?providers.names(), "enrichment providers configured");
        let engine = core.engine(providers, policy, EngineSettings::default());
        Ok((engine, core.runner(QueueName::Enrich)))
    }

    /// The `dispatch` Lambda: the dispatcher and its batch runner.
    pub async fn dispatch(sdk: &aws_config::SdkConfig) -> Result<(Arc<Dispatcher>, BatchRunner), InitError> {
        let secrets = SecretsClient::new(sdk);
        let (db, app) = tokio::try_join!(DbConfig::from_env(Some(&secrets)), AppSecrets::from_env(Some(&secrets)))?;
        let core = core(sdk, &db)?;
        let settings = DispatchSettings::from_env()?;
        let dispatcher = core.dispatcher(Sealer::from_hex(&app.encryption_key)?, settings);
        Ok((dispatcher, core.runner(QueueName::Dispatch)))
    }

    /// The `sweep` Lambda: the outbox it re-sends.
    pub async fn sweep(sdk: &aws_config::SdkConfig) -> Result<Outbox, InitError> {
        let db = DbConfig::from_env(Some(&SecretsClient::new(sdk))).await?;
        Ok(core(sdk, &db)?.outbox)
    }

    /// What the `migrate` Lambda (a CloudFormation custom resource) runs with. A configuration
    /// problem must still be reported to CloudFormation, so it is kept as a value, not returned.
    pub struct Migrate {
        pub pool: Result<Pool, String>,
        pub bootstrap: Option<Bootstrap>,
        /// Unreadable means the functions could not log in: fail the deployment, not later traffic.
        pub app_role: Result<Option<AppRole>, String>,
    }

    pub async fn migrate(sdk: &aws_config::SdkConfig) -> Migrate {
        let secrets = SecretsClient::new(sdk);
        let pool = match DbConfig::from_env(Some(&secrets)).await {
            Ok(cfg) => crate::db::build_pool(&cfg).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let bootstrap = Bootstrap::from_env(&secrets).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "bootstrap admin key secret unreadable");
            None
        });
        let app_role = AppRole::from_env(&secrets)
            .await
            .map_err(|e| format!("CALSETA_APP_DB_SECRET_ARN: {e}"));
        Migrate {
            pool,
            bootstrap,
            app_role,
        }
    }
}
