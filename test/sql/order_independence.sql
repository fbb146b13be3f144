-- One class's webhooks in seven delivery orders give identical attendance rows: in order,
-- shuffled, reversed, all before the session is scheduled, scheduled halfway, with a first
-- calculation halfway (the rest are late webhooks), and every webhook delivered twice,
-- interleaved. The class is the fixture's plus the awkward cases: a join, an abort and a
-- leave for one connection, two leaves for one connection, a lost join, an abort logged
-- before its own join.
-- Then a shared room: two back-to-back classes in one room, with a connection across the
-- boundary and an early joiner, in the same orders, compared as the scheduler leaves the
-- rows and after a recalculation, and against rows computed by hand.
\set VERBOSITY terse
\set fx `cat test/fixtures/livekit/session-456.jsonl`
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
CREATE TEMP TABLE class AS
SELECT n, (l->>'body') AS body
FROM regexp_split_to_table(:'fx', E'\n') WITH ORDINALITY AS t(line, n), LATERAL (SELECT line::jsonb AS l) j
WHERE line <> '';
INSERT INTO class (n, body)
SELECT 100 + k, format('{"event":"%s","id":"%s","createdAt":"%s","room":{"name":"session-456","sid":"RM_9riR8rKUGCas"},'
                       '"participant":{"sid":"%s","identity":"%s","name":"%s","joinedAtMs":"%s"}}',
                       ev, id, created, sid, ident, ident, joined)
FROM (VALUES
  (1, 'participant_joined',             'EV_x31j',  1763130900, 'PA_31a', 'user-31', 1763130900000),
  (2, 'participant_connection_aborted', 'EV_x31x',  1763130905, 'PA_31a', 'user-31', 1763130900000),
  (3, 'participant_left',               'EV_x31l',  1763132400, 'PA_31a', 'user-31', 1763130900000),
  (4, 'participant_joined',             'EV_x31j2', 1763132460, 'PA_31b', 'user-31', 1763132460000),
  (5, 'participant_left',               'EV_x31l2', 1763132700, 'PA_31b', 'user-31', 1763132460000),
  (6, 'participant_left',               'EV_x31l3', 1763133000, 'PA_31b', 'user-31', 1763132460000),
  (7, 'participant_left',               'EV_x50l',  1763132100, 'PA_50a', 'user-50', 1763131200000),
  (8, 'participant_connection_aborted', 'EV_x50x',  1763132165, 'PA_50b', 'user-50', 1763132160000),
  (9, 'participant_joined',             'EV_x50j',  1763132160, 'PA_50b', 'user-50', 1763132160000),
  (10, 'participant_left',              'EV_x50l2', 1763132520, 'PA_50b', 'user-50', 1763132160000))
  v(k, ev, id, created, sid, ident, joined);
SELECT count(*) AS webhooks, count(DISTINCT body) AS distinct_bodies FROM class;

CREATE TEMP TABLE results (run text, user_key text, role text, attendance_status text, status_rule text,
  attendance_percentage numeric, presence_ms bigint, total_duration_minutes int, first_join_time timestamptz,
  last_leave_time timestamptz, join_count int, leave_count int, join_leave_cycles jsonb);
CREATE FUNCTION pg_temp.deliver(ns bigint[]) RETURNS text LANGUAGE plpgsql AS $$
DECLARE b text; k bigint; ok int := 0; bad text := '';
BEGIN
    FOREACH k IN ARRAY ns LOOP
        SELECT body INTO b FROM class WHERE n = k;
        BEGIN
            PERFORM attendance_ingest_webhook(b, attendance_sign_webhook(b, 'APIfixture'));
            ok := ok + 1;
        EXCEPTION WHEN OTHERS THEN bad := bad || k || ': ' || SQLERRM || '; ';
        END;
    END LOOP;
    RETURN ok || ' delivered' || CASE WHEN bad <> '' THEN ', failed: ' || bad ELSE '' END;
END $$;
CREATE FUNCTION pg_temp.fresh() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DROP EXTENSION IF EXISTS attendance CASCADE;
    CREATE EXTENSION attendance;
    PERFORM attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123');
