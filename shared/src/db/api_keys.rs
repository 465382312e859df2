//! The `api_keys` table: storing keys, the admin API's reads and writes, and the lookup
//! authentication makes. Only `key_hash` leaves this module as a secret, and only towards the
//! constant-time comparison of [`lookup`]'s caller; the admin reads never select it.

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use secrecy::SecretString;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::stmt::{self, Cached};
use super::DbError;
use crate::keys::{self, KeyHasher};

#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub name: &'a str,
    pub scopes: &'a [&'a str],
    pub key_type: &'a str,
    pub allowed_sources: Option<&'a [&'a str]>,
    pub expires_at: Option<DateTime<Utc>>,
    pub is_system: bool,
    pub created_by: Option<&'a str>,
}

/// Stores `key` unless that very key is already stored (a restart of `calseta dev` with the
/// same bootstrap key against a persistent database); returns the row's uuid. A different key
/// sharing its lookup prefix is refused.
pub async fn ensure(
    client: &impl tokio_postgres::GenericClient,
    hasher: &KeyHasher,
    key: &SecretString,
    new: &NewApiKey<'_>,
) -> Result<Uuid, DbError> {
    let plain = key.expose_secret();
    if keys::is_well_formed(plain) {
        let existing = client
            .query_opt(
                "SELECT uuid, key_hash FROM api_keys WHERE key_prefix = $1",
                &[&keys::lookup_prefix(plain)],
            )
            .await?;
        if let Some(row) = existing {
            let stored: Vec<u8> = row.try_get("key_hash")?;
            if stored == hasher.hash(plain) {
                return Ok(row.try_get("uuid")?);
            }
            return Err(DbError::Config(
                "another API key with the same prefix exists (or the database's key-hashing secret changed)".into(),
            ));
        }
    }
    insert(client, hasher, key, new).await
}

/// Stores `key` (already generated or supplied by an operator) and returns the row's uuid.
pub async fn insert(
    client: &impl tokio_postgres::GenericClient,
    hasher: &KeyHasher,
    key: &SecretString,
    new: &NewApiKey<'_>,
) -> Result<Uuid, DbError> {
    let plain = key.expose_secret();
    if !keys::is_well_formed(plain) {
        return Err(DbError::Config(
            "an API key is `cai_` followed by 43 URL-safe base64 characters".into(),
        ));
    }
    let scopes: Vec<&str> = new.scopes.to_vec();
    let allowed: Option<Vec<&str>> = new.allowed_sources.map(|s| s.to_vec());
    let row = client
        .query_one(
            "INSERT INTO api_keys (name, key_prefix, key_hash, scopes, key_type, allowed_sources,
                                   expires_at, is_system, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING uuid",
            &[
                &new.name,
                &keys::lookup_prefix(plain),
                &hasher.hash(plain),
                &scopes,
                &new.key_type,
                &allowed,
                &new.expires_at,
                &new.is_system,
                &new.created_by,
            ],
        )
        .await?;
    Ok(row.try_get("uuid")?)
}

/// The columns the admin API shows (never `key_hash`).
const COLUMNS: &str = "uuid, name, key_prefix, scopes, key_type, allowed_sources, expires_at, is_active,
    last_used_at, is_system, created_at";

/// A key as the admin API shows it.
#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub uuid: Uuid,
    pub name: String,
    pub key_prefix: String,
    pub scopes: Vec<String>,
    pub key_type: String,
    pub allowed_sources: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub is_active: bool,
    pub last_used_at: Option<DateTime<Utc>>,
    pub is_system: bool,
    pub created_at: DateTime<Utc>,
}

impl ApiKeyRow {
    fn from_row(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            uuid: r.try_get("uuid")?,
            name: r.try_get("name")?,
            key_prefix: r.try_get("key_prefix")?,
            scopes: r.try_get("scopes")?,
            key_type: r.try_get("key_type")?,
            allowed_sources: r.try_get("allowed_sources")?,
            expires_at: r.try_get("expires_at")?,
            is_active: r.try_get("is_active")?,
            last_used_at: r.try_get("last_used_at")?,
            is_system: r.try_get("is_system")?,
            created_at: r.try_get("created_at")?,
        })
    }
}

fn one(row: Option<tokio_postgres::Row>) -> Result<Option<ApiKeyRow>, tokio_postgres::Error> {
    row.as_ref().map(ApiKeyRow::from_row).transpose()
}

/// The keys not revoked, newest first, `limit` from `offset`, and their total.
pub async fn list(
    client: &impl Cached,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ApiKeyRow>, i64), tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
    );
    let rows = stmt::query(client, &sql, &[(&limit, Type::INT8), (&offset, Type::INT8)]).await?;
    let total = match rows.first() {
        Some(r) => r.try_get("total")?,
        // Past the last page there is no row to carry the window count.
        None => stmt::query(
            client,
            "SELECT count(*) AS total FROM api_keys WHERE revoked_at IS NULL",
            &[],
        )
        .await?
        .first()
        .map(|r| r.try_get("total"))
        .transpose()?
        .unwrap_or(0),
    };
    let keys = rows.iter().map(ApiKeyRow::from_row).collect::<Result<_, _>>()?;
    Ok((keys, total))
}

/// The key `uuid` (revoked ones included).
pub async fn get(client: &impl Cached, uuid: Uuid) -> Result<Option<ApiKeyRow>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE uuid = $1");
    one(stmt::query_opt(client, &sql, &[(&uuid, Type::UUID)]).await?)
}

