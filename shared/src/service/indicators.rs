//! Indicators (api spec §5.2, §5.3): one global indicator, the analyst's malice override, and
//! an alert's indicators added by hand or looked up again.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{Actor, ServiceError};
use crate::db::activity::{self, EventType, Events};
use crate::db::indicators::{self as repo, IndicatorRow, Links};
use crate::db::stmt::Cached;
use crate::domain::indicator::IndicatorType;
use crate::enrich::never_send::NeverSendPolicy;
use crate::enrich::providers::iso;
use crate::queue::messages::EnrichRequest;
use crate::queue::outbox::{self, NewMessage, Outbox};

const NOT_FOUND: ServiceError = ServiceError::NotFound("Indicator");

/// One indicator with every provider result, raw responses included
/// (`GET /v1/indicators/{uuid}`).
#[derive(Debug, Clone, Serialize)]
pub struct Indicator {
    pub uuid: Uuid,
    #[serde(rename = "type")]
    pub indicator_type: String,
    pub value: String,
    pub malice: String,
    pub malice_source: String,
    pub malice_overridden_at: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub is_enriched: bool,
    pub created_at: String,
    pub updated_at: String,
    pub enrichment_results: Value,
}

impl From<IndicatorRow> for Indicator {
    fn from(r: IndicatorRow) -> Self {
        Indicator {
            uuid: r.uuid,
            indicator_type: r.indicator_type,
            value: r.value,
            malice: r.malice,
            malice_source: r.malice_source,
            malice_overridden_at: r.malice_overridden_at.map(iso),
            first_seen: iso(r.first_seen),
            last_seen: iso(r.last_seen),
            is_enriched: r.is_enriched,
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
            enrichment_results: r.enrichment_results,
        }
    }
}

/// One indicator with every provider result, raw responses included.
pub async fn get(client: &impl Cached, uuid: Uuid) -> Result<Indicator, ServiceError> {
    Ok(repo::get(client, uuid).await?.ok_or(NOT_FOUND)?.into())
}

/// Sets an analyst verdict (`Some`, canonical) that later enrichment keeps, or (`None`)
/// recomputes the verdict from stored results. Linked enriched alerts take the worst of their
/// indicators again, each linked alert with an activity event; all in one transaction. Returns
/// the indicator as [`get`] shows it.
pub(crate) async fn set_malice(
    client: &mut deadpool_postgres::Object,
    actor: &Actor,
    uuid: Uuid,
    malice: Option<&str>,
) -> Result<Indicator, ServiceError> {
    let tx = client.transaction().await?;
    let change = repo::set_malice(&tx, uuid, malice).await?.ok_or(NOT_FOUND)?;
    let linked = repo::remalice_linked_alerts(&tx, change.id).await?;
    let mut events = Events::with_capacity(linked.len());
    for alert_id in linked {
        let refs = json!({"indicator_uuid": uuid, "from": change.old, "to": change.new});
        events.push(alert_id, EventType::IndicatorMaliceUpdated, refs);
    }
    activity::record(&tx, actor.as_activity(), &events).await?;
    tx.commit().await?;
    tracing::info!(indicator_id = change.id, actor = actor.kind.as_str(), from = %change.old, to = %change.new, "indicator malice updated");
    get(&**client, uuid).await
}

/// What an alert's enrichment needs from the process: where messages go, what is never sent,
/// how long enrichment may take.
pub(crate) struct EnrichmentWork<'a> {
    pub outbox: &'a Outbox,
    pub never_send: &'a NeverSendPolicy,
    pub deadline: Duration,
}

/// An indicator newly linked to an alert.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AddedIndicator {
    pub uuid: Uuid,
    #[serde(rename = "type")]
    pub indicator_type: String,
    pub value: String,
    /// `pending` (queued for enrichment) or `skipped`.
    pub enrichment_state: String,
}

/// What [`add_to_alert`] did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Added {
    pub added_count: usize,
    pub indicators: Vec<AddedIndicator>,
    pub enrich_requested: bool,
}