END $$;
-- the extension exists before the functions below that call it are created (the suite
-- then runs on its own too)
SELECT pg_temp.fresh();
CREATE FUNCTION pg_temp.schedule() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z');
    PERFORM attendance_expect(456, u, r) FROM (VALUES (7, 'teacher'), (12, 'student'), (19, 'student'),
        (23, 'student'), (31, 'student'), (40, 'student')) v(u, r);
END $$;
CREATE FUNCTION pg_temp.keep(run text) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO results SELECT run, user_key, role, attendance_status, status_rule, attendance_percentage, presence_ms,
        total_duration_minutes, first_join_time, last_leave_time, join_count, leave_count, join_leave_cycles
    FROM attendance_calculate(456);
    SELECT count(*) FROM results WHERE results.run = keep.run;
$$;
CREATE TEMP TABLE orders AS
SELECT array_agg(n ORDER BY n) AS in_order, array_agg(n ORDER BY md5(n::text)) AS shuffled,
       array_agg(n ORDER BY n DESC) AS reversed FROM class;

-- 1. in order, scheduled first (the reference)
SELECT pg_temp.fresh(); SELECT pg_temp.schedule();
SELECT pg_temp.deliver(in_order) FROM orders;
SELECT pg_temp.keep('in order');
-- 2. shuffled
SELECT pg_temp.fresh(); SELECT pg_temp.schedule();
SELECT pg_temp.deliver(shuffled) FROM orders;
SELECT pg_temp.keep('shuffled');
-- 3. reversed: every leave before its join
SELECT pg_temp.fresh(); SELECT pg_temp.schedule();
SELECT pg_temp.deliver(reversed) FROM orders;
SELECT pg_temp.keep('reversed');
-- 4. every webhook before the session is scheduled (the room_finished included)
SELECT pg_temp.fresh();
SELECT pg_temp.deliver(shuffled) FROM orders;
SELECT attendance_fold() ->> 'events' AS folded_before_scheduling;
SELECT pg_temp.schedule();
SELECT pg_temp.keep('all before scheduling');
-- 5. scheduled halfway
SELECT pg_temp.fresh();
SELECT pg_temp.deliver(shuffled[1:12]) FROM orders;
SELECT pg_temp.schedule();
SELECT pg_temp.deliver(shuffled[13:]) FROM orders;
SELECT pg_temp.keep('scheduled halfway');
-- 6. a first calculation halfway: the rest are late webhooks, found by the fold and
-- calculated by the due run, audited as such
SELECT pg_temp.fresh(); SELECT pg_temp.schedule();
SELECT pg_temp.deliver(shuffled[1:12]) FROM orders;
SELECT count(*) AS first_calculation FROM attendance_calculate(456);
SELECT pg_temp.deliver(shuffled[13:]) FROM orders;
SELECT * FROM attendance_calculate();
SELECT DISTINCT cause FROM attendance_status_changes;
SELECT needs_calculation FROM attendance_session_schedule;
SELECT pg_temp.keep('after a first calculation');
-- 7. every webhook twice, the copies interleaved
SELECT pg_temp.fresh(); SELECT pg_temp.schedule();
SELECT pg_temp.deliver(shuffled || reversed) FROM orders;
SELECT count(*) AS logged FROM meeting_attendance_events;
SELECT pg_temp.keep('duplicates interleaved');

-- the reference, and every other order against it: no row differs
SELECT user_key, role, attendance_status, status_rule, attendance_percentage, presence_ms, total_duration_minutes,
       first_join_time, last_leave_time, join_count, leave_count, jsonb_array_length(join_leave_cycles) AS cycles
