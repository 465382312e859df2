//! The local stack behind `calseta dev` (DESIGN §3): one process with an embedded throwaway
//! Postgres (unless `DATABASE_URL` is set), in-process consumers of durable queues with SQS
//! semantics whose messages are rows in that database (or real SQS when `SQS_ENDPOINT_URL` is
//! set), the sweeper, and the HTTP API.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::{
    api,
    app::{self, Core},
    config::{AppSecrets, DbConfig, Limits},
    db::{
        self, api_keys,
        embedded::{EmbeddedOptions, EmbeddedPostgres},
        migrate,
    },
    dispatch::DispatchSettings,
    enrich::{
        engine::EngineSettings,
        registry::{self, Credentials, ProviderSet, ProviderSettings},
        simulator,
    },
    queue::{memory::QueueSettings, outbox::Outbox, pg::PgQueue, sqs::SqsQueue, Queue, QueueName},
    sweep,
};

pub mod secrets;

/// Options of `calseta dev` (flags or environment).
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub host: String,
    pub port: u16,
    pub mcp_port: u16,
    pub admin_key: Option<SecretString>,
    pub data_dir: PathBuf,
    pub database_url: Option<SecretString>,
    pub sqs_endpoint_url: Option<String>,
    pub sweep_interval: Duration,
    /// Load the demo library (`calseta::demo`) into the database.
    pub demo: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Embedded(#[from] db::embedded::EmbeddedError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// Runs the stack until `shutdown` resolves, then stops everything it started, Postgres last.
pub async fn run(
    opts: DevOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DevError> {
    let mut embedded = None;
    let db_url = match &opts.database_url {
        Some(url) => url.expose_secret().to_owned(),
        None => {
            let root = opts.data_dir.join("pg");
            let pg = tokio::task::spawn_blocking(move || {
                EmbeddedPostgres::start(&EmbeddedOptions {
                    root,
                    port: None,
                    remove_on_stop: true,
                })
            })
            .await
            .map_err(|e| DevError::Other(e.to_string()))??;
            let admin = pg.url("postgres");
            let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .map_err(db::DbError::from)?;
            tokio::spawn(conn);
            client
                .batch_execute("CREATE DATABASE calseta")
                .await
                .map_err(db::DbError::from)?;
            let url = pg.url("calseta");
            tracing::info!(port = pg.port(), "embedded postgres started");
            embedded = Some(pg);
            url
        }
    };
    let result = serve(&opts, &db_url, embedded.as_ref().map(|pg| pg.port()), shutdown).await;
    if let Some(mut pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop()).await.ok();
        tracing::info!("embedded postgres stopped");
    }
    result
}

#[allow(
    clippy::too_many_lines,
    reason = "long but linear; a split along its phases is issue #11's next step"
)]
async fn serve(
    opts: &DevOptions,
    db_url: &str,
    embedded_port: Option<u16>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DevError> {
    let mut cfg = DbConfig::from_url(db_url);
    cfg.pool_size = 16;
    let pool = db::build_pool(&cfg)?;
    let report = migrate::run_on_pool(&pool).await?;
    tracing::info!(
        applied = report.applied.len(),
        already = report.already_applied,
        "migrations"
    );

    let secrets = dev_secrets(opts, embedded_port)?;
    let limits = Limits::from_env().map_err(|e| DevError::Other(e.to_string()))?;

    let cancel = CancellationToken::new();
    let (queue, sqs, local) = dev_queues(opts, &pool).await?;
    let core = Core::new(pool.clone(), queue.clone());
    let never_send = app::never_send_from_env().map_err(|e| DevError::Other(e.to_string()))?;
    let state = core
        .state(&secrets, limits, never_send)
        .map_err(|e| DevError::Other(e.to_string()))?;

    // Providers: real ones when credentials are set, else the local simulator.
    let (providers, simulator_note) = dev_providers(&cancel).await?;
    // Agents on this machine are the common local case: loopback is allowed unless
    // CALSETA_OUTBOUND_ALLOW_LOOPBACK says otherwise (a deployed stack refuses it).
    let mut dispatch_settings = DispatchSettings::from_env().map_err(|e| DevError::Other(e.to_string()))?;
    if crate::config::var("CALSETA_OUTBOUND_ALLOW_LOOPBACK").is_none() {
        dispatch_settings.policy.allow_loopback = true;
    }
    let (state, engine, dispatcher) = core.full_state(state, providers, EngineSettings::default(), dispatch_settings);
    let enrich_handler = engine.handler(core.runner(QueueName::Enrich));
    let dispatch_handler = dispatcher.handler(core.runner(QueueName::Dispatch));
    let mut consumers = Vec::new();
    if let Some(q) = &local {
        consumers.extend(q.spawn_consumers(QueueName::Enrich, enrich_handler.clone(), 4, cancel.clone()));
        consumers.extend(q.spawn_consumers(QueueName::Dispatch, dispatch_handler.clone(), 2, cancel.clone()));
    }
    if let Some(q) = &sqs {
        consumers.extend(q.spawn_consumers(QueueName::Enrich, enrich_handler.clone(), 4, cancel.clone()));
        consumers.extend(q.spawn_consumers(QueueName::Dispatch, dispatch_handler.clone(), 2, cancel.clone()));
    }

    let (admin_key, generated, demo_note) = bootstrap(opts, &pool, &state).await?;

    let sweeper = spawn_sweeper(state.outbox.clone(), opts.sweep_interval, cancel.clone());

    let (listener, local) = bind(&format!("{}:{}", opts.host, opts.port)).await?;
    // MCP on its own port (0 = any free one), over the same state and keys.
    let (mcp_listener, mcp_local) = bind(&format!("{}:{}", opts.host, opts.mcp_port)).await?;
    let mut mcp_config = crate::mcp::McpConfig::from_env();
    if !mcp_config.allowed_hosts.iter().any(|h| h == &opts.host) {
        mcp_config.allowed_hosts.push(opts.host.clone());
    }
    let mcp_app = crate::mcp::router(state.clone(), &mcp_config, cancel.child_token());
    // Header and whole-request bounds on both ports: a dev stack on a shared machine must not
    // be held open by half-sent requests.
    let timeouts = crate::config::server_timeouts_from_env().map_err(|e| DevError::Other(e.to_string()))?;
    let mcp_server = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            crate::net::server::serve(mcp_listener, mcp_app, timeouts, async move { cancel.cancelled().await }).await
        })
    };
    let app = api::router(state);

    let db_note = match embedded_port {
        Some(p) => format!("embedded postgres on 127.0.0.1:{p}"),
        None => "DATABASE_URL".to_owned(),
    };
    // One ready line: scripts wait for it.
    println!(
        "calseta dev ready: api http://{local} (health http://{local}/health), database {db_note}, queues {}, providers {simulator_note}, mcp http://{mcp_local}/mcp",
        queue.kind()
    );
    if generated {
        println!("bootstrap admin key (shown once): {}", admin_key.expose_secret());
    }
    if !demo_note.is_empty() {
        println!("{}", demo_note.replace("{api}", &local.to_string()));
    }

    let served = crate::net::server::serve(listener, app, timeouts, shutdown)
        .await
        .map_err(|e| DevError::Other(e.to_string()));
    cancel.cancel();
    let _ = mcp_server.await;
    let _ = sweeper.await;
    for c in consumers {
        let _ = c.await;
    }
    pool.close();
    println!("calseta dev stopped");
    served
}

