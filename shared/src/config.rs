//! Configuration from the environment into typed structs, read once per binary in `main`.

use std::{path::PathBuf, sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};

use crate::secrets::{SecretsClient, SecretsError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name}: {problem}")]
    Invalid { name: &'static str, problem: String },
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

/// A set, non-blank environment variable.
pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(crate) fn parse_var<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            problem: e.to_string(),
        }),
    }
}

/// How the connection to Postgres is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP: local and test databases only.
    Disable,
    /// TLS without certificate verification (libpq's `require`).
    Require,
    /// TLS, certificate chain and host name verified against `DATABASE_CA_FILE` (e.g. the RDS bundle).
    VerifyFull,
}

impl std::str::FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disable" => Ok(Self::Disable),
            "require" => Ok(Self::Require),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(format!("unknown sslmode {other:?} (disable, require, verify-full)")),
        }
    }
}

/// Where the database is and how to talk to it.
#[derive(Clone)]
pub struct DbConfig {
    /// A full `postgres://` URL (local stack, tests) ...
    pub url: Option<SecretString>,
    /// ... or host/port/name with credentials from an RDS-managed secret.
    pub host: Option<String>,
    pub port: u16,
    pub name: String,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub ssl_mode: SslMode,
    pub ca_file: Option<PathBuf>,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub application_name: String,
    /// Named prepared statements (off behind RDS Proxy, where they pin sessions).
    pub prepared_statements: bool,
    /// Where `user`/`password` came from, re-read when the server rejects them (a rotated secret).
    pub credentials: Option<Arc<dyn DbCredentialSource>>,
}

/// A source of database credentials that may change while the process lives (RDS rotates its
/// managed secret; a warm Lambda must pick up the new password without a cold start).
#[async_trait::async_trait]
pub trait DbCredentialSource: Send + Sync {
    /// The current user name and password.
    async fn fetch(&self) -> Result<(String, SecretString), ConfigError>;
}

/// The `username`/`password` fields of a Secrets Manager JSON secret (the RDS-managed secret).
pub struct SecretsManagerCredentials {
    client: SecretsClient,
    arn: String,
}

impl SecretsManagerCredentials {
    pub fn new(client: SecretsClient, arn: impl Into<String>) -> Self {
        Self {
            client,
            arn: arn.into(),
        }
    }
}

#[async_trait::async_trait]
impl DbCredentialSource for SecretsManagerCredentials {
    async fn fetch(&self) -> Result<(String, SecretString), ConfigError> {
        let secret = self.client.json(&self.arn).await?;
        Ok((
            secret.require("username")?.expose_secret().to_owned(),
            secret.require("password")?,
        ))
    }
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("name", &self.name)
            .field("ssl_mode", &self.ssl_mode)
            .field("pool_size", &self.pool_size)
            .field("rotating_credentials", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

impl DbConfig {
    /// A config for a plain URL (local stack and tests).
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: Some(SecretString::from(url.into())),
            host: None,
            port: 5432,
            name: "calseta".into(),
            user: None,
            password: None,
            ssl_mode: SslMode::Disable,
            ca_file: None,
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            application_name: "calseta".into(),
            prepared_statements: true,
            credentials: None,
        }
    }

