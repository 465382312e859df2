//! The ingest transaction: ONE commit per request holding the alert rows with their raw
//! payloads, the global indicators and links, the detection rules, the activity events, the
//! archived request body and the outbox messages that start enrichment (sources spec §6, §9, §10).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use tokio_postgres::{GenericClient, Transaction};
use uuid::Uuid;

use crate::{
    db::DbError,
    domain::indicator::{is_enrichable, IndicatorType},
    queue::{
        messages::{DispatchRequest, EnrichRequest},
        outbox,
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
}

/// Who sent it, for activity events.
pub struct Actor<'a> {
    pub actor_type: &'static str,
    pub key_prefix: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Created { id: i64, uuid: Uuid },
    Duplicate { id: i64, uuid: Uuid, duplicate_count: i32 },
}

impl Stored {
    pub fn uuid(&self) -> Uuid {
        match self {
            Stored::Created { uuid, .. } | Stored::Duplicate { uuid, .. } => *uuid,
        }
    }
}

#[derive(Debug)]
pub struct StoreResult {
    /// One per alert, in input order.
    pub stored: Vec<Stored>,
    /// Outbox rows to send after the commit.
    pub outbox_ids: Vec<i64>,
}

/// Runs the whole store in one transaction.
pub async fn store(
    tx: &mut Transaction<'_>,
    alerts: &[AlertToStore<'_>],
    archive: &Archive<'_>,
    actor: &Actor<'_>,
    enrichment_deadline_secs: f64,
) -> Result<StoreResult, DbError> {
    let rules = upsert_rules(tx, alerts).await;
    let tx: &Transaction<'_> = tx;
    let mut stored = Vec::with_capacity(alerts.len());
    let mut created: Vec<(usize, i64, Uuid)> = Vec::new();
    for (i, a) in alerts.iter().enumerate() {
        let n = a.alert;
        let rule_id = n.detection_rule_ref.as_ref().and_then(|r| rules.get(&r.id).copied());
        let mitre = serde_json::to_value(&n.mitre).unwrap_or_else(|_| json!({}));
        let row = tx
            .query_opt(
                "INSERT INTO alerts (source_name, source_alert_id, title, description, severity,
                                     severity_original, occurred_at, occurred_at_inferred, tags, mitre,
                                     deep_link, extra, raw_payload, detection_rule_id, enrichment_deadline_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14,
                         now() + make_interval(secs => $15))
                 ON CONFLICT (source_name, source_alert_id) DO NOTHING
                 RETURNING id, uuid",
                &[
                    &n.source_name.as_str(),
                    &n.source_alert_id,
                    &n.title,
                    &n.description,
                    &n.severity.as_str(),
                    &n.severity_original,
                    &n.occurred_at,
                    &n.occurred_at_inferred,
                    &n.tags,
                    &mitre,
                    &n.deep_link,
                    &Value::Object(n.extra.clone()),
                    &a.raw_json,
                    &rule_id,
                    &enrichment_deadline_secs,
                ],
            )
            .await?;
        match row {
            Some(r) => {
                let (id, uuid): (i64, Uuid) = (r.get(0), r.get(1));
                created.push((i, id, uuid));
                stored.push(Stored::Created { id, uuid });
            }
            None => {
                // The key exists (committed by an earlier delivery, or earlier in this batch):
                // count the repeat and change nothing else.
                let r = tx
                    .query_one(
                        "UPDATE alerts SET duplicate_count = duplicate_count + 1, last_seen_at = now()
                         WHERE source_name = $1 AND source_alert_id = $2
                         RETURNING id, uuid, duplicate_count",
                        &[&n.source_name.as_str(), &n.source_alert_id],
                    )
                    .await?;
                let (id, uuid, count): (i64, Uuid, i32) = (r.get(0), r.get(1), r.get(2));
                activity(
                    tx,
                    id,
                    "alert_deduplicated",
                    actor,
                    json!({ "duplicate_count": count, "request_id": archive.request_id }),
                )
                .await?;
                stored.push(Stored::Duplicate {
                    id,
                    uuid,
                    duplicate_count: count,
                });
            }
        }
    }

    // Indicators of the new alerts: one upsert for the whole request, in a fixed order so
    // concurrent requests sharing indicators lock rows in the same order (no deadlocks).
    let mut distinct: BTreeMap<(IndicatorType, &str), bool> = BTreeMap::new();
    for (i, _, _) in &created {
        for ind in &alerts[*i].alert.indicators {
            distinct
                .entry((ind.indicator_type, ind.value.as_str()))
                .or_insert_with(|| is_enrichable(ind.indicator_type, &ind.value));
        }
    }
    let mut ids: HashMap<(IndicatorType, String), i64> = HashMap::new();
    if !distinct.is_empty() {
        let types: Vec<&str> = distinct.keys().map(|(t, _)| t.as_str()).collect();
        let values: Vec<&str> = distinct.keys().map(|(_, v)| *v).collect();
        let enrichable: Vec<bool> = distinct.values().copied().collect();
        let rows = tx
            .query(
                "INSERT INTO indicators (type, value, is_enrichable)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bool[])
                 ON CONFLICT (type, value) DO UPDATE SET last_seen = now(), updated_at = now()
                 RETURNING id, type, value",
                &[&types, &values, &enrichable],
            )
            .await?;
        for r in rows {
            let t: String = r.get(1);
            if let Ok(t) = t.parse::<IndicatorType>() {
                ids.insert((t, r.get(2)), r.get(0));
            }
        }
    }

    let mut link_alert = Vec::new();
    let mut link_ind = Vec::new();
    let mut link_field = Vec::new();
    let mut link_state = Vec::new();
    let mut messages = Vec::new();
    let mut no_work: Vec<i64> = Vec::new();
    for (i, alert_id, alert_uuid) in &created {
        let mut pending = 0;
        for ind in &alerts[*i].alert.indicators {
            let Some(&ind_id) = ids.get(&(ind.indicator_type, ind.value.clone())) else {
                continue;
            };
            let enrichable = distinct
                .get(&(ind.indicator_type, ind.value.as_str()))
                .copied()
                .unwrap_or(false);
            link_alert.push(*alert_id);
            link_ind.push(ind_id);
            link_field.push(ind.source_field.as_str());
            link_state.push(if enrichable { "pending" } else { "skipped" });
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
                    .to_message(),
                );
            }
        }
        if pending == 0 {
            // Nothing to enrich: the enrichment run is finished now; go straight to dispatch.
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
    if !link_alert.is_empty() {
        tx.execute(
            "INSERT INTO alert_indicators (alert_id, indicator_id, source_field, enrichment_state)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])
             ON CONFLICT DO NOTHING",
            &[&link_alert, &link_ind, &link_field, &link_state],
        )
        .await?;
    }
    if !no_work.is_empty() {
        tx.execute(
            "UPDATE alerts SET enrichment_status = 'Enriched', is_enriched = true, enriched_at = now(),
                               enrichment_deadline_at = NULL
             WHERE id = ANY($1)",
            &[&no_work],
        )
        .await?;
    }
    if !created.is_empty() {
        let alert_ids: Vec<i64> = created.iter().map(|(_, id, _)| *id).collect();
        let refs: Vec<Value> = created
            .iter()
            .map(|(i, _, _)| {
                json!({
                    "request_id": archive.request_id,
                    "source_name": alerts[*i].alert.source_name.as_str(),
                    "indicator_count": alerts[*i].alert.indicators.len(),
                })
            })
            .collect();
        tx.execute(
            "INSERT INTO activity_events (alert_id, event_type, actor_type, actor_key_prefix, \"references\")
             SELECT a, 'alert_ingested', $2, $3, r FROM unnest($1::bigint[], $4::jsonb[]) AS t(a, r)",
            &[&alert_ids, &actor.actor_type, &actor.key_prefix, &refs],
        )
        .await?;
    }
    let outbox_ids = outbox::enqueue(tx, &messages).await?;
    let all_ids: Vec<i64> = stored
        .iter()
        .map(|s| match s {
            Stored::Created { id, .. } | Stored::Duplicate { id, .. } => *id,
        })
        .collect();
    tx.execute(
        "INSERT INTO ingest_archive (request_id, source_name, headers, body, alert_ids) VALUES ($1, $2, $3, $4, $5)",
        &[
            &archive.request_id,
            &archive.source.as_str(),
            &archive.headers,
            &archive.body,
            &all_ids,
        ],
    )
    .await?;
    Ok(StoreResult { stored, outbox_ids })
}

