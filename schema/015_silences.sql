-- 015: silences: matching events are stored and coalesced as always, but their incidents
-- neither act nor notify until the silence ends.
CREATE TABLE silences (
    id          uuid PRIMARY KEY,
    service     text,                              -- NULL: every service
    matchers    jsonb NOT NULL DEFAULT '{}'::jsonb,  -- field -> value, all must hold
    starts_at   timestamptz NOT NULL DEFAULT now(),
    ends_at     timestamptz NOT NULL,
    reason      text NOT NULL,
    created_by  text NOT NULL,
    expired_at  timestamptz                        -- ended early by `aiops silence expire`
);

CREATE INDEX silences_active_idx ON silences (ends_at) WHERE expired_at IS NULL;
