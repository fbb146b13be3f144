-- The fold is incremental (docs/architecture.md, "The worker's loops"): a participant's new events
-- make it derive that person only, a room event or a schedule change the whole session.
-- Folding after every webhook (incremental folds) leaves exactly the live rows and
-- connections that a whole derivation of every session gives, for the fixture's class and
-- for two back-to-back classes in one shared room with a linked breakout room, in two
-- delivery orders, with a calculation halfway (the rest are late webhooks, which flag it).
\set VERBOSITY terse
\set fx `cat test/fixtures/livekit/session-456.jsonl`
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE TEMP TABLE hooks AS
SELECT n, (l->>'body') AS body
FROM regexp_split_to_table(:'fx', E'\n') WITH ORDINALITY AS t(line, n), LATERAL (SELECT line::jsonb AS l) j
WHERE line <> '';
-- shared-room: A 10:00-11:00, B 11:00-12:00, breakout shared-room-b1 linked to A
INSERT INTO hooks (n, body)
SELECT 100 + k, jsonb_strip_nulls(jsonb_build_object(
         'event', ev, 'id', id, 'createdAt', extract(epoch FROM ('2025-11-20 ' || at_t || 'Z')::timestamptz)::bigint::text,
         'room', jsonb_build_object('name', room),
         'participant', CASE WHEN psid IS NOT NULL THEN jsonb_build_object(
             'sid', psid, 'identity', ident, 'name', ident,
             'joinedAtMs', (extract(epoch FROM ('2025-11-20 ' || joined_t || 'Z')::timestamptz) * 1000)::bigint::text,
             'disconnectReason', reason) END))::text
FROM (VALUES
  (1,  'participant_joined',             'EV_i70j',  'shared-room',    '09:55:00', 'PA_i70',  'user-70', '09:55:00', NULL),
  (2,  'participant_left',               'EV_i70l',  'shared-room',    '12:01:00', 'PA_i70',  'user-70', '09:55:00', 'CLIENT_INITIATED'),
  (3,  'participant_joined',             'EV_i71j',  'shared-room',    '10:20:00', 'PA_i71',  'user-71', '10:20:00', NULL),
  (4,  'participant_left',               'EV_i71l',  'shared-room',    '10:31:00', 'PA_i71',  'user-71', '10:20:00', 'CLIENT_INITIATED'),
  (5,  'participant_joined',             'EV_i71b',  'shared-room-b1', '10:31:05', 'PA_i71b', 'user-71', '10:31:05', NULL),
  (6,  'participant_left',               'EV_i71bl', 'shared-room-b1', '10:50:00', 'PA_i71b', 'user-71', '10:31:05', 'CLIENT_INITIATED'),
  (7,  'participant_joined',             'EV_i72j',  'shared-room',    '10:55:00', 'PA_i72',  'user-72', '10:55:00', NULL),
  (8,  'participant_left',               'EV_i72l',  'shared-room',    '12:00:00', 'PA_i72',  'user-72', '10:55:00', 'SIGNAL_CLOSE'),
  (9,  'participant_left',               'EV_i74l',  'shared-room',    '11:20:00', 'PA_i74',  'user-74', '10:30:00', 'CLIENT_INITIATED'),
  (10, 'participant_joined',             'EV_i75j',  'shared-room',    '11:30:00', 'PA_i75',  'user-75', '11:30:00', NULL),
  (11, 'room_finished',                  'EV_ifin',  'shared-room',    '12:05:00', NULL,      NULL,      NULL,       NULL),
  (12, 'participant_connection_aborted', 'EV_i77x',  'shared-room',    '10:50:00', 'PA_i77',  'user-77', '10:50:00', NULL),
  (13, 'participant_joined',             'EV_i78j',  'shared-room',    '10:00:00', 'PA_i78',  'user-78', '10:00:00', NULL),
  (14, 'participant_left',               'EV_i78l',  'shared-room',    '10:30:00', 'PA_i78',  'user-78', '10:00:00', 'SIGNAL_CLOSE'),
  (15, 'participant_joined',             'EV_i78j2', 'shared-room',    '10:30:10', 'PA_i78b', 'user-78', '10:30:10', NULL),
  (16, 'participant_joined',             'EV_i79j',  'shared-room-b1', '10:10:00', 'PA_i79',  'user-79', '10:10:00', NULL),
  -- delivered last, on their own (3.)
  (17, 'participant_joined',             'EV_i80j',  'shared-room',    '10:40:00', 'PA_i80',  'user-80', '10:40:00', NULL),
  (18, 'participant_left',               'EV_i80l',  'shared-room',    '10:44:00', 'PA_i80',  'user-80', '10:40:00', 'CLIENT_INITIATED'))
  v(k, ev, id, room, at_t, psid, ident, joined_t, reason);
