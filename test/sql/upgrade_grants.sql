-- 0.5.2 reads the log through new functions (docs/architecture.md, "The log's readers"):
-- a role that could calculate with its caller's rights before the update still can after
-- it. The update grants each reader to whoever may call the rule it serves. So does 0.5.3 for
-- what the flag asks.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS attendance CASCADE;
DROP ROLE IF EXISTS regress_calculator;
CREATE EXTENSION attendance VERSION '0.5.1';
RESET client_min_messages;
CREATE ROLE regress_calculator NOLOGIN IN ROLE attendance_reader;
-- (and the role that schedules: its changes flag calculated sessions with its rights)
CREATE ROLE regress_scheduler NOLOGIN;
GRANT EXECUTE ON FUNCTION _attendance_flag(bigint[], text, bigint[]), _attendance_wake_worker() TO regress_scheduler;
GRANT SELECT, UPDATE ON attendance_session_schedule TO regress_scheduler;
-- (what examples/roles.sql of 0.5.1 granted the role that calculates)
GRANT EXECUTE ON FUNCTION _attendance_session_events(bigint[], text[]), _attendance_session_rooms(bigint[]),
    _attendance_unseen_by(xid8, pg_snapshot),
    _attendance_claims(text, timestamptz, timestamptz, bigint, text, text),
    _attendance_holds(text, timestamptz, text, text),
    _attendance_room_sessions(text, bigint), _attendance_parent_room(text),
    _attendance_setting_interval(text, interval) TO regress_calculator;
SET client_min_messages = warning;
ALTER EXTENSION attendance UPDATE TO '0.5.2';
RESET client_min_messages;
SELECT f, has_function_privilege('regress_calculator', f, 'EXECUTE') AS calculator,
       has_function_privilege('public', f, 'EXECUTE') AS public
FROM pg_catalog.unnest(ARRAY['_attendance_room_events(bigint[], text[])',
                  '_attendance_left_between(text, text, timestamptz, timestamptz)',
                  '_attendance_new_events(bigint, bigint)',
                  'attendance_distribute(integer)']) f ORDER BY 1;
-- the same role calculates a session after the update
SELECT attendance_add_webhook_key('APIgrants', 'grants-secret-0123456789abcdef0123');
SELECT (attendance_schedule_session(901, 'room-901', '2025-11-20 09:00Z', '2025-11-20 10:00Z')).session_id;
SELECT attendance_ingest_webhook(b, attendance_sign_webhook(b, 'APIgrants'))->>'result'
FROM (VALUES ('{"event":"participant_joined","id":"EV_g1","createdAt":"1763629200","room":{"name":"room-901"},'
              '"participant":{"sid":"PA_g1","identity":"user-1","joinedAtMs":"1763629200000"}}')) v(b);
SET ROLE regress_calculator;
SELECT session_id, event_id, room_name, unseen FROM _attendance_session_events(ARRAY[901]::bigint[]);
RESET ROLE;
-- 0.5.3: the flag asks _attendance_prevailing_cause; whoever may flag may ask it
SET client_min_messages = warning;
ALTER EXTENSION attendance UPDATE TO '0.5.3';
RESET client_min_messages;
SELECT f, has_function_privilege('regress_scheduler', f, 'EXECUTE') AS scheduler,
       has_function_privilege('public', f, 'EXECUTE') AS public
FROM pg_catalog.unnest(ARRAY['_attendance_prevailing_cause(text, text)',
                  '_attendance_session_reach(timestamptz, timestamptz)']) f ORDER BY 1;
UPDATE attendance_session_schedule SET calculated_at = now(), needs_calculation = false WHERE session_id = 901;
SET ROLE regress_scheduler;
SELECT _attendance_flag(ARRAY[901]::bigint[], 'roster change') AS flagged;
RESET ROLE;
SELECT needs_calculation, recalculation_cause FROM attendance_session_schedule WHERE session_id = 901;
SET client_min_messages = warning;
DROP EXTENSION attendance CASCADE;
DROP OWNED BY regress_calculator;
DROP ROLE regress_calculator;
DROP OWNED BY regress_scheduler;
DROP ROLE regress_scheduler;
CREATE EXTENSION attendance;
RESET client_min_messages;
