//! Indicators (api spec §5.3): one global indicator, and the analyst's malice override.

use serde_json::{json, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{Actor, ServiceError};
use crate::db::stmt::{self, Cached};
use crate::enrich::providers::iso;

const NOT_FOUND: ServiceError = ServiceError::NotFound("Indicator");

const SQL: &str = "SELECT i.uuid, i.type, i.value, i.malice, i.malice_source, i.malice_overridden_at, i.first_seen,
        i.last_seen, i.is_enriched, i.created_at, i.updated_at,
        COALESCE((SELECT jsonb_object_agg(r.provider, jsonb_build_object(
                      'status', r.status, 'extracted', r.block, 'malice', r.verdict, 'reasons', r.reasons,
                      'raw', r.raw, 'error', r.error,
                      'enriched_at', to_char(r.fetched_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                      'expires_at', to_char(r.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')))
                  FROM enrichment_results r WHERE r.indicator_id = i.id), '{}'::jsonb)
    FROM indicators i WHERE i.uuid = $1";

fn indicator_json(r: &tokio_postgres::Row) -> Value {
    let ts = |v: Option<chrono::DateTime<chrono::Utc>>| v.map(iso);
    json!({
        "uuid": r.get::<_, Uuid>(0), "type": r.get::<_, String>(1), "value": r.get::<_, String>(2),
        "malice": r.get::<_, String>(3), "malice_source": r.get::<_, String>(4),
        "malice_overridden_at": ts(r.get(5)), "first_seen": iso(r.get(6)), "last_seen": iso(r.get(7)),
        "is_enriched": r.get::<_, bool>(8), "created_at": iso(r.get(9)), "updated_at": iso(r.get(10)),
        "enrichment_results": r.get::<_, Value>(11),
    })
}

/// One indicator with every provider result, raw responses included.
pub async fn get(client: &impl Cached, uuid: Uuid) -> Result<Value, ServiceError> {
    let row = stmt::query_opt(client, SQL, &[(&uuid, Type::UUID)])
        .await?
        .ok_or(NOT_FOUND)?;
    Ok(indicator_json(&row))
}

/// Sets an analyst verdict (`Some`, canonical) that later enrichment keeps, or (`None`)
/// recomputes the verdict from stored results. Linked enriched alerts take the worst of their
/// indicators again, each with an activity event; all in one transaction. Returns the
/// indicator as [`get`] shows it.
pub async fn set_malice(
    client: &mut deadpool_postgres::Object,
    actor: &Actor,
    uuid: Uuid,
    malice: Option<&str>,
) -> Result<Value, ServiceError> {
    let tx = client.transaction().await?;
    let row = stmt::query_opt(
        &tx,
        "WITH cur AS (SELECT id, malice FROM indicators WHERE uuid = $1 FOR UPDATE),
         upd AS (
             UPDATE indicators i SET
                 malice = COALESCE($2, (SELECT COALESCE((ARRAY['Pending','Benign','Suspicious','Malicious'])[
                     MAX(CASE r.verdict WHEN 'Malicious' THEN 4 WHEN 'Suspicious' THEN 3 WHEN 'Benign' THEN 2 ELSE 1 END)], 'Pending')
                     FROM enrichment_results r WHERE r.indicator_id = i.id AND r.status IN ('found', 'not_found'))),
                 malice_source = CASE WHEN $2::text IS NULL THEN 'enrichment' ELSE 'analyst' END,
                 malice_overridden_at = CASE WHEN $2::text IS NULL THEN NULL ELSE now() END,
                 updated_at = now()
             FROM cur WHERE i.id = cur.id RETURNING i.id, cur.malice AS old, i.malice AS new)
         SELECT id, old, new FROM upd",
        &[(&uuid, Type::UUID), (&malice, Type::TEXT)],
    )
    .await?
    .ok_or(NOT_FOUND)?;
    let (id, old, new): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    stmt::execute(
        &tx,
        "WITH linked AS (SELECT alert_id FROM alert_indicators WHERE indicator_id = $1),
         upd AS (
             UPDATE alerts a SET malice = (SELECT COALESCE((ARRAY['Pending','Benign','Suspicious','Malicious'])[
                     MAX(CASE i.malice WHEN 'Malicious' THEN 4 WHEN 'Suspicious' THEN 3 WHEN 'Benign' THEN 2 ELSE 1 END)], 'Pending')
                     FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id WHERE l.alert_id = a.id),
                 updated_at = now()
             FROM linked WHERE a.id = linked.alert_id AND a.enrichment_status <> 'Pending' RETURNING a.id)
         INSERT INTO activity_events (alert_id, event_type, actor_type, actor_key_prefix, \"references\")
         SELECT l.alert_id, 'indicator_malice_updated', $6, $2,
                jsonb_build_object('indicator_uuid', $3::uuid, 'from', $4::text, 'to', $5::text)
         FROM linked l",
        &[
            (&id, Type::INT8),
            (&actor.key_prefix, Type::TEXT),
            (&uuid, Type::UUID),
            (&old, Type::TEXT),
            (&new, Type::TEXT),
            (&actor.kind.as_str(), Type::TEXT),
        ],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(indicator_id = id, actor = actor.kind.as_str(), from = %old, to = %new, "indicator malice updated");
    get(&**client, uuid).await
}
