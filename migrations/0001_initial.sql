-- Calseta schema, version 1. Every table of DESIGN §4, plus the ingest archive (sources spec §9)
-- and the store for queue messages that can never succeed (parked_messages).
-- Enum-like columns are text with CHECK constraints: readable in psql, cheap to extend in a migration.

CREATE TABLE sources (
    id                          bigserial PRIMARY KEY,
    uuid                        uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    source_name                 text NOT NULL UNIQUE
                                CHECK (source_name IN ('sentinel', 'elastic', 'splunk', 'generic')),
    display_name                text,
    is_active                   boolean NOT NULL DEFAULT true,
    auth_type                   text NOT NULL DEFAULT 'api_key'
                                CHECK (auth_type IN ('api_key', 'shared_secret', 'hmac', 'none')),
    url_token_allowed           boolean NOT NULL DEFAULT false,
    -- Secrets are stored encrypted (AES-GCM under the app encryption key), never returned.
    shared_secret_enc           bytea,
    previous_shared_secret_enc  bytea,
    hmac_secret_enc             bytea,
    extra_indicator_fields      jsonb NOT NULL DEFAULT '{}'::jsonb,
    documentation               text,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id              bigserial PRIMARY KEY,
    uuid            uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    key_prefix      text NOT NULL UNIQUE,
    -- HMAC-SHA256(server secret, key): keys are 256-bit random, so no slow hash is needed.
    key_hash        bytea NOT NULL,
    scopes          text[] NOT NULL DEFAULT '{}',
    key_type        text NOT NULL DEFAULT 'human' CHECK (key_type IN ('human', 'agent')),
    allowed_sources text[],
    expires_at      timestamptz,
    is_active       boolean NOT NULL DEFAULT true,
    last_used_at    timestamptz,
    is_system       boolean NOT NULL DEFAULT false,
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE detection_rules (
    id                  bigserial PRIMARY KEY,
    uuid                uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 500),
    source_name         text CHECK (source_name IN ('sentinel', 'elastic', 'splunk', 'generic')),
    source_rule_id      text,
    severity            text CHECK (severity IN ('Pending', 'Informational', 'Low', 'Medium', 'High', 'Critical')),
    is_active           boolean NOT NULL DEFAULT true,
    mitre_tactics       text[] NOT NULL DEFAULT '{}',
    mitre_techniques    text[] NOT NULL DEFAULT '{}',
    mitre_subtechniques text[] NOT NULL DEFAULT '{}',
    data_sources        text[] NOT NULL DEFAULT '{}',
    run_frequency       text,
    created_by          text,
    documentation       text,
    goal                text,
    priority            text,
    false_positive_tags text[] NOT NULL DEFAULT '{}',
    blind_spots         text[] NOT NULL DEFAULT '{}',
    is_system           boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- Ingest auto-creates rules with insert-or-ignore on this key, so concurrent ingests make one rule.
    CONSTRAINT detection_rules_source_rule_key UNIQUE (source_name, source_rule_id)
);

CREATE TABLE alerts (
    id                      bigserial PRIMARY KEY,
    uuid                    uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    source_name             text NOT NULL CHECK (source_name IN ('sentinel', 'elastic', 'splunk', 'generic')),
    source_alert_id         text NOT NULL CHECK (source_alert_id <> ''),
    title                   text NOT NULL,
    description             text,
    severity                text NOT NULL DEFAULT 'Pending'
                            CHECK (severity IN ('Pending', 'Informational', 'Low', 'Medium', 'High', 'Critical')),
    severity_original       text,
    status                  text NOT NULL DEFAULT 'Open'
                            CHECK (status IN ('Open', 'Triaging', 'Escalated', 'Closed')),
    occurred_at             timestamptz NOT NULL,
    occurred_at_inferred    boolean NOT NULL DEFAULT false,
    ingested_at             timestamptz NOT NULL DEFAULT now(),
    tags                    text[] NOT NULL DEFAULT '{}',
    mitre                   jsonb NOT NULL DEFAULT '{}'::jsonb,
    deep_link               text,
    extra                   jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- The alert's own JSON exactly as received (jsonb keeps numbers as exact numerics).
    raw_payload             jsonb NOT NULL,
    detection_rule_id       bigint REFERENCES detection_rules (id) ON DELETE SET NULL,
    duplicate_count         integer NOT NULL DEFAULT 0,
    last_seen_at            timestamptz NOT NULL DEFAULT now(),
    enrichment_status       text NOT NULL DEFAULT 'Pending'
                            CHECK (enrichment_status IN ('Pending', 'Enriched', 'Failed')),
    is_enriched             boolean NOT NULL DEFAULT false,
    enriched_at             timestamptz,
    -- The sweeper dispatches an alert with what it has once this passes.
    enrichment_deadline_at  timestamptz,
    -- {succeeded:[], failed:[], skipped:[]} per provider, for the payload and _metadata.
    enrichment_summary      jsonb NOT NULL DEFAULT '{}'::jsonb,
    malice                  text NOT NULL DEFAULT 'Pending'
                            CHECK (malice IN ('Pending', 'Benign', 'Suspicious', 'Malicious')),
    malice_override         text CHECK (malice_override IN ('Pending', 'Benign', 'Suspicious', 'Malicious')),
    malice_override_source  text CHECK (malice_override_source IN ('analyst', 'enrichment')),
    malice_override_at      timestamptz,
    close_classification    text CHECK (close_classification IN (
                                'True Positive - Suspicious Activity',
                                'Benign Positive - Suspicious but Expected',
                                'False Positive - Incorrect Detection Logic',
                                'False Positive - Inaccurate Data',
                                'Undetermined', 'Duplicate', 'Not Applicable')),
    acknowledged_at         timestamptz,
    triaged_at              timestamptz,
    closed_at               timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- The idempotency key of ingest (sources spec §10).
    CONSTRAINT alerts_source_alert_key UNIQUE (source_name, source_alert_id)
);
CREATE INDEX alerts_occurred_at_idx ON alerts (occurred_at DESC, id DESC);
CREATE INDEX alerts_created_at_idx ON alerts (created_at);
CREATE INDEX alerts_status_idx ON alerts (status);
CREATE INDEX alerts_detection_rule_idx ON alerts (detection_rule_id);
CREATE INDEX alerts_tags_idx ON alerts USING gin (tags);
-- The sweeper's query: alerts still enriching whose deadline has passed.
CREATE INDEX alerts_enrichment_deadline_idx ON alerts (enrichment_deadline_at)
    WHERE enrichment_status = 'Pending';

