//! `agents`: the agent registry (api spec §5.8). Secrets arrive sealed and are stored sealed;
//! [`AgentRow`] (what responses are built from) carries none of them.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::Type;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::stmt::{self, Cached};

/// The columns of [`AgentRow`].
const COLUMNS: &str = "uuid, name, description, endpoint_url, auth_header_name, trigger_on_sources,
    trigger_on_severities, trigger_filter, timeout_seconds, retry_count, max_payload_bytes, is_active,
    documentation, created_at, updated_at, retry_schedule";

/// One agent as readers see it (no secret column; `endpoint_url` as stored, unmasked).
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub uuid: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub endpoint_url: String,
    pub auth_header_name: Option<String>,
    pub trigger_on_sources: Vec<String>,
    pub trigger_on_severities: Vec<String>,
    pub trigger_filter: Option<Value>,
    pub timeout_seconds: i32,
    pub retry_count: i32,
    pub max_payload_bytes: Option<i32>,
    pub is_active: bool,
    pub documentation: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub retry_schedule: Option<Vec<i32>>,
}

impl AgentRow {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            uuid: r.try_get("uuid")?,
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            endpoint_url: r.try_get("endpoint_url")?,
            auth_header_name: r.try_get("auth_header_name")?,
            trigger_on_sources: r.try_get("trigger_on_sources")?,
            trigger_on_severities: r.try_get("trigger_on_severities")?,
            trigger_filter: r.try_get("trigger_filter")?,
            timeout_seconds: r.try_get("timeout_seconds")?,
            retry_count: r.try_get("retry_count")?,
            max_payload_bytes: r.try_get("max_payload_bytes")?,
            is_active: r.try_get("is_active")?,
            documentation: r.try_get("documentation")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            retry_schedule: r.try_get("retry_schedule")?,
        })
    }
}

fn first_agent(row: Option<Row>) -> Result<Option<AgentRow>, tokio_postgres::Error> {
    row.as_ref().map(AgentRow::from_row).transpose()
}

/// Agents, newest first, `limit` from `offset`, and the total.
pub async fn list(
    client: &impl Cached,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AgentRow>, i64), tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total FROM agents ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
    );
    let rows = stmt::query(client, &sql, &[(&limit, Type::INT8), (&offset, Type::INT8)]).await?;
    let total = match rows.first() {
        Some(r) => r.try_get("total")?,
        // Past the last page there is no row to carry the window count.
        None => stmt::query(client, "SELECT count(*) AS total FROM agents", &[])
            .await?
            .first()
            .map(|r| r.try_get("total"))
            .transpose()?
            .unwrap_or(0),
    };
    let agents = rows.iter().map(AgentRow::from_row).collect::<Result<_, _>>()?;
    Ok((agents, total))
}

pub async fn get(client: &impl Cached, uuid: Uuid) -> Result<Option<AgentRow>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE uuid = $1");
    first_agent(stmt::query_opt(client, &sql, &[(&uuid, Type::UUID)]).await?)
}

/// The agent's internal id.
pub(crate) async fn id_of(client: &impl Cached, uuid: Uuid) -> Result<Option<i64>, tokio_postgres::Error> {
    stmt::query_opt(client, "SELECT id FROM agents WHERE uuid = $1", &[(&uuid, Type::UUID)])
        .await?
        .map(|r| r.try_get("id"))
        .transpose()
}

/// The stored (unmasked) endpoint URL.
pub async fn endpoint_url(client: &impl Cached, uuid: Uuid) -> Result<Option<String>, tokio_postgres::Error> {
    stmt::query_opt(
        client,
        "SELECT endpoint_url FROM agents WHERE uuid = $1",
        &[(&uuid, Type::UUID)],
    )
    .await?
    .map(|r| r.try_get("endpoint_url"))
    .transpose()
}

/// A new agent; secrets already sealed. `None` = the column default.
#[derive(Debug, Clone)]
pub struct NewAgent<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub endpoint_url: &'a str,
    pub auth_header_name: Option<&'a str>,
    pub auth_header_value_enc: Option<&'a [u8]>,
    pub signing_secret_enc: &'a [u8],
    pub trigger_on_sources: &'a [String],
    pub trigger_on_severities: &'a [String],
    pub trigger_filter: Option<&'a Value>,
    pub timeout_seconds: Option<i32>,
    pub retry_count: Option<i32>,
    pub max_payload_bytes: Option<i32>,
    pub is_active: Option<bool>,
    pub documentation: Option<&'a str>,
    pub retry_schedule: Option<&'a [i32]>,
}

