//! `indicators` (one global row per type and value) and `alert_indicators` (an alert's links,
//! with each link's enrichment state). Ingest and the add-indicators path share [`upsert`] and
//! [`link`]; reads for the indicator resource and the analyst's verdict live here too.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use serde_json::Value;
use tokio_postgres::types::Type;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::stmt::{self, Cached};

type PgResult<T> = Result<T, tokio_postgres::Error>;

/// An indicator's identity, as [`upsert`] returns it.
#[derive(Debug, Clone)]
pub struct IndicatorId {
    pub id: i64,
    pub uuid: Uuid,
    pub indicator_type: String,
    pub value: String,
    pub is_enrichable: bool,
}

impl IndicatorId {
    fn from_row(r: &Row) -> PgResult<Self> {
        Ok(IndicatorId {
            id: r.try_get("id")?,
            uuid: r.try_get("uuid")?,
            indicator_type: r.try_get("type")?,
            value: r.try_get("value")?,
            is_enrichable: r.try_get("is_enrichable")?,
        })
    }
}

/// The rows of `(types[i], values[i])`, inserting the missing ones with `enrichable[i]`. Callers
/// pass keys in a fixed (sorted) order. Existing rows are read, not updated: `ON CONFLICT DO
/// UPDATE` row-locks every shared indicator until commit, which serialized all concurrent
/// requests on a hot indicator (issue 15); [`refresh_last_seen`] keeps `last_seen` without it.
pub async fn upsert(
    tx: &Transaction<'_>,
    types: &[&str],
    values: &[&str],
    enrichable: &[bool],
) -> PgResult<Vec<IndicatorId>> {
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx
        .query_typed(
            "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bool[]) AS t(type, value, is_enrichable)),
                  ins AS (INSERT INTO indicators (type, value, is_enrichable) SELECT * FROM input
                          ON CONFLICT (type, value) DO NOTHING RETURNING id, uuid, type, value, is_enrichable)
             SELECT id, uuid, type, value, is_enrichable FROM ins
             UNION ALL
             SELECT i.id, i.uuid, i.type, i.value, i.is_enrichable FROM indicators i JOIN input USING (type, value)",
            &[
                (&types, Type::TEXT_ARRAY),
                (&values, Type::TEXT_ARRAY),
                (&enrichable, Type::BOOL_ARRAY),
            ],
        )
        .await?;
    let mut found = rows.iter().map(IndicatorId::from_row).collect::<PgResult<Vec<_>>>()?;
    // Inserted by a transaction that committed after this statement's snapshot: a new
    // statement sees it.
    if found.len() < types.len() {
        let late = tx
            .query_typed(
                "SELECT i.id, i.uuid, i.type, i.value, i.is_enrichable FROM indicators i
                 JOIN unnest($1::text[], $2::text[]) AS t(type, value) USING (type, value)",
                &[(&types, Type::TEXT_ARRAY), (&values, Type::TEXT_ARRAY)],
            )
            .await?;
        for r in &late {
            let row = IndicatorId::from_row(r)?;
            if !found.iter().any(|f| f.id == row.id) {
                found.push(row);
            }
        }
    }
    Ok(found)
}

/// Refreshes `last_seen` of indicators seen again, at most once a minute per row. Never waits:
/// a row another request is refreshing is skipped (it gets the same `now()` give or take a
/// commit), so no lock order to keep and no deadlock. NO KEY UPDATE, not UPDATE: the key-share
/// locks the links' foreign-key checks hold on a hot indicator do not block it, so a steady
/// stream of alerts still refreshes it.
pub(crate) async fn refresh_last_seen(tx: &Transaction<'_>, ids: &[i64]) -> PgResult<()> {
    if !ids.is_empty() {
        stmt::execute(
            tx,
            "UPDATE indicators SET last_seen = now(), updated_at = now()
             WHERE id IN (SELECT id FROM indicators
                          WHERE id = ANY($1) AND last_seen < now() - interval '60 seconds'
                          ORDER BY id FOR NO KEY UPDATE SKIP LOCKED)",
            &[(&ids, Type::INT8_ARRAY)],
        )
        .await?;
    }
    Ok(())
}

/// Links to write, in columns (one `INSERT … unnest`).
#[derive(Debug, Default, Clone)]
pub struct Links<'a> {
    pub alert_ids: Vec<i64>,
    pub indicator_ids: Vec<i64>,
    pub source_fields: Vec<&'a str>,
    /// `pending` (to enrich) or `skipped`.
    pub states: Vec<&'static str>,
}

