-- 012: approve and reject links sent in notifications are single-use.
-- A link's id (from its signed token) is written here when it is used; a second use finds
-- the row and changes nothing. The token itself is never stored (it is the credential).
CREATE TABLE approval_links_used (
    link_id      text PRIMARY KEY,
    workflow_id  text NOT NULL,
    step         text NOT NULL,
    decision_id  text NOT NULL,
    verdict      text NOT NULL CHECK (verdict IN ('approve', 'reject')),
    recipient    text NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz NOT NULL DEFAULT now(),
    result       text
);
CREATE INDEX approval_links_used_workflow ON approval_links_used (workflow_id, step);