pub async fn create(client: &impl Cached, a: &NewAgent<'_>) -> Result<Option<AgentRow>, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO agents (name, description, endpoint_url, auth_header_name, auth_header_value_enc, signing_secret_enc,
             trigger_on_sources, trigger_on_severities, trigger_filter, timeout_seconds, retry_count, max_payload_bytes,
             is_active, documentation, retry_schedule)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, 30), COALESCE($11, 7), $12, COALESCE($13, true), $14, $15)
         RETURNING {COLUMNS}"
    );
    let row = stmt::query_opt(
        client,
        &sql,
        &[
            (&a.name, Type::TEXT),
            (&a.description, Type::TEXT),
            (&a.endpoint_url, Type::TEXT),
            (&a.auth_header_name, Type::TEXT),
            (&a.auth_header_value_enc, Type::BYTEA),
            (&a.signing_secret_enc, Type::BYTEA),
            (&a.trigger_on_sources, Type::TEXT_ARRAY),
            (&a.trigger_on_severities, Type::TEXT_ARRAY),
            (&a.trigger_filter, Type::JSONB),
            (&a.timeout_seconds, Type::INT4),
            (&a.retry_count, Type::INT4),
            (&a.max_payload_bytes, Type::INT4),
            (&a.is_active, Type::BOOL),
            (&a.documentation, Type::TEXT),
            (&a.retry_schedule, Type::INT4_ARRAY),
        ],
    )
    .await?;
    first_agent(row)
}

/// A PATCH: `None` = unchanged; a `set_*` flag with its value sets a nullable column (to null
/// when the value is `None`). Secrets already sealed.
#[derive(Debug, Clone, Default)]
pub struct AgentPatch<'a> {
    pub name: Option<&'a str>,
    pub set_description: bool,
    pub description: Option<&'a str>,
    pub endpoint_url: Option<&'a str>,
    /// Sets `auth_header_name` and `auth_header_value_enc` together.
    pub set_auth: bool,
    pub auth_header_name: Option<&'a str>,
    pub auth_header_value_enc: Option<&'a [u8]>,
    pub trigger_on_sources: Option<&'a [String]>,
    pub trigger_on_severities: Option<&'a [String]>,
    pub set_trigger_filter: bool,
    pub trigger_filter: Option<&'a Value>,
    pub timeout_seconds: Option<i32>,
    pub retry_count: Option<i32>,
    pub set_max_payload_bytes: bool,
    pub max_payload_bytes: Option<i32>,
    pub is_active: Option<bool>,
    pub set_documentation: bool,
    pub documentation: Option<&'a str>,
    /// A new signing secret (rotation); the old one stays valid for 24 h.
    pub signing_secret_enc: Option<&'a [u8]>,
    pub set_retry_schedule: bool,
    pub retry_schedule: Option<&'a [i32]>,
}

/// Applies `p`; `None` when there is no such agent.
pub async fn update(
    client: &impl Cached,
    uuid: Uuid,
    p: &AgentPatch<'_>,
) -> Result<Option<AgentRow>, tokio_postgres::Error> {
    // The old secret stays valid for 24 h after a rotation (signatures carry both).
    let sql = format!(
        "UPDATE agents SET
             name = COALESCE($2, name),
             description = CASE WHEN $3 THEN $4 ELSE description END,
             endpoint_url = COALESCE($5, endpoint_url),
             auth_header_name = CASE WHEN $6 THEN $7 ELSE auth_header_name END,
             auth_header_value_enc = CASE WHEN $6 THEN $8 ELSE auth_header_value_enc END,
             trigger_on_sources = COALESCE($9, trigger_on_sources),
             trigger_on_severities = COALESCE($10, trigger_on_severities),
             trigger_filter = CASE WHEN $11 THEN $12 ELSE trigger_filter END,
             timeout_seconds = COALESCE($13, timeout_seconds),
             retry_count = COALESCE($14, retry_count),
             max_payload_bytes = CASE WHEN $15 THEN $16 ELSE max_payload_bytes END,
             is_active = COALESCE($17, is_active),
             documentation = CASE WHEN $18 THEN $19 ELSE documentation END,
             previous_signing_secret_enc = CASE WHEN $20::bytea IS NULL THEN previous_signing_secret_enc ELSE signing_secret_enc END,
             previous_secret_expires_at = CASE WHEN $20::bytea IS NULL THEN previous_secret_expires_at ELSE now() + interval '24 hours' END,
             signing_secret_enc = COALESCE($20, signing_secret_enc),
             retry_schedule = CASE WHEN $21 THEN $22 ELSE retry_schedule END,
             updated_at = now()
         WHERE uuid = $1 RETURNING {COLUMNS}"
    );
    let row = stmt::query_opt(
        client,
        &sql,
        &[
            (&uuid, Type::UUID),
            (&p.name, Type::TEXT),
            (&p.set_description, Type::BOOL),
            (&p.description, Type::TEXT),
            (&p.endpoint_url, Type::TEXT),
            (&p.set_auth, Type::BOOL),
            (&p.auth_header_name, Type::TEXT),
            (&p.auth_header_value_enc, Type::BYTEA),
            (&p.trigger_on_sources, Type::TEXT_ARRAY),
            (&p.trigger_on_severities, Type::TEXT_ARRAY),
            (&p.set_trigger_filter, Type::BOOL),
            (&p.trigger_filter, Type::JSONB),
            (&p.timeout_seconds, Type::INT4),
            (&p.retry_count, Type::INT4),
            (&p.set_max_payload_bytes, Type::BOOL),
            (&p.max_payload_bytes, Type::INT4),
            (&p.is_active, Type::BOOL),
            (&p.set_documentation, Type::BOOL),
            (&p.documentation, Type::TEXT),
            (&p.signing_secret_enc, Type::BYTEA),
            (&p.set_retry_schedule, Type::BOOL),
            (&p.retry_schedule, Type::INT4_ARRAY),
        ],
    )
    .await?;
    first_agent(row)
}

