-- 005: the monitor agent. Health transitions live in the services row (any worker may run
-- any probe, so no process can keep them in memory): when the current unhealthy spell
-- began and when it was last reported. Limits an operator changes while processes run.
ALTER TABLE services ADD COLUMN unhealthy_since timestamptz;
ALTER TABLE services ADD COLUMN last_alert_at timestamptz;

CREATE TABLE runtime_limits (
    name       text PRIMARY KEY,
    value      bigint NOT NULL CHECK (value >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
