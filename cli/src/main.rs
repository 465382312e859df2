//! The `calseta` command. Thin: parses flags and calls the library.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use calseta::{
    config::DbConfig,
    db, local,
    queue::{batch, QueueName},
    telemetry,
};
use clap::{Parser, Subcommand};

mod bench;
mod bench_e2e;
mod bench_enrich;
mod bench_mcp;
mod demo;
use secrecy::SecretString;

#[derive(Parser)]
#[command(
    name = "calseta",
    version,
    about = "Calseta: the data layer between SIEMs and security agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole product locally: embedded Postgres, in-process queues, sweeper, HTTP API.
    Dev {
        /// Interface to listen on.
        #[arg(long, env = "CALSETA_HOST", default_value = "127.0.0.1")]
        host: String,
        /// REST + ingest port.
        #[arg(long, env = "CALSETA_PORT", default_value_t = 8000)]
        port: u16,
        /// MCP port (streamable HTTP at /mcp; 0 = any free port).
        #[arg(long, env = "CALSETA_MCP_PORT", default_value_t = 8001)]
        mcp_port: u16,
        /// Use this bootstrap admin key instead of generating one.
        #[arg(long, env = "CALSETA_ADMIN_KEY", hide_env_values = true)]
        admin_key: Option<String>,
        /// State folder (the throwaway cluster lives in <data-dir>/pg).
        #[arg(long, env = "CALSETA_DATA_DIR", default_value = ".calseta")]
        data_dir: PathBuf,
        /// Do not load the demo library (detection rules, documents, workflows marked "(demo)").
        #[arg(long, env = "CALSETA_NO_DEMO", action = clap::ArgAction::SetTrue,
              value_parser = clap::builder::BoolishValueParser::new())]
        no_demo: bool,
    },
    /// Against a running `calseta dev`: ingest the demo alerts from events/demo/, receive their
    /// payloads as a demo agent (signed webhooks) and write them to files.
    Demo {
        /// The API of `calseta dev`.
        #[arg(long, env = "CALSETA_URL", default_value = "http://127.0.0.1:8000")]
        url: String,
        /// An admin key (the one `calseta dev` printed, or its --admin-key).
        #[arg(long, env = "CALSETA_ADMIN_KEY", hide_env_values = true)]
        admin_key: String,
        /// Where the payloads are written.
        #[arg(long, default_value = ".calseta/demo")]
        out: PathBuf,
        /// How long to wait for every payload, in seconds.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Apply pending migrations to DATABASE_URL.
    Migrate,
    /// Measure the product (see docs in `calseta bench --help`).
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Manage API keys directly in the database (the bootstrap of the first admin key).
    ApiKey {
        #[command(subcommand)]
        what: ApiKeyWhat,
    },
    /// List queue messages that were parked because they can never succeed.
    Parked {
        #[arg(long, default_value = "enrich")]
        queue: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum ApiKeyWhat {
    /// Create a key in DATABASE_URL (or DATABASE_SECRET_ARN) hashed with the deployment's secret
    /// (CALSETA_SECRETS_ARN or CALSETA_KEY_HASH_SECRET); prints the key once.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated scopes, e.g. `admin` or `alerts:read,alerts:write`.
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        scopes: Vec<String>,
        /// `human` or `agent`.
        #[arg(long, default_value = "human")]
        key_type: String,
        /// RFC 3339 expiry.
        #[arg(long)]
        expires_at: Option<String>,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Ingest throughput and latency over HTTP vs a bare tokio-postgres loop (DATABASE_URL or an
    /// embedded cluster).
    Ingest {
        /// Alerts per concurrency level.
        #[arg(long, default_value_t = 3000)]
        alerts: usize,
        /// Concurrency levels.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        concurrency: Vec<usize>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The enrichment engine against the provider simulator: fan-out latency, single flight
    /// under a burst, backlog drain rate (DATABASE_URL or an embedded cluster).
    Enrich {
        /// Alerts in the drain backlog.
        #[arg(long, default_value_t = 2000)]
        backlog: usize,
        /// Concurrent consumers draining the backlog (Lambda instances).
        #[arg(long, default_value_t = 8)]
        consumers: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// MCP vs REST: `get_alert_payload` vs `GET /v1/alerts/{uuid}/payload` on the same alerts
    /// (p50/p99, ratio), and `search_alerts` p50 at `--alerts` rows (DATABASE_URL or an embedded
    /// cluster).
    Mcp {
        /// Alerts ingested first (the table size `search_alerts` runs against).
        #[arg(long, default_value_t = 10_000)]
        alerts: usize,
        /// Payload requests per transport.
        #[arg(long, default_value_t = 500)]
        samples: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The whole pipeline: ingest POST -> enrichment (simulator, instant) -> signed webhook at a
    /// local agent, p50/p99; and payload bytes vs raw alert + raw provider responses for the
    /// demo alerts (DATABASE_URL or an embedded cluster).
    E2e {
        /// Alerts timed (after 20 warm-up alerts).
        #[arg(long, default_value_t = 300)]
        alerts: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn database_url() -> Option<SecretString> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .map(SecretString::from)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    eprintln!("shutting down");
}

/// `calseta api-key create`: the way to the first admin key without an open door.
async fn api_key_create(name: &str, scopes: &[String], key_type: &str, expires_at: Option<&str>) -> anyhow::Result<()> {
    use calseta::api::api_keys::{INERT_SCOPES, SCOPES};
    if let Some(bad) = scopes
        .iter()
        .find(|s| !SCOPES.contains(&s.as_str()) && !INERT_SCOPES.contains(&s.as_str()))
    {
        anyhow::bail!("unknown scope {bad:?}; known: {}", SCOPES.join(", "));
    }
    anyhow::ensure!(key_type == "human" || key_type == "agent", "key type is human or agent");
    let expires_at = expires_at
        .map(|e| chrono::DateTime::parse_from_rfc3339(e).map(|d| d.with_timezone(&chrono::Utc)))
        .transpose()
        .context("--expires-at is an RFC 3339 timestamp")?;
    let aws = std::env::var("CALSETA_SECRETS_ARN").is_ok() || std::env::var("DATABASE_SECRET_ARN").is_ok();
    let sm = if aws {
        Some(calseta::secrets::SecretsClient::new(
            &calseta::config::aws_sdk_config().await,
        ))
    } else {
        None
    };
    let cfg = DbConfig::from_env(sm.as_ref())
        .await
        .context("DATABASE_URL or DATABASE_SECRET_ARN is required")?;
    let secrets = calseta::config::AppSecrets::from_env(sm.as_ref())
        .await
        .context("the key hashing secret: CALSETA_SECRETS_ARN or CALSETA_KEY_HASH_SECRET")?;
    let pool = db::build_pool(&cfg)?;
    let client = pool.get().await?;
    let key = calseta::api::keys::generate();
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    db::api_keys::insert(
        &**client,
        &calseta::api::keys::KeyHasher::new(secrets.key_hash_secret.clone()),
        &key,
        &db::api_keys::NewApiKey {
            name,
            scopes: &scope_refs,
            key_type,
            allowed_sources: None,
            expires_at,
            is_system: false,
            created_by: Some("calseta api-key create"),
        },
    )
    .await?;
    use secrecy::ExposeSecret;
    println!("{}", key.expose_secret());
    eprintln!("API key {name:?} created with scopes {scopes:?}; it is shown once, store it now.");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_from_env();
    let cli = Cli::parse();
    match cli.command {
        Command::Dev {
            host,
            port,
            mcp_port,
            admin_key,
            data_dir,
            no_demo,
        } => {
            let opts = local::DevOptions {
                host,
                port,
                mcp_port,
                admin_key: admin_key.map(SecretString::from),
                data_dir,
                database_url: database_url(),
                sqs_endpoint_url: std::env::var("SQS_ENDPOINT_URL").ok().filter(|u| !u.is_empty()),
                sweep_interval: Duration::from_secs(5),
                demo: !no_demo,
            };
            local::run(opts, shutdown_signal()).await?;
        }
        Command::Demo {
            url,
            admin_key,
            out,
            wait,
        } => {
            demo::run(&url, &admin_key, &out, Duration::from_secs(wait)).await?;
        }
        Command::Migrate => {
            let cfg = DbConfig::from_env(None).await.context("DATABASE_URL is required")?;
            let pool = db::build_pool(&cfg)?;
            let report = db::migrate::run_on_pool(&pool).await?;
            println!(
                "applied {:?}; {} already applied",
                report.applied, report.already_applied
            );
        }
        Command::Bench {
            what:
                BenchWhat::Ingest {
                    alerts,
                    concurrency,
                    json,
                },
        } => {
            bench::ingest(alerts, &concurrency, json).await?;
        }
        Command::Bench {
            what:
                BenchWhat::Enrich {
                    backlog,
                    consumers,
                    json,
                },
        } => {
            bench_enrich::enrich(backlog, consumers, json).await?;
        }
        Command::Bench {
            what: BenchWhat::E2e { alerts, json },
        } => {
            bench_e2e::e2e(alerts, json).await?;
        }
        Command::Bench {
            what: BenchWhat::Mcp { alerts, samples, json },
        } => {
            bench_mcp::bench(alerts, samples, json).await?;
        }
        Command::ApiKey {
            what:
                ApiKeyWhat::Create {
                    name,
                    scopes,
                    key_type,
                    expires_at,
                },
        } => {
            api_key_create(&name, &scopes, &key_type, expires_at.as_deref()).await?;
        }
        Command::Parked { queue, limit } => {
            let q = QueueName::parse(&queue).context("queue is enrich or dispatch")?;
            let cfg = DbConfig::from_env(None).await.context("DATABASE_URL is required")?;
            let pool = db::build_pool(&cfg)?;
            for m in batch::list_parked(&pool, q, limit).await? {
                println!("{}", serde_json::to_string(&m)?);
            }
        }
    }
    Ok(())
}
