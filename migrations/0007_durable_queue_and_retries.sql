-- No work lost on restart, retries that outlast outages (issue 17, items 3 and 4).

-- The local queue of `calseta dev` (SQS semantics, messages in rows): a message is gone only
-- when its consumer finished, so a crash or restart against the same database loses nothing.
-- `receipt` is the handle of the current receive; a message received `max_receives` times
-- without a delete is moved to parked_messages (the dead letters).
CREATE TABLE local_queue (
    id                  bigserial PRIMARY KEY,
    queue               text NOT NULL,
    message_id          uuid NOT NULL DEFAULT gen_random_uuid(),
    body                text NOT NULL,
    attributes          jsonb NOT NULL DEFAULT '{}'::jsonb,
    sent_at             timestamptz NOT NULL DEFAULT now(),
    visible_at          timestamptz NOT NULL DEFAULT now(),
    receive_count       integer NOT NULL DEFAULT 0,
    first_received_at   timestamptz,
    receipt             uuid,
    -- The process that holds the current receive: a restarted stack releases its
    -- predecessor's in-flight messages at once instead of after their visibility timeout.
    owner               uuid
);
CREATE INDEX local_queue_visible_idx ON local_queue (queue, visible_at, id);
CREATE UNIQUE INDEX local_queue_receipt_idx ON local_queue (receipt) WHERE receipt IS NOT NULL;

-- Per-agent delivery schedule: seconds to wait before retry 1, 2, …; the last step repeats
-- when retry_count is longer. NULL = the deployment's schedule (CALSETA_DELIVERY_RETRY_SCHEDULE,
-- by default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about 27.5 hours).
ALTER TABLE agents
    ADD COLUMN retry_schedule integer[]
        CHECK (retry_schedule IS NULL OR (cardinality(retry_schedule) BETWEEN 1 AND 20
               AND 1 <= ALL (retry_schedule) AND 604800 >= ALL (retry_schedule))),
    ALTER COLUMN retry_count SET DEFAULT 7;

-- The sweeper's repair duty: when to re-drive a delivery that made no progress (its queue
-- message lost, dead-lettered, or longer than SQS's 15-minute delay). NULL = nothing to re-drive
-- (delivered or dead).
ALTER TABLE deliveries ADD COLUMN redrive_at timestamptz;
UPDATE deliveries SET redrive_at = COALESCE(next_attempt_at, created_at) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_redrive_idx ON deliveries (redrive_at) WHERE redrive_at IS NOT NULL;

-- Set when dispatch matched agents and created the alert's deliveries (also when no agent
-- matched): a completed alert without it lost its dispatch message. Alerts completed before
-- this migration count as dispatched when they have a delivery or are older than a day (the
-- repair re-dispatches the rest once; dispatch is idempotent per (alert, agent)).
ALTER TABLE alerts
    ADD COLUMN dispatched_at        timestamptz,
    ADD COLUMN dispatch_redriven_at timestamptz;
UPDATE alerts a SET dispatched_at = COALESCE(a.enriched_at, a.ingested_at)
WHERE a.enrichment_status <> 'Pending'
  AND (COALESCE(a.enriched_at, a.ingested_at) < now() - interval '1 day'
       OR EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.id));
CREATE INDEX alerts_undispatched_idx ON alerts (id)
    WHERE dispatched_at IS NULL AND enrichment_status <> 'Pending';

-- When the sweeper last re-sent a pending link's enrich message (so it does it once per period).
ALTER TABLE alert_indicators ADD COLUMN redriven_at timestamptz;