/// Deletes the agent (its deliveries with it); false when there is no such agent.
pub async fn delete(client: &impl Cached, uuid: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(stmt::query_opt(
        client,
        "DELETE FROM agents WHERE uuid = $1 RETURNING id",
        &[(&uuid, Type::UUID)],
    )
    .await?
    .is_some())
}

/// The triggers of one active agent.
#[derive(Debug, Clone)]
pub(crate) struct TriggerRow {
    pub id: i64,
    pub name: String,
    pub trigger_on_sources: Vec<String>,
    pub trigger_on_severities: Vec<String>,
    pub trigger_filter: Option<Value>,
}

/// The triggers of every active agent (dispatch matches an alert against them).
pub(crate) async fn active_triggers(client: &impl Cached) -> Result<Vec<TriggerRow>, tokio_postgres::Error> {
    stmt::query(
        client,
        "SELECT id, name, trigger_on_sources, trigger_on_severities, trigger_filter FROM agents
         WHERE is_active ORDER BY name, id",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(TriggerRow {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            trigger_on_sources: r.try_get("trigger_on_sources")?,
            trigger_on_severities: r.try_get("trigger_on_severities")?,
            trigger_filter: r.try_get("trigger_filter")?,
        })
    })
    .collect()
}

/// What a test delivery needs (secrets still sealed; no `Debug`, like every holder of them).
#[derive(Clone)]
pub(crate) struct TestTarget {
    pub name: String,
    pub endpoint_url: String,
    pub auth_header_name: Option<String>,
    pub auth_header_value_enc: Option<Vec<u8>>,
    pub signing_secret_enc: Vec<u8>,
    /// The previous signing secret while it is still valid.
    pub previous_signing_secret_enc: Option<Vec<u8>>,
    pub timeout_seconds: i32,
}

pub(crate) async fn test_target(client: &impl Cached, uuid: Uuid) -> Result<Option<TestTarget>, tokio_postgres::Error> {
    stmt::query_opt(
        client,
        "SELECT uuid, name, endpoint_url, auth_header_name, auth_header_value_enc, signing_secret_enc,
                CASE WHEN previous_secret_expires_at > now() THEN previous_signing_secret_enc END
                    AS previous_signing_secret_enc,
                timeout_seconds
         FROM agents WHERE uuid = $1",
        &[(&uuid, Type::UUID)],
    )
    .await?
    .map(|r| {
        Ok(TestTarget {
            name: r.try_get("name")?,
            endpoint_url: r.try_get("endpoint_url")?,
            auth_header_name: r.try_get("auth_header_name")?,
            auth_header_value_enc: r.try_get("auth_header_value_enc")?,
            signing_secret_enc: r.try_get("signing_secret_enc")?,
            previous_signing_secret_enc: r.try_get("previous_signing_secret_enc")?,
            timeout_seconds: r.try_get("timeout_seconds")?,
        })
    })
    .transpose()
}
