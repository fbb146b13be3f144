-- What the receiver (attendance-proxy) may read and do with its ingest-only role
-- (issue 21): the active key names, never a secret, and a write probe that says whether
-- the database accepts writes now (docs/proxy.md; docs/operations.md, "Disk full").
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
DROP EXTENSION IF EXISTS attendance CASCADE;
DROP ROLE IF EXISTS receiver_login;
DROP ROLE IF EXISTS receiver_stranger;
CREATE EXTENSION attendance;
RESET client_min_messages;
CREATE ROLE receiver_login LOGIN IN ROLE attendance_ingest;
CREATE ROLE receiver_stranger LOGIN;
SELECT attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123');
SELECT attendance_add_webhook_key('APIretired', 'retired-secret-0123456789abcdef');
SELECT attendance_retire_webhook_key('APIretired', now() - interval '1 second');
SELECT attendance_add_webhook_key('APIlater', 'later-secret-0123456789abcdef');
SELECT attendance_retire_webhook_key('APIlater', 'infinity');

-- the ingest role: the active names (a key retired at +infinity is active), and nothing
-- of the secrets or of the table itself
SET ROLE receiver_login;
SELECT * FROM attendance_webhook_key_names();
SELECT count(*) FROM attendance_webhook_keys;
SELECT attendance_write_probe();
-- the probe leaves nothing behind: no table in the session's temporary schema
SELECT count(*) AS temporary_tables FROM pg_class WHERE relpersistence = 't';
-- a read-only transaction refuses writes, and the probe says so with the SQLSTATE
-- the proxy maps to "database refuses writes"
\set VERBOSITY sqlstate
BEGIN READ ONLY;
SELECT attendance_write_probe();
ROLLBACK;
\set VERBOSITY terse
-- a hostile search_path changes nothing: both functions pin theirs
RESET ROLE;
CREATE SCHEMA receiver_hostile;
CREATE TABLE receiver_hostile.attendance_webhook_keys (api_key text, retired_at timestamptz);
INSERT INTO receiver_hostile.attendance_webhook_keys VALUES ('APIplanted', NULL);
GRANT USAGE ON SCHEMA receiver_hostile TO PUBLIC;
GRANT SELECT ON receiver_hostile.attendance_webhook_keys TO PUBLIC;
SET ROLE receiver_login;
SET search_path = receiver_hostile, public;
SELECT * FROM public.attendance_webhook_key_names();
RESET search_path;
RESET ROLE;

-- any other role may run neither
SET ROLE receiver_stranger;
SELECT * FROM attendance_webhook_key_names();
SELECT attendance_write_probe();
RESET ROLE;

SET client_min_messages = warning;
DROP SCHEMA receiver_hostile CASCADE;
DROP ROLE receiver_login;
DROP ROLE receiver_stranger;
