//! The `api_keys` table.

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use secrecy::SecretString;
use uuid::Uuid;

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
            let stored: Vec<u8> = row.get(1);
            if stored == hasher.hash(plain) {
                return Ok(row.get(0));
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
    Ok(row.get(0))
}
