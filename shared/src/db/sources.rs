//! The `sources` table: per-source inbound auth settings read by ingest (sources spec §8).

use secrecy::SecretString;
use serde_json::Value;
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
    let auth: String = row.get(1);
    Ok(SourceSettings {
        source_name: source,
        is_active: row.get(0),
        // The CHECK constraint keeps this column to known values; fail closed on anything else.
        auth_type: AuthType::parse(&auth).unwrap_or(AuthType::Hmac),
        url_token_allowed: row.get(2),
        shared_secret: row.get(3),
        previous_shared_secret: row.get(4),
        hmac_secret: row.get(5),
        extra_indicator_fields: extra_fields(&row.get::<_, Value>(6)),
        hmac_body_only: row.get(7),
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
    Ok(row.get(0))
}
