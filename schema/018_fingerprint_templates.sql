-- 018: the problem fingerprinter's templates, shared by every listener (aiops.fingerprint.store),
-- so two listeners, or one restarted, give the same line the same fingerprint.
CREATE SEQUENCE fingerprint_template_changes;

CREATE TABLE fingerprint_templates (
    fingerprint  text PRIMARY KEY,
    service      text NOT NULL,
    category     text NOT NULL,
    first_shape  jsonb NOT NULL,   -- token texts of the line shape that created it
    tokens       jsonb NOT NULL,   -- [[text, variable, space_before], ...]: the template now
    merged_into  text REFERENCES fingerprint_templates (fingerprint),
    created      bigint NOT NULL,  -- creation order, the same in every process
    changed      bigint NOT NULL DEFAULT nextval('fingerprint_template_changes')
);

CREATE INDEX fingerprint_templates_changed_idx ON fingerprint_templates (changed);

-- every line shape placed so far, and the template it was placed in (follow merged_into)
CREATE TABLE fingerprint_shapes (
    service      text NOT NULL,
    category     text NOT NULL,
    shape        text NOT NULL,    -- sha256 of the shape's tokens
    fingerprint  text NOT NULL REFERENCES fingerprint_templates (fingerprint),
    PRIMARY KEY (service, category, shape)
);