    /// Reads `DATABASE_URL`, or `DATABASE_HOST`/`PORT`/`NAME` plus the secret at
    /// `DATABASE_SECRET_ARN` (fields `username`, `password`, and optionally `host`, `port`, `dbname`).
    pub async fn from_env(secrets: Option<&SecretsClient>) -> Result<Self, ConfigError> {
        let mut cfg = Self::from_url(String::new());
        cfg.url = var("DATABASE_URL").map(SecretString::from);
        cfg.host = var("DATABASE_HOST");
        cfg.port = parse_var("DATABASE_PORT", 5432)?;
        cfg.name = var("DATABASE_NAME").unwrap_or_else(|| "calseta".into());
        cfg.ssl_mode = parse_var("DATABASE_SSLMODE", SslMode::Disable)?;
        cfg.ca_file = var("DATABASE_CA_FILE").map(PathBuf::from);
        cfg.pool_size = parse_var("DATABASE_POOL_SIZE", 4usize)?.clamp(1, 64);
        cfg.connect_timeout = Duration::from_millis(parse_var("DATABASE_CONNECT_TIMEOUT_MS", 5_000u64)?);
        cfg.statement_timeout = Duration::from_millis(parse_var("DATABASE_STATEMENT_TIMEOUT_MS", 30_000u64)?);
        cfg.prepared_statements = parse_var("DATABASE_PREPARED_STATEMENTS", true)?;
        cfg.application_name = var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "calseta".into());
        if cfg.url.is_none() {
            let arn = var("DATABASE_SECRET_ARN").ok_or(ConfigError::Missing("DATABASE_URL or DATABASE_SECRET_ARN"))?;
            let client = secrets.ok_or(ConfigError::Missing("a Secrets Manager client for DATABASE_SECRET_ARN"))?;
            let secret = client.json(&arn).await?;
            cfg.user = Some(secret.require("username")?.expose_secret().to_owned());
            cfg.password = Some(secret.require("password")?);
            cfg.credentials = Some(Arc::new(SecretsManagerCredentials::new(client.clone(), arn.clone())));
            if cfg.host.is_none() {
                cfg.host = secret.get("host").map(|h| h.expose_secret().to_owned());
            }
            if var("DATABASE_PORT").is_none() {
                if let Some(p) = secret.get("port").and_then(|p| p.expose_secret().parse().ok()) {
                    cfg.port = p;
                }
            }
            if var("DATABASE_NAME").is_none() {
                if let Some(n) = secret.get("dbname") {
                    cfg.name = n.expose_secret().to_owned();
                }
            }
            if cfg.host.is_none() {
                return Err(ConfigError::Missing("DATABASE_HOST"));
            }
        }
        if cfg.ssl_mode == SslMode::VerifyFull && cfg.ca_file.is_none() {
            return Err(ConfigError::Invalid {
                name: "DATABASE_CA_FILE",
                problem: "verify-full needs a CA bundle (e.g. the RDS global bundle)".into(),
            });
        }
        Ok(cfg)
    }
}

/// Queue URLs for the SQS adapter.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub enrich_url: Option<String>,
    pub dispatch_url: Option<String>,
    /// The dead-letter queues, read only for their depth (`/health`, `calseta status`).
    pub enrich_dlq_url: Option<String>,
    pub dispatch_dlq_url: Option<String>,
    /// Overrides the SQS endpoint (a local emulator such as moto).
    pub endpoint_url: Option<String>,
}

impl QueueConfig {
    pub fn from_env() -> Self {
        Self {
            enrich_url: var("ENRICH_QUEUE_URL"),
            dispatch_url: var("DISPATCH_QUEUE_URL"),
            enrich_dlq_url: var("ENRICH_DLQ_URL"),
            dispatch_dlq_url: var("DISPATCH_DLQ_URL"),
            endpoint_url: var("SQS_ENDPOINT_URL"),
        }
    }
}

/// The AWS SDK config, loaded once. Honours `AWS_ENDPOINT_URL` and friends.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(crate::net::tls::aws_http_client())
        .load()
        .await
}

/// App-level secrets: the API-key hashing secret and the encryption key for secrets at rest.
/// Read from the JSON secret at `CALSETA_SECRETS_ARN` (fields `key_hash_secret`,
/// `encryption_key`), else from `CALSETA_KEY_HASH_SECRET` / `CALSETA_ENCRYPTION_KEY`.
#[derive(Clone)]
pub struct AppSecrets {
    pub key_hash_secret: SecretString,
    pub encryption_key: SecretString,
}

