//! The `calseta` command. Thin: parses flags and calls the library.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use calseta::{
    config::DbConfig,
    db, local,
    queue::{batch, QueueName},
    telemetry,
};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod bench;
mod bench_e2e;
mod bench_enrich;
mod bench_flood;
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
        /// Use this bootstrap admin key instead of generating one. Prefer CALSETA_ADMIN_KEY or
        /// --admin-key-file: a flag's value is visible to every local user in `ps`.
        #[arg(long, env = "CALSETA_ADMIN_KEY", hide_env_values = true)]
        admin_key: Option<String>,
        /// Read the bootstrap admin key from this file (first line).
        #[arg(long, conflicts_with = "admin_key")]
        admin_key_file: Option<PathBuf>,
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
    /// Run the functions as Lambdas locally: `cargo lambda watch` (the runtime emulator) over a
    /// local Postgres and moto's SQS API, with SQS event-source mappings for enrich/dispatch, a
    /// sweep tick, and migrate run first as the CloudFormation custom resource.
    LambdaLocal {
        /// Invoke API / function URL port (`http://127.0.0.1:<port>/lambda-url/<function>/…`).
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// State folder (Postgres data, the functions' env file, logs).
        #[arg(long, default_value = ".calseta/lambda")]
        data_dir: PathBuf,
        /// The cargo-lambda executable.
        #[arg(long, env = "CARGO_LAMBDA", default_value = "cargo-lambda")]
        cargo_lambda: PathBuf,
        /// The moto_server executable (SQS API).
        #[arg(long, env = "MOTO_SERVER", default_value = "moto_server")]
        moto_server: PathBuf,
        /// Visibility timeout of the local queues, in seconds.
        #[arg(long, default_value_t = 30)]
        visibility_timeout: u64,
        /// MaximumConcurrency of each SQS mapping.
        #[arg(long, default_value_t = 2)]
        max_concurrency: usize,
        /// Seconds between sweep invocations (EventBridge rate(1 minute) on AWS).
        #[arg(long, default_value_t = 60)]
        sweep_interval: u64,
    },
    /// Apply pending migrations to DATABASE_URL, or DATABASE_HOST + the login in
    /// DATABASE_SECRET_ARN (a deployed stack's master secret: the DatabaseSecretArn output).
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
    /// A deployed stack through its API: health, queue depth, outbox backlog, provider states.
    Status {
        /// The stack's ApiUrl output (or `calseta dev`'s URL).
        #[arg(long, env = "CALSETA_URL")]
        url: String,
        /// An API key; sent when given (/health itself needs none).
        #[arg(long, env = "CALSETA_API_KEY", hide_env_values = true)]
        key: Option<String>,
        /// Print the /health JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// List queue messages that were parked because they can never succeed (DATABASE_URL or
    /// DATABASE_HOST + DATABASE_SECRET_ARN).
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
    /// One oversized alert and one maximal request against the limits: time to 202, enrich
    /// messages queued, RSS, and a normal alert's enrichment latency while they drain
    /// (DATABASE_URL or an embedded cluster).
    Flood {
        /// Distinct IP addresses in the flood alert.
        #[arg(long, default_value_t = 200_000)]
        ips: usize,
        /// Indicator cap per alert (default: CALSETA_MAX_INDICATORS_PER_ALERT's default).
        #[arg(long)]
        cap: Option<usize>,
        /// Concurrent enrich consumers.
        #[arg(long, default_value_t = 4)]
        consumers: usize,
        /// Provider simulator answer delay.
        #[arg(long, default_value_t = 20)]
        delay_ms: u64,
        /// Print JSON instead of text.
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

/// DATABASE_URL, or DATABASE_HOST + the secret at DATABASE_SECRET_ARN (like `api-key create`).
async fn db_config_from_env() -> anyhow::Result<DbConfig> {
    let sm = if std::env::var("DATABASE_SECRET_ARN").is_ok_and(|v| !v.is_empty()) {
        Some(calseta::secrets::SecretsClient::new(
            &calseta::config::aws_sdk_config().await,
        ))
    } else {
        None
    };
    DbConfig::from_env(sm.as_ref())
        .await
        .context("DATABASE_URL, or DATABASE_HOST with DATABASE_SECRET_ARN, is required")
}

/// `calseta status`: what the stack's `/health` reports, readable.
async fn status(url: &str, key: Option<&str>, json: bool) -> anyhow::Result<bool> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?;
    let endpoint = format!("{}/health", url.trim_end_matches('/'));
    let mut req = http.get(&endpoint);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.with_context(|| format!("GET {endpoint}"))?;
    let code = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .with_context(|| format!("GET {endpoint}: HTTP {code}, not JSON"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(code.is_success());
    }
    let field = |k: &str| match body.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(v) => v.to_string(),
    };
    println!("{endpoint}: HTTP {}", code.as_u16());
    for (label, k) in [
        ("status", "status"),
        ("version", "version"),
        ("database", "database"),
        ("queue", "queue"),
        ("queue backend", "queue_backend"),
        ("queued messages", "queue_depth"),
        ("dead letters", "dead_letters"),
        ("outbox unsent", "outbox_unsent"),
    ] {
        println!("  {label:<16} {}", field(k));
    }
    if let Some(serde_json::Value::Object(queues)) = body.get("queues") {
        let n = |d: &serde_json::Value, k: &str| match d.get(k) {
            Some(serde_json::Value::Number(v)) => v.to_string(),
            _ => "-".into(),
        };
        for (name, d) in queues {
            println!(
                "  queue {name:<10} visible {} · in flight {} · delayed {} · DLQ {}",
                n(d, "visible"),
                n(d, "in_flight"),
                n(d, "delayed"),
                n(d, "dead_letters")
            );
        }
    }
    if body.get("dead_letters").and_then(|v| v.as_u64()).unwrap_or(0) > 0 {
        println!("  ! messages are parked in a dead-letter queue: see docs/deploy.md (DLQ redrive)");
    }
    match body.get("enrichment_providers") {
        Some(serde_json::Value::Object(p)) if !p.is_empty() => {
            for (name, state) in p {
                println!("  provider {name:<12} {}", state.as_str().unwrap_or("-"));
            }
        }
        _ => println!("  providers        (not reported)"),
    }
    Ok(code.is_success() && body.get("status").and_then(|s| s.as_str()) == Some("ok"))
}

/// The first line of `path`, trimmed: a key file written by `echo` or an editor works.
fn read_key_file(path: &std::path::Path) -> anyhow::Result<SecretString> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--admin-key-file {}: {e}", path.display()))?;
    let key = text.lines().next().unwrap_or_default().trim();
    if key.is_empty() {
        anyhow::bail!("--admin-key-file {} is empty", path.display());
    }
    Ok(SecretString::from(key.to_owned()))
}

