use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    time::Duration,
};

use deadpool_postgres::{Connect, Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_postgres::{
    tls::{MakeTlsConnect, TlsConnect},
    Socket,
};

use super::{tls, DbError};
use crate::config::{DbConfig, DbCredentialSource, SslMode};

/// A connection idle longer than this is verified (one empty query) before it is handed out.
const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(10);
/// Connections are replaced after this long (failovers, server-side memory growth).
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);

/// Builds the connection pool. Nothing connects here (Lambda init stays fast); connections are
/// opened on first use. A connection that sat idle (a frozen Lambda environment, a database
/// failover) is verified on checkout and replaced if dead, instead of failing a request; busy
/// connections skip that round trip.
pub fn build_pool(cfg: &DbConfig) -> Result<Pool, DbError> {
    super::stmt::set_prepared(cfg.prepared_statements);
    let mut pg = match &cfg.url {
        Some(url) => url
            .expose_secret()
            .parse::<tokio_postgres::Config>()
            .map_err(|e| DbError::Config(format!("DATABASE_URL: {e}")))?,
        None => {
            let mut c = tokio_postgres::Config::new();
            c.host(cfg.host.as_deref().unwrap_or("localhost"))
                .port(cfg.port)
                .dbname(&cfg.name);
            if let Some(user) = &cfg.user {
                c.user(user);
            }
            if let Some(pw) = &cfg.password {
                c.password(pw.expose_secret());
            }
            c
        }
    };
    pg.connect_timeout(cfg.connect_timeout)
        .application_name(&cfg.application_name)
        .keepalives(true)
        // Bound every statement so a stuck query cannot hold a Lambda until its own timeout.
        // Custom plans for every execution: a generic plan cached while a table was small (a new
        // deployment) would keep scanning it sequentially as it grows; parsing is still saved.
        .options(format!(
            "-c statement_timeout={} -c plan_cache_mode=force_custom_plan",
            cfg.statement_timeout.as_millis()
        ));
    // `Fast`: no query on checkout (`Verified` sent an empty query on every checkout, one round
    // trip per request); the `pre_recycle` hook below verifies connections that sat idle.
    let mgr_cfg = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let source = cfg.credentials.clone();
    let mgr = match cfg.ssl_mode {
        SslMode::Disable => Manager::from_connect(pg, RotatingConnect::new(tokio_postgres::NoTls, source), mgr_cfg),
        mode => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tls::connector(mode, cfg.ca_file.as_deref())?;
            Manager::from_connect(pg, RotatingConnect::new(tls, source), mgr_cfg)
        }
    };
    Pool::builder(mgr)
        .max_size(cfg.pool_size)
        .runtime(Runtime::Tokio1)
        .pre_recycle(Hook::async_fn(|client, metrics| {
            Box::pin(async move {
                if metrics.age() > MAX_CONNECTION_AGE {
                    return Err(HookError::message("connection reached its maximum age"));
                }
                if metrics.last_used() > VERIFY_AFTER_IDLE {
                    client.simple_query("").await.map_err(HookError::Backend)?;
                }
                Ok(())
            })
        }))
        .timeouts(Timeouts {
            wait: Some(Duration::from_secs(10)),
            create: Some(cfg.connect_timeout + Duration::from_secs(1)),
            recycle: Some(Duration::from_secs(5)),
        })
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

/// Opens connections with the configured credentials; when the server rejects them
/// (SQLSTATE 28P01, e.g. after RDS rotated its managed secret) it re-reads the credential source
/// once and retries, then keeps the new credentials for later connections. Connections already
/// open are unaffected by a password change, so only new ones take this path.
struct RotatingConnect<T> {
    tls: T,
    source: Option<Arc<dyn DbCredentialSource>>,
    current: RwLock<Option<(String, SecretString)>>,
}

impl<T> RotatingConnect<T> {
    fn new(tls: T, source: Option<Arc<dyn DbCredentialSource>>) -> Self {
        Self {
            tls,
            source,
            current: RwLock::new(None),
        }
    }
}

type Connected = Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>;

async fn open<T>(cfg: &tokio_postgres::Config, tls: T) -> Connected
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = cfg.connect(tls).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "database connection closed with an error");
        }
    });
    Ok((client, task))
}

/// SQLSTATE 28P01 invalid_password (also what Postgres reports for an unknown user).
fn is_auth_failure(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == "28P01")
}

impl<T> Connect for RotatingConnect<T>
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(&self, pg_config: &tokio_postgres::Config) -> Pin<Box<dyn Future<Output = Connected> + Send + '_>> {
        let mut cfg = pg_config.clone();
        Box::pin(async move {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some((user, password)) = current {
                cfg.user(&user).password(password.expose_secret());
            }
            let err = match open(&cfg, self.tls.clone()).await {
                Err(e) if is_auth_failure(&e) => e,
                other => return other,
            };
            let Some(source) = &self.source else {
                return Err(err);
            };
            tracing::warn!("database rejected the credentials; re-reading the secret (rotated?)");
            let (user, password) = match source.fetch().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "database credentials could not be re-read");
                    return Err(err);
                }
            };
            cfg.user(&user).password(password.expose_secret());
            let connected = open(&cfg, self.tls.clone()).await?;
            tracing::info!("database credentials refreshed");
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some((user, password));
            Ok(connected)
        })
    }
}
