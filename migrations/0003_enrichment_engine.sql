-- Enrichment engine: the shared quota governor and single-flight leases (providers spec §1.4, §1.5).

-- Sliding one-minute log of upstream calls (at most the per-minute budget entries), and the
-- count of consecutive 5xx/timeouts that opens the circuit.
ALTER TABLE provider_quotas
    ADD COLUMN recent_calls         timestamptz[] NOT NULL DEFAULT '{}',
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN circuit_open_until   timestamptz;

-- One fetch per (provider, indicator) at a time across all instances: the holder calls the
-- provider, everyone else waits for the cached result. After a success the lease is kept until
-- the result expires (so nobody re-fetches a fresh result); after a failure it is given back; a
-- lease that outlives a crashed holder expires. Unlogged: losing it in a crash only costs a
-- possible duplicate lookup, and it saves WAL on the hottest write path.
CREATE UNLOGGED TABLE enrichment_leases (
    provider        text NOT NULL,
    indicator_id    bigint NOT NULL,
    lease_until     timestamptz NOT NULL,
    PRIMARY KEY (provider, indicator_id)
);

-- Takes one call from a provider's budget, atomically for every instance.
-- Returns wait_seconds = 0 when granted, else how long until a call may be made (pause after a
-- 429, per-minute window, daily quota reset at 00:00 UTC); misconfigured = true while a recent
-- 401/403 stands, circuit_open = true while repeated 5xx/timeouts keep the circuit open (in both
-- cases no call is made and no token taken).
-- p_per_minute / p_per_day NULL = no such limit.
CREATE FUNCTION calseta_take_provider_token(
    p_provider text,
    p_per_minute integer,
    p_per_day integer,
    p_misconfigured_cooldown_seconds double precision
) RETURNS TABLE (wait_seconds double precision, misconfigured boolean, circuit_open boolean)
LANGUAGE plpgsql AS $$
DECLARE
    q       provider_quotas%ROWTYPE;
    now_ts  timestamptz := clock_timestamp();
    today   date := (clock_timestamp() AT TIME ZONE 'UTC')::date;
    recent  timestamptz[];
    wait    double precision := 0;
BEGIN
    INSERT INTO provider_quotas (provider) VALUES (p_provider) ON CONFLICT (provider) DO NOTHING;
    SELECT * INTO q FROM provider_quotas WHERE provider = p_provider FOR UPDATE;

    IF q.misconfigured_at IS NOT NULL
       AND q.misconfigured_at > now_ts - make_interval(secs => p_misconfigured_cooldown_seconds) THEN
        RETURN QUERY SELECT 0::double precision, true, false;
        RETURN;
    END IF;
    IF q.circuit_open_until IS NOT NULL AND q.circuit_open_until > now_ts THEN
        RETURN QUERY SELECT 0::double precision, false, true;
        RETURN;
    END IF;
    IF q.retry_after IS NOT NULL AND q.retry_after > now_ts THEN
        wait := EXTRACT(EPOCH FROM q.retry_after - now_ts);
    END IF;
    IF p_per_day IS NOT NULL AND q.day_started_on = today AND q.day_count >= p_per_day THEN
        wait := GREATEST(wait, EXTRACT(EPOCH FROM ((today + 1)::timestamp AT TIME ZONE 'UTC') - now_ts));
    END IF;
    recent := ARRAY(SELECT t FROM unnest(q.recent_calls) AS t WHERE t > now_ts - interval '60 seconds' ORDER BY t);
    IF p_per_minute IS NOT NULL AND cardinality(recent) >= p_per_minute THEN
        -- The call that leaves the window soonest frees the slot.
        wait := GREATEST(wait, EXTRACT(EPOCH FROM
            recent[cardinality(recent) - p_per_minute + 1] + interval '60 seconds' - now_ts));
    END IF;
    IF wait > 0 THEN
        RETURN QUERY SELECT wait, false, false;
        RETURN;
    END IF;

    UPDATE provider_quotas SET
        recent_calls    = CASE WHEN p_per_minute IS NULL THEN '{}'::timestamptz[]
                               ELSE recent[greatest(1, cardinality(recent) - p_per_minute + 2):] || now_ts END,
        day_count       = CASE WHEN day_started_on = today THEN day_count + 1 ELSE 1 END,
        day_started_on  = today,
        minute_capacity = p_per_minute,
        day_limit       = p_per_day,
        updated_at      = now_ts
    WHERE provider = p_provider;
    RETURN QUERY SELECT 0::double precision, false, false;
