//! The `sources` table: per-source inbound auth settings read by ingest (sources spec §8), and
//! the admin API's reads and writes. Sealed secrets are read only by [`get`] (for ingest to
//! check); the admin reads select only whether each one is set.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;
use tokio_postgres::types::Type;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::DbError;
use crate::{crypto::Sealer, domain::indicator::IndicatorType, sources::SourceName};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    ApiKey,
    SharedSecret,
    Hmac,
    None,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::ApiKey => "api_key",
            AuthType::SharedSecret => "shared_secret",
            AuthType::Hmac => "hmac",
            AuthType::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [AuthType::ApiKey, AuthType::SharedSecret, AuthType::Hmac, AuthType::None]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// What ingest needs to know about a source. Secrets are decrypted only when checked.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub source_name: SourceName,
    pub is_active: bool,
    pub auth_type: AuthType,
    pub url_token_allowed: bool,
    /// HMAC: accept the legacy body-only signature (no timestamp, no freshness).
    pub hmac_body_only: bool,
    pub shared_secret: Option<Vec<u8>>,
    pub previous_shared_secret: Option<Vec<u8>>,
    pub hmac_secret: Option<Vec<u8>>,
    pub extra_indicator_fields: Vec<(String, IndicatorType)>,
}

impl SourceSettings {
    /// A source without a settings row: API keys only.
    pub fn default_for(source_name: SourceName) -> Self {
        Self {
            source_name,
            is_active: true,
            auth_type: AuthType::ApiKey,
            url_token_allowed: false,
            hmac_body_only: false,
            shared_secret: None,
            previous_shared_secret: None,
            hmac_secret: None,
            extra_indicator_fields: Vec::new(),
        }
    }
}

