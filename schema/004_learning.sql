-- 004: learning applies each outcome once, however often its activity is retried.
CREATE TABLE learning_applied (
    key        text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
