//! Two checks the migrations custom resource makes before traffic, so a deployment fails with a
//! reason instead of failing at run time:
//!
//! - the least-privilege login role the functions use (`AppRole`): data access only, no DDL,
//!   no writes to `schema_migrations`. The master user stays with `migrate`.
//! - the connection budget (`ConnectionBudget`): Σ concurrency × pool size of every client must
//!   fit the instance's `max_connections`, or a burst fails with "too many clients".

use secrecy::{ExposeSecret, SecretString};

use crate::db::Pool;

/// Role names we create: plain lower-case identifiers, so nothing depends on quoting rules.
fn valid_role_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && name.len() <= 63
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && !name.starts_with("pg_")
        && !name.starts_with("rds")
}

/// The functions' database login, from its own generated secret (`username`, `password`).
pub struct AppRole {
    pub username: String,
    pub password: SecretString,
}

impl std::fmt::Debug for AppRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRole")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl AppRole {
    pub fn new(username: &str, password: SecretString) -> Result<Self, String> {
        if !valid_role_name(username) {
            return Err(format!(
                "app database role {username:?} must be a lower-case identifier (a-z, 0-9, _), not pg_* or rds*"
            ));
        }
        if password.expose_secret().len() < 16 {
            return Err("the app database role's password is shorter than 16 characters".into());
        }
        Ok(Self {
            username: username.to_owned(),
            password,
        })
    }

    /// From the secret at `CALSETA_APP_DB_SECRET_ARN`; `None` when unset (local stack, tests).
    pub async fn from_env(secrets: &crate::secrets::SecretsClient) -> Result<Option<Self>, String> {
        let Some(arn) = crate::config::var("CALSETA_APP_DB_SECRET_ARN") else {
            return Ok(None);
        };
        let s = secrets.json(&arn).await.map_err(|e| e.to_string())?;
        let user = s.require("username").map_err(|e| e.to_string())?;
        let password = s.require("password").map_err(|e| e.to_string())?;
        Self::new(user.expose_secret(), password).map(Some)
    }

    /// Creates the role or resets its password (so a rotated secret takes effect on the next
    /// deployment), then grants data access on everything the migrations created and will
    /// create. Idempotent; one transaction, so a failure leaves the previous grants.
    pub async fn ensure(&self, pool: &Pool) -> Result<(), String> {
        let mut client = pool.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let me: String = tx
            .query_one("SELECT current_user::text AS me", &[])
            .await
            .and_then(|r| r.try_get("me"))
            .map_err(|e| e.to_string())?;
        if me == self.username {
            return Err(format!(
                "the app role {:?} is the migrating (master) user; give it its own name",
                self.username
            ));
        }
        let exists = tx
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&self.username])
            .await
            .map_err(|e| e.to_string())?
            .is_some();
        // ALTER/CREATE ROLE take no bind parameters, so the server quotes (format %I/%L) and
        // we send a SCRAM verifier, never the password: the statement text may reach a log
        // (log_min_duration_statement) and must not carry the secret.
        let verb = if exists {
            "ALTER ROLE %I WITH LOGIN PASSWORD %L"
        } else {
            "CREATE ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L"
        };
        let verifier = postgres_protocol::password::scram_sha_256(self.password.expose_secret().as_bytes());
        let stmt: String = tx
            .query_one(
                "SELECT format($1::text, $2::text, $3::text) AS stmt",
                &[&verb, &self.username, &verifier],
            )
            .await
            .and_then(|r| r.try_get("stmt"))
            .map_err(|e| e.to_string())?;
        tx.batch_execute(&stmt).await.map_err(|e| e.to_string())?;
        let grants: String = tx
            .query_one(
                "SELECT format(
                   'GRANT CONNECT, TEMPORARY ON DATABASE %1$I TO %2$I;
                    GRANT USAGE ON SCHEMA public TO %2$I;
                    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %2$I;
                    GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO %2$I;
                    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %2$I;
                    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO %2$I;
                    REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM %2$I;
                    REVOKE CREATE ON SCHEMA public FROM PUBLIC;',
                   current_database(), $1::text) AS grants",
                &[&self.username],
            )
            .await
            .and_then(|r| r.try_get("grants"))
            .map_err(|e| e.to_string())?;
        tx.batch_execute(&grants).await.map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())
    }
}