CREATE TABLE indicators (
    id                      bigserial PRIMARY KEY,
    uuid                    uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    type                    text NOT NULL CHECK (type IN ('ip', 'domain', 'url', 'hash_md5', 'hash_sha1',
                                                          'hash_sha256', 'email', 'account')),
    value                   text NOT NULL CHECK (length(value) BETWEEN 1 AND 2048),
    -- false for private/reserved addresses and internal names: stored, never sent to a provider.
    is_enrichable           boolean NOT NULL DEFAULT true,
    malice                  text NOT NULL DEFAULT 'Pending'
                            CHECK (malice IN ('Pending', 'Benign', 'Suspicious', 'Malicious')),
    malice_source           text NOT NULL DEFAULT 'enrichment' CHECK (malice_source IN ('enrichment', 'analyst')),
    malice_overridden_at    timestamptz,
    first_seen              timestamptz NOT NULL DEFAULT now(),
    last_seen               timestamptz NOT NULL DEFAULT now(),
    is_enriched             boolean NOT NULL DEFAULT false,
    enriched_at             timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT indicators_type_value_key UNIQUE (type, value)
);

CREATE TABLE alert_indicators (
    alert_id            bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    indicator_id        bigint NOT NULL REFERENCES indicators (id) ON DELETE CASCADE,
    source_field        text,
    -- Fan-in: the transition of the last pending link enqueues contextualize + dispatch.
    enrichment_state    text NOT NULL DEFAULT 'pending'
                        CHECK (enrichment_state IN ('pending', 'done', 'failed', 'skipped')),
    -- Per-provider outcome for this link: {"virustotal": "found", "abuseipdb": "error", ...}
    provider_status     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, indicator_id)
);
-- Past alerts: other alerts that share an indicator.
CREATE INDEX alert_indicators_indicator_idx ON alert_indicators (indicator_id, alert_id);
CREATE INDEX alert_indicators_pending_idx ON alert_indicators (alert_id) WHERE enrichment_state = 'pending';

CREATE TABLE enrichment_results (
    id              bigserial PRIMARY KEY,
    indicator_id    bigint NOT NULL REFERENCES indicators (id) ON DELETE CASCADE,
    provider        text NOT NULL,
    status          text NOT NULL CHECK (status IN ('found', 'not_found', 'error')),
    -- The compact block the payload shows (e.g. {"malicious": 14, "suspicious": 2, "score": "47/94"}).
    block           jsonb,
    verdict         text CHECK (verdict IN ('Pending', 'Benign', 'Suspicious', 'Malicious')),
    reasons         jsonb NOT NULL DEFAULT '[]'::jsonb,
    raw             jsonb,
    error           text,
    fetched_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    CONSTRAINT enrichment_results_provider_indicator_key UNIQUE (provider, indicator_id)
);
CREATE INDEX enrichment_results_indicator_idx ON enrichment_results (indicator_id);