SELECT count(*) AS webhooks FROM hooks;

CREATE TEMP TABLE snapshots (run text, what text, x text);
CREATE FUNCTION pg_temp.fresh() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DROP EXTENSION IF EXISTS attendance CASCADE;
    CREATE EXTENSION attendance;
    PERFORM attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123');
    PERFORM attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z');
    PERFORM attendance_expect(456, u, r) FROM (VALUES (7, 'teacher'), (12, 'student'), (19, 'student'),
        (23, 'student'), (31, 'student'), (40, 'student')) v(u, r);
    PERFORM attendance_schedule_session(7001, 'shared-room', '2025-11-20 10:00:00Z', '2025-11-20 11:00:00Z');
    PERFORM attendance_schedule_session(7002, 'shared-room', '2025-11-20 11:00:00Z', '2025-11-20 12:00:00Z');
    PERFORM attendance_expect(7001, 71);
    PERFORM attendance_expect(7002, 76);
    PERFORM attendance_link_room(7001, 'shared-room-b1');
    PERFORM attendance_fold();
END $$;
SELECT pg_temp.fresh();
-- Delivers the webhooks one at a time, folding after each; returns how many folds derived
-- a session.
CREATE FUNCTION pg_temp.deliver(ns bigint[]) RETURNS text LANGUAGE plpgsql AS $$
DECLARE b text; k bigint; folds int := 0;
BEGIN
    FOREACH k IN ARRAY ns LOOP
        SELECT body INTO b FROM hooks WHERE n = k;
        PERFORM attendance_ingest_webhook(b, attendance_sign_webhook(b, 'APIfixture'));
        IF (attendance_fold() ->> 'sessions')::int > 0 THEN folds := folds + 1; END IF;
    END LOOP;
    RETURN array_length(ns, 1) || ' delivered, ' || folds || ' folds derived';
END $$;
-- The live state: every connection and every row's live columns.
CREATE FUNCTION pg_temp.snap(run text, what text) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO snapshots
    SELECT run, what, 'C ' || (to_jsonb(c) - 'derived_at')::text FROM attendance_sessions c
    UNION ALL
    SELECT run, what, 'M ' || jsonb_build_object('s', m.session_id, 'k', m.user_key, 'id', m.user_id,
        'identity', m.participant_identity, 'name', m.participant_name, 'role', m.role,
        'first', m.first_join_time, 'last', m.last_leave_time, 'joins', m.join_count, 'leaves', m.leave_count,
        'cycles', m.join_leave_cycles, 'minutes', m.total_duration_minutes, 'calculated', m.is_calculated,
        'status', m.attendance_status)::text
    FROM meeting_attendances m;
    SELECT count(*) FROM snapshots s WHERE s.run = snap.run AND s.what = snap.what;
$$;
-- Every session derived whole, as a schedule change would have it.
CREATE FUNCTION pg_temp.whole() RETURNS int LANGUAGE sql AS $$
    UPDATE attendance_session_schedule SET needs_fold = true;
    SELECT (attendance_fold() ->> 'sessions')::int;
$$;
CREATE TEMP TABLE orders AS
SELECT array_agg(n ORDER BY n) AS in_order, array_agg(n ORDER BY md5(n::text)) AS shuffled FROM hooks
WHERE n < 117;

-- 1. in order
SELECT pg_temp.deliver(in_order) FROM orders;
SELECT pg_temp.snap('in order', 'incremental');
SELECT pg_temp.whole() AS derived_whole;
SELECT pg_temp.snap('in order', 'whole');
-- 2. shuffled, with a calculation of every session halfway: the rest are late webhooks
SELECT pg_temp.fresh();
SELECT pg_temp.deliver(shuffled[1:20]) FROM orders;
SELECT count(*) AS calculated_rows FROM attendance_calculate_sessions(ARRAY[456, 7001, 7002]::bigint[]);
SELECT pg_temp.deliver(shuffled[21:]) FROM orders;
SELECT session_id, needs_calculation, recalculation_cause FROM attendance_session_schedule ORDER BY 1;
SELECT pg_temp.snap('late', 'incremental');
SELECT pg_temp.whole() AS derived_whole;
SELECT pg_temp.snap('late', 'whole');

