-- 001: the knowledge graph, the event store, the audit log and the registries.
-- {{embedding_dim}} is replaced by `aiops migrate` with the configured embedding dimension.

CREATE EXTENSION IF NOT EXISTS vector;

-- The seed's node and relationship types, exactly.
CREATE TYPE knowledge_node_type AS ENUM (
    'problem',
    'solution',
    'pattern',
    'insight',
    'tool'
);

CREATE TYPE knowledge_relationship AS ENUM (
    'solves',
    'causes',
    'requires',
    'similar_to',
    'evolves_into',
    'implements',
    'validates',
    'conflicts_with',
    'depends_on',
    'triggers',
    'leads_to',
    'mitigates',
    'collaborates'
);

CREATE TABLE knowledge_nodes (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    node_type   knowledge_node_type NOT NULL,
    -- problems: the fingerprinter's stable id; other types: a hash of their defining content
    fingerprint text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    embedding   vector({{embedding_dim}}),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT knowledge_nodes_type_fingerprint_key UNIQUE (node_type, fingerprint)
);

-- Embeddings are L2-normalised, so cosine distance is the natural metric.
CREATE INDEX knowledge_nodes_embedding_hnsw
    ON knowledge_nodes USING hnsw (embedding vector_cosine_ops);
CREATE INDEX knowledge_nodes_type_created_idx ON knowledge_nodes (node_type, created_at);

CREATE TABLE knowledge_edges (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    from_node    uuid NOT NULL REFERENCES knowledge_nodes (id) ON DELETE CASCADE,
    to_node      uuid NOT NULL REFERENCES knowledge_nodes (id) ON DELETE CASCADE,
    relationship knowledge_relationship NOT NULL,
    weight       double precision NOT NULL DEFAULT 1.0,
    data         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT knowledge_edges_triple_key UNIQUE (from_node, to_node, relationship),
    CONSTRAINT knowledge_edges_no_self_loop CHECK (from_node <> to_node)
);

-- The unique constraint serves outbound traversal; this one serves inbound.
CREATE INDEX knowledge_edges_to_idx ON knowledge_edges (to_node, relationship);

-- The event store: every valid event, once, whatever the listener's retries.
CREATE TABLE events (
    id              uuid PRIMARY KEY,
    ts              timestamptz NOT NULL,
    event_type      text NOT NULL,
    source          text NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    correlation_id  uuid,
    causation_id    uuid,
    service         text,
    severity        text,
    stream          text,
    stream_entry_id text,
    stored_at       timestamptz NOT NULL DEFAULT now()
);

-- Events arrive roughly in time order, so a BRIN index answers time ranges for a few
-- bytes per thousand rows, where a B-tree would cost ~40 bytes per event.
CREATE INDEX events_ts_brin ON events USING brin (ts);
CREATE INDEX events_correlation_idx ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_causation_idx ON events (causation_id) WHERE causation_id IS NOT NULL;

-- Append-only and hash-chained: hash = sha256(prev_hash || canonical row), so a changed or
-- deleted row breaks the chain that `aiops audit verify` walks.
CREATE TABLE audit_log (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text,
    decision    text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    workflow_id text,
    prev_hash   text NOT NULL,
    hash        text NOT NULL UNIQUE
);

CREATE INDEX audit_log_workflow_idx ON audit_log (workflow_id, seq) WHERE workflow_id IS NOT NULL;

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- The service registry: what aiops may act on, and how.
CREATE TABLE services (
    name            text PRIMARY KEY,
    endpoint        text NOT NULL,
    capabilities    text[] NOT NULL DEFAULT '{}',
    health_check    text,
    restart_argv    text[],
    admin_endpoints jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- encrypted with the key from settings; never stored or logged in clear
    credentials     bytea,
    critical        boolean NOT NULL DEFAULT false,
    owner           text,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    healthy         boolean,
    last_checked_at timestamptz,
    last_latency_ms double precision,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX services_capabilities_gin ON services USING gin (capabilities);

CREATE TABLE agents (
    id             text PRIMARY KEY,
    kind           text NOT NULL,
    capabilities   text[] NOT NULL DEFAULT '{}',
    health         text NOT NULL DEFAULT 'unknown',
    last_heartbeat timestamptz,
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb,
    registered_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX agents_capabilities_gin ON agents USING gin (capabilities);
