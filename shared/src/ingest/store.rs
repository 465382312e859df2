//! The ingest transaction: ONE commit per request holding the alert rows with their raw
//! payloads, the global indicators and links, the detection rules, the activity events, the
//! archived request body and the outbox messages that start enrichment (sources spec §6, §9, §10).
//!
//! Statements that do not depend on each other are pipelined (tokio-postgres sends concurrent
//! queries on one connection back to back), and every statement is an unnamed typed query (one
//! round trip, safe behind RDS Proxy). A request costs six round trips whatever its size:
//! BEGIN, rules, alerts, indicators, the rest, COMMIT.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Transaction;
use futures::future::try_join_all;
use serde_json::{json, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::{
    db::{
        activity::{self, EventType, Events},
        indicators::{self, Links},
        stmt, DbError,
    },
    domain::indicator::IndicatorType,
    enrich::{never_send::NeverSendPolicy, wants_enrichment},
    queue::{
        messages::{DispatchRequest, EnrichRequest},
        outbox::NewMessage,
    },
    sources::{NormalizedAlert, SourceName},
};

/// One alert to store, with the exact JSON text to keep as its raw payload.
pub struct AlertToStore<'a> {
    pub alert: &'a NormalizedAlert,
    pub raw_json: &'a str,
}

/// The request as archived (exact bytes, headers without credentials).
pub struct Archive<'a> {
    pub request_id: &'a str,
    pub source: SourceName,
    pub headers: Value,
    pub body: &'a [u8],
    /// `false` when an earlier transaction of the same request already archived the body.
    pub write: bool,
}

/// Who sent it, for activity events.
pub(crate) use crate::db::activity::Actor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Created { id: i64, uuid: Uuid },
    Duplicate { id: i64, uuid: Uuid, duplicate_count: i32 },
}

impl Stored {
    fn id(&self) -> i64 {
        match self {
            Stored::Created { id, .. } | Stored::Duplicate { id, .. } => *id,
        }
    }
}

#[derive(Debug)]
pub struct StoreResult {
    /// One per alert, in input order.
    pub stored: Vec<Stored>,
    /// Outbox rows written (id, message), to send after the commit.
    pub outbox: Vec<(i64, NewMessage)>,
}

const INSERT_ALERT: &str = "INSERT INTO alerts (source_name, source_alert_id, title, description, severity,
        severity_original, occurred_at, occurred_at_inferred, tags, mitre, deep_link, extra, raw_payload,
        detection_rule_id, enrichment_deadline_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14,
             now() + make_interval(secs => $15))
     ON CONFLICT (source_name, source_alert_id) DO NOTHING
     RETURNING id, uuid";

const COUNT_DUPLICATE: &str = "UPDATE alerts SET duplicate_count = duplicate_count + 1, last_seen_at = now()
     WHERE source_name = $1 AND source_alert_id = $2
     RETURNING id, uuid, duplicate_count";

/// How fast one request's enrichment work enters the queue.
#[derive(Debug, Clone, Copy)]
pub struct Release {
    /// Seconds from ingest until an alert is dispatched with what it has.
    pub deadline_secs: f64,
    /// Enrich messages of one request made visible per second (0 = all at once). The first
    /// second's worth goes at once; the rest are delayed in order, so a big request cannot put
    /// thousands of messages ahead of the next alert's (issue 17: a normal alert behind a
    /// 10,000-message request waited 43 s of a 45 s drain).
    pub per_second: u32,
}

impl Release {
    /// Delay of the request's `k`-th enrich message.
    fn delay(&self, k: usize) -> u32 {
        match self.per_second {
            0 => 0,
            n => (k / n as usize).min(crate::queue::MAX_DELAY_SECONDS as usize) as u32,
        }
    }
}

