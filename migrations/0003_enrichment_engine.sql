-- Enrichment engine: the shared quota governor and single-flight leases (providers spec §1.4, §1.5).

-- Sliding one-minute log of upstream calls (at most the per-minute budget entries), and the
-- count of consecutive 5xx/timeouts that opens the circuit.
ALTER TABLE provider_quotas
    ADD COLUMN recent_calls         timestamptz[] NOT NULL DEFAULT '{}',
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN circuit_open_until   timestamptz;

-- One fetch per (provider, indicator) at a time across all instances: the holder calls the
-- provider, everyone else waits for the cached result. A lease that outlives its holder expires.
CREATE TABLE enrichment_leases (
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
