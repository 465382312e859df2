-- An API key's `is_active` becomes a reversible switch (PATCH); DELETE revokes for good and is
-- recorded apart, so a revoked key can never be reactivated.
ALTER TABLE api_keys ADD COLUMN revoked_at timestamptz;
-- Until now the only way to make a key inactive was DELETE: those keys are revoked.
UPDATE api_keys SET revoked_at = updated_at WHERE NOT is_active;

-- HMAC sources require the timestamped signature (X-Calseta-Timestamp, ±300 s) unless a source
-- opts into the legacy body-only form, which has no freshness (a captured request replays).
ALTER TABLE sources ADD COLUMN hmac_body_only boolean NOT NULL DEFAULT false;
