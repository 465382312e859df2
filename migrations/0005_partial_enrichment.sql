-- Honest enrichment status (issue 17): an alert the deadline sweeper dispatched while some of
-- its indicators were still pending reads 'Partial' (is_enriched false), not 'Enriched'.
-- 'Enriched' keeps its meaning: every indicator finished (found, not found, failed or skipped).
ALTER TABLE alerts DROP CONSTRAINT alerts_enrichment_status_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_enrichment_status_check
    CHECK (enrichment_status IN ('Pending', 'Enriched', 'Partial', 'Failed'));

CREATE OR REPLACE FUNCTION calseta_complete_alerts(p_ids bigint[], p_by text)
RETURNS TABLE (alert_id bigint, alert_uuid uuid, outbox_id bigint, body text, attributes jsonb)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH done AS (
        UPDATE alerts a SET enrichment_status = CASE WHEN EXISTS (
                   SELECT 1 FROM alert_indicators p WHERE p.alert_id = a.id AND p.enrichment_state = 'pending')
                   THEN 'Partial' ELSE 'Enriched' END,
               is_enriched = NOT EXISTS (
                   SELECT 1 FROM alert_indicators p WHERE p.alert_id = a.id AND p.enrichment_state = 'pending'),
               enriched_at = now(),
               enrichment_deadline_at = NULL, updated_at = now(),
               malice = (SELECT COALESCE((ARRAY['Pending','Benign','Suspicious','Malicious'])[
                MAX((SELECT CASE i.malice WHEN 'Malicious' THEN 4 WHEN 'Suspicious' THEN 3 WHEN 'Benign' THEN 2 ELSE 1 END
                     FROM indicators i WHERE i.id = l.indicator_id))], 'Pending')
            FROM alert_indicators l WHERE l.alert_id = a.id),
               enrichment_summary = (SELECT jsonb_build_object(
                'succeeded', COALESCE(jsonb_agg(x.p ORDER BY x.p) FILTER (WHERE x.s = 'success'), '[]'::jsonb),
                'failed', COALESCE(jsonb_agg(x.p ORDER BY x.p) FILTER (WHERE x.s = 'failed'), '[]'::jsonb),
                'skipped', COALESCE(jsonb_agg(x.p ORDER BY x.p) FILTER (WHERE x.s = 'skipped'), '[]'::jsonb))
            FROM (SELECT e.key AS p,
                         CASE WHEN bool_or(e.value->>'status' = 'success') THEN 'success'
                              WHEN bool_or(e.value->>'status' = 'failed') THEN 'failed'
                              ELSE 'skipped' END AS s
                  FROM alert_indicators l, jsonb_each(l.provider_status) e
                  WHERE l.alert_id = a.id AND left(e.key, 1) <> '_'
                  GROUP BY e.key) x) || jsonb_build_object(
                   'completed_by', p_by,
                   'pending_indicators', (SELECT count(*) FROM alert_indicators p
                                          WHERE p.alert_id = a.id AND p.enrichment_state = 'pending'))
        WHERE a.id = ANY(p_ids) AND a.enrichment_status = 'Pending'
          AND (p_by = 'deadline' OR NOT EXISTS (
               SELECT 1 FROM alert_indicators p WHERE p.alert_id = a.id AND p.enrichment_state = 'pending'))
        RETURNING a.id, a.uuid, a.enrichment_summary, a.malice),
     events AS (
        INSERT INTO activity_events (alert_id, event_type, actor_type, "references")
        SELECT d.id, 'alert_enrichment_completed', 'system',
               jsonb_build_object('completed_by', p_by, 'enrichment', d.enrichment_summary, 'malice', d.malice)
        FROM done d),
     queued AS (
        INSERT INTO outbox (queue, body, attributes)
        SELECT 'dispatch',
               jsonb_build_object('v', 1, 'alert_id', d.id, 'alert_uuid', d.uuid,
                                  'reason', CASE WHEN p_by = 'deadline' THEN 'deadline' ELSE 'enriched' END)::text,
               jsonb_build_object('alert_uuid', d.uuid::text)
        FROM done d ORDER BY d.id
        RETURNING outbox.id, outbox.body, outbox.attributes)
    SELECT d.id, d.uuid, q.id, q.body, q.attributes
    FROM done d JOIN queued q ON (q.attributes->>'alert_uuid')::uuid = d.uuid;
END
$$;