-- 3. A leave that comes after the sessions were calculated, and ends before B a connection
-- that B held open (80 joined A at 10:40; B was calculated with the connection open, closed
-- by room_finished at 12:05): B holds the connection, so the leave flags B (though no
-- window claims it) and the due calculation removes 80 from B.
SELECT count(*) > 0 AS calculated FROM attendance_calculate();
SELECT pg_temp.deliver(ARRAY[117]::bigint[]);
SELECT count(*) > 0 AS calculated FROM attendance_calculate_sessions(ARRAY[7001, 7002]::bigint[]);
SELECT session_id, user_key, attendance_status, total_duration_minutes FROM meeting_attendances
WHERE user_key = '80' ORDER BY 1;
SELECT pg_temp.deliver(ARRAY[118]::bigint[]);
SELECT session_id, needs_calculation, recalculation_cause FROM attendance_session_schedule ORDER BY 1;
-- (the leave counts for A only: B's flag comes from the connection B held)
SELECT _attendance_event_sessions(room_name, event_timestamp, joined_at, session_id, event_type, participant_sid)
FROM meeting_attendance_events WHERE event_id = 'EV_i80l';
SELECT count(*) > 0 AS calculated FROM attendance_calculate();
SELECT session_id, user_key, attendance_status, total_duration_minutes FROM meeting_attendances
WHERE user_key = '80' ORDER BY 1;
SELECT session_id, cause, user_key, old_status, new_status FROM attendance_status_changes
WHERE user_key = '80' ORDER BY changed_at, session_id;
SELECT pg_temp.snap('late leave', 'incremental');
SELECT pg_temp.whole() AS derived_whole;
SELECT pg_temp.snap('late leave', 'whole');


-- 4. A class under way: reconciliation derives again the persons with an open connection
-- only (the others keep their rows), as a whole derivation would have them.
SELECT (attendance_schedule_session(7003, 'live-room', date_trunc('minute', now()) - interval '10 minutes',
                                    date_trunc('minute', now()) + interval '50 minutes')).session_id;
SELECT count(*) AS delivered FROM (VALUES ('90', 'participant_joined', 0), ('91', 'participant_joined', 1),
                                          ('91', 'participant_left', 2)) v(u, ev, k),
  LATERAL (SELECT json_build_object('event', ev, 'id', 'EV_live_' || u || '_' || k,
             'createdAt', (extract(epoch FROM now())::bigint - 300 + k)::text, 'room', json_build_object('name', 'live-room'),
             'participant', json_build_object('sid', 'PA_live_' || u, 'identity', 'user-' || u,
                                              'joinedAtMs', ((extract(epoch FROM now())::bigint - 300) * 1000)::text))::text AS body) b,
  LATERAL attendance_ingest_webhook(b.body, attendance_sign_webhook(b.body, 'APIfixture')) r;
SELECT attendance_fold() ->> 'sessions' AS folded;
SELECT attendance_reconcile() IS NOT NULL AS reconciled;
SELECT user_key, end_reason, leave_time IS NULL AS open FROM attendance_sessions WHERE session_id = 7003 ORDER BY 1;
SELECT pg_temp.snap('under way', 'incremental');
SELECT pg_temp.whole() AS derived_whole;
SELECT pg_temp.snap('under way', 'whole');

-- No difference between the incremental and the whole derivation, in any run.
SELECT run, what, count(*) AS lines FROM snapshots GROUP BY 1, 2 ORDER BY 1, 2;
(SELECT run, x FROM snapshots WHERE what = 'incremental' EXCEPT SELECT run, x FROM snapshots WHERE what = 'whole')
UNION ALL
(SELECT run, x FROM snapshots WHERE what = 'whole' EXCEPT SELECT run, x FROM snapshots WHERE what = 'incremental');
-- The incremental folds derived persons: a row for everyone the whole derivation has, with
-- the breakout time of 71 in A and the aborted attempt of 77 among A's connections.
SELECT session_id, user_key, join_count, leave_count, total_duration_minutes, is_calculated
FROM meeting_attendances WHERE session_id IN (7001, 7002) ORDER BY 1, 2;
SELECT session_id, room_name, participant_sid, end_reason FROM attendance_sessions
WHERE user_key IN ('71', '77') ORDER BY 1, 2, 3;
DROP EXTENSION attendance CASCADE;