impl std::fmt::Debug for AppSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppSecrets(<redacted>)")
    }
}

impl AppSecrets {
    pub async fn from_env(secrets: Option<&SecretsClient>) -> Result<Self, ConfigError> {
        if let Some(arn) = var("CALSETA_SECRETS_ARN") {
            let client = secrets.ok_or(ConfigError::Missing("a Secrets Manager client for CALSETA_SECRETS_ARN"))?;
            let s = client.json(&arn).await?;
            return Ok(Self {
                key_hash_secret: s.require("key_hash_secret")?,
                encryption_key: s.require("encryption_key")?,
            });
        }
        Ok(Self {
            key_hash_secret: var("CALSETA_KEY_HASH_SECRET")
                .map(SecretString::from)
                .ok_or(ConfigError::Missing("CALSETA_SECRETS_ARN or CALSETA_KEY_HASH_SECRET"))?,
            encryption_key: var("CALSETA_ENCRYPTION_KEY")
                .map(SecretString::from)
                .ok_or(ConfigError::Missing("CALSETA_SECRETS_ARN or CALSETA_ENCRYPTION_KEY"))?,
        })
    }

    /// Fresh random secrets (the throwaway local stack and tests).
    pub fn random() -> Self {
        Self {
            key_hash_secret: SecretString::from(hex::encode(rand::random::<[u8; 32]>())),
            encryption_key: SecretString::from(hex::encode(rand::random::<[u8; 32]>())),
        }
    }
}

/// Request limits of the HTTP API (api spec §1, sources spec §9).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Ingest body limit in bytes, counted on bytes received (default 4 MiB).
    pub ingest_body_bytes: usize,
    /// Ingest requests per API key per minute (0 = unlimited).
    pub ingest_per_key_per_minute: u32,
    /// Ingest requests per source per minute when authenticated by a source secret (0 = unlimited).
    pub ingest_per_source_per_minute: u32,
    /// After this long an alert is dispatched with whatever enrichment it has.
    pub enrichment_deadline: Duration,
    /// Most indicators kept per alert at ingest (1 to `MAX_EXTRACTED`); the rest are recorded
    /// on the alert as a truncation, never silently cut.
    pub max_indicators_per_alert: usize,
    /// Most alerts accepted in one request body (1 to the parsers' ceiling of 100).
    pub max_alerts_per_request: usize,
    /// Enrich messages of one request made visible per second (0 = all at once), so one big
    /// request cannot queue ahead of every other alert.
    pub enrich_release_per_second: u32,
    /// Longest an API request may take (database waits included) before it is answered 503 +
    /// `Retry-After`: a frozen database (accepting connections, answering nothing) must not
    /// hold requests for the whole freeze.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ingest_body_bytes: 4 * 1024 * 1024,
            // Flood protection, not shaping: Splunk's "for each result" webhook fires one request
            // per result row in a burst and never retries a 429, so a limit a busy search can
            // reach loses alerts. 6,000/min (100/s sustained) is above any SIEM burst we know of
            // and still stops a runaway sender; each request is bounded by the body, alert and
            // indicator caps below.
            ingest_per_key_per_minute: 6_000,
            ingest_per_source_per_minute: 6_000,
            enrichment_deadline: Duration::from_secs(60),
            // Matches the REST add-indicators cap. Real alerts carry a handful to a few dozen
            // indicators; past 100 an alert is a bulk dump (a scan, a feed) whose enrichment
            // would cost up to 5 provider calls per indicator and starve other alerts.
            max_indicators_per_alert: 100,
            max_alerts_per_request: crate::sources::MAX_ALERTS_PER_REQUEST,
            // One alert at the cap (100) goes at once; a maximal request (100 x 100) is released
            // over 100 s (each alert's deadline is extended by its delay). Measured with
            // `calseta bench flood` (4 consumers draining about 220 messages/s): a normal alert
            // behind a maximal request waited 22-43 s released at once, 5 s at 200/s, 0.3 s at
            // 100/s. Keep it below the enrich consumers' drain rate.
            enrich_release_per_second: 100,
            // Below API Gateway's 29 s and a SIEM's usual 30 s client timeout, so the caller
            // gets a retryable answer; above the pool's 10 s checkout wait, so an exhausted
            // pool answers first with its own 503.
            request_timeout: Duration::from_secs(15),
        }
    }
}