-- Token buckets shared by every instance, so a burst never spends a provider quota twice.
CREATE TABLE provider_quotas (
    provider            text PRIMARY KEY,
    minute_capacity     double precision,
    minute_tokens       double precision,
    refilled_at         timestamptz NOT NULL DEFAULT now(),
    day_limit           integer,
    day_count           integer NOT NULL DEFAULT 0,
    day_started_on      date NOT NULL DEFAULT current_date,
    retry_after         timestamptz,
    misconfigured_at    timestamptz,
    last_error          text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE context_documents (
    id              bigserial PRIMARY KEY,
    uuid            uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    document_type   text NOT NULL CHECK (document_type IN ('runbook', 'ir_plan', 'sop', 'playbook',
                                                           'detection_guide', 'other')),
    is_global       boolean NOT NULL DEFAULT false,
    description     text,
    content         text NOT NULL CHECK (octet_length(content) <= 1048576),
    tags            text[] NOT NULL DEFAULT '{}',
    targeting_rules jsonb,
    version         integer NOT NULL DEFAULT 1,
    is_system       boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workflows (
    id                  bigserial PRIMARY KEY,
    uuid                uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description         text,
    workflow_type       text CHECK (workflow_type IN ('indicator', 'alert')),
    indicator_types     text[] NOT NULL DEFAULT '{}',
    state               text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'active', 'inactive')),
    is_active           boolean NOT NULL DEFAULT false,
    is_system           boolean NOT NULL DEFAULT false,
    tags                text[] NOT NULL DEFAULT '{}',
    risk_level          text NOT NULL DEFAULT 'low' CHECK (risk_level IN ('low', 'medium', 'high', 'critical')),
    approval_mode       text NOT NULL DEFAULT 'always' CHECK (approval_mode IN ('always', 'agent_only', 'never')),
    time_saved_minutes  integer,
    documentation       text,
    targeting_rules     jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    id                          bigserial PRIMARY KEY,
    uuid                        uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name                        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description                 text,
    endpoint_url                text NOT NULL,
    auth_header_name            text,
    auth_header_value_enc       bytea,
    signing_secret_enc          bytea NOT NULL,
    previous_signing_secret_enc bytea,
    previous_secret_expires_at  timestamptz,
    trigger_on_sources          text[] NOT NULL DEFAULT '{}',
    trigger_on_severities       text[] NOT NULL DEFAULT '{}',
    trigger_filter              jsonb,
    timeout_seconds             integer NOT NULL DEFAULT 30 CHECK (timeout_seconds BETWEEN 1 AND 300),
    retry_count                 integer NOT NULL DEFAULT 3 CHECK (retry_count BETWEEN 0 AND 10),
    max_payload_bytes           integer CHECK (max_payload_bytes > 0),
    is_active                   boolean NOT NULL DEFAULT true,
    documentation               text,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CHECK ((auth_header_name IS NULL) = (auth_header_value_enc IS NULL))
);

-- One row per (alert, agent): the idempotency key of dispatch; its uuid is the webhook-id.
CREATE TABLE deliveries (
    id                  bigserial PRIMARY KEY,
    uuid                uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    alert_id            bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    agent_id            bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
    attempts            integer NOT NULL DEFAULT 0,
    last_status_code    integer,
    last_error          text,
    payload_bytes       integer,
    next_attempt_at     timestamptz,
    delivered_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deliveries_alert_agent_key UNIQUE (alert_id, agent_id)
);
CREATE INDEX deliveries_agent_idx ON deliveries (agent_id, created_at DESC);
CREATE INDEX deliveries_status_idx ON deliveries (status) WHERE status IN ('pending', 'failed', 'dead');

CREATE TABLE findings (
    id                  bigserial PRIMARY KEY,
    uuid                uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    alert_id            bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    agent_name          text NOT NULL CHECK (length(agent_name) BETWEEN 1 AND 255),
    summary             text NOT NULL CHECK (length(summary) BETWEEN 1 AND 50000),
    confidence          text CHECK (confidence IN ('low', 'medium', 'high')),
    recommended_action  text,
    evidence            jsonb,
    posted_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX findings_alert_idx ON findings (alert_id, posted_at);

CREATE TABLE activity_events (
    id                  bigserial PRIMARY KEY,
    uuid                uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    alert_id            bigint REFERENCES alerts (id) ON DELETE CASCADE,
    event_type          text NOT NULL,
    actor_type          text NOT NULL DEFAULT 'system' CHECK (actor_type IN ('system', 'api', 'mcp')),
    actor_key_prefix    text,
    "references"        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activity_events_alert_idx ON activity_events (alert_id, created_at DESC, id DESC);

-- Transactional outbox: written in the caller's transaction, sent after commit, re-sent by the sweeper.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    queue           text NOT NULL,
    body            text NOT NULL,
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    delay_seconds   integer NOT NULL DEFAULT 0 CHECK (delay_seconds BETWEEN 0 AND 900),
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text
);
CREATE INDEX outbox_unsent_idx ON outbox (created_at, id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_idx ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- Every accepted ingest request body, exact bytes, headers minus credentials (sources spec §9).
CREATE TABLE ingest_archive (
    id              bigserial PRIMARY KEY,
    request_id      text NOT NULL,
    source_name     text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    headers         jsonb NOT NULL DEFAULT '{}'::jsonb,
    body            bytea NOT NULL,
    alert_ids       bigint[] NOT NULL DEFAULT '{}'
);
CREATE INDEX ingest_archive_received_idx ON ingest_archive (received_at);

-- Queue messages that can never succeed (bad JSON, vanished alert): logged, kept, not retried.
CREATE TABLE parked_messages (
    id              bigserial PRIMARY KEY,
    queue           text NOT NULL,
    message_id      text NOT NULL,
    body            text NOT NULL,
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    error           text NOT NULL,
    receive_count   integer,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT parked_messages_queue_message_key UNIQUE (queue, message_id)
);