fn database_url() -> Option<SecretString> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .map(SecretString::from)
}

/// Installs the SIGINT/SIGTERM handlers at once (a signal right after the ready line must stop
/// the stack in order, not kill it with the default action), then resolves on the first one.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    let int = signal(SignalKind::interrupt()).ok();
    let term = signal(SignalKind::terminate()).ok();
    async fn recv(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    async move {
        tokio::select! {
            _ = recv(int) => {}
            _ = recv(term) => {}
        }
        eprintln!("shutting down");
    }
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
    let key = calseta::keys::generate();
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    db::api_keys::insert(
        &**client,
        &calseta::keys::KeyHasher::new(secrets.key_hash_secret.clone()),
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
#[allow(clippy::too_many_lines, reason = "the command dispatch, one arm per subcommand")]
async fn main() -> anyhow::Result<()> {
    telemetry::init_from_env_to_stderr();
    calseta::net::tls::install_crypto_provider();
    let matches = Cli::command().get_matches();
    let admin_key_on_argv = matches
        .subcommand_matches("dev")
        .and_then(|m| m.value_source("admin_key"))
        == Some(clap::parser::ValueSource::CommandLine);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Dev {
            host,
            port,
            mcp_port,
            admin_key,
            admin_key_file,
            data_dir,
            no_demo,
        } => {
            if admin_key_on_argv {
                eprintln!(
                    "warning: --admin-key is visible to every local user (ps, /proc); \
                     use CALSETA_ADMIN_KEY or --admin-key-file instead"
                );
            }
            let admin_key = match admin_key_file {
                Some(path) => Some(read_key_file(&path)?),
                None => admin_key.map(SecretString::from),
            };
            let opts = local::DevOptions {
                host,
                port,
                mcp_port,
                admin_key,
                data_dir,
                database_url: database_url(),
                sqs_endpoint_url: std::env::var("SQS_ENDPOINT_URL").ok().filter(|u| !u.is_empty()),
                sweep_interval: Duration::from_secs(5),
                demo: !no_demo,
            };
            local::run(opts, shutdown_signal()).await?;
        }
        Command::LambdaLocal {
            port,
            data_dir,
            cargo_lambda,
            moto_server,
            visibility_timeout,
            max_concurrency,
            sweep_interval,
        } => {
            let opts = calseta::lambda_local::LambdaLocalOptions {
                workspace: std::env::current_dir()?,
                data_dir,
                invoke_port: port,
                cargo_lambda,
                moto_server,
                visibility_timeout: Duration::from_secs(visibility_timeout),
                max_concurrency,
                sweep_interval: Duration::from_secs(sweep_interval),
                extra_env: Vec::new(),
            };
            eprintln!("starting: postgres, moto, cargo lambda watch (the first invocations compile the functions)");
            let stack = calseta::lambda_local::start(&opts).await?;
            println!(
                "Lambda-mode stack ready (migrate succeeded)\n  ingest:  {}/v1/ingest/<source>\n  api:     {}/v1/...\n  \
                 invoke:  {}/2015-03-31/functions/<name>/invocations\n  sqs:     {} (enrich {}, dispatch {})\n  \
                 env:     {}\n  admin key (shown once): {}",
                stack.function_url("ingest"),
                stack.function_url("api"),
                stack.invoke_base,
                stack.moto_endpoint,
                stack.enrich_queue,
                stack.dispatch_queue,
                stack.env_file.display(),
                secrecy::ExposeSecret::expose_secret(&stack.admin_key),
            );
            shutdown_signal().await;
            stack.stop().await;
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
            let cfg = db_config_from_env().await?;
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
            what:
                BenchWhat::Flood {
                    ips,
                    cap,
                    consumers,
                    delay_ms,
                    json,
                },
        } => {
            bench_flood::flood(ips, cap, consumers, delay_ms, json).await?;
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
        Command::Status { url, key, json } => {
            if !status(&url, key.as_deref(), json).await? {
                // Scripts and monitors act on the exit status.
                std::process::exit(1);
            }
        }
        Command::Parked { queue, limit } => {
            let q = QueueName::parse(&queue).context("queue is enrich or dispatch")?;
            let cfg = db_config_from_env().await?;
            let pool = db::build_pool(&cfg)?;
            for m in batch::list_parked(&pool, q, limit).await? {
                println!("{}", serde_json::to_string(&m)?);
            }
        }
    }
    Ok(())
}
