-- 025: once the audit chain is keyed, the table refuses unkeyed rows.
--
-- A process still running code from before 016 inserts rows without naming mac_alg, so
-- they read as plain SHA-256 rows after keyed ones: a forgery to `aiops audit verify`,
-- which no later row can repair. During an upgrade such a writer now fails loudly instead
-- (stop writers before `aiops migrate`, or restart them after it). Rows written before
-- the first keyed row are the legacy prefix and stay allowed.
CREATE OR REPLACE FUNCTION audit_log_keyed_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.mac_alg <> 'hmac-sha256'
       AND EXISTS (SELECT 1 FROM audit_log WHERE mac_alg = 'hmac-sha256') THEN
        RAISE EXCEPTION 'audit_log: unkeyed row refused after keyed rows (an aiops process '
                        'older than migration 016 is still writing: restart it)';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER audit_log_keyed_only
    BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_keyed_only();
