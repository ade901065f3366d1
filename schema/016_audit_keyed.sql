-- 016: the audit log's keyed chain, and who may change the table.
--
-- Rows written from now on carry an HMAC-SHA256 under a key PostgreSQL never sees
-- (mac_alg = 'hmac-sha256'); the rows already here keep their SHA-256 hashes and verify
-- as a legacy prefix. The default is the legacy value, so a row inserted by hand without
-- naming it reads as an unkeyed row after keyed ones: a forgery `aiops audit verify` names.
ALTER TABLE audit_log
    ADD COLUMN mac_alg text NOT NULL DEFAULT 'sha256'
    CHECK (mac_alg IN ('sha256', 'hmac-sha256'));

-- Triggers refuse UPDATE, DELETE and TRUNCATE whoever asks (001 made them; recreated here
-- so a database whose triggers were dropped gets them back on the next migrate). Only the
-- table's owner can disable or drop them: production runs the services as another role.
CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE OR REPLACE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE OR REPLACE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON audit_log FROM PUBLIC;

-- The privileges of the services' role in production: everything the worker, listener and
-- API need on every table, but only SELECT and INSERT on the audit log, and no ownership
-- (so no ALTER TABLE ... DISABLE TRIGGER, no DROP TRIGGER). Run by the owner after
-- `aiops migrate`:  SELECT aiops_grant_app_role('aiops_app');
-- Tables added by later migrations get the same grants through the default privileges.
CREATE OR REPLACE FUNCTION aiops_grant_app_role(app_role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I',
                   app_role);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO %I',
                   app_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public'
                   ' GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', app_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public'
                   ' GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO %I', app_role);
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON audit_log FROM %I',
                   app_role);
END;
$$;

-- the newest row of one kind (the policy last recorded in force at a worker's start)
CREATE INDEX audit_log_action_idx ON audit_log (action, seq);