impl Limits {
    /// `CALSETA_INGEST_BODY_LIMIT_BYTES`, `CALSETA_RATE_LIMIT_INGEST_PER_MIN`,
    /// `CALSETA_RATE_LIMIT_SOURCE_PER_MIN`, `CALSETA_ENRICHMENT_DEADLINE_SECONDS`,
    /// `CALSETA_MAX_INDICATORS_PER_ALERT`, `CALSETA_MAX_ALERTS_PER_REQUEST`,
    /// `CALSETA_ENRICH_RELEASE_PER_SECOND`, `CALSETA_REQUEST_TIMEOUT_MS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            ingest_body_bytes: parse_var("CALSETA_INGEST_BODY_LIMIT_BYTES", d.ingest_body_bytes)?,
            ingest_per_key_per_minute: parse_var("CALSETA_RATE_LIMIT_INGEST_PER_MIN", d.ingest_per_key_per_minute)?,
            ingest_per_source_per_minute: parse_var(
                "CALSETA_RATE_LIMIT_SOURCE_PER_MIN",
                d.ingest_per_source_per_minute,
            )?,
            enrichment_deadline: Duration::from_secs(parse_var(
                "CALSETA_ENRICHMENT_DEADLINE_SECONDS",
                d.enrichment_deadline.as_secs(),
            )?),
            max_indicators_per_alert: in_range(
                "CALSETA_MAX_INDICATORS_PER_ALERT",
                parse_var("CALSETA_MAX_INDICATORS_PER_ALERT", d.max_indicators_per_alert)?,
                crate::domain::indicator::MAX_EXTRACTED,
            )?,
            max_alerts_per_request: in_range(
                "CALSETA_MAX_ALERTS_PER_REQUEST",
                parse_var("CALSETA_MAX_ALERTS_PER_REQUEST", d.max_alerts_per_request)?,
                crate::sources::MAX_ALERTS_PER_REQUEST,
            )?,
            enrich_release_per_second: parse_var("CALSETA_ENRICH_RELEASE_PER_SECOND", d.enrich_release_per_second)?,
            request_timeout: Duration::from_millis(in_range(
                "CALSETA_REQUEST_TIMEOUT_MS",
                parse_var("CALSETA_REQUEST_TIMEOUT_MS", d.request_timeout.as_millis() as usize)?,
                600_000,
            )? as u64),
        })
    }
}

/// `CALSETA_HTTP_HEADER_TIMEOUT_MS` and `CALSETA_HTTP_REQUEST_TIMEOUT_MS` (milliseconds, at
/// least 1) for the servers we run ourselves.
pub fn server_timeouts_from_env() -> Result<crate::net::server::ServerTimeouts, ConfigError> {
    let d = crate::net::server::ServerTimeouts::default();
    let ms = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
        let v = in_range(name, parse_var(name, default.as_millis() as usize)?, 3_600_000)?;
        Ok(Duration::from_millis(v as u64))
    };
    Ok(crate::net::server::ServerTimeouts {
        header_read: ms("CALSETA_HTTP_HEADER_TIMEOUT_MS", d.header_read)?,
        request: ms("CALSETA_HTTP_REQUEST_TIMEOUT_MS", d.request)?,
    })
}

fn in_range(name: &'static str, v: usize, max: usize) -> Result<usize, ConfigError> {
    if v == 0 || v > max {
        return Err(ConfigError::Invalid {
            name,
            problem: format!("must be between 1 and {max}"),
        });
    }
    Ok(v)
}