async fn activity(
    tx: &impl GenericClient,
    alert_id: i64,
    event_type: &str,
    actor: &Actor<'_>,
    references: Value,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO activity_events (alert_id, event_type, actor_type, actor_key_prefix, \"references\")
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &alert_id,
            &event_type,
            &actor.actor_type,
            &actor.key_prefix,
            &references,
        ],
    )
    .await?;
    Ok(())
}

/// Finds or creates the detection rule of every alert (by `(source, rule id)`). A failure here
/// never fails ingest: it runs under a savepoint and the alert is stored without a rule.
async fn upsert_rules(tx: &mut Transaction<'_>, alerts: &[AlertToStore<'_>]) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    // One entry per rule id, first alert wins (its name and MITRE lists name a new rule).
    let mut wanted: BTreeMap<(&str, &str), &NormalizedAlert> = BTreeMap::new();
    for a in alerts {
        if let Some(r) = &a.alert.detection_rule_ref {
            wanted
                .entry((a.alert.source_name.as_str(), r.id.as_str()))
                .or_insert(a.alert);
        }
    }
    for ((source, rule_id), alert) in wanted {
        let name = alert
            .detection_rule_ref
            .as_ref()
            .map(|r| r.name.as_str())
            .unwrap_or(rule_id);
        let (tactics, techniques, subtechniques) = alert.mitre.rule_strings();
        let result = async {
            let sp = tx.savepoint("rule").await?;
            let id: Option<i64> = match sp
                .query_opt(
                    "INSERT INTO detection_rules (name, source_name, source_rule_id, mitre_tactics,
                                                  mitre_techniques, mitre_subtechniques, created_by)
                     VALUES (left($1, 500), $2, $3, $4, $5, $6, 'ingest')
                     ON CONFLICT (source_name, source_rule_id) DO NOTHING RETURNING id",
                    &[&name, &source, &rule_id, &tactics, &techniques, &subtechniques],
                )
                .await?
            {
                Some(r) => Some(r.get(0)),
                None => sp
                    .query_opt(
                        "SELECT id FROM detection_rules WHERE source_name = $1 AND source_rule_id = $2",
                        &[&source, &rule_id],
                    )
                    .await?
                    .map(|r| r.get(0)),
            };
            sp.commit().await?;
            Ok::<_, tokio_postgres::Error>(id)
        }
        .await;
        match result {
            Ok(Some(id)) => {
                out.insert(rule_id.to_owned(), id);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(rule_id, error = %e, "detection rule lookup failed; alert stored without rule"),
        }
    }
    out
}