fn extra_fields(v: &Value) -> Vec<(String, IndicatorType)> {
    let mut out: Vec<(String, IndicatorType)> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(path, t)| Some((path.clone(), t.as_str()?.parse::<IndicatorType>().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The settings row of a source, or the defaults when it has none.
pub async fn get(client: &impl super::stmt::Cached, source: SourceName) -> Result<SourceSettings, DbError> {
    let row = super::stmt::query_opt(
        client,
        "SELECT is_active, auth_type, url_token_allowed, shared_secret_enc, previous_shared_secret_enc,
                    hmac_secret_enc, extra_indicator_fields, hmac_body_only
             FROM sources WHERE source_name = $1",
        &[(&source.as_str(), tokio_postgres::types::Type::TEXT)],
    )
    .await?;
    let Some(row) = row else {
        return Ok(SourceSettings::default_for(source));
    };
    let auth: String = row.try_get("auth_type")?;
    Ok(SourceSettings {
        source_name: source,
        is_active: row.try_get("is_active")?,
        // The CHECK constraint keeps this column to known values; fail closed on anything else.
        auth_type: AuthType::parse(&auth).unwrap_or(AuthType::Hmac),
        url_token_allowed: row.try_get("url_token_allowed")?,
        shared_secret: row.try_get("shared_secret_enc")?,
        previous_shared_secret: row.try_get("previous_shared_secret_enc")?,
        hmac_secret: row.try_get("hmac_secret_enc")?,
        extra_indicator_fields: extra_fields(&row.try_get::<_, Value>("extra_indicator_fields")?),
        hmac_body_only: row.try_get("hmac_body_only")?,
    })
}

/// Fields to write; secrets are given in clear and sealed here.
#[derive(Debug, Clone)]
pub struct SourceWrite {
    pub display_name: Option<String>,
    pub is_active: bool,
    pub auth_type: AuthType,
    pub url_token_allowed: bool,
    pub shared_secret: Option<SecretString>,
    pub previous_shared_secret: Option<SecretString>,
    pub hmac_secret: Option<SecretString>,
    pub extra_indicator_fields: Value,
}

/// Creates or replaces the settings row of a source.
pub async fn upsert(
    client: &impl GenericClient,
    sealer: &Sealer,
    source: SourceName,
    w: &SourceWrite,
) -> Result<Uuid, DbError> {
    use secrecy::ExposeSecret;
    let seal = |s: &Option<SecretString>| s.as_ref().map(|s| sealer.seal(s.expose_secret()));
    let row = client
        .query_one(
            "INSERT INTO sources (source_name, display_name, is_active, auth_type, url_token_allowed,
                                  shared_secret_enc, previous_shared_secret_enc, hmac_secret_enc,
                                  extra_indicator_fields)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (source_name) DO UPDATE SET
                display_name = EXCLUDED.display_name, is_active = EXCLUDED.is_active,
                auth_type = EXCLUDED.auth_type, url_token_allowed = EXCLUDED.url_token_allowed,
                shared_secret_enc = EXCLUDED.shared_secret_enc,
                previous_shared_secret_enc = EXCLUDED.previous_shared_secret_enc,
                hmac_secret_enc = EXCLUDED.hmac_secret_enc,
                extra_indicator_fields = EXCLUDED.extra_indicator_fields, updated_at = now()
             RETURNING uuid",
            &[
                &source.as_str(),
                &w.display_name,
                &w.is_active,
                &w.auth_type.as_str(),
                &w.url_token_allowed,
                &seal(&w.shared_secret),
                &seal(&w.previous_shared_secret),
                &seal(&w.hmac_secret),
                &w.extra_indicator_fields,
            ],
        )
        .await?;
    Ok(row.try_get("uuid")?)
}

/// The columns the admin API shows: secrets only as whether they are set.
const COLUMNS: &str = "uuid, source_name, display_name, is_active, auth_type, url_token_allowed,
    shared_secret_enc IS NOT NULL AS has_shared_secret, hmac_secret_enc IS NOT NULL AS has_hmac_secret,
    extra_indicator_fields, documentation, created_at, updated_at,
    previous_shared_secret_enc IS NOT NULL AS has_previous_shared_secret, hmac_body_only";

/// A settings row as the admin API shows it.
#[derive(Debug, Clone)]
pub struct SourceRow {
    pub uuid: Uuid,
    pub source_name: String,
    pub display_name: Option<String>,
    pub is_active: bool,
    pub auth_type: String,
    pub url_token_allowed: bool,
    pub hmac_body_only: bool,
    pub has_shared_secret: bool,
    pub has_previous_shared_secret: bool,
    pub has_hmac_secret: bool,
    pub extra_indicator_fields: Value,
    pub documentation: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SourceRow {
    fn from_row(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            uuid: r.try_get("uuid")?,
            source_name: r.try_get("source_name")?,
            display_name: r.try_get("display_name")?,
            is_active: r.try_get("is_active")?,
            auth_type: r.try_get("auth_type")?,
            url_token_allowed: r.try_get("url_token_allowed")?,
            hmac_body_only: r.try_get("hmac_body_only")?,
            has_shared_secret: r.try_get("has_shared_secret")?,
            has_previous_shared_secret: r.try_get("has_previous_shared_secret")?,
            has_hmac_secret: r.try_get("has_hmac_secret")?,
            extra_indicator_fields: r.try_get("extra_indicator_fields")?,
            documentation: r.try_get("documentation")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

fn one(row: Option<tokio_postgres::Row>) -> Result<Option<SourceRow>, tokio_postgres::Error> {
    row.as_ref().map(SourceRow::from_row).transpose()
}

/// The settings rows by source name, `limit` from `offset`, and their total.
pub async fn list(
    client: &impl super::stmt::Cached,
    limit: i64,
    offset: i64,
) -> Result<(Vec<SourceRow>, i64), tokio_postgres::Error> {
    let rows = super::stmt::query(
        client,
        &format!("SELECT {COLUMNS} FROM sources ORDER BY source_name LIMIT $1 OFFSET $2"),
        &[(&limit, Type::INT8), (&offset, Type::INT8)],
    )
    .await?;
    let total = super::stmt::query(client, "SELECT count(*) AS total FROM sources", &[])
        .await?
        .first()
        .map(|r| r.try_get("total"))
        .transpose()?
        .unwrap_or(0);
    let sources = rows.iter().map(SourceRow::from_row).collect::<Result<_, _>>()?;
    Ok((sources, total))
}

/// The settings row `uuid`.
pub(crate) async fn by_uuid(
    client: &impl super::stmt::Cached,
    uuid: Uuid,
) -> Result<Option<SourceRow>, tokio_postgres::Error> {
    let row = super::stmt::query_opt(
        client,
        &format!("SELECT {COLUMNS} FROM sources WHERE uuid = $1"),
        &[(&uuid, Type::UUID)],
    )
    .await?;
    one(row)
}

/// A new settings row; secrets already sealed. `None` takes the column's default.
#[derive(Debug, Clone, Default)]
pub struct NewSource {
    pub source_name: String,
    pub display_name: Option<String>,
    pub is_active: Option<bool>,
    pub auth_type: String,
    pub url_token_allowed: bool,
    pub shared_secret_enc: Option<Vec<u8>>,
    pub previous_shared_secret_enc: Option<Vec<u8>>,
    pub hmac_secret_enc: Option<Vec<u8>>,
    pub extra_indicator_fields: Option<Value>,
    pub documentation: Option<String>,
    pub hmac_body_only: Option<bool>,
}

/// Stores the settings of a source that has none; `None` when it has some already.
pub async fn create(
    client: &impl super::stmt::Cached,
    n: &NewSource,
) -> Result<Option<SourceRow>, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO sources (source_name, display_name, is_active, auth_type, url_token_allowed, shared_secret_enc,
             previous_shared_secret_enc, hmac_secret_enc, extra_indicator_fields, documentation, hmac_body_only)
         VALUES ($1, $2, COALESCE($3, true), $4, $5, $6, $7, $8, COALESCE($9, '{{}}'::jsonb), $10, COALESCE($11, false))
         ON CONFLICT (source_name) DO NOTHING RETURNING {COLUMNS}"
    );
    let row = super::stmt::query_opt(
        client,
        &sql,
        &[
            (&n.source_name, Type::TEXT),
            (&n.display_name, Type::TEXT),
            (&n.is_active, Type::BOOL),
            (&n.auth_type, Type::TEXT),
            (&n.url_token_allowed, Type::BOOL),
            (&n.shared_secret_enc, Type::BYTEA),
            (&n.previous_shared_secret_enc, Type::BYTEA),
            (&n.hmac_secret_enc, Type::BYTEA),
            (&n.extra_indicator_fields, Type::JSONB),
            (&n.documentation, Type::TEXT),
            (&n.hmac_body_only, Type::BOOL),
        ],
    )
    .await?;
    one(row)
}

/// One sealed secret to write: (given, value); `(true, None)` clears it.
pub(crate) type SecretWrite = (bool, Option<Vec<u8>>);

/// A PATCH of a settings row: `None` leaves a field unchanged; the nullable fields carry
/// whether they were given.
#[derive(Debug, Clone, Default)]
pub struct SourceUpdate {
    pub set_display_name: bool,
    pub display_name: Option<String>,
    pub is_active: Option<bool>,
    pub auth_type: Option<String>,
    pub url_token_allowed: Option<bool>,
    pub shared_secret_enc: SecretWrite,
    pub previous_shared_secret_enc: SecretWrite,
    pub hmac_secret_enc: SecretWrite,
    pub extra_indicator_fields: Option<Value>,
    pub set_documentation: bool,
    pub documentation: Option<String>,
    pub hmac_body_only: Option<bool>,
}

/// Applies `u` to the settings row `uuid`; `None` when there is no such row.
pub async fn update(
    client: &impl super::stmt::Cached,
    uuid: Uuid,
    u: &SourceUpdate,
) -> Result<Option<SourceRow>, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE sources SET
             display_name = CASE WHEN $2 THEN $3 ELSE display_name END,
             is_active = COALESCE($4, is_active), auth_type = COALESCE($5, auth_type),
             url_token_allowed = COALESCE($6, url_token_allowed),
             shared_secret_enc = CASE WHEN $7 THEN $8 ELSE shared_secret_enc END,
             previous_shared_secret_enc = CASE WHEN $9 THEN $10 ELSE previous_shared_secret_enc END,
             hmac_secret_enc = CASE WHEN $11 THEN $12 ELSE hmac_secret_enc END,
             extra_indicator_fields = COALESCE($13, extra_indicator_fields),
             documentation = CASE WHEN $14 THEN $15 ELSE documentation END,
             hmac_body_only = COALESCE($16, hmac_body_only),
             updated_at = now()
         WHERE uuid = $1 RETURNING {COLUMNS}"
    );
    let row = super::stmt::query_opt(
        client,
        &sql,
        &[
            (&uuid, Type::UUID),
            (&u.set_display_name, Type::BOOL),
            (&u.display_name, Type::TEXT),
            (&u.is_active, Type::BOOL),
            (&u.auth_type, Type::TEXT),
            (&u.url_token_allowed, Type::BOOL),
            (&u.shared_secret_enc.0, Type::BOOL),
            (&u.shared_secret_enc.1, Type::BYTEA),
            (&u.previous_shared_secret_enc.0, Type::BOOL),
            (&u.previous_shared_secret_enc.1, Type::BYTEA),
            (&u.hmac_secret_enc.0, Type::BOOL),
            (&u.hmac_secret_enc.1, Type::BYTEA),
            (&u.extra_indicator_fields, Type::JSONB),
            (&u.set_documentation, Type::BOOL),
            (&u.documentation, Type::TEXT),
            (&u.hmac_body_only, Type::BOOL),
        ],
    )
    .await?;
    one(row)
}

/// Deletes the settings row `uuid` (the source returns to the `api_key` default); false when
/// there is no such row.
pub async fn delete(client: &impl super::stmt::Cached, uuid: Uuid) -> Result<bool, tokio_postgres::Error> {
    let row = super::stmt::query_opt(
        client,
        "DELETE FROM sources WHERE uuid = $1 RETURNING id",
        &[(&uuid, Type::UUID)],
    )
    .await?;
    Ok(row.is_some())
}
