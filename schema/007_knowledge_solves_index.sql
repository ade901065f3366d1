-- 007: the problems that have a solution, found without scanning every edge.
-- Diagnosis searches only problems some solution `solves`; when they are few, an exact
-- search over them beats an HNSW scan that filters out nearly everything it visits.
CREATE INDEX knowledge_edges_solves_idx ON knowledge_edges (to_node) WHERE relationship = 'solves';