FROM results WHERE run = 'in order' ORDER BY user_key;
SELECT o.run, count(*) AS rows,
       count(*) FILTER (WHERE NOT EXISTS (
         SELECT 1 FROM results r WHERE r.run = 'in order' AND r.user_key = o.user_key
           AND (r.role, r.attendance_status, r.status_rule, r.attendance_percentage, r.presence_ms,
                r.total_duration_minutes, r.first_join_time, r.last_leave_time, r.join_count, r.leave_count,
                r.join_leave_cycles)
           IS NOT DISTINCT FROM
               (o.role, o.attendance_status, o.status_rule, o.attendance_percentage, o.presence_ms,
                o.total_duration_minutes, o.first_join_time, o.last_leave_time, o.join_count, o.leave_count,
                o.join_leave_cycles))) AS differing
FROM results o GROUP BY o.run ORDER BY min(ctid);
-- the awkward connections, as derived
SELECT c->>'participant_sid' AS sid, c->>'joined_at' AS joined_at, c->>'left_at' AS left_at, c->>'end' AS end_reason
FROM results r, jsonb_array_elements(r.join_leave_cycles) c
WHERE r.run = 'in order' AND r.user_key IN ('31', '50') ORDER BY 1;

-- ==== A shared room: two back-to-back classes, in every order ====
-- shared-room, 20 November 2025: class A 10:00-11:00 (7001, roster 71 and 73) and class B
-- 11:00-12:00 (7002, roster 72, 73 and 76). 70 is on one connection through both; 71 is in
-- A only, 10:20-10:31; 72 joins B 5 min early (10:55); 73 is in each class on its own
-- connection; 74's join is lost (its leave at 11:20 says it joined at 10:30: a connection
-- across the boundary); 75 joins B at 11:30 and its leave never comes (room_finished at
-- 12:05 closes it); 77's connection was aborted; 78 drops at 10:30 (SIGNAL_CLOSE) and is
-- back 10 s later until 11:30; 71's leave is delivered twice.
CREATE TEMP TABLE shared AS
SELECT k AS n, jsonb_strip_nulls(jsonb_build_object(
         'event', ev, 'id', id, 'createdAt', extract(epoch FROM at)::bigint::text,
         'room', jsonb_build_object('name', 'shared-room', 'sid', 'RM_shared1'),
         'participant', CASE WHEN psid IS NOT NULL THEN jsonb_build_object(
             'sid', psid, 'identity', ident, 'name', ident, 'joinedAtMs', (extract(epoch FROM joined) * 1000)::bigint::text,
             'disconnectReason', reason) END))::text AS body
FROM (VALUES
  (1,  'participant_joined',             'EV_s70j',  '09:55:00', 'PA_s70',  'user-70', '09:55:00', NULL),
  (2,  'participant_left',               'EV_s70l',  '12:01:00', 'PA_s70',  'user-70', '09:55:00', 'CLIENT_INITIATED'),
  (3,  'participant_joined',             'EV_s71j',  '10:20:00', 'PA_s71',  'user-71', '10:20:00', NULL),
  (4,  'participant_left',               'EV_s71l',  '10:31:00', 'PA_s71',  'user-71', '10:20:00', 'CLIENT_INITIATED'),
  (5,  'participant_joined',             'EV_s72j',  '10:55:00', 'PA_s72',  'user-72', '10:55:00', NULL),
  (6,  'participant_left',               'EV_s72l',  '12:00:00', 'PA_s72',  'user-72', '10:55:00', 'CLIENT_INITIATED'),
  (7,  'participant_joined',             'EV_s73j1', '10:05:00', 'PA_s73a', 'user-73', '10:05:00', NULL),
  (8,  'participant_left',               'EV_s73l1', '10:45:00', 'PA_s73a', 'user-73', '10:05:00', 'CLIENT_INITIATED'),
  (9,  'participant_joined',             'EV_s73j2', '11:10:00', 'PA_s73b', 'user-73', '11:10:00', NULL),
  (10, 'participant_left',               'EV_s73l2', '11:50:00', 'PA_s73b', 'user-73', '11:10:00', 'CLIENT_INITIATED'),
  (11, 'participant_left',               'EV_s74l',  '11:20:00', 'PA_s74',  'user-74', '10:30:00', 'CLIENT_INITIATED'),
  (12, 'participant_joined',             'EV_s75j',  '11:30:00', 'PA_s75',  'user-75', '11:30:00', NULL),
  (13, 'room_finished',                  'EV_sfin',  '12:05:00', NULL,      NULL,      NULL,       NULL),
  (14, 'participant_connection_aborted', 'EV_s77x',  '10:50:00', 'PA_s77',  'user-77', '10:50:00', NULL),
  (15, 'participant_left',               'EV_s78l1', '10:30:00', 'PA_s78a', 'user-78', '10:00:00', 'SIGNAL_CLOSE'),
  (16, 'participant_joined',             'EV_s78j1', '10:00:00', 'PA_s78a', 'user-78', '10:00:00', NULL),
  (17, 'participant_joined',             'EV_s78j2', '10:30:10', 'PA_s78b', 'user-78', '10:30:10', NULL),
  (18, 'participant_left',               'EV_s78l2', '11:30:00', 'PA_s78b', 'user-78', '10:30:10', 'CLIENT_INITIATED'),
  (19, 'participant_left',               'EV_s71l',  '10:31:00', 'PA_s71',  'user-71', '10:20:00', 'CLIENT_INITIATED'))
  v(k, ev, id, at_t, psid, ident, joined_t, reason),
  LATERAL (SELECT ('2025-11-20 ' || at_t || 'Z')::timestamptz AS at, ('2025-11-20 ' || joined_t || 'Z')::timestamptz AS joined) t;