/// Runs the whole store inside `tx` (the caller commits), phase by phase: rules, alerts,
/// indicators, then everything else in one pipelined round trip.
pub async fn store(
    tx: &Transaction<'_>,
    alerts: &[AlertToStore<'_>],
    archive: &Archive<'_>,
    actor: &Actor<'_>,
    policy: &NeverSendPolicy,
    release: Release,
) -> Result<StoreResult, DbError> {
    let (rules, release_rules) = upsert_rules(tx, alerts).await?;
    let deadlines = deadlines(alerts, policy, release);
    let (stored, created) = insert_alerts(tx, alerts, &rules, release_rules, &deadlines).await?;
    let (ids, distinct) = upsert_indicators(tx, alerts, &created, policy).await?;
    let work = plan_work(alerts, &created, &ids, &distinct, release);
    let events = activity(alerts, &stored, archive);
    let seen_ids: Vec<i64> = ids.values().copied().collect();
    let outbox = write_rest(tx, &stored, &seen_ids, work, events, archive, actor).await?;
    Ok(StoreResult { stored, outbox })
}

/// Each alert's enrichment deadline: the configured one, plus the release delay of its last
/// message (counted over every alert of the request: duplicates enqueue nothing, so this is an
/// upper bound).
fn deadlines(alerts: &[AlertToStore<'_>], policy: &NeverSendPolicy, release: Release) -> Vec<f64> {
    let mut queued_before = 0;
    let deadlines: Vec<f64> = alerts
        .iter()
        .map(|a| {
            queued_before += a
                .alert
                .indicators
                .iter()
                .filter(|i| wants_enrichment(policy, i.indicator_type, &i.value))
                .count();
            release.deadline_secs + f64::from(release.delay(queued_before.saturating_sub(1)))
        })
        .collect();
    deadlines
}

/// New alerts (index in the request, id, uuid).
type Created = Vec<(usize, i64, Uuid)>;

/// The alerts, insert-or-ignore on the idempotency key; a repeat counts as a duplicate.
async fn insert_alerts(
    tx: &Transaction<'_>,
    alerts: &[AlertToStore<'_>],
    rules: &HashMap<&str, i64>,
    release_rules: bool,
    deadlines: &[f64],
) -> Result<(Vec<Stored>, Created), DbError> {
    // Alerts, pipelined: insert-or-ignore on the idempotency key.
    let mitres: Vec<Value> = alerts
        .iter()
        .map(|a| serde_json::to_value(&a.alert.mitre).unwrap_or_else(|_| json!({})))
        .collect();
    let extras: Vec<Value> = alerts.iter().map(|a| Value::Object(a.alert.extra.clone())).collect();
    let rule_ids: Vec<Option<i64>> = alerts
        .iter()
        .map(|a| {
            a.alert
                .detection_rule_ref
                .as_ref()
                .and_then(|r| rules.get(r.id.as_str()).copied())
        })
        .collect();
    let (mitres, extras, rule_ids) = (&mitres, &extras, &rule_ids);
    // The rules' RELEASE goes in the same round trip as the alert inserts, ahead of them
    // (statements run in the order sent; the lookups it protects have all been answered).
    let release_savepoint = async {
        match release_rules {
            true => tx.batch_execute("RELEASE SAVEPOINT calseta_rules").await,
            false => Ok(()),
        }
    };
    let inserts = try_join_all(alerts.iter().enumerate().map(|(i, a)| async move {
        let n = a.alert;
        stmt::query(
            tx,
            INSERT_ALERT,
            &[
                (&n.source_name.as_str(), Type::TEXT),
                (&n.source_alert_id, Type::TEXT),
                (&n.title, Type::TEXT),
                (&n.description, Type::TEXT),
                (&n.severity.as_str(), Type::TEXT),
                (&n.severity_original, Type::TEXT),
                (&n.occurred_at, Type::TIMESTAMPTZ),
                (&n.occurred_at_inferred, Type::BOOL),
                (&n.tags, Type::TEXT_ARRAY),
                (&mitres[i], Type::JSONB),
                (&n.deep_link, Type::TEXT),
                (&extras[i], Type::JSONB),
                (&a.raw_json, Type::TEXT),
                (&rule_ids[i], Type::INT8),
                (&deadlines[i], Type::FLOAT8),
            ],
        )
        .await
    }));
    let (released, inserted) = tokio::join!(release_savepoint, inserts);
    released?;
    let inserted = inserted?;

    let mut dups = count_duplicates(tx, alerts, &inserted).await?;
    let mut stored = Vec::with_capacity(alerts.len());
    let mut created: Vec<(usize, i64, Uuid)> = Vec::new();
    for (i, rows) in inserted.iter().enumerate() {
        match rows.first() {
            Some(r) => {
                let (id, uuid): (i64, Uuid) = (r.try_get("id")?, r.try_get("uuid")?);
                created.push((i, id, uuid));
                stored.push(Stored::Created { id, uuid });
            }
            None => stored.push(
                dups.remove(&i)
                    .ok_or_else(|| DbError::Config("missing duplicate".into()))?,
            ),
        }
    }
    Ok((stored, created))
}

/// Keys that already existed (an earlier delivery, or earlier in this batch): count the
/// repeat and change nothing else. Pipelined, in input order; keyed by index in the request.
async fn count_duplicates(
    tx: &Transaction<'_>,
    alerts: &[AlertToStore<'_>],
    inserted: &[Vec<tokio_postgres::Row>],
) -> Result<HashMap<usize, Stored>, DbError> {
    let dup_idx: Vec<usize> = inserted
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_empty())
        .map(|(i, _)| i)
        .collect();
    let dup_rows = try_join_all(dup_idx.iter().map(|&i| async move {
        let n = alerts[i].alert;
        stmt::query(
            tx,
            COUNT_DUPLICATE,
            &[(&n.source_name.as_str(), Type::TEXT), (&n.source_alert_id, Type::TEXT)],
        )
        .await
    }))
    .await?;
    let mut dups: HashMap<usize, Stored> = HashMap::new();
    for (&i, rows) in dup_idx.iter().zip(dup_rows) {
        let r = rows
            .first()
            .ok_or_else(|| DbError::Config("duplicate alert vanished".into()))?;
        dups.insert(
            i,
            Stored::Duplicate {
                id: r.try_get("id")?,
                uuid: r.try_get("uuid")?,
                duplicate_count: r.try_get("duplicate_count")?,
            },
        );
    }
    Ok(dups)
}

/// Indicator ids by (type, value), and whether each may be sent to providers.
type IndicatorIds<'a> = HashMap<(IndicatorType, &'a str), i64>;
type Enrichable<'a> = BTreeMap<(IndicatorType, &'a str), bool>;

async fn upsert_indicators<'a>(
    tx: &Transaction<'_>,
    alerts: &'a [AlertToStore<'_>],
    created: &Created,
    policy: &NeverSendPolicy,
) -> Result<(IndicatorIds<'a>, Enrichable<'a>), DbError> {
    // Indicators of the new alerts: one upsert for the whole request, in a fixed order so
    // concurrent requests sharing indicators lock rows in the same order (no deadlocks).
    let mut distinct: BTreeMap<(IndicatorType, &str), bool> = BTreeMap::new();
    for (i, _, _) in created {
        for ind in &alerts[*i].alert.indicators {
            distinct
                .entry((ind.indicator_type, ind.value.as_str()))
                .or_insert_with(|| wants_enrichment(policy, ind.indicator_type, &ind.value));
        }
    }
    let mut ids: HashMap<(IndicatorType, &str), i64> = HashMap::new();
    if !distinct.is_empty() {
        let types: Vec<&str> = distinct.keys().map(|(t, _)| t.as_str()).collect();
        let values: Vec<&str> = distinct.keys().map(|(_, v)| *v).collect();
        let enrichable: Vec<bool> = distinct.values().copied().collect();
        let rows = indicators::upsert(tx, &types, &values, &enrichable).await?;
        let by_key: HashMap<(&str, &str), (IndicatorType, &str)> =
            distinct.keys().map(|(t, v)| ((t.as_str(), *v), (*t, *v))).collect();
        for r in &rows {
            if let Some(&key) = by_key.get(&(r.indicator_type.as_str(), r.value.as_str())) {
                ids.insert(key, r.id);
            }
        }
    }
    Ok((ids, distinct))
}