/// Sets `is_active` of the key `uuid` just created (a key may be created suspended).
pub(crate) async fn set_active(
    client: &impl Cached,
    uuid: Uuid,
    is_active: bool,
) -> Result<Option<ApiKeyRow>, tokio_postgres::Error> {
    let sql = format!("UPDATE api_keys SET is_active = $2 WHERE uuid = $1 RETURNING {COLUMNS}");
    one(stmt::query_opt(client, &sql, &[(&uuid, Type::UUID), (&is_active, Type::BOOL)]).await?)
}

/// A PATCH of a key: `None` leaves a field unchanged; the nullable fields carry whether they
/// were given.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub set_allowed_sources: bool,
    pub allowed_sources: Option<Vec<String>>,
    pub set_expires_at: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub is_active: Option<bool>,
}

/// Applies `u` to the key `uuid` unless it is revoked; `None` when there is no such key.
pub async fn update(
    client: &impl Cached,
    uuid: Uuid,
    u: &KeyUpdate,
) -> Result<Option<ApiKeyRow>, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE api_keys SET name = COALESCE($2, name), scopes = COALESCE($3, scopes),
             allowed_sources = CASE WHEN $4 THEN $5 ELSE allowed_sources END,
             expires_at = CASE WHEN $6 THEN $7 ELSE expires_at END,
             is_active = COALESCE($8, is_active), updated_at = now()
         WHERE uuid = $1 AND revoked_at IS NULL RETURNING {COLUMNS}"
    );
    let row = stmt::query_opt(
        client,
        &sql,
        &[
            (&uuid, Type::UUID),
            (&u.name, Type::TEXT),
            (&u.scopes, Type::TEXT_ARRAY),
            (&u.set_allowed_sources, Type::BOOL),
            (&u.allowed_sources, Type::TEXT_ARRAY),
            (&u.set_expires_at, Type::BOOL),
            (&u.expires_at, Type::TIMESTAMPTZ),
            (&u.is_active, Type::BOOL),
        ],
    )
    .await?;
    one(row)
}

/// The usable admin keys (active, not revoked, not expired), locked until the transaction
/// ends so two concurrent requests cannot each remove "the other" admin.
pub(crate) async fn lock_usable_admins(tx: &impl Cached) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    stmt::query(
        tx,
        "SELECT uuid FROM api_keys
         WHERE 'admin' = ANY(scopes) AND is_active AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
         ORDER BY id FOR UPDATE",
        &[],
    )
    .await?
    .iter()
    .map(|r| r.try_get("uuid"))
    .collect()
}

/// Revokes the key `uuid` for good; its prefix, or `None` when there is no such key (or it was
/// revoked already).
pub async fn revoke(client: &impl Cached, uuid: Uuid) -> Result<Option<String>, tokio_postgres::Error> {
    stmt::query_opt(
        client,
        "UPDATE api_keys SET is_active = false, revoked_at = now(), updated_at = now()
         WHERE uuid = $1 AND revoked_at IS NULL RETURNING key_prefix",
        &[(&uuid, Type::UUID)],
    )
    .await?
    .map(|r| r.try_get("key_prefix"))
    .transpose()
}

/// What authentication needs of a usable key (active, not revoked) with a given prefix.
#[derive(Debug, Clone)]
pub struct AuthKeyRow {
    pub id: i64,
    pub key_hash: Vec<u8>,
    pub scopes: Vec<String>,
    pub allowed_sources: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `last_used_at` is unset or over a minute old: worth refreshing.
    pub last_used_stale: bool,
}

/// One authentication lookup: the key (if any) and the failed attempts of the caller's
/// address this minute.
#[derive(Debug, Clone)]
pub struct AuthLookup {
    pub key: Option<AuthKeyRow>,
    /// The `rate_limits` count of `ip_bucket` in the current window (`None`: no row).
    pub failed_this_minute: Option<i32>,
}

/// The usable key with lookup prefix `prefix` and the count of the failed-authentication
/// bucket `ip_bucket`, in one round trip (this runs before every uncached request).
pub async fn lookup(
    client: &impl Cached,
    prefix: &str,
    ip_bucket: Option<&str>,
) -> Result<Option<AuthLookup>, tokio_postgres::Error> {
    let row = stmt::query_opt(
        client,
        "SELECT k.id, k.key_hash, k.scopes, k.allowed_sources, k.expires_at,
                k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute' AS last_used_stale,
                (SELECT r.count FROM rate_limits r
                 WHERE r.bucket = $2 AND r.window_start = date_trunc('minute', now())) AS failed
             FROM (SELECT 1) AS one
             LEFT JOIN api_keys k ON k.key_prefix = $1 AND k.is_active AND k.revoked_at IS NULL",
        &[(&prefix, Type::TEXT), (&ip_bucket, Type::TEXT)],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    // The LEFT JOIN leaves every key column NULL when no usable key has this prefix.
    let key = match row.try_get::<_, Option<i64>>("id")? {
        None => None,
        Some(id) => Some(AuthKeyRow {
            id,
            key_hash: row.try_get("key_hash")?,
            scopes: row.try_get("scopes")?,
            allowed_sources: row.try_get("allowed_sources")?,
            expires_at: row.try_get("expires_at")?,
            last_used_stale: row.try_get("last_used_stale")?,
        }),
    };
    Ok(Some(AuthLookup {
        key,
        failed_this_minute: row.try_get("failed")?,
    }))
}

/// Stamps `last_used_at` of the key `id` (best effort; callers run it off the request path).
pub(crate) async fn touch(client: &impl tokio_postgres::GenericClient, id: i64) -> Result<u64, tokio_postgres::Error> {
    client
        .execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", &[&id])
        .await
}