SELECT count(*) AS webhooks, count(DISTINCT body) AS distinct_bodies FROM shared;

-- The rows computed by hand from the rules (window 3,600,000 ms; docs/architecture.md).
CREATE TEMP TABLE shared_expected (session_id bigint, user_key text, status text, pct numeric(5,2), presence_ms bigint);
INSERT INTO shared_expected VALUES
  (7001, '70', 'present', 100.00, 3600000),  -- 09:55-12:01 clipped to A: 60 min
  (7001, '71', 'partial',  18.33,  660000),  -- 10:20-10:31: 11 min; 660000/3600000 = 18.33 %
  (7001, '72', 'absent',    8.33,  300000),  -- early joiner of B: 10:55-11:00 while A was on, 5 min = 8.33 % (< 10)
  (7001, '73', 'present',  66.67, 2400000),  -- 10:05-10:45: 40 min; first presence 10:05 <= 10:15
  (7001, '74', 'late',     50.00, 1800000),  -- lost join rebuilt: 10:30-11:20 clipped to 10:30-11:00, 30 min;
                                             -- 10:30 > 10:15 and 50.00 <= 75
  (7001, '78', 'present',  99.72, 3590000),  -- 10:00-10:30 and 10:30:10-11:00: the 10 s SIGNAL_CLOSE gap is absence
                                             -- (the default policy's reconnect grace is 0, off); 3590000/3600000 = 99.72 %
  (7002, '70', 'present', 100.00, 3600000),  -- clipped to B: 60 min
  (7002, '72', 'present', 100.00, 3600000),  -- 10:55-12:00 counted in B from B's start: 60 min
  (7002, '73', 'present',  66.67, 2400000),  -- 11:10-11:50: 40 min; 11:10 <= 11:15
  (7002, '74', 'partial',  33.33, 1200000),  -- 11:00-11:20: 20 min = 33.33 %
  (7002, '75', 'late',     50.00, 1800000),  -- 11:30, closed by room_finished at 12:05, clipped to 12:00: 30 min;
                                             -- 11:30 > 11:15 and 50.00 <= 75
  (7002, '76', 'absent',    0.00,       0),  -- on the roster, never came
  (7002, '78', 'present',  50.00, 1800000);  -- 11:00-11:30: 30 min = 50.00 % (not < 50); first presence 11:00
  -- no rows: 71 in B (left 10:31), 75 and 76 in A, 77 anywhere (aborted, never connected)

CREATE TEMP TABLE shared_results (run text, session_id bigint, user_key text, role text, attendance_status text,
  status_rule text, attendance_percentage numeric, presence_ms bigint, total_duration_minutes int,
  first_join_time timestamptz, last_leave_time timestamptz, join_count int, leave_count int, join_leave_cycles jsonb,
  is_calculated boolean);
CREATE FUNCTION pg_temp.deliver_shared(ns bigint[]) RETURNS text LANGUAGE plpgsql AS $$
DECLARE b text; k bigint; ok int := 0; bad text := '';
BEGIN
    FOREACH k IN ARRAY ns LOOP
        SELECT body INTO b FROM shared WHERE n = k;
        BEGIN
            PERFORM attendance_ingest_webhook(b, attendance_sign_webhook(b, 'APIfixture'));
            ok := ok + 1;
        EXCEPTION WHEN OTHERS THEN bad := bad || k || ': ' || SQLERRM || '; ';
        END;
    END LOOP;
    RETURN ok || ' delivered' || CASE WHEN bad <> '' THEN ', failed: ' || bad ELSE '' END;
END $$;
CREATE FUNCTION pg_temp.schedule_shared() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM attendance_schedule_session(7001, 'shared-room', '2025-11-20 10:00:00Z', '2025-11-20 11:00:00Z');
    PERFORM attendance_schedule_session(7002, 'shared-room', '2025-11-20 11:00:00Z', '2025-11-20 12:00:00Z');
    PERFORM attendance_expect(s, u) FROM (VALUES (7001, 71), (7001, 73), (7002, 72), (7002, 73), (7002, 76)) v(s, u);
END $$;
-- The rows as the scheduler's run leaves them (attendance_calculate(): fold, then every due
-- session), then after a recalculation of both sessions from scratch.
CREATE FUNCTION pg_temp.keep_shared(run text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE failed bigint; n bigint; m bigint;
BEGIN
    SELECT c.failed INTO failed FROM attendance_calculate() c;
    INSERT INTO shared_results SELECT run, a.session_id, a.user_key, a.role, a.attendance_status, a.status_rule,
        a.attendance_percentage, a.presence_ms, a.total_duration_minutes, a.first_join_time, a.last_leave_time,
        a.join_count, a.leave_count, a.join_leave_cycles, a.is_calculated
    FROM meeting_attendances a WHERE a.session_id IN (7001, 7002);
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO shared_results SELECT run || ', recalculated', a.session_id, a.user_key, a.role, a.attendance_status,
        a.status_rule, a.attendance_percentage, a.presence_ms, a.total_duration_minutes, a.first_join_time,
        a.last_leave_time, a.join_count, a.leave_count, a.join_leave_cycles, a.is_calculated
    FROM (SELECT * FROM attendance_calculate(7001) UNION ALL SELECT * FROM attendance_calculate(7002)) a;
    GET DIAGNOSTICS m = ROW_COUNT;
    RETURN format('%s failed, %s rows, %s after recalculation', failed, n, m);
END $$;
CREATE TEMP TABLE shared_orders AS
SELECT array_agg(n ORDER BY n) AS in_order, array_agg(n ORDER BY md5(n::text)) AS shuffled,
       array_agg(n ORDER BY n DESC) AS reversed FROM shared;

-- 1. in order, scheduled first (the reference)
SELECT pg_temp.fresh(); SELECT pg_temp.schedule_shared();
SELECT pg_temp.deliver_shared(in_order) FROM shared_orders;
SELECT pg_temp.keep_shared('in order');
-- 2. reversed: every leave before its join, room_finished first
SELECT pg_temp.fresh(); SELECT pg_temp.schedule_shared();
SELECT pg_temp.deliver_shared(reversed) FROM shared_orders;
SELECT pg_temp.keep_shared('reversed');
-- 3. shuffled
SELECT pg_temp.fresh(); SELECT pg_temp.schedule_shared();
SELECT pg_temp.deliver_shared(shuffled) FROM shared_orders;
SELECT pg_temp.keep_shared('shuffled');
-- 4. every webhook before either class is scheduled, folded
SELECT pg_temp.fresh();
SELECT pg_temp.deliver_shared(shuffled) FROM shared_orders;
SELECT attendance_fold() IS NOT NULL AS folded_before_scheduling;
SELECT count(*) AS unmatched_before_scheduling FROM attendance_unmatched_events;
SELECT pg_temp.schedule_shared();
SELECT count(*) AS unmatched_after_scheduling FROM attendance_unmatched_events;
SELECT pg_temp.keep_shared('all before scheduling');
-- 5. scheduled halfway
SELECT pg_temp.fresh();
SELECT pg_temp.deliver_shared(shuffled[1:9]) FROM shared_orders;
SELECT pg_temp.schedule_shared();
SELECT pg_temp.deliver_shared(shuffled[10:]) FROM shared_orders;
SELECT pg_temp.keep_shared('scheduled halfway');
-- 6. both classes calculated halfway: the rest are late webhooks; the scheduler's run
-- recalculates what they change, audited as such
SELECT pg_temp.fresh(); SELECT pg_temp.schedule_shared();
SELECT pg_temp.deliver_shared(shuffled[1:9]) FROM shared_orders;
SELECT count(*) AS first_calculation FROM (SELECT * FROM attendance_calculate(7001) UNION ALL
                                           SELECT * FROM attendance_calculate(7002)) c;
SELECT pg_temp.deliver_shared(shuffled[10:]) FROM shared_orders;
SELECT attendance_fold() IS NOT NULL AS folded;
SELECT session_id, needs_calculation, recalculation_cause FROM attendance_session_schedule ORDER BY session_id;
SELECT pg_temp.keep_shared('calculated halfway');
SELECT DISTINCT cause FROM attendance_status_changes;
SELECT session_id, needs_calculation FROM attendance_session_schedule ORDER BY session_id;
-- 7. every webhook twice, the copies interleaved
SELECT pg_temp.fresh(); SELECT pg_temp.schedule_shared();
SELECT pg_temp.deliver_shared(shuffled || reversed) FROM shared_orders;
SELECT count(*) AS logged FROM meeting_attendance_events;
SELECT pg_temp.keep_shared('duplicates interleaved');

-- the reference against the rows computed by hand: one verdict per row
SELECT coalesce(e.session_id, r.session_id) AS session_id, coalesce(e.user_key, r.user_key) AS user_key,
       CASE WHEN r.user_key IS NULL THEN 'MISSING'
            WHEN e.user_key IS NULL THEN format('UNEXPECTED: %s %s %s', r.attendance_status, r.attendance_percentage, r.presence_ms)
            WHEN (e.status, e.pct, e.presence_ms) = (r.attendance_status, r.attendance_percentage, r.presence_ms)
                 AND r.is_calculated THEN 'ok'
            ELSE format('MISMATCH: expected %s %s %s, got %s %s %s', e.status, e.pct, e.presence_ms,
                        r.attendance_status, r.attendance_percentage, r.presence_ms) END AS verdict
FROM shared_expected e FULL JOIN (SELECT * FROM shared_results WHERE run = 'in order') r
  ON e.session_id = r.session_id AND e.user_key = r.user_key
ORDER BY 1, 2;
-- every run, as the scheduler left it and recalculated, against the reference: no row differs
SELECT o.run, count(*) AS rows,
       count(*) FILTER (WHERE NOT EXISTS (
         SELECT 1 FROM shared_results r WHERE r.run = 'in order' AND r.session_id = o.session_id AND r.user_key = o.user_key
           AND (r.role, r.attendance_status, r.status_rule, r.attendance_percentage, r.presence_ms,
                r.total_duration_minutes, r.first_join_time, r.last_leave_time, r.join_count, r.leave_count,
                r.join_leave_cycles, r.is_calculated)
           IS NOT DISTINCT FROM
               (o.role, o.attendance_status, o.status_rule, o.attendance_percentage, o.presence_ms,
                o.total_duration_minutes, o.first_join_time, o.last_leave_time, o.join_count, o.leave_count,
                o.join_leave_cycles, o.is_calculated))) AS differing
FROM shared_results o GROUP BY o.run ORDER BY min(ctid);
DROP EXTENSION attendance CASCADE;