/// Throwaway database, throwaway secrets; a persistent database keeps its secrets on disk.
fn dev_secrets(opts: &DevOptions, embedded_port: Option<u16>) -> Result<AppSecrets, DevError> {
    Ok(match (&opts.database_url, embedded_port) {
        (Some(url), None) => {
            let (s, created) = secrets::load_or_create(&opts.data_dir, url.expose_secret())
                .map_err(|e| DevError::Other(format!("secrets in {}: {e}", opts.data_dir.display())))?;
            if created {
                tracing::info!(dir = %opts.data_dir.join("secrets").display(), "new key-hashing and encryption secrets stored");
            }
            s
        }
        _ => AppSecrets::random(),
    })
}

/// SQS (moto or real) when an endpoint is given; else the durable queue in Postgres.
async fn dev_queues(
    opts: &DevOptions,
    pool: &db::Pool,
) -> Result<(Arc<dyn Queue>, Option<SqsQueue>, Option<PgQueue>), DevError> {
    Ok(match &opts.sqs_endpoint_url {
        Some(endpoint) => {
            let sdk = crate::config::aws_sdk_config().await;
            let client = SqsQueue::client(&sdk, Some(endpoint));
            let mut urls = HashMap::new();
            for q in QueueName::ALL {
                urls.insert(q, SqsQueue::ensure_queue(&client, &format!("calseta-{q}")).await?);
            }
            let q = SqsQueue::new(client, urls);
            (Arc::new(q.clone()), Some(q), None)
        }
        None => {
            // Enrichment may defer a message up to 8 times for provider budgets (as the SQS
            // redrive policy allows 10 receives).
            let mut settings = HashMap::new();
            settings.insert(
                QueueName::Enrich,
                QueueSettings {
                    max_receives: 10,
                    ..QueueSettings::default()
                },
            );
            // An agent may take up to 300 s to answer; a delivery must not reappear meanwhile.
            settings.insert(
                QueueName::Dispatch,
                QueueSettings {
                    visibility_timeout: Duration::from_secs(360),
                    ..QueueSettings::default()
                },
            );
            // Messages are rows of the same database: a restart (or kill -9) against a
            // persistent database picks up every message no consumer finished.
            let q = PgQueue::new(pool.clone(), settings);
            let released = q.release_orphans().await?;
            if released > 0 {
                tracing::info!(
                    released,
                    "messages in flight when the last run stopped are queued again"
                );
            }
            (Arc::new(q.clone()), None, Some(q))
        }
    })
}

