-- Rooms are timelines, sessions are windows (docs/architecture.md): a room serves several
-- sessions and a session spans several rooms. Back-to-back classes in one room with 0, 5
-- and 15 minute gaps, early joiners, one connection across a double period, a weekly class
-- whose second week is scheduled after its webhooks arrived, yesterday's unscheduled
-- meeting in the room, each kind of breakout link, and reconnects within and beyond the
-- grace by disconnect reason.
--
-- Every expected row below is computed by hand from the rules (the arithmetic is the
-- comment beside it): a window of 1 h is 3,600,000 ms; percentage = presence / window,
-- rounded half up to 0.01; absent below 10 %, partial below 50 %, late when the first
-- presence is after start + 15 min and the percentage is at most 75 %, else present.
-- pg_temp.check() joins those literal rows to meeting_attendances and prints one verdict
-- per row: 'ok', 'MISMATCH ...', 'MISSING ...' (an expected row the extension lacks) or
-- 'UNEXPECTED ...' (a row the extension has and the rules do not give).
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
DROP EXTENSION IF EXISTS attendance CASCADE;
CREATE EXTENSION attendance;
SELECT attendance_add_webhook_key('APIrooms', 'rooms-secret-0123456789abcdef0123');

-- Webhooks as LiveKit sends them, kept per case and delivered signed.
CREATE TEMP TABLE hooks (k serial PRIMARY KEY, grp text NOT NULL, body text NOT NULL);
-- One body; the room sid defaults to one per room name; a numeric reason is sent as the
-- enum's number.
CREATE FUNCTION pg_temp.body(ev text, room text, room_sid text, at timestamptz, psid text DEFAULT NULL,
                             ident text DEFAULT NULL, joined timestamptz DEFAULT NULL, reason text DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'event', ev,
        'id', 'EV_' || substr(md5(concat_ws('|', ev, room, room_sid, psid, at)), 1, 20),
        'createdAt', extract(epoch FROM at)::bigint::text,
        'room', jsonb_build_object('name', room, 'sid', coalesce(room_sid, 'RM_' || substr(md5(room), 1, 12))),
        'participant', CASE WHEN psid IS NOT NULL THEN jsonb_build_object(
            'sid', psid, 'identity', ident, 'name', ident, 'state', 'ACTIVE',
            'joinedAtMs', (extract(epoch FROM joined) * 1000)::bigint::text,
            'disconnectReason', CASE WHEN reason ~ '^[0-9]+$' THEN to_jsonb(reason::int) ELSE to_jsonb(reason) END) END
    ))::text
$$;
-- One connection: its join at j and, unless l is NULL (no leave), its leave at l with a
-- disconnect reason.
CREATE FUNCTION pg_temp.conn(g text, room text, psid text, ident text, j timestamptz, l timestamptz,
                             reason text DEFAULT 'CLIENT_INITIATED', room_sid text DEFAULT NULL) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO hooks (grp, body)
    SELECT g, pg_temp.body(v.ev, room, room_sid, v.at, psid, ident, j, v.r)
    FROM (VALUES ('participant_joined', j, NULL::text), ('participant_left', l, reason)) v(ev, at, r)
    WHERE v.at IS NOT NULL;
