-- 022: an operator's notes on an incident: what a person found or did, and whether they
-- say it is resolved (the shadow report's third way an incident ends).
CREATE TABLE incident_notes (
    id          bigserial PRIMARY KEY,
    workflow_id text NOT NULL,
    author      text NOT NULL,
    note        text NOT NULL,
    resolved    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX incident_notes_workflow_idx ON incident_notes (workflow_id, created_at);
