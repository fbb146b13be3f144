-- One class's webhooks in seven delivery orders give identical attendance rows: in order,
-- shuffled, reversed, all before the session is scheduled, scheduled halfway, with a first
-- calculation halfway (the rest are late webhooks), and every webhook delivered twice,
-- interleaved. The class is the fixture's plus the awkward cases: a join, an abort and a
-- leave for one connection, two leaves for one connection, a lost join, an abort logged
-- before its own join.
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
DROP EXTENSION attendance CASCADE;
