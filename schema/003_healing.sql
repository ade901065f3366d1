-- 003: what the healing workflows did, keyed so that nothing runs twice.

-- One row per action attempt key (workflow id + step). The adapter inserts the row before it
-- acts; a retried or replayed activity finds it and returns the recorded outcome, or, when
-- the worker died mid-action, reconciles with the real world instead of acting again.
CREATE TABLE action_executions (
    idempotency_key text PRIMARY KEY,
    workflow_id     text NOT NULL,
    step            text NOT NULL,
    adapter         text NOT NULL,
    action_type     text NOT NULL,
    target          text NOT NULL,
    service         text,
    action          jsonb NOT NULL,
    status          text NOT NULL CHECK (status IN ('started', 'succeeded', 'failed')),
    -- what the adapter captured before acting (previous value, pid...) for reconcile and rollback
    intent          jsonb NOT NULL DEFAULT '{}'::jsonb,
    result          jsonb,
    attempts        integer NOT NULL DEFAULT 1,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE INDEX action_executions_target_idx ON action_executions (target, started_at);
CREATE INDEX action_executions_workflow_idx ON action_executions (workflow_id);

-- Remediations in flight per service: the policy's blast-radius limit counts these.
CREATE TABLE remediations (
    workflow_id text PRIMARY KEY,
    service     text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text
);

CREATE INDEX remediations_open_idx ON remediations (service) WHERE finished_at IS NULL;