/// Links `wanted` (normalized, deduplicated) to the alert `uuid`; with `enrich` the new
/// enrichable ones are queued (the alert's enrichment re-opens and completes again; agents
/// already served are not sent it again). Indicators already linked are left as they are.
pub(crate) async fn add_to_alert(
    client: &mut deadpool_postgres::Object,
    work: &EnrichmentWork<'_>,
    actor: &Actor,
    uuid: Uuid,
    mut wanted: Vec<(IndicatorType, String)>,
    enrich: bool,
) -> Result<Added, ServiceError> {
    // A fixed order: no deadlocks with concurrent ingest.
    wanted.sort();
    wanted.dedup();
    let (id, alert_uuid) = super::alerts::alert_id(&**client, uuid).await?;
    let types: Vec<&str> = wanted.iter().map(|(t, _)| t.as_str()).collect();
    let values: Vec<&str> = wanted.iter().map(|(_, v)| v.as_str()).collect();
    let enrichable: Vec<bool> = wanted
        .iter()
        .map(|(t, v)| crate::enrich::wants_enrichment(work.never_send, *t, v))
        .collect();
    let tx = client.transaction().await?;
    let mut found = repo::upsert(&tx, &types, &values, &enrichable).await?;
    found.sort_by(|a, b| (&a.indicator_type, &a.value).cmp(&(&b.indicator_type, &b.value)));
    let mut links = Links::default();
    for f in &found {
        let state = if f.is_enrichable && enrich {
            "pending"
        } else {
            "skipped"
        };
        links.push(id, f.id, "api", state);
    }
    let ids: Vec<i64> = found.iter().map(|f| f.id).collect();
    let (linked, ()) = tokio::try_join!(repo::link(&tx, &links), repo::refresh_last_seen(&tx, &ids))?;
    let added: Vec<(&repo::IndicatorId, &str)> = found
        .iter()
        .filter_map(|f| {
            let l = linked.iter().find(|l| l.indicator_id == f.id)?;
            Some((f, l.enrichment_state.as_str()))
        })
        .collect();
    let mut messages: Vec<NewMessage> = Vec::new();
    for (f, _) in added.iter().filter(|(_, state)| *state == "pending") {
        let Ok(kind) = f.indicator_type.parse() else {
            continue;
        };
        let request = EnrichRequest {
            v: 1,
            alert_id: id,
            alert_uuid,
            indicator_id: f.id,
            indicator_type: kind,
            value: f.value.clone(),
        };
        messages.push(request.to_message());
    }
    if !added.is_empty() {
        if !messages.is_empty() {
            crate::db::alerts::reopen_enrichment(&tx, id, work.deadline.as_secs_f64()).await?;
        }
        let listed: Vec<Value> = added
            .iter()
            .map(|(f, _)| json!({"type": f.indicator_type, "value": f.value}))
            .collect();
        let mut events = Events::default();
        events.push(id, EventType::AlertIndicatorsAdded, json!({ "indicators": listed }));
        activity::record(&tx, actor.as_activity(), &events).await?;
    }
    let outbox_ids = outbox::enqueue(&*tx, &messages).await?;
    tx.commit().await?;
    let sent: Vec<(i64, NewMessage)> = outbox_ids.into_iter().zip(messages).collect();
    if let Err(e) = work.outbox.send_committed(&**client, &sent).await {
        tracing::warn!(error = %e, "enrichment messages left for the sweeper");
    }
    let indicators: Vec<AddedIndicator> = added
        .into_iter()
        .map(|(f, state)| AddedIndicator {
            uuid: f.uuid,
            indicator_type: f.indicator_type.clone(),
            value: f.value.clone(),
            enrichment_state: state.to_owned(),
        })
        .collect();
    tracing::info!(alert_id = id, alert_uuid = %alert_uuid, added = indicators.len(), "indicators added");
    Ok(Added {
        added_count: indicators.len(),
        indicators,
        enrich_requested: enrich && !sent.is_empty(),
    })
}

/// Re-queues the alert's enrichable indicators (the cache answers first); an alert with none
/// completes at once. Returns how many indicators were queued.
pub(crate) async fn reenrich(
    client: &mut deadpool_postgres::Object,
    work: &EnrichmentWork<'_>,
    uuid: Uuid,
) -> Result<usize, ServiceError> {
    let (id, alert_uuid) = super::alerts::alert_id(&**client, uuid).await?;
    let tx = client.transaction().await?;
    crate::db::alerts::reopen_enrichment(&tx, id, work.deadline.as_secs_f64()).await?;
    let links = repo::reopen_links(&tx, id).await?;
    let mut messages: Vec<NewMessage> = Vec::with_capacity(links.len());
    for l in &links {
        let Ok(kind) = l.indicator_type.parse() else {
            continue;
        };
        let request = EnrichRequest {
            v: 1,
            alert_id: id,
            alert_uuid,
            indicator_id: l.id,
            indicator_type: kind,
            value: l.value.clone(),
        };
        messages.push(request.to_message());
    }
    let rows: Vec<(i64, NewMessage)> = if messages.is_empty() {
        // Nothing to look up: complete now (its dispatch finds the deliveries already made).
        crate::enrich::engine::complete_now(&tx, &[id], "enrichment")
            .await?
            .into_iter()
            .map(|(_, _, m)| m)
            .collect()
    } else {
        let ids = outbox::enqueue(&*tx, &messages).await?;
        ids.into_iter().zip(messages).collect()
    };
    tx.commit().await?;
    if let Err(e) = work.outbox.send_committed(&**client, &rows).await {
        tracing::warn!(error = %e, "re-enrichment messages left for the sweeper");
    }
    tracing::info!(alert_id = id, alert_uuid = %alert_uuid, indicators = links.len(), "re-enrichment queued");
    Ok(links.len())
}
