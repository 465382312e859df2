//! Running hot-path statements. With named prepared statements (the default) each statement is
//! parsed and planned once per connection and then costs one round trip; behind RDS Proxy, named
//! statements pin sessions, so `DATABASE_PREPARED_STATEMENTS=false` switches to unnamed typed
//! statements (one round trip, re-planned each time).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::{
    types::{ToSql, Type},
    Error, Row,
};

static PREPARED: AtomicBool = AtomicBool::new(true);

/// Set once by `build_pool` from the configuration.
pub(crate) fn set_prepared(on: bool) {
    PREPARED.store(on, Ordering::Relaxed);
}

/// A typed parameter.
pub(crate) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// A connection or transaction from the pool (both carry a statement cache).
pub trait Cached: Sync {
    fn prepare_cached<'a>(
        &'a self,
        sql: &'a str,
        types: &'a [Type],
    ) -> impl std::future::Future<Output = Result<tokio_postgres::Statement, Error>> + Send + 'a;
    fn client(&self) -> &(impl tokio_postgres::GenericClient + Sync);
}

impl Cached for deadpool_postgres::ClientWrapper {
    fn prepare_cached<'a>(
        &'a self,
        sql: &'a str,
        types: &'a [Type],
    ) -> impl std::future::Future<Output = Result<tokio_postgres::Statement, Error>> + Send + 'a {
        self.prepare_typed_cached(sql, types)
    }
    fn client(&self) -> &(impl tokio_postgres::GenericClient + Sync) {
        &**self
    }
}

impl Cached for deadpool_postgres::Transaction<'_> {
    fn prepare_cached<'a>(
        &'a self,
        sql: &'a str,
        types: &'a [Type],
    ) -> impl std::future::Future<Output = Result<tokio_postgres::Statement, Error>> + Send + 'a {
        self.prepare_typed_cached(sql, types)
    }
    fn client(&self) -> &(impl tokio_postgres::GenericClient + Sync) {
        &**self
    }
}

/// Runs `sql` and returns its rows.
pub async fn query(c: &impl Cached, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, Error> {
    use tokio_postgres::GenericClient;
    if PREPARED.load(Ordering::Relaxed) {
        let types: Vec<Type> = params.iter().map(|p| p.1.clone()).collect();
        let stmt = c.prepare_cached(sql, &types).await?;
        let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.0).collect();
        c.client().query(&stmt, &values).await
    } else {
        c.client().query_typed(sql, params).await
    }
}

/// Runs `sql` and returns at most one row.
pub async fn query_opt(c: &impl Cached, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, Error> {
    Ok(query(c, sql, params).await?.into_iter().next())
}

/// Runs `sql` for its effect.
pub async fn execute(c: &impl Cached, sql: &str, params: &[Param<'_>]) -> Result<(), Error> {
    query(c, sql, params).await.map(|_| ())
}
