-- 008: agents' track records. One row per agent and learning run (the key), so a retried
-- learning step scores an agent once; an agent's weight in the diagnosis vote is the Beta
-- posterior mean of its rows. Kept apart from the agents registry: a record belongs to the
-- agent's id, whichever worker process runs it and whether or not one is running now.
CREATE TABLE agent_outcomes (
    agent_id    text NOT NULL,
    key         text NOT NULL,
    incident_id text,
    success     boolean NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, key)
);
