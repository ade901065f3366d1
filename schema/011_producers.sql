-- 011: event producers and the services each may speak for.
-- One row per producer; its Redis ACL user producer-<name> may XADD only to its stream
-- (events:<name>), and the listener dead-letters an event on that stream naming a service
-- that is not in `services`. The Redis password is never stored here.
CREATE TABLE producers (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    services    text[] NOT NULL CHECK (cardinality(services) > 0),
    stream      text UNIQUE NOT NULL CHECK (stream = 'events:' || name),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