/// The links and the queue messages of the new alerts; alerts with nothing to enrich go
/// straight to dispatch.
struct Work<'a> {
    links: Links<'a>,
    messages: Vec<NewMessage>,
    no_work: Vec<i64>,
}

fn plan_work<'a>(
    alerts: &'a [AlertToStore<'_>],
    created: &Created,
    ids: &IndicatorIds<'a>,
    distinct: &Enrichable<'a>,
    release: Release,
) -> Work<'a> {
    // Links, enrichment work (one message per alert × enrichable indicator), or straight to
    // dispatch when there is nothing to enrich.
    let mut links = Links::default();
    let mut messages = Vec::new();
    let mut no_work: Vec<i64> = Vec::new();
    let mut enrich_count = 0;
    for (i, alert_id, alert_uuid) in created {
        let mut pending = 0;
        for ind in &alerts[*i].alert.indicators {
            let key = (ind.indicator_type, ind.value.as_str());
            let Some(&ind_id) = ids.get(&key) else { continue };
            let enrichable = distinct.get(&key).copied().unwrap_or(false);
            let state = if enrichable { "pending" } else { "skipped" };
            links.push(*alert_id, ind_id, ind.source_field.as_str(), state);
            if enrichable {
                pending += 1;
                messages.push(
                    EnrichRequest {
                        v: 1,
                        alert_id: *alert_id,
                        alert_uuid: *alert_uuid,
                        indicator_id: ind_id,
                        indicator_type: ind.indicator_type,
                        value: ind.value.clone(),
                    }
                    .to_message()
                    .with_delay(release.delay(enrich_count)),
                );
                enrich_count += 1;
            }
        }
        if pending == 0 {
            no_work.push(*alert_id);
            messages.push(
                DispatchRequest {
                    v: 1,
                    alert_id: *alert_id,
                    alert_uuid: *alert_uuid,
                    reason: "no_indicators".into(),
                }
                .to_message(),
            );
        }
    }
    Work {
        links,
        messages,
        no_work,
    }
}

