use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use secrecy::ExposeSecret;

use super::{tls, DbError};
use crate::config::{DbConfig, SslMode};

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
    let mgr_cfg = ManagerConfig {
        recycling_method: RecyclingMethod::Verified,
    };
    let mgr = match cfg.ssl_mode {
        SslMode::Disable => Manager::from_config(pg, tokio_postgres::NoTls, mgr_cfg),
        mode => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            Manager::from_config(pg, tls::connector(mode, cfg.ca_file.as_deref())?, mgr_cfg)
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
