-- 013: an action belongs to one run of its workflow, and a signed approval counts once.

-- The run that recorded the action: a later run reusing the workflow id (Temporal allows it
-- once the first has closed) neither gets its outcome back nor undoes it.
ALTER TABLE action_executions ADD COLUMN run_id text;

-- Each signed approval grant is spent on exactly one action (workflow id + step).
CREATE TABLE approval_grants_used (
    grant_id        text PRIMARY KEY,
    idempotency_key text NOT NULL,
    approver        text NOT NULL,
    used_at         timestamptz NOT NULL DEFAULT now()
);
