-- Fixed one-minute windows shared by every instance (api spec §1 rate limits).
-- bucket: "key:<prefix>:<class>" or "source:<name>".
CREATE TABLE rate_limits (
    bucket          text PRIMARY KEY,
    window_start    timestamptz NOT NULL,
    count           integer NOT NULL
);