/// The admin key (given, or generated and shown once) and, with `--demo`, the demo library;
/// returns the key, whether it was generated, and the demo line to print.
async fn bootstrap(
    opts: &DevOptions,
    pool: &db::Pool,
    state: &api::AppState,
) -> Result<(SecretString, bool, String), DevError> {
    let (admin_key, generated) = match &opts.admin_key {
        Some(k) => (k.clone(), false),
        None => (crate::keys::generate(), true),
    };
    let client = pool.get().await.map_err(db::DbError::from)?;
    api_keys::ensure(
        &**client,
        &state.hasher,
        &admin_key,
        &api_keys::NewApiKey {
            name: "dev-admin",
            scopes: &["admin"],
            key_type: "human",
            allowed_sources: None,
            expires_at: None,
            is_system: true,
            created_by: Some("calseta dev"),
        },
    )
    .await?;
    let demo_note = if opts.demo {
        let mut client = client;
        let seeded = crate::demo::seed(&mut client).await?;
        format!(
            "demo library loaded ({} detection rules, {} context documents, {} workflows; marked \"(demo)\"); \
             ingest the demo alerts with: calseta demo --url http://{{api}} --admin-key <key>",
            seeded.detection_rules, seeded.context_documents, seeded.workflows
        )
    } else {
        drop(client);
        String::new()
    };
    Ok((admin_key, generated, demo_note))
}

/// The sweeper's loop, every `every` until `cancel`.
fn spawn_sweeper(outbox: Outbox, every: Duration, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = sweep::run_once(&outbox, Duration::from_secs(2)).await {
                tracing::warn!(error = %e, "sweep failed");
            }
        }
    })
}

async fn bind(addr: &str) -> Result<(tokio::net::TcpListener, SocketAddr), DevError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DevError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    let local = listener.local_addr().map_err(|e| DevError::Other(e.to_string()))?;
    Ok((listener, local))
}

/// Real providers when any credential or base URL is set; otherwise the provider simulator on
/// a loopback port (stopped with `cancel`), with no budgets unless `CALSETA_BUDGET_*` set one.
async fn dev_providers(cancel: &CancellationToken) -> Result<(ProviderSet, String), DevError> {
    let creds = Credentials::from_env();
    let settings = ProviderSettings::from_env().map_err(|e| DevError::Other(e.to_string()))?;
    if !creds.is_empty() || !settings.base_urls.is_empty() {
        let set = ProviderSet::build(&creds, &settings).map_err(|e| DevError::Other(e.to_string()))?;
        let note = format!("{:?}", set.names());
        return Ok((set, note));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| DevError::Bind {
            addr: "127.0.0.1:0".into(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|e| DevError::Other(e.to_string()))?;
    let cancel = cancel.clone();
    tokio::spawn(async move {
        let app = simulator::router();
        let timeouts = crate::net::server::ServerTimeouts::default();
        let _ = crate::net::server::serve(listener, app, timeouts, async move { cancel.cancelled().await }).await;
    });
    let base = url::Url::parse(&format!("http://{addr}/")).map_err(|e| DevError::Other(e.to_string()))?;
    let budgets = registry::budgets_from_env(false).map_err(|e| DevError::Other(e.to_string()))?;
    let set = ProviderSet::simulated(&base, budgets, settings.concurrency);
    Ok((set, format!("simulated at {base} (no API keys set)")))
}
