//! The fan-in: one transaction per batch records the links' outcomes and the indicators'
//! verdicts, and completes every alert whose last pending link this batch finished (queueing its
//! dispatch). The database function takes the alert row locks last, so two batches finishing an
//! alert's last two links cannot both miss (or both see) the completion.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio_postgres::types::Type;

use super::{completions, Engine, Plan};
use crate::db::{stmt, DbError};
use crate::domain::malice::Malice;
use crate::queue::correlation::in_alert;
use crate::queue::messages::EnrichRequest;
use crate::queue::outbox::NewMessage;

impl Engine {
    pub(super) async fn commit(
        &self,
        items: &[(EnrichRequest, u32)],
        plans: &[Option<Plan>],
        malice: &BTreeMap<i64, Malice>,
    ) -> Result<(), DbError> {
        let mut fin_a = Vec::new();
        let mut fin_i = Vec::new();
        let mut fin_s: Vec<&str> = Vec::new();
        let mut fin_ps = Vec::new();
        let mut def_a = Vec::new();
        let mut def_i = Vec::new();
        let mut def_ps = Vec::new();
        for (p, (req, _)) in plans.iter().zip(items) {
            match p {
                Some(Plan::Finish { state, provider_status }) => {
                    fin_a.push(req.alert_id);
                    fin_i.push(req.indicator_id);
                    fin_s.push(state);
                    fin_ps.push(Value::Object(provider_status.clone()));
                }
                Some(Plan::Defer { provider_status, .. }) if !provider_status.is_empty() => {
                    def_a.push(req.alert_id);
                    def_i.push(req.indicator_id);
                    def_ps.push(Value::Object(provider_status.clone()));
                }
                _ => {}
            }
        }
        if fin_a.is_empty() && def_a.is_empty() {
            return Ok(());
        }
        let mal_ids: Vec<i64> = malice.keys().copied().collect();
        let mal_vs: Vec<&str> = malice.values().map(|m| m.as_str()).collect();
        // One round trip: locks, links, verdicts and completion run inside the database
        // (calseta_finish_enrichment, migration 0003), each statement seeing what earlier lock
        // holders committed.
        let client = self.pool.get().await?;
        let rows = stmt::query(
            &*client,
            "SELECT alert_id, alert_uuid, outbox_id, body, attributes
             FROM calseta_finish_enrichment($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                (&fin_a, Type::INT8_ARRAY),
                (&fin_i, Type::INT8_ARRAY),
                (&fin_s, Type::TEXT_ARRAY),
                (&fin_ps, Type::JSONB_ARRAY),
                (&def_a, Type::INT8_ARRAY),
                (&def_i, Type::INT8_ARRAY),
                (&def_ps, Type::JSONB_ARRAY),
                (&mal_ids, Type::INT8_ARRAY),
                (&mal_vs, Type::TEXT_ARRAY),
            ],
        )
        .await?;
        let completed = completions(&rows)?;
        for (alert_id, uuid, _) in &completed {
            in_alert(*uuid, || {
                tracing::info!(alert_id, "alert enrichment completed; dispatch queued")
            });
        }
        // The dispatch rows were written by the database function; the alert's trace and request
        // id are added to the message sent now (a row the sweeper resends goes without them).
        let rows: Vec<(i64, NewMessage)> = completed
            .into_iter()
            .map(|(_, uuid, (id, m))| (id, m.correlated(uuid)))
            .collect();
        if !rows.is_empty() {
            // A failed send leaves the rows to the sweeper; the state is already committed.
            if let Err(e) = self.outbox.send_committed(&*client, &rows).await {
                tracing::warn!(error = %e, "outbox send after enrichment failed; sweeper will resend");
            }
        }
        Ok(())
    }
}