fn activity(alerts: &[AlertToStore<'_>], stored: &[Stored], archive: &Archive<'_>) -> Events {
    // Activity: `alert_ingested` for new alerts, `alert_deduplicated` for repeats, in one insert.
    let mut events = Events::with_capacity(stored.len());
    for (i, s) in stored.iter().enumerate() {
        match s {
            Stored::Created { id, .. } => {
                let refs = json!({
                    "request_id": archive.request_id,
                    "source_name": alerts[i].alert.source_name.as_str(),
                    "indicator_count": alerts[i].alert.indicators.len(),
                });
                events.push(*id, EventType::AlertIngested, refs);
                // A capped indicator list is an event of its own, so it shows in the activity
                // feed and not only in `extra`.
                if let Some(t) = alerts[i].alert.extra.get(super::limits::TRUNCATION_KEY) {
                    events.push(*id, EventType::AlertIndicatorsTruncated, t.clone());
                }
            }
            Stored::Duplicate {
                id, duplicate_count, ..
            } => {
                let refs = json!({ "duplicate_count": duplicate_count, "request_id": archive.request_id });
                events.push(*id, EventType::AlertDeduplicated, refs);
            }
        }
    }
    events
}

/// Everything left, pipelined in one round trip; returns the outbox rows to send after commit.
async fn write_rest(
    tx: &Transaction<'_>,
    stored: &[Stored],
    seen_ids: &[i64],
    work: Work<'_>,
    events: Events,
    archive: &Archive<'_>,
    actor: &Actor<'_>,
) -> Result<Vec<(i64, NewMessage)>, DbError> {
    let all_ids: Vec<i64> = stored.iter().map(Stored::id).collect();
    let ((), (), (), (), outbox_ids, ()) = tokio::try_join!(
        async { indicators::link(tx, &work.links).await.map(drop) },
        indicators::refresh_last_seen(tx, seen_ids),
        finish_without_work(tx, &work.no_work),
        activity::record(tx, *actor, &events),
        insert_outbox(tx, &work.messages),
        archive_request(tx, archive, &all_ids),
    )?;
    Ok(outbox_ids.into_iter().zip(work.messages).collect())
}

type PgResult<T> = Result<T, tokio_postgres::Error>;

/// Alerts with nothing to enrich are complete at once (their dispatch message is queued).
async fn finish_without_work(tx: &Transaction<'_>, no_work: &[i64]) -> PgResult<()> {
    if !no_work.is_empty() {
        stmt::execute(
            tx,
            "UPDATE alerts SET enrichment_status = 'Enriched', is_enriched = true, enriched_at = now(),
                               enrichment_deadline_at = NULL
             WHERE id = ANY($1)",
            &[(&no_work, Type::INT8_ARRAY)],
        )
        .await?;
    }
    Ok(())
}

/// The outbox rows' ids, in message order.
async fn insert_outbox(tx: &Transaction<'_>, messages: &[NewMessage]) -> PgResult<Vec<i64>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let queues: Vec<&str> = messages.iter().map(|m| m.queue.as_str()).collect();
    let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
    let attrs: Vec<Value> = messages
        .iter()
        .map(|m| serde_json::to_value(&m.attributes).unwrap_or_default())
        .collect();
    let delays: Vec<i32> = messages.iter().map(|m| m.delay_seconds as i32).collect();
    let rows = stmt::query(
        tx,
        "INSERT INTO outbox (queue, body, attributes, delay_seconds)
         SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[]) RETURNING id",
        &[
            (&queues, Type::TEXT_ARRAY),
            (&bodies, Type::TEXT_ARRAY),
            (&attrs, Type::JSONB_ARRAY),
            (&delays, Type::INT4_ARRAY),
        ],
    )
    .await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

async fn archive_request(tx: &Transaction<'_>, archive: &Archive<'_>, alert_ids: &[i64]) -> PgResult<()> {
    if !archive.write {
        return Ok(());
    }
    let source_name = archive.source.as_str();
    stmt::execute(
        tx,
        "INSERT INTO ingest_archive (request_id, source_name, headers, body, alert_ids) VALUES ($1, $2, $3, $4, $5)",
        &[
            (&archive.request_id, Type::TEXT),
            (&source_name, Type::TEXT),
            (&archive.headers, Type::JSONB),
            (&archive.body, Type::BYTEA),
            (&alert_ids, Type::INT8_ARRAY),
        ],
    )
    .await?;
    Ok(())
}

/// Finds or creates the detection rule of every alert (by `(source, rule id)`), keyed by rule
/// id. A failure here never fails ingest: the lookups run under one savepoint, and on error the
/// alerts are stored without rules. `true` with the map: the savepoint is still open and the
/// caller sends its RELEASE (pipelined with its next statements).
async fn upsert_rules<'a>(
    tx: &Transaction<'_>,
    alerts: &'a [AlertToStore<'_>],
) -> Result<(HashMap<&'a str, i64>, bool), DbError> {
    // One entry per rule id, first alert wins (its name and MITRE lists name a new rule).
    let mut wanted: BTreeMap<(&str, &'a str), &'a NormalizedAlert> = BTreeMap::new();
    for a in alerts {
        if let Some(r) = &a.alert.detection_rule_ref {
            wanted
                .entry((a.alert.source_name.as_str(), r.id.as_str()))
                .or_insert(a.alert);
        }
    }
    if wanted.is_empty() {
        return Ok((HashMap::new(), false));
    }
    let params: Vec<(&str, &str, &str, [Vec<String>; 3])> = wanted
        .iter()
        .map(|((source, rule_id), alert)| {
            let name = alert
                .detection_rule_ref
                .as_ref()
                .map(|r| r.name.as_str())
                .unwrap_or(rule_id);
            let (t, te, st) = alert.mitre.rule_strings();
            (*source, *rule_id, name, [t, te, st])
        })
        .collect();
    // SAVEPOINT and every lookup sent back to back; RELEASE only once the lookups are answered
    // (by the caller, with its next statements). RELEASE must not be pipelined with them: a
    // lookup may first prepare its statement (one more round trip), so a pipelined RELEASE ran
    // before the lookup it protected and the fallback's ROLLBACK TO found no savepoint (issue 17).
    let savepoint = tx.batch_execute("SAVEPOINT calseta_rules");
    let lookups = try_join_all(params.iter().map(|(source, rule_id, name, mitre)| async move {
        stmt::query(
            tx,
            "WITH ins AS (
                INSERT INTO detection_rules (name, source_name, source_rule_id, mitre_tactics, mitre_techniques,
                                             mitre_subtechniques, created_by)
                VALUES (left($1, 500), $2, $3, $4, $5, $6, 'ingest')
                ON CONFLICT (source_name, source_rule_id) DO NOTHING RETURNING id)
             SELECT id FROM ins
             UNION ALL SELECT id FROM detection_rules WHERE source_name = $2 AND source_rule_id = $3
             LIMIT 1",
            &[
                (name, Type::TEXT),
                (source, Type::TEXT),
                (rule_id, Type::TEXT),
                (&mitre[0], Type::TEXT_ARRAY),
                (&mitre[1], Type::TEXT_ARRAY),
                (&mitre[2], Type::TEXT_ARRAY),
            ],
        )
        .await
    }));
    let (sp, rows) = tokio::join!(savepoint, lookups);
    sp?;
    let mut out = HashMap::new();
    match rows {
        Ok(rows) => {
            for ((source, rule_id, _, _), r) in params.iter().zip(rows) {
                match r.first() {
                    Some(row) => {
                        out.insert(*rule_id, row.try_get("id")?);
                    }
                    None => {
                        // Created by a transaction that committed after this statement's snapshot.
                        if let Some(row) = stmt::query_opt(
                            tx,
                            "SELECT id FROM detection_rules WHERE source_name = $1 AND source_rule_id = $2",
                            &[(source, Type::TEXT), (rule_id, Type::TEXT)],
                        )
                        .await?
                        {
                            out.insert(*rule_id, row.try_get("id")?);
                        }
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "detection rule lookup failed; alerts stored without rules");
            tx.batch_execute("ROLLBACK TO SAVEPOINT calseta_rules; RELEASE SAVEPOINT calseta_rules")
                .await?;
            return Ok((HashMap::new(), false));
        }
    }
    Ok((out, true))
}
