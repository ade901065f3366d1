-- 006: the pattern library. A pattern is a knowledge_nodes row of type 'pattern' whose data
-- is the seed's Pattern JSON; this adds what the library needs around those rows.

CREATE INDEX knowledge_nodes_pattern_status_idx
    ON knowledge_nodes ((data->>'status')) WHERE node_type = 'pattern';

-- Bumped in the same transaction as any change to what a pattern matches or does, so a
-- listener polling it reloads when, and only after, such a change commits. Counters (the
-- tracker's outcomes, the listener's match counts, mining's confidence) are not such a
-- change: recording outcomes never makes every listener recompile the library.
CREATE TABLE pattern_library_version (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version    bigint NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pattern_library_version DEFAULT VALUES;

CREATE FUNCTION pattern_library_bump() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pattern_library_version SET version = version + 1, changed_at = now();
    RETURN NULL;
END;
$$;

CREATE TRIGGER pattern_library_inserted AFTER INSERT ON knowledge_nodes
    FOR EACH ROW WHEN (NEW.node_type = 'pattern')
    EXECUTE FUNCTION pattern_library_bump();
CREATE TRIGGER pattern_library_deleted AFTER DELETE ON knowledge_nodes
    FOR EACH ROW WHEN (OLD.node_type = 'pattern')
    EXECUTE FUNCTION pattern_library_bump();
CREATE TRIGGER pattern_library_updated AFTER UPDATE ON knowledge_nodes
    FOR EACH ROW WHEN (
        (OLD.node_type = 'pattern' OR NEW.node_type = 'pattern')
        AND (OLD.data - ARRAY['attempt_count', 'success_count', 'success_rate', 'occurrences',
                              'last_updated', 'confidence'])
            IS DISTINCT FROM
            (NEW.data - ARRAY['attempt_count', 'success_count', 'success_rate', 'occurrences',
                              'last_updated', 'confidence'])
    )
    EXECUTE FUNCTION pattern_library_bump();
CREATE TRIGGER pattern_library_truncated AFTER TRUNCATE ON knowledge_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION pattern_library_bump();

-- One row per outcome of a pattern's remediation, with the values its rules read at the
-- time (memory_usage: 83.5): what the evolver splits thresholds on. `key` makes a retried
-- recording count once.
CREATE TABLE pattern_outcomes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pattern_id  uuid NOT NULL REFERENCES knowledge_nodes (id) ON DELETE CASCADE,
    success     boolean NOT NULL,
    actions     jsonb NOT NULL DEFAULT '[]'::jsonb,
    solution_id uuid,
    observed    jsonb NOT NULL DEFAULT '{}'::jsonb,
    key         text UNIQUE,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX pattern_outcomes_pattern_idx ON pattern_outcomes (pattern_id, id);