impl<'a> Links<'a> {
    pub fn push(&mut self, alert_id: i64, indicator_id: i64, source_field: &'a str, state: &'static str) {
        self.alert_ids.push(alert_id);
        self.indicator_ids.push(indicator_id);
        self.source_fields.push(source_field);
        self.states.push(state);
    }

    pub fn is_empty(&self) -> bool {
        self.alert_ids.is_empty()
    }
}

/// A link [`link`] created (an existing link is left as it is and not returned).
#[derive(Debug, Clone)]
pub struct Linked {
    pub alert_id: i64,
    pub indicator_id: i64,
    pub enrichment_state: String,
}

/// Writes `links`; returns the ones that are new.
pub async fn link(tx: &Transaction<'_>, links: &Links<'_>) -> PgResult<Vec<Linked>> {
    if links.is_empty() {
        return Ok(Vec::new());
    }
    let rows = stmt::query(
        tx,
        "INSERT INTO alert_indicators (alert_id, indicator_id, source_field, enrichment_state)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])
         ON CONFLICT DO NOTHING RETURNING alert_id, indicator_id, enrichment_state",
        &[
            (&links.alert_ids, Type::INT8_ARRAY),
            (&links.indicator_ids, Type::INT8_ARRAY),
            (&links.source_fields, Type::TEXT_ARRAY),
            (&links.states, Type::TEXT_ARRAY),
        ],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Linked {
                alert_id: r.try_get("alert_id")?,
                indicator_id: r.try_get("indicator_id")?,
                enrichment_state: r.try_get("enrichment_state")?,
            })
        })
        .collect()
}

/// An indicator to look up again.
#[derive(Debug, Clone)]
pub(crate) struct ToEnrich {
    pub id: i64,
    pub indicator_type: String,
    pub value: String,
}

/// Sets every enrichable link of the alert back to `pending` (provider statuses cleared) and
/// returns their indicators.
pub(crate) async fn reopen_links(tx: &Transaction<'_>, alert_id: i64) -> PgResult<Vec<ToEnrich>> {
    let rows = stmt::query(
        tx,
        "UPDATE alert_indicators l SET enrichment_state = 'pending', provider_status = '{}'::jsonb
         FROM indicators i WHERE l.alert_id = $1 AND i.id = l.indicator_id AND i.is_enrichable
         RETURNING i.id, i.type, i.value",
        &[(&alert_id, Type::INT8)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ToEnrich {
                id: r.try_get("id")?,
                indicator_type: r.try_get("type")?,
                value: r.try_get("value")?,
            })
        })
        .collect()
}

/// One indicator with every provider result (raw responses included), as stored.
#[derive(Debug, Clone)]
pub struct IndicatorRow {
    pub uuid: Uuid,
    pub indicator_type: String,
    pub value: String,
    pub malice: String,
    pub malice_source: String,
    pub malice_overridden_at: Option<DateTime<Utc>>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub is_enriched: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Provider name → `{status, extracted, malice, reasons, raw, error, enriched_at, expires_at}`.
    pub enrichment_results: Value,
}

impl IndicatorRow {
    /// The indicator columns of `r` (also the indicator part of an alert's indicator rows).
    pub(crate) fn from_row(r: &Row) -> PgResult<Self> {
        Ok(IndicatorRow {
            uuid: r.try_get("uuid")?,
            indicator_type: r.try_get("type")?,
            value: r.try_get("value")?,
            malice: r.try_get("malice")?,
            malice_source: r.try_get("malice_source")?,
            malice_overridden_at: r.try_get("malice_overridden_at")?,
            first_seen: r.try_get("first_seen")?,
            last_seen: r.try_get("last_seen")?,
            is_enriched: r.try_get("is_enriched")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            enrichment_results: r.try_get("enrichment_results")?,
        })
    }
}

