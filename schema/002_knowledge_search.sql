-- 002: full-text search over problems, beside the pgvector kNN (hybrid retrieval).
-- Identifiers such as ECONNREFUSED or pg_hba.conf are what embeddings blur; the 'simple'
-- configuration keeps them whole, the 'english' one matches "timeouts" to "timeout".
ALTER TABLE knowledge_nodes ADD COLUMN search_text tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(data->>'description', '')), 'A')
    || setweight(to_tsvector('english', coalesce(data->>'template', '')), 'B')
    || setweight(to_tsvector('simple', coalesce(data->>'error_patterns', '')), 'B')
    || setweight(to_tsvector('simple', coalesce(data->>'description', '')), 'C')
) STORED;

CREATE INDEX knowledge_nodes_search_gin ON knowledge_nodes USING gin (search_text);
