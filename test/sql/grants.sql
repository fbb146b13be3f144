-- Grants (docs/security.md, "A curious database user"): every function of the extension,
-- read from the catalog, so that a function added later is checked without naming it.
-- Nothing is executable by PUBLIC; every function granted to a role other than the owner
-- pins its search_path; the rule functions that PostgreSQL inlines (no SET clause) are the
-- owner's only and are reached through pinned functions that run as the owner.
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
DROP EXTENSION IF EXISTS attendance CASCADE;
CREATE EXTENSION attendance;
RESET client_min_messages;
\i test/sql/grants.psql
SELECT count(*) > 40 AS many_functions FROM ext_functions;
-- what other roles may run, and which of those run as the owner (the whole matrix: a new
-- grant shows here)
SELECT fn, grantee, prosecdef AS runs_as_owner FROM ext_grants ORDER BY grantee, fn;
-- the functions without a pinned search_path: the owner's only (the inlined rules, and C
-- functions that run no SQL) ...
SELECT f.fn AS not_pinned, f.proconfig, (SELECT count(*) FROM ext_grants g WHERE g.fn = f.fn) AS grants
FROM ext_functions f WHERE NOT f.pinned ORDER BY 1;
-- ... and the rules are still inlined into the extension's own queries (a SQL function
-- with a SET clause or SECURITY DEFINER would be called instead): the plan scans the log
SELECT p.proname, l.lanname, p.prosecdef, p.proconfig
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.proname IN ('_attendance_match', '_attendance_session_events', '_attendance_unseen_by') ORDER BY 1;
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    plan text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF, VERBOSE) ' || q LOOP
        plan := plan || line || E'\n';
    END LOOP;
    RETURN plan;
END $$;
-- (inlined: no Function Scan on the rule itself; the rule may scan unnest() inside; the log
-- is read by its reader, _attendance_room_events, never by a rule: 0.5.2)
SELECT plan !~ 'Function Scan on [a-z_.]*_attendance_session_events' AS inlined,
       plan ~ 'Function Scan on [a-z_.]*_attendance_room_events' AND plan !~ 'meeting_attendance_events' AS reads_through_the_reader,
       plan ~ '_attendance_unseen_by|_attendance_match' AS calls_a_rule
FROM pg_temp.plan_of('SELECT * FROM _attendance_session_events(ARRAY[1]::bigint[])') plan;
-- no table, view or sequence is granted to PUBLIC either
SELECT c.relname AS relation_granted_to_public FROM pg_class c
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'attendance')
  AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0) ORDER BY 1;
-- the log is immutable by privileges too: only the owner may change it (on a Citus
-- cluster the privileges alone keep it so: docs/security.md)
SELECT r AS role, has_table_privilege(r, 'meeting_attendance_events', 'UPDATE') AS may_update,
       has_table_privilege(r, 'meeting_attendance_events', 'DELETE') AS may_delete,
       has_table_privilege(r, 'meeting_attendance_events', 'TRUNCATE') AS may_truncate
FROM (VALUES ('attendance_ingest'), ('attendance_reader')) v(r) ORDER BY 1;

-- Under a hostile search_path (a schema the caller controls before pg_catalog), a
-- reader cannot call an inlined rule directly, and reaches the rule through the pinned
-- functions without running a planted operator.
CREATE SCHEMA hostile;
CREATE TABLE hostile.calls (what text);
GRANT USAGE ON SCHEMA hostile TO PUBLIC;
GRANT INSERT ON hostile.calls TO PUBLIC;
CREATE FUNCTION hostile.texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO hostile.calls VALUES ('=(text,text)'); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.texteq);
CREATE FUNCTION hostile.int8eq(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO hostile.calls VALUES ('=(bigint,bigint)'); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR hostile.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.int8eq);
SELECT attendance_add_webhook_key('APIgrants', 'grants-secret-0123456789abcdef0123');
SELECT (attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z')).session_id;
SELECT (attendance_expect(456, 12)).user_id;
-- a join of user 12 to session 456, and one in a room no session claims
SELECT r->>'result' AS result
FROM (VALUES ('{"event":"participant_joined","id":"EV_g1","createdAt":"1763130600","room":{"name":"session-456"},"participant":{"sid":"PA_g1","identity":"user-12","joinedAtMs":"1763130600000"}}'),
             ('{"event":"participant_joined","id":"EV_g2","createdAt":"1763130600","room":{"name":"nobody-s-room"},"participant":{"sid":"PA_g2","identity":"user-13","joinedAtMs":"1763130600000"}}')) v(b),
     attendance_ingest_webhook(b, attendance_sign_webhook(b, 'APIgrants')) r;
SELECT count(*) AS persons FROM attendance_calculate(456);
CREATE ROLE att_grants_reader LOGIN IN ROLE attendance_reader;
CREATE ROLE att_grants_proxy LOGIN IN ROLE attendance_ingest;
CREATE ROLE att_grants_nobody LOGIN;
SET ROLE att_grants_reader;
SET search_path = hostile, public, pg_catalog;
-- control: the planted operator is live for this role's own SQL (one call, listed below)
SELECT 'a' = 'a' AS control;
SELECT _attendance_match('session-456', '2025-11-14 14:40:00Z', NULL);
SELECT * FROM _attendance_session_events(ARRAY[456]::bigint[]);
SELECT _attendance_unseen_by('1'::xid8, NULL);
SELECT _attendance_event_session('session-456', '2025-11-14 14:40:00Z', NULL) AS session;
SELECT attendance_explain(456, 12)->>'status' AS status;
SELECT count(*) AS due FROM attendance_sessions_due;
SELECT count(*) AS unmatched FROM attendance_unmatched_events;
SELECT count(*) AS recent FROM attendance_recent_events;
SELECT count(*) AS partitions FROM attendance_log_partitions;
RESET search_path;
RESET ROLE;
-- the control's call only
SELECT what, count(*) AS hostile_calls FROM hostile.calls GROUP BY what;
-- every view of the extension is readable by the reader
SET ROLE att_grants_reader;
DO $$
DECLARE
    v regclass;
    n bigint;
BEGIN
    FOR v IN SELECT c.oid FROM pg_class c
             JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
             WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'attendance') AND c.relkind = 'v'
             ORDER BY c.relname LOOP
        EXECUTE format('SELECT count(*) FROM %s', v) INTO n;
        RAISE NOTICE 'reader reads %', v;
    END LOOP;
END;
$$;
RESET ROLE;
-- the proxy's role and a role with no grants run nothing but what they were given
SET ROLE att_grants_proxy;
SELECT _attendance_calculation_delay();
SELECT _attendance_event_session('session-456', '2025-11-14 14:40:00Z', NULL);
SELECT attendance_explain(456, 12);
RESET ROLE;
SET ROLE att_grants_nobody;
SELECT _attendance_calculation_delay();
SELECT _attendance_tally(ARRAY['present']);
RESET ROLE;

SET client_min_messages = warning;
DROP EXTENSION attendance CASCADE;
DROP SCHEMA hostile CASCADE;
DROP ROLE att_grants_reader, att_grants_proxy, att_grants_nobody;