/// The indicator `uuid`, or `None`.
pub async fn get(client: &impl Cached, uuid: Uuid) -> PgResult<Option<IndicatorRow>> {
    let row = stmt::query_opt(
        client,
        "SELECT i.uuid, i.type, i.value, i.malice, i.malice_source, i.malice_overridden_at, i.first_seen,
                i.last_seen, i.is_enriched, i.created_at, i.updated_at,
                COALESCE((SELECT jsonb_object_agg(r.provider, jsonb_build_object(
                              'status', r.status, 'extracted', r.block, 'malice', r.verdict, 'reasons', r.reasons,
                              'raw', r.raw, 'error', r.error,
                              'enriched_at', to_char(r.fetched_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                              'expires_at', to_char(r.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')))
                          FROM enrichment_results r WHERE r.indicator_id = i.id), '{}'::jsonb) AS enrichment_results
         FROM indicators i WHERE i.uuid = $1",
        &[(&uuid, Type::UUID)],
    )
    .await?;
    row.as_ref().map(IndicatorRow::from_row).transpose()
}

/// A verdict change of one indicator.
#[derive(Debug, Clone)]
pub(crate) struct MaliceChange {
    pub id: i64,
    pub old: String,
    pub new: String,
}

/// Sets the analyst verdict `malice` (or, `None`, recomputes it from stored results: the worst
/// verdict of the found/not-found results), with the row locked; `None` when there is no such
/// indicator.
pub(crate) async fn set_malice(
    tx: &Transaction<'_>,
    uuid: Uuid,
    malice: Option<&str>,
) -> PgResult<Option<MaliceChange>> {
    let row = stmt::query_opt(
        tx,
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
    .await?;
    row.map(|r| {
        Ok(MaliceChange {
            id: r.try_get("id")?,
            old: r.try_get("old")?,
            new: r.try_get("new")?,
        })
    })
    .transpose()
}

/// Linked alerts whose enrichment is done take the worst verdict of their indicators again;
/// returns every alert linked to the indicator.
pub(crate) async fn remalice_linked_alerts(tx: &Transaction<'_>, indicator_id: i64) -> PgResult<Vec<i64>> {
    let rows = stmt::query(
        tx,
        "WITH linked AS (SELECT alert_id FROM alert_indicators WHERE indicator_id = $1),
         upd AS (
             UPDATE alerts a SET malice = (SELECT COALESCE((ARRAY['Pending','Benign','Suspicious','Malicious'])[
                     MAX(CASE i.malice WHEN 'Malicious' THEN 4 WHEN 'Suspicious' THEN 3 WHEN 'Benign' THEN 2 ELSE 1 END)], 'Pending')
                     FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id WHERE l.alert_id = a.id),
                 updated_at = now()
             FROM linked WHERE a.id = linked.alert_id AND a.enrichment_status <> 'Pending' RETURNING a.id)
         SELECT alert_id FROM linked",
        &[(&indicator_id, Type::INT8)],
    )
    .await?;
    rows.iter().map(|r| r.try_get("alert_id")).collect()
}

/// A link still pending long after its alert was stored.
#[derive(Debug, Clone)]
pub(crate) struct StaleLink {
    pub alert_id: i64,
    pub alert_uuid: Uuid,
    pub indicator_id: i64,
    pub indicator_type: String,
    pub value: String,
}

/// The sweeper's repair: links pending for `after_secs` and not re-driven within it, at most
/// `limit`, marked re-driven now.
pub(crate) async fn claim_stale_links(tx: &impl Cached, limit: i64, after_secs: f64) -> PgResult<Vec<StaleLink>> {
    let rows = stmt::query(
        tx,
        "WITH due AS (
             SELECT alert_id, indicator_id FROM alert_indicators
             WHERE enrichment_state = 'pending' AND created_at < now() - make_interval(secs => $2)
               AND (redriven_at IS NULL OR redriven_at < now() - make_interval(secs => $2))
             LIMIT $1 FOR UPDATE SKIP LOCKED)
         UPDATE alert_indicators l SET redriven_at = now()
         FROM due, alerts a, indicators i
         WHERE l.alert_id = due.alert_id AND l.indicator_id = due.indicator_id
           AND a.id = l.alert_id AND i.id = l.indicator_id
         RETURNING l.alert_id, a.uuid AS alert_uuid, l.indicator_id, i.type AS indicator_type, i.value",
        &[(&limit, Type::INT8), (&after_secs, Type::FLOAT8)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StaleLink {
                alert_id: r.try_get("alert_id")?,
                alert_uuid: r.try_get("alert_uuid")?,
                indicator_id: r.try_get("indicator_id")?,
                indicator_type: r.try_get("indicator_type")?,
                value: r.try_get("value")?,
            })
        })
        .collect()
}