$$;
CREATE FUNCTION pg_temp.finished(g text, room text, at timestamptz, room_sid text DEFAULT NULL) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO hooks (grp, body) VALUES (g, pg_temp.body('room_finished', room, room_sid, at));
$$;
-- Delivers a case's webhooks in the order they were written; says how many were recorded.
CREATE FUNCTION pg_temp.deliver(g text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h record; r jsonb; n int := 0; bad text := '';
BEGIN
    FOR h IN SELECT k, body FROM hooks WHERE grp = g ORDER BY k LOOP
        BEGIN
            r := attendance_ingest_webhook(h.body, attendance_sign_webhook(h.body, 'APIrooms'));
            IF r->>'result' = 'recorded' THEN n := n + 1; ELSE bad := bad || h.k || ': ' || (r->>'result') || '; '; END IF;
        EXCEPTION WHEN OTHERS THEN bad := bad || h.k || ': ' || SQLSTATE || ' ' || SQLERRM || '; ';
        END;
    END LOOP;
    RETURN n || ' recorded' || CASE WHEN bad <> '' THEN ', not recorded: ' || bad ELSE '' END;
END $$;
-- The hand-computed rows, and their comparison with what the extension stored.
CREATE TEMP TABLE expected (session_id bigint, user_key text, status text, pct numeric(5,2), presence_ms bigint,
                            PRIMARY KEY (session_id, user_key));
CREATE FUNCTION pg_temp.check(ids bigint[]) RETURNS TABLE (session_id bigint, user_key text, verdict text)
LANGUAGE sql AS $$
    SELECT coalesce(e.session_id, m.session_id), coalesce(e.user_key, m.user_key),
           CASE WHEN m.user_key IS NULL THEN format('MISSING: expected %s %s %s, no row', e.status, e.pct, e.presence_ms)
                WHEN e.user_key IS NULL THEN format('UNEXPECTED: %s %s %s', m.attendance_status,
                                                    m.attendance_percentage, m.presence_ms)
                WHEN (e.status, e.pct, e.presence_ms) IS NOT DISTINCT FROM
                     (m.attendance_status, m.attendance_percentage, m.presence_ms) AND m.is_calculated THEN 'ok'
                ELSE format('MISMATCH: expected %s %s %s, got %s %s %s%s', e.status, e.pct, e.presence_ms,
                            m.attendance_status, m.attendance_percentage, m.presence_ms,
                            CASE WHEN m.is_calculated THEN '' ELSE ' (not calculated)' END) END
    FROM (SELECT * FROM expected x WHERE x.session_id = ANY (ids)) e
    FULL JOIN (SELECT a.session_id, a.user_key, a.attendance_status, a.attendance_percentage, a.presence_ms,
                      a.is_calculated
               FROM meeting_attendances a WHERE a.session_id = ANY (ids)) m
      ON e.session_id = m.session_id AND e.user_key = m.user_key
    ORDER BY 1, 2;
$$;
-- Calculates the sessions (each on its own, as attendance_calculate(id) does) and checks them.
CREATE FUNCTION pg_temp.calculate_and_check(ids bigint[]) RETURNS TABLE (session_id bigint, user_key text, verdict text)
LANGUAGE plpgsql AS $$
DECLARE s bigint;
BEGIN
    FOREACH s IN ARRAY ids LOOP
        PERFORM count(*) FROM attendance_calculate(s);
    END LOOP;
    RETURN QUERY SELECT * FROM pg_temp.check(ids);
END $$;

-- ==== 1. The issue's student: class A 10:00-11:00 and class B 11:00-12:00 in one room ====
-- A student in A only, 10:20-10:31, and the teacher on one connection through both.
SELECT (attendance_schedule_session(2001, 'teacher-room-1', '2025-03-03 10:00Z', '2025-03-03 11:00Z')).session_id;
SELECT (attendance_schedule_session(2002, 'teacher-room-1', '2025-03-03 11:00Z', '2025-03-03 12:00Z')).session_id;
SELECT (attendance_expect(2001, 101)).user_id;
SELECT pg_temp.conn('issue', 'teacher-room-1', 'PA_i100', 'user-100', '2025-03-03 09:58Z', '2025-03-03 12:01Z');
SELECT pg_temp.conn('issue', 'teacher-room-1', 'PA_i101', 'user-101', '2025-03-03 10:20Z', '2025-03-03 10:31Z');
SELECT pg_temp.deliver('issue');
INSERT INTO expected VALUES
  (2001, '100', 'present', 100.00, 3600000),  -- 09:58-12:01 clipped to 10:00-11:00: 60 min
  (2001, '101', 'partial',  18.33,  660000),  -- 10:20-10:31: 11 min = 660000; 660000/3600000 = 18.33 % (< 50)
  (2002, '100', 'present', 100.00, 3600000);  -- the same connection clipped to 11:00-12:00: 60 min
                                              -- 101: no row in B (left 10:31, before B; not on B's roster)
SELECT * FROM pg_temp.calculate_and_check(ARRAY[2001, 2002]);

-- ==== 2. Back-to-back classes with 0, 5 and 15 minute gaps; early joiners ====
-- A 08:00-09:00 in each room; B starts 0, 5 or 15 min after A's end and lasts an hour.
--  110: the teacher, 07:55 to a minute after B's end;  111: in A only, 08:00-08:55;
--  112: stays 3 min past A's end, 08:10-09:03;  113: joins B 5 min early, until B's end;
--  114: in B only, from B's start + 20 min to B's end;  115 (15 min gap only): in the gap,
--  09:02-09:08, inside neither window.
SELECT g, (attendance_schedule_session(2100 + g, 'gap' || g || '-room', a, a + interval '1 hour')).session_id AS a,
          (attendance_schedule_session(2101 + g, 'gap' || g || '-room', b, b + interval '1 hour')).session_id AS b
FROM (VALUES (0), (5), (15)) v(g),
     LATERAL (SELECT timestamptz '2025-03-04 08:00Z' AS a, timestamptz '2025-03-04 09:00Z' + g * interval '1 minute' AS b) t
ORDER BY g;
SELECT count(*) AS connections FROM (
  SELECT pg_temp.conn('gaps', 'gap' || g || '-room', 'PA_g' || g || '_' || u, 'user-' || u, j, l)
  FROM (VALUES (0), (5), (15)) v(g),
       LATERAL (SELECT timestamptz '2025-03-04 08:00Z' AS a, timestamptz '2025-03-04 09:00Z' + g * interval '1 minute' AS b) t,
       LATERAL (VALUES (110, a - interval '5 minutes', b + interval '61 minutes'),
                       (111, a, a + interval '55 minutes'),
                       (112, a + interval '10 minutes', a + interval '63 minutes'),
                       (113, b - interval '5 minutes', b + interval '1 hour'),
                       (114, b + interval '20 minutes', b + interval '1 hour')) p(u, j, l)) q;
SELECT pg_temp.conn('gaps', 'gap15-room', 'PA_g15_115', 'user-115', '2025-03-04 09:02Z', '2025-03-04 09:08Z');
SELECT pg_temp.deliver('gaps');
INSERT INTO expected VALUES
  -- gap 0: A 08:00-09:00, B 09:00-10:00
  (2100, '110', 'present', 100.00, 3600000),  -- 07:55-10:01 clipped to A: 60 min
  (2100, '111', 'present',  91.67, 3300000),  -- 08:00-08:55: 55 min = 3300000; 91.666.. -> 91.67
  (2100, '112', 'present',  83.33, 3000000),  -- 08:10-09:00: 50 min; first presence 08:10 <= 08:15
  (2100, '113', 'absent',    8.33,  300000),  -- early joiner of B, 08:55-09:00 while A was on: 5 min = 8.33 % (< 10)
  (2101, '110', 'present', 100.00, 3600000),  -- clipped to B: 60 min
  (2101, '112', 'absent',    5.00,  180000),  -- 09:00-09:03: 3 min = 180000 = 5.00 %
  (2101, '113', 'present', 100.00, 3600000),  -- 08:55-10:00 clipped to B from B's start: 60 min
  (2101, '114', 'late',     66.67, 2400000),  -- 09:20-10:00: 40 min; first presence 09:20 > 09:15, 66.67 <= 75
                                              -- 111: no row in B (left 08:55)
  -- gap 5: A 08:00-09:00, B 09:05-10:05
  (2105, '110', 'present', 100.00, 3600000),  -- 07:55-10:06 clipped to A
  (2105, '111', 'present',  91.67, 3300000),  -- as above
  (2105, '112', 'present',  83.33, 3000000),  -- as above
                                              -- 113 joined at 09:00 = A's end: [08:00, 09:00) holds nothing of it, no row
  (2106, '110', 'present', 100.00, 3600000),  -- clipped to B
  (2106, '113', 'present', 100.00, 3600000),  -- 09:00-10:05 clipped to 09:05-10:05
  (2106, '114', 'late',     66.67, 2400000),  -- 09:25-10:05: 40 min; 09:25 > 09:20
                                              -- 112 left at 09:03, before B's start 09:05: no row in B
  -- gap 15: A 08:00-09:00, B 09:15-10:15
  (2115, '110', 'present', 100.00, 3600000),
  (2115, '111', 'present',  91.67, 3300000),
  (2115, '112', 'present',  83.33, 3000000),
  (2116, '110', 'present', 100.00, 3600000),
  (2116, '113', 'present', 100.00, 3600000),  -- 09:10-10:15 clipped to 09:15-10:15
  (2116, '114', 'late',     66.67, 2400000);  -- 09:35-10:15: 40 min; 09:35 > 09:30
                                              -- 115, 09:02-09:08, is inside neither window: no row in A or B
SELECT * FROM pg_temp.calculate_and_check(ARRAY[2100, 2101, 2105, 2106, 2115, 2116]);
-- 115's webhooks fall in B's early-join tolerance (09:15 - 15 min = 09:00 <= 09:02): B
-- claims them, so they are not unmatched, though they give no row
SELECT count(*) AS unmatched_in_gap_rooms FROM attendance_unmatched_events WHERE room_name LIKE 'gap%-room';

-- ==== 3. One person in a double period: one connection across two windows counts for both ====
-- 13:00-14:00 and 14:00-15:00 in one room. 120 (on both rosters) is in 13:20-14:40;
-- 121 12:50-15:05; 122 joins at 13:50 and its leave never comes (no room_finished either):
-- each session closes it at its own end.
SELECT (attendance_schedule_session(2201, 'double-room', '2025-03-05 13:00Z', '2025-03-05 14:00Z')).session_id;
SELECT (attendance_schedule_session(2202, 'double-room', '2025-03-05 14:00Z', '2025-03-05 15:00Z')).session_id;
SELECT (attendance_expect(s, 120)).user_id FROM (VALUES (2201), (2202)) v(s);
SELECT pg_temp.conn('double', 'double-room', 'PA_d120', 'user-120', '2025-03-05 13:20Z', '2025-03-05 14:40Z');
SELECT pg_temp.conn('double', 'double-room', 'PA_d121', 'user-121', '2025-03-05 12:50Z', '2025-03-05 15:05Z');
SELECT pg_temp.conn('double', 'double-room', 'PA_d122', 'user-122', '2025-03-05 13:50Z', NULL);
SELECT pg_temp.deliver('double');
INSERT INTO expected VALUES
  (2201, '120', 'late',     66.67, 2400000),  -- 13:20-14:00: 40 min; first presence 13:20 > 13:15, 66.67 <= 75
  (2201, '121', 'present', 100.00, 3600000),  -- 12:50-15:05 clipped: 60 min
  (2201, '122', 'partial',  16.67,  600000),  -- 13:50, open, closed at A's end 14:00: 10 min = 16.67 %
  (2202, '120', 'present',  66.67, 2400000),  -- 14:00-14:40: 40 min; first presence 14:00 = start
  (2202, '121', 'present', 100.00, 3600000),
  (2202, '122', 'present', 100.00, 3600000);  -- open, closed at B's end 15:00: 14:00-15:00
SELECT * FROM pg_temp.calculate_and_check(ARRAY[2201, 2202]);

-- ==== 4. A weekly class in one room; week 2 scheduled after its webhooks arrived ====
-- Week 1 (10 March 10:00-11:00, roster 130 and 131) is calculated; week 2's webhooks
-- (17 March: 130 and 132, who is only in week 2) arrive before week 2 is scheduled.
SELECT (attendance_schedule_session(2301, 'weekly-room', '2025-03-10 10:00Z', '2025-03-10 11:00Z',
                                    course => 'weekly-algebra')).session_id;
SELECT (attendance_expect(2301, u)).user_id FROM (VALUES (130), (131)) v(u);
SELECT pg_temp.conn('week1', 'weekly-room', 'PA_w1_130', 'user-130', '2025-03-10 09:58Z', '2025-03-10 11:00Z', room_sid => 'RM_week1');
SELECT pg_temp.conn('week1', 'weekly-room', 'PA_w1_131', 'user-131', '2025-03-10 10:05Z', '2025-03-10 10:50Z', room_sid => 'RM_week1');
SELECT pg_temp.finished('week1', 'weekly-room', '2025-03-10 11:01Z', 'RM_week1');
SELECT pg_temp.conn('week2', 'weekly-room', 'PA_w2_130', 'user-130', '2025-03-17 10:00Z', '2025-03-17 11:00Z', room_sid => 'RM_week2');
SELECT pg_temp.conn('week2', 'weekly-room', 'PA_w2_132', 'user-132', '2025-03-17 10:02Z', '2025-03-17 10:58Z', room_sid => 'RM_week2');
SELECT pg_temp.finished('week2', 'weekly-room', '2025-03-17 11:01Z', 'RM_week2');
SELECT pg_temp.deliver('week1');
INSERT INTO expected VALUES
  (2301, '130', 'present', 100.00, 3600000),  -- 09:58-11:00 clipped: 60 min
  (2301, '131', 'present',  75.00, 2700000);  -- 10:05-10:50: 45 min = 75.00 %; 10:05 <= 10:15
SELECT * FROM pg_temp.calculate_and_check(ARRAY[2301]);
SELECT calculated_at AS week1_calculated_at FROM attendance_session_schedule WHERE session_id = 2301 \gset
-- week 2's webhooks arrive and are folded: they are outside week 1's window, so week 1 is
-- not flagged and gets no row for 132; until week 2 is scheduled they are unmatched
SELECT pg_temp.deliver('week2');
SELECT attendance_fold() IS NOT NULL AS folded;
SELECT needs_calculation FROM attendance_session_schedule WHERE session_id = 2301;
SELECT * FROM pg_temp.check(ARRAY[2301]);
SELECT event_type, participant_identity, problem FROM attendance_unmatched_events
WHERE room_name = 'weekly-room' ORDER BY event_type, participant_identity;
-- week 2 is scheduled: scheduling another session of the room changes nothing for week 1
SELECT (attendance_schedule_session(2302, 'weekly-room', '2025-03-17 10:00Z', '2025-03-17 11:00Z',
                                    course => 'weekly-algebra')).session_id;
SELECT (attendance_expect(2302, u)).user_id FROM (VALUES (130), (132)) v(u);
SELECT needs_calculation FROM attendance_session_schedule WHERE session_id = 2301;
-- the scheduler's run (fold, then every due session) calculates week 2 and leaves week 1
SELECT failed FROM attendance_calculate();
INSERT INTO expected VALUES
  (2302, '130', 'present', 100.00, 3600000),  -- 10:00-11:00
  (2302, '132', 'present',  93.33, 3360000);  -- 10:02-10:58: 56 min = 3360000; 93.333.. -> 93.33
SELECT * FROM pg_temp.check(ARRAY[2301, 2302]);
SELECT calculated_at = :'week1_calculated_at' AS week1_not_recalculated, needs_calculation
FROM attendance_session_schedule WHERE session_id = 2301;
SELECT count(*) AS week1_audit_rows FROM attendance_status_changes WHERE session_id = 2301;
SELECT count(*) AS unmatched_weekly FROM attendance_unmatched_events WHERE room_name = 'weekly-room';
-- the course report: everybody attended every session they have (130 both, 131 week 1,
-- 132 week 2): 100 %
SELECT user_key, sessions_expected, present, absent, attendance_rate
FROM attendance_course_report('weekly-algebra', '2025-03-01', '2025-03-31') ORDER BY user_key;

-- ==== 5. Yesterday's outsider ====
-- The class is 21 March 10:00-11:00 (roster 140). The day before, 141 and 140 used the
-- room for an unscheduled meeting (another room sid, finished at 15:31). 142 joins at
-- 09:44:59, a second before the early-join tolerance (10:00 - 15 min), and leaves at
-- 09:50; 143 joins at 09:45:00 exactly and leaves at 09:55; 144 is there 09:40-09:44:59,
-- before the tolerance.
SELECT (attendance_schedule_session(2401, 'yesterday-room', '2025-03-21 10:00Z', '2025-03-21 11:00Z')).session_id;
SELECT (attendance_expect(2401, 140)).user_id;
SELECT pg_temp.conn('yesterday', 'yesterday-room', 'PA_y141', 'user-141', '2025-03-20 15:00Z', '2025-03-20 15:30Z', room_sid => 'RM_yday');
SELECT pg_temp.conn('yesterday', 'yesterday-room', 'PA_y140', 'user-140', '2025-03-20 15:00Z', '2025-03-20 15:20Z', room_sid => 'RM_yday');
SELECT pg_temp.finished('yesterday', 'yesterday-room', '2025-03-20 15:31Z', 'RM_yday');
SELECT pg_temp.conn('yesterday', 'yesterday-room', 'PA_t140', 'user-140', '2025-03-21 10:00Z', '2025-03-21 11:00Z', room_sid => 'RM_today');
SELECT pg_temp.conn('yesterday', 'yesterday-room', 'PA_t142', 'user-142', '2025-03-21 09:44:59Z', '2025-03-21 09:50Z', room_sid => 'RM_today');
SELECT pg_temp.conn('yesterday', 'yesterday-room', 'PA_t143', 'user-143', '2025-03-21 09:45Z', '2025-03-21 09:55Z', room_sid => 'RM_today');
SELECT pg_temp.conn('yesterday', 'yesterday-room', 'PA_t144', 'user-144', '2025-03-21 09:40Z', '2025-03-21 09:44:59Z', room_sid => 'RM_today');
SELECT pg_temp.deliver('yesterday');
INSERT INTO expected VALUES
  (2401, '140', 'present', 100.00, 3600000);  -- 10:00-11:00; yesterday's 15:00-15:20 is outside the window
                                              -- 141 (yesterday only), 142, 143 and 144 (left before 10:00): no rows
SELECT * FROM pg_temp.calculate_and_check(ARRAY[2401]);
-- yesterday's five webhooks and 144's webhooks are claimed by no session; 142's leave
-- (09:50) and 143's webhooks are inside the tolerance, and so is 142's join (09:44:59):
-- a join is claimed when its connection has no leave before the tolerance starts
-- (docs/architecture.md, "Claims")
SELECT event_type, participant_identity, problem FROM attendance_unmatched_events
WHERE room_name = 'yesterday-room' ORDER BY participant_identity NULLS FIRST, event_type;

-- ==== 6. Breakout rooms ====
-- 6a. An explicit link: session 2501 (24 March 10:00-11:00, main room bo-main, roster 150)
-- and the room bo-side, which no naming rule relates to it. Linking twice is one link.
SELECT (attendance_schedule_session(2501, 'bo-main', '2025-03-24 10:00Z', '2025-03-24 11:00Z')).session_id;
SELECT (attendance_expect(2501, 150)).user_id;
SELECT attendance_link_room(2501, 'bo-side');
SELECT attendance_link_room(2501, 'bo-side');
SELECT session_id, room_name FROM attendance_session_rooms ORDER BY session_id, room_name;
-- 150: main 10:00-10:15, breakout 10:15-10:55, main 10:55-11:00; 151: breakout only, 10:05-10:45
SELECT pg_temp.conn('bo-explicit', 'bo-main', 'PA_b150a', 'user-150', '2025-03-24 10:00Z', '2025-03-24 10:15Z');
SELECT pg_temp.conn('bo-explicit', 'bo-side', 'PA_b150b', 'user-150', '2025-03-24 10:15Z', '2025-03-24 10:55Z');
SELECT pg_temp.conn('bo-explicit', 'bo-main', 'PA_b150c', 'user-150', '2025-03-24 10:55Z', '2025-03-24 11:00Z');
SELECT pg_temp.conn('bo-explicit', 'bo-side', 'PA_b151', 'user-151', '2025-03-24 10:05Z', '2025-03-24 10:45Z');
SELECT pg_temp.deliver('bo-explicit');
INSERT INTO expected VALUES
  (2501, '150', 'present', 100.00, 3600000),  -- 15 + 40 + 5 min, contiguous: 10:00-11:00
  (2501, '151', 'present',  66.67, 2400000);  -- 10:05-10:45 in the linked room: 40 min; 10:05 <= 10:15
SELECT * FROM pg_temp.calculate_and_check(ARRAY[2501]);
SELECT count(*) AS unmatched_breakout FROM attendance_unmatched_events WHERE room_name = 'bo-side';
-- unlinking flags the session; the scheduler's run recalculates it: the breakout's time is
-- no longer presence, and 151, who was only there, has no row
SELECT count(*) AS unlinked FROM (SELECT attendance_unlink_room(2501, 'bo-side')) u;
SELECT count(*) AS links FROM attendance_session_rooms WHERE session_id = 2501;
SELECT needs_calculation, recalculation_cause FROM attendance_session_schedule WHERE session_id = 2501;
SELECT failed FROM attendance_calculate();
DELETE FROM expected WHERE session_id = 2501;
INSERT INTO expected VALUES
  (2501, '150', 'partial',  33.33, 1200000);  -- main room only: 10:00-10:15 + 10:55-11:00 = 20 min = 33.33 %
                                              -- 151: no row (never in the main room, not on the roster)
SELECT * FROM pg_temp.check(ARRAY[2501]);
SELECT user_key, old_status, new_status, cause FROM attendance_status_changes
WHERE session_id = 2501 AND user_key = '150' ORDER BY id;
-- bo-side now belongs to no session: its four webhooks are unmatched
SELECT participant_identity, problem, count(*) FROM attendance_unmatched_events WHERE room_name = 'bo-side'
GROUP BY 1, 2 ORDER BY 1, 2;

-- 6b. The naming rule: session 8456 in room session-8456 (25 March 10:00-11:00) and its
-- breakouts session-8456-breakout-1 and breakout-2-session-8456.
--  160: main 10:00-10:10, breakout-1 10:10-10:40, main 10:40-11:00
--  161: main 10:00-10:10, breakout-2 10:10-10:40
--  162: breakout-2 only, 10:20-10:50
SELECT (attendance_schedule_session(8456, 'session-8456', '2025-03-25 10:00Z', '2025-03-25 11:00Z')).session_id;
SELECT pg_temp.conn('bo-named', 'session-8456', 'PA_n160a', 'user-160', '2025-03-25 10:00Z', '2025-03-25 10:10Z');
SELECT pg_temp.conn('bo-named', 'session-8456-breakout-1', 'PA_n160b', 'user-160', '2025-03-25 10:10Z', '2025-03-25 10:40Z');
SELECT pg_temp.conn('bo-named', 'session-8456', 'PA_n160c', 'user-160', '2025-03-25 10:40Z', '2025-03-25 11:00Z');
SELECT pg_temp.conn('bo-named', 'session-8456', 'PA_n161a', 'user-161', '2025-03-25 10:00Z', '2025-03-25 10:10Z');
SELECT pg_temp.conn('bo-named', 'breakout-2-session-8456', 'PA_n161b', 'user-161', '2025-03-25 10:10Z', '2025-03-25 10:40Z');
SELECT pg_temp.conn('bo-named', 'breakout-2-session-8456', 'PA_n162', 'user-162', '2025-03-25 10:20Z', '2025-03-25 10:50Z');
SELECT pg_temp.deliver('bo-named');
INSERT INTO expected VALUES
  (8456, '160', 'present', 100.00, 3600000),  -- 10 + 30 + 20 min, contiguous
  (8456, '161', 'present',  66.67, 2400000),  -- 10:00-10:40: 40 min; first presence 10:00
  (8456, '162', 'late',     50.00, 1800000);  -- 10:20-10:50: 30 min = 50.00 % (not < 50); 10:20 > 10:15, <= 75
SELECT * FROM pg_temp.calculate_and_check(ARRAY[8456]);

-- 6c. The naming rule with two sessions in the main room: the breakout belongs to both,
-- each clipped to its window. bo-double 12:00-13:00 and 13:00-14:00 (25 March);
-- 170 in bo-double-breakout-1 12:30-13:30; 171 in bo-double 11:58-14:00.
SELECT (attendance_schedule_session(2601, 'bo-double', '2025-03-25 12:00Z', '2025-03-25 13:00Z')).session_id;
SELECT (attendance_schedule_session(2602, 'bo-double', '2025-03-25 13:00Z', '2025-03-25 14:00Z')).session_id;
SELECT pg_temp.conn('bo-double', 'bo-double-breakout-1', 'PA_bd170', 'user-170', '2025-03-25 12:30Z', '2025-03-25 13:30Z');
SELECT pg_temp.conn('bo-double', 'bo-double', 'PA_bd171', 'user-171', '2025-03-25 11:58Z', '2025-03-25 14:00Z');
SELECT pg_temp.deliver('bo-double');
INSERT INTO expected VALUES
  (2601, '170', 'late',     50.00, 1800000),  -- 12:30-13:00: 30 min = 50.00 %; 12:30 > 12:15, <= 75
  (2601, '171', 'present', 100.00, 3600000),
  (2602, '170', 'present',  50.00, 1800000),  -- 13:00-13:30: 30 min = 50.00 %; first presence 13:00 = start
  (2602, '171', 'present', 100.00, 3600000);
SELECT * FROM pg_temp.calculate_and_check(ARRAY[2601, 2602]);

-- ==== 7. Reconnects within and beyond the grace, by reason ====
-- Session 2701, 26 March 10:00-11:00, policy grace2m (reconnect grace 2 min; the default
-- policy's is 0, off: docs/decisions.md). Each person leaves (reason as given) and rejoins
-- on a new connection.
INSERT INTO attendance_policies (name, reconnect_grace, description) VALUES ('grace2m', '2 minutes', 'reconnects within 2 min');
SELECT (attendance_schedule_session(2701, 'net-room', '2025-03-26 10:00Z', '2025-03-26 11:00Z', 'grace2m')).session_id;
SELECT count(*) AS connections FROM (
  SELECT pg_temp.conn('net', 'net-room', 'PA_net' || u || c, 'user-' || u, j, l, reason)
  FROM (VALUES
    (180, 'a', '2025-03-26 10:00:00Z'::timestamptz, '2025-03-26 10:30:00Z'::timestamptz, 'SIGNAL_CLOSE'),
    (180, 'b', '2025-03-26 10:30:08Z', '2025-03-26 11:00:00Z', 'CLIENT_INITIATED'),
    (181, 'a', '2025-03-26 10:00:00Z', '2025-03-26 10:15:00Z', 'CONNECTION_TIMEOUT'),
    (181, 'b', '2025-03-26 10:15:20Z', '2025-03-26 10:30:00Z', 'CLIENT_INITIATED'),
    (182, 'a', '2025-03-26 10:10:00Z', '2025-03-26 10:30:00Z', 'MIGRATION'),
    (182, 'b', '2025-03-26 10:30:15Z', '2025-03-26 11:00:00Z', 'CLIENT_INITIATED'),
    (183, 'a', '2025-03-26 10:00:00Z', '2025-03-26 10:30:00Z', 'CLIENT_INITIATED'),
    (183, 'b', '2025-03-26 10:30:08Z', '2025-03-26 11:00:00Z', 'CLIENT_INITIATED'),
    (184, 'a', '2025-03-26 10:00:00Z', '2025-03-26 10:30:00Z', 'SIGNAL_CLOSE'),
    (184, 'b', '2025-03-26 10:32:30Z', '2025-03-26 11:00:00Z', 'CLIENT_INITIATED'),
    (185, 'a', '2025-03-26 10:00:00Z', '2025-03-26 10:30:00Z', 'SIGNAL_CLOSE'),
    (185, 'b', '2025-03-26 10:32:00Z', '2025-03-26 11:00:00Z', 'CLIENT_INITIATED'),
    (186, 'a', '2025-03-26 10:00:00Z', '2025-03-26 10:15:00Z', '14'),
    (186, 'b', '2025-03-26 10:15:20Z', '2025-03-26 10:30:00Z', 'CLIENT_INITIATED'),
    (187, 'a', '2025-03-26 10:00:00Z', '2025-03-26 10:30:00Z', 'PARTICIPANT_REMOVED'),
    (187, 'b', '2025-03-26 10:30:08Z', '2025-03-26 11:00:00Z', 'CLIENT_INITIATED'),
    (188, 'a', '2025-03-26 10:00:00Z', '2025-03-26 10:45:00Z', 'SIGNAL_CLOSE')) v(u, c, j, l, reason)) q;
SELECT pg_temp.deliver('net');
INSERT INTO expected VALUES
  (2701, '180', 'present', 100.00, 3600000),  -- SIGNAL_CLOSE, 8 s gap < 2 min: bridged, 10:00-11:00 (unbridged 3592000)
  (2701, '181', 'present',  50.00, 1800000),  -- CONNECTION_TIMEOUT, 20 s: bridged, 10:00-10:30 = 50.00 %
                                              -- (unbridged 900000 + 880000 = 1780000 = 49.44 % would be partial)
  (2701, '182', 'present',  83.33, 3000000),  -- MIGRATION, 15 s: bridged, 10:10-11:00 = 50 min (unbridged 82.92)
  (2701, '183', 'present',  99.78, 3592000),  -- CLIENT_INITIATED never bridges: 1800000 + 1792000; 99.777.. -> 99.78
  (2701, '184', 'present',  95.83, 3450000),  -- SIGNAL_CLOSE, 150 s >= 2 min: 1800000 + 1650000; 95.833.. -> 95.83
  (2701, '185', 'present',  96.67, 3480000),  -- SIGNAL_CLOSE, exactly 120 s (not shorter than the grace):
                                              -- 1800000 + 1680000; 96.666.. -> 96.67
  (2701, '186', 'present',  50.00, 1800000),  -- reason 14 (CONNECTION_TIMEOUT as its enum number), 20 s: bridged
  (2701, '187', 'present',  99.78, 3592000),  -- PARTICIPANT_REMOVED never bridges, as 183
  (2701, '188', 'present',  75.00, 2700000);  -- SIGNAL_CLOSE at 10:45 and no rejoin: nothing to bridge, 45 min
SELECT * FROM pg_temp.calculate_and_check(ARRAY[2701]);
-- explain shows each bridged gap and its reason (none where nothing was bridged)
SELECT u AS user_id,
       CASE WHEN jsonb_typeof(e->'reconnects') = 'array' THEN jsonb_array_length(e->'reconnects') ELSE 0 END AS bridged,
       CASE WHEN reason IS NULL THEN NULL ELSE strpos((e->'reconnects')::text, reason) > 0 END AS reason_shown
FROM (VALUES (180, 'SIGNAL_CLOSE'), (181, 'CONNECTION_TIMEOUT'), (182, 'MIGRATION'), (183, NULL), (184, NULL),
             (185, NULL), (186, NULL), (187, NULL), (188, NULL)) v(u, reason),
     LATERAL attendance_explain(2701, u::bigint) e
ORDER BY u;

-- The grace is a policy number, per role like the others: policy 'tight' allows 10 s,
-- and 30 s for teachers. Session 2702, same times, in net-room-2; 192 is a teacher.
INSERT INTO attendance_policies (name, reconnect_grace, description) VALUES ('tight', '10 seconds', 'reconnects within 10 s');
INSERT INTO attendance_policy_roles (policy_name, role, reconnect_grace) VALUES ('tight', 'teacher', '30 seconds');
SELECT (attendance_schedule_session(2702, 'net-room-2', '2025-03-26 10:00Z', '2025-03-26 11:00Z', 'tight')).session_id;
SELECT (attendance_expect(2702, 192, 'teacher')).user_id;
SELECT count(*) AS connections FROM (
  SELECT pg_temp.conn('net2', 'net-room-2', 'PA_nt' || u || c, 'user-' || u, j, l, reason)
  FROM (VALUES
    (190, 'a', '2025-03-26 10:00:00Z'::timestamptz, '2025-03-26 10:15:00Z'::timestamptz, 'SIGNAL_CLOSE'),
    (190, 'b', '2025-03-26 10:15:08Z', '2025-03-26 10:30:00Z', 'CLIENT_INITIATED'),
    (191, 'a', '2025-03-26 10:00:00Z', '2025-03-26 10:15:00Z', 'MIGRATION'),
    (191, 'b', '2025-03-26 10:15:15Z', '2025-03-26 10:30:00Z', 'CLIENT_INITIATED'),
    (192, 'a', '2025-03-26 10:00:00Z', '2025-03-26 10:15:00Z', 'MIGRATION'),
    (192, 'b', '2025-03-26 10:15:15Z', '2025-03-26 10:30:00Z', 'CLIENT_INITIATED')) v(u, c, j, l, reason)) q;
SELECT pg_temp.deliver('net2');
INSERT INTO expected VALUES
  (2702, '190', 'present',  50.00, 1800000),  -- 8 s < 10 s: bridged, 10:00-10:30 = 50.00 %
  (2702, '191', 'partial',  49.58, 1785000),  -- 15 s >= 10 s: 900000 + 885000 = 1785000; 49.583.. -> 49.58 (< 50)
  (2702, '192', 'present',  50.00, 1800000);  -- teacher: 15 s < 30 s: bridged, 10:00-10:30
SELECT * FROM pg_temp.calculate_and_check(ARRAY[2702]);

-- ==== Every session once more, from scratch: the stored rows are what a calculation gives ====
SELECT count(*) AS sessions_recalculated FROM attendance_session_schedule s, LATERAL (
  SELECT count(*) FROM attendance_calculate(s.session_id)) c;
SELECT * FROM pg_temp.check(ARRAY(SELECT session_id FROM attendance_session_schedule)) WHERE verdict <> 'ok';
SELECT count(*) AS audit_rows_from_recalculation FROM attendance_status_changes WHERE session_id <> 2501;
DROP EXTENSION attendance CASCADE;
