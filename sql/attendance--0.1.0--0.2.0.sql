-- attendance 0.1.0 -> 0.2.0: batched calculation (attendance_calculate_sessions); the
-- live-row refresh runs in C++; webhook keys are cached per backend.
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.2.0'" to load this file. \quit

-- The live row of a person is rebuilt from their connections by one statement kept in the
-- library, where ingestion runs it as a prepared plan; this function is its SQL entry for
-- attendance_schedule_session. Same signature and result as the PL/pgSQL version it replaces.
CREATE OR REPLACE FUNCTION @extschema@._attendance_refresh_live(p_session bigint, p_user_key text)
RETURNS void
AS 'MODULE_PATHNAME', 'attendance_refresh_live'
LANGUAGE C VOLATILE STRICT SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@._attendance_refresh_live(bigint, text) FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.attendance_calculate() IS
  'Calculate every due session (what the background worker runs), attendance.calculation_batch_size sessions at a time; a batch that fails is retried one session at a time, each in its own subtransaction.';

CREATE FUNCTION @extschema@.attendance_calculate_sessions(session_ids bigint[], OUT processed integer, OUT failed integer)
RETURNS record
AS 'MODULE_PATHNAME', 'attendance_calculate_list'
LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attendance_calculate_sessions(bigint[]) IS
  'Calculate these sessions now (e.g. a day''s classes), in batches like the scheduler; a failing session is recorded and the others are stored. 42704 if any is not scheduled.';
REVOKE ALL ON FUNCTION @extschema@.attendance_calculate_sessions(bigint[]) FROM PUBLIC;

-- Each backend keeps a copy of the webhook keys; these triggers make every backend drop it
-- when the keys change (at once in the changing transaction, at commit for the others).
-- Per row, because logical replication's apply fires row triggers only, plus one for
-- TRUNCATE; ENABLE ALWAYS, so that they fire under session_replication_role = replica
-- (that apply, pg_restore's data load) as well.
CREATE FUNCTION @extschema@._attendance_keys_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'attendance_keys_changed'
LANGUAGE C SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@._attendance_keys_changed() FROM PUBLIC;
CREATE TRIGGER attendance_webhook_keys_changed
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.attendance_webhook_keys
    FOR EACH ROW EXECUTE FUNCTION @extschema@._attendance_keys_changed();
CREATE TRIGGER attendance_webhook_keys_truncated
    AFTER TRUNCATE ON @extschema@.attendance_webhook_keys
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._attendance_keys_changed();
ALTER TABLE @extschema@.attendance_webhook_keys ENABLE ALWAYS TRIGGER attendance_webhook_keys_changed;
ALTER TABLE @extschema@.attendance_webhook_keys ENABLE ALWAYS TRIGGER attendance_webhook_keys_truncated;