END
$$;

-- Completes alerts: marks them Enriched (once: the status guard makes a repeat a no-op) with their
-- worst indicator malice and per-provider summary, and writes the alert_enrichment_completed event
-- and the dispatch outbox row. p_by = 'enrichment' (only alerts with no pending link) or
-- 'deadline' (whatever is pending). Plans are cached per session (generic): every statement is
-- driven by alert ids through primary keys, and planning this statement per call cost more than
-- running it.
CREATE FUNCTION calseta_complete_alerts(p_ids bigint[], p_by text)
RETURNS TABLE (alert_id bigint, alert_uuid uuid, outbox_id bigint, body text, attributes jsonb)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH done AS (
        UPDATE alerts a SET enrichment_status = 'Enriched', is_enriched = true, enriched_at = now(),
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

-- The fan-in step of one enrich batch, in one call: record deferred partial results, finish
-- links (only those still pending: duplicates change nothing), update indicator verdicts (locked
-- in id order, written only when something changes), then lock the finished links' alerts (in id
-- order) and complete every one left with no pending link. Links are written before the alert
-- lock is taken and the lock is held to commit, so of two batches finishing an alert's last two
-- links the one that locks second sees both done: completion happens exactly once.
CREATE FUNCTION calseta_finish_enrichment(
    p_alert_ids bigint[], p_indicator_ids bigint[], p_states text[], p_statuses jsonb[],
    p_def_alert_ids bigint[], p_def_indicator_ids bigint[], p_def_statuses jsonb[],
    p_malice_ids bigint[], p_malice text[]
) RETURNS TABLE (alert_id bigint, alert_uuid uuid, outbox_id bigint, body text, attributes jsonb)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    ids bigint[];
BEGIN
    UPDATE alert_indicators l SET provider_status = l.provider_status || t.ps, updated_at = now()
    FROM unnest(p_def_alert_ids, p_def_indicator_ids, p_def_statuses) AS t(a, i, ps)
    WHERE l.alert_id = t.a AND l.indicator_id = t.i AND l.enrichment_state = 'pending';

    UPDATE alert_indicators l SET enrichment_state = t.s, provider_status = t.ps, updated_at = now()
    FROM unnest(p_alert_ids, p_indicator_ids, p_states, p_statuses) AS t(a, i, s, ps)
    WHERE l.alert_id = t.a AND l.indicator_id = t.i AND l.enrichment_state = 'pending';

    UPDATE indicators i SET
        malice = CASE WHEN i.malice_source = 'enrichment' THEN s.m ELSE i.malice END,
        is_enriched = true, enriched_at = COALESCE(i.enriched_at, now()), updated_at = now()
    FROM (SELECT x.id, t.m FROM indicators x JOIN unnest(p_malice_ids, p_malice) AS t(id, m) ON x.id = t.id
          WHERE NOT x.is_enriched OR (x.malice_source = 'enrichment' AND x.malice <> t.m)
          ORDER BY x.id FOR UPDATE OF x) s
    WHERE i.id = s.id;

    SELECT array_agg(DISTINCT x ORDER BY x) INTO ids FROM unnest(p_alert_ids) AS x;
    IF ids IS NULL THEN
        RETURN;
    END IF;
    -- The fan-in guard, taken last so it is held only for the completion and the commit: whoever
    -- locks an alert after another finisher committed sees that finisher's links.
    PERFORM 1 FROM alerts a WHERE a.id = ANY(ids) ORDER BY a.id FOR UPDATE;
    RETURN QUERY SELECT * FROM calseta_complete_alerts(ids, 'enrichment');
END
$$;
