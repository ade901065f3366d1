-- 020: tools built from primitive actions, and the actions fixes ask for that nothing offers.

-- One row per tool name: its current specification and where it stands. A tool is
-- proposed until an admin approves it; refused ones keep the validation that refused them.
CREATE TABLE tools (
    name        text PRIMARY KEY,
    version     integer NOT NULL DEFAULT 1,
    status      text NOT NULL CHECK (status IN ('proposed', 'approved', 'retired', 'refused')),
    origin      text NOT NULL CHECK (origin IN ('mined', 'llm', 'manual')),
    spec        jsonb NOT NULL,
    spec_yaml   text NOT NULL,
    problem_id  uuid,
    service     text,
    -- the knowledge-graph solution that plans with the tool: its outcomes are the tool's
    solution_id uuid,
    -- a mined tool's recorded sequence: the same sequence is drafted once
    signature   text,
    validation  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by  text NOT NULL,
    decided_by  text,
    decided_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX tools_signature_key ON tools (signature) WHERE signature IS NOT NULL;

-- Diagnosis met a fix whose action type no adapter and no approved tool offers.
CREATE TABLE tool_requests (
    action_type  text PRIMARY KEY,
    request      jsonb NOT NULL,
    seen_count   integer NOT NULL DEFAULT 1,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now()
);
