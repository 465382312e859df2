-- Dispatch: delivery claims (so a duplicate queue message never sends a webhook twice at once)
-- and the bookkeeping of replays.

ALTER TABLE deliveries
    ADD COLUMN claimed_until timestamptz,
    ADD COLUMN replays       integer NOT NULL DEFAULT 0,
    ADD COLUMN trigger       text NOT NULL DEFAULT 'enriched';

CREATE INDEX deliveries_alert_idx ON deliveries (alert_id);
