-- 014: how far aiops may go, globally ('*') and per service: act, approve-all, shadow.
CREATE TABLE operating_modes (
    scope   text PRIMARY KEY,  -- '*' for every service, else a service name
    mode    text NOT NULL CHECK (mode IN ('act', 'approve-all', 'shadow')),
    reason  text NOT NULL DEFAULT '',
    set_by  text NOT NULL,
    set_at  timestamptz NOT NULL DEFAULT now()
);