/// One client of the database: `name=concurrency x pool`.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetItem {
    pub name: String,
    pub concurrency: i64,
    pub pool_size: i64,
}

/// The connections every client may open at once, checked against the server's limit.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionBudget {
    pub items: Vec<BudgetItem>,
}

impl ConnectionBudget {
    /// Parses `ingest=20x2,api=10x2,...` (the template builds this string from its parameters).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut items = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("connection budget item {part:?} is not name=CONCURRENCYxPOOL");
            let (name, rest) = part.split_once('=').ok_or_else(bad)?;
            let (c, p) = rest.split_once('x').ok_or_else(bad)?;
            let concurrency: i64 = c.trim().parse().map_err(|_| bad())?;
            let pool_size: i64 = p.trim().parse().map_err(|_| bad())?;
            if !(0..=100_000).contains(&concurrency) || !(0..=1_000).contains(&pool_size) {
                return Err(bad());
            }
            items.push(BudgetItem {
                name: name.trim().to_owned(),
                concurrency,
                pool_size,
            });
        }
        if items.is_empty() {
            return Err("the connection budget is empty".into());
        }
        Ok(Self { items })
    }

    pub fn total(&self) -> i64 {
        self.items.iter().map(|i| i.concurrency * i.pool_size).sum()
    }

    /// Connections clients may use on this server: `max_connections` minus the slots reserved
    /// for superusers (RDS also keeps a few for its own agent: `reserve`).
    pub async fn available(pool: &Pool, reserve: i64) -> Result<i64, String> {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        let row = client
            .query_one(
                "SELECT current_setting('max_connections')::bigint AS max_connections,
                        current_setting('superuser_reserved_connections')::bigint AS reserved",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        let max: i64 = row.try_get("max_connections").map_err(|e| e.to_string())?;
        let reserved: i64 = row.try_get("reserved").map_err(|e| e.to_string())?;
        Ok(max - reserved - reserve)
    }

    /// `Ok(total, available)` when the budget fits, else an error naming every term.
    pub async fn check(&self, pool: &Pool, reserve: i64) -> Result<(i64, i64), String> {
        let available = Self::available(pool, reserve).await?;
        let total = self.total();
        if total > available {
            let terms: Vec<String> = self
                .items
                .iter()
                .map(|i| format!("{} {}x{}", i.name, i.concurrency, i.pool_size))
                .collect();
            return Err(format!(
                "connection budget {total} ({}) exceeds the {available} connections the database allows \
                 (max_connections minus reserved); lower the concurrency or pool parameters, raise \
                 DbMaxConnections / the instance class, or use the RDS Proxy",
                terms.join(" + ")
            ));
        }
        Ok((total, available))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_parses_and_sums() {
        let b = ConnectionBudget::parse("ingest=20x2, api=10x2,enrich=10x4,,").expect("parse");
        assert_eq!(b.items.len(), 3);
        assert_eq!(b.total(), 100);
        for bad in ["", "ingest=20", "ingest=ax2", "ingest=-1x2", "ingest", "ingest=1x9999"] {
            assert!(ConnectionBudget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_names_are_plain_identifiers() {
        let pw = || SecretString::from("a-password-long-enough".to_owned());
        assert!(AppRole::new("calseta_app", pw()).is_ok());
        for bad in ["", "Calseta", "pg_app", "rdsadmin", "app;drop", "1app", "app\"x"] {
            assert!(AppRole::new(bad, pw()).is_err(), "{bad}");
        }
        assert!(AppRole::new("calseta_app", SecretString::from("short".to_owned())).is_err());
    }
}
