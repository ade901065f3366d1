-- 019: retrieval on long text. BM25 over a field-aware vector, and embeddings of the
-- windows of a long description beyond what the node's own embedding covers.
--
-- The BM25 vector labels each position with its field: A for the title, B for the body
-- (description, template, error patterns), C for the words inside compound tokens that the
-- parser keeps whole and no field has on its own ("leo" of dict.leo.org, "sync" of
-- File->Offline->Sync): a host, path or URL shares its parts with its variants. Term frequencies, the document length and the
-- field weights are computed from it at query time (aiops/knowledge/bm25.py), so changing
-- a weight needs no rewrite. English configuration only: stems match "crashes" to
-- "crash", and numbers, hosts, paths and versions are kept whole by its parser.
CREATE FUNCTION aiops_bm25_vector(data jsonb) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT whole || setweight(ts_delete(pieces, tsvector_to_array(whole)), 'C')
    FROM (
        SELECT setweight(to_tsvector('english'::regconfig, title), 'A')
                   || setweight(to_tsvector('english'::regconfig, body), 'B') AS whole,
               to_tsvector('english'::regconfig,
                   regexp_replace(title || ' ' || body, '[[:punct:]]+', ' ', 'g')) AS pieces
        FROM (
            SELECT coalesce(data->>'title', '') AS title,
                   concat_ws(' ', data->>'description', data->>'template',
                             data->>'error_patterns') AS body
        ) fields
    ) vectors
$$;

-- A query's terms are those of a document with the query as its body.
CREATE FUNCTION aiops_bm25_query(query text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT aiops_bm25_vector(jsonb_build_object('description', query))
$$;

-- The number of token positions: BM25's document length.
CREATE FUNCTION aiops_bm25_length(v tsvector) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(sum(cardinality(u.positions)), 0)::integer FROM unnest(v) u
$$;

ALTER TABLE knowledge_nodes
    ADD COLUMN bm25_text tsvector GENERATED ALWAYS AS (aiops_bm25_vector(data)) STORED,
    ADD COLUMN bm25_length integer
        GENERATED ALWAYS AS (aiops_bm25_length(aiops_bm25_vector(data))) STORED;

CREATE INDEX knowledge_nodes_bm25_gin ON knowledge_nodes USING gin (bm25_text)
    WHERE node_type = 'problem';

-- Windows of a problem's long description, each embedded on its own: search takes the best
-- window (max over chunks), so a duplicate whose matching part sits past the model's input
-- length is still found. Short problems have no chunk: their node embedding covers them.
CREATE TABLE knowledge_chunks (
    node_id   uuid NOT NULL REFERENCES knowledge_nodes (id) ON DELETE CASCADE,
    ord       integer NOT NULL,
    embedding vector({{embedding_dim}}) NOT NULL,
    PRIMARY KEY (node_id, ord)
);

CREATE INDEX knowledge_chunks_embedding_hnsw
    ON knowledge_chunks USING hnsw (embedding vector_cosine_ops);
