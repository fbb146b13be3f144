-------------------------------------------------------------------------------
-- The rules in SQL (docs/architecture.md, "One home for each rule")
-------------------------------------------------------------------------------
-- Which rooms a session has, which sessions an event counts for, which events a session
-- reads, what a late webhook is, how a calculated session is flagged, and the attendance
-- rate. Each rule has its one definition here; the library, the views and the CLI use them.
--
-- Inlining: the set-returning rule functions (_attendance_claims, _attendance_match,
-- _attendance_holds, _attendance_session_events, ...) have no SET clause, so that
-- PostgreSQL inlines them into the queries that use them (a function with SET is called
-- per row). They are used only where search_path is already pinned: from the extension's
-- own functions (which SET it) and from each other. An inlined body resolves its operators
-- through the search_path of the query it is inlined into, so they are the owner's only;
-- other roles reach them through the pinned functions that run as the owner
-- (_attendance_event_session, _attendance_event_claimed_by, ..., attendance_explain;
-- docs/security.md).

-------------------------------------------------------------------------------
-- Settings read by SQL. Each has its one definition in the library (docs/configuration.md)
-------------------------------------------------------------------------------
-- A setting as an interval; when the library is not loaded (an upgrade run before a
-- restart) the fallback, the setting's default, applies.
CREATE FUNCTION @extschema@._attendance_setting_interval(name text, fallback interval)
RETURNS interval LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(pg_catalog.current_setting($1, true), '')::interval, $2);
$$;

-- The calculation delay as the library defines it (the setting, in seconds): the view
-- attendance_sessions_due reads it.
CREATE FUNCTION @extschema@._attendance_calculation_delay()
RETURNS interval
AS 'MODULE_PATHNAME', 'attendance_calculation_delay'
LANGUAGE C STABLE SET search_path = pg_catalog, pg_temp;

-- The log's settings as intervals (the library defines them; NULL retention keeps
-- everything), for the partition maintenance (30_jobs.sql).
CREATE FUNCTION @extschema@._attendance_partition_interval()
RETURNS interval AS 'MODULE_PATHNAME', 'attendance_partition_interval' LANGUAGE C STABLE;
CREATE FUNCTION @extschema@._attendance_event_retention()
RETURNS interval AS 'MODULE_PATHNAME', 'attendance_event_retention' LANGUAGE C STABLE;

-- Which cause stands when a cause meets a session's pending one: the library's one home of
-- the precedence (a late webhook wins; otherwise the pending cause is kept), which the
-- calculation's audit asks too (0.5.3).
CREATE FUNCTION @extschema@._attendance_prevailing_cause(pending text, incoming text)
RETURNS text AS 'MODULE_PATHNAME', 'attendance_prevailing_cause' LANGUAGE C IMMUTABLE PARALLEL SAFE;

-------------------------------------------------------------------------------
-- The rooms of a session: its main room, rooms linked to it, breakout rooms by name
-------------------------------------------------------------------------------
-- The naming rule: the main room a breakout room belongs to, by attendance.breakout_pattern
-- (the first capture group that matched); NULL when the name does not match or the rule is off.
CREATE FUNCTION @extschema@._attendance_parent_room(room_name text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT (SELECT x FROM pg_catalog.unnest(pg_catalog.regexp_match($1, p)) x WHERE x IS NOT NULL LIMIT 1)
    FROM (SELECT coalesce(pg_catalog.current_setting('attendance.breakout_pattern', true),
                          '^(?:breakout-[0-9]+-(.+)|(.+)-breakout-[0-9]+)$') AS p) s
    WHERE p <> '';
$$;

-- The rooms of sessions, each with how it is linked: 'main', 'linked' (attendance_link_room),
-- 'breakout name' (attendance.breakout_pattern names the main room), 'room pattern' (the room
-- names the session through attendance.room_pattern and is no scheduled session's main room).
-- The one home of a session's rooms.
CREATE FUNCTION @extschema@._attendance_session_rooms(session_ids bigint[])
RETURNS TABLE (session_id bigint, room_name text, link text)
LANGUAGE sql STABLE AS $$
    SELECT s.session_id, s.room_name, 'main'
    FROM @extschema@.attendance_session_schedule s WHERE s.session_id = ANY ($1)
    UNION
    SELECT l.session_id, l.room_name, 'linked'
    FROM @extschema@.attendance_session_rooms l WHERE l.session_id = ANY ($1)
    UNION
    SELECT s.session_id, r.room_name, 'breakout name'
    FROM @extschema@.attendance_session_schedule s
    JOIN (SELECT r.room_name, @extschema@._attendance_parent_room(r.room_name) AS parent
          FROM @extschema@.attendance_rooms r) r ON r.parent = s.room_name
    WHERE s.session_id = ANY ($1) AND r.room_name <> s.room_name
    UNION
    SELECT r.room_session, r.room_name, 'room pattern'
    FROM @extschema@.attendance_rooms r
    WHERE r.room_session = ANY ($1)
      AND NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule m WHERE m.room_name = r.room_name);
$$;

-- The scheduled sessions a room belongs to (the inverse of _attendance_session_rooms, by
-- the same four links); room_session is what attendance.room_pattern found in the name.
CREATE FUNCTION @extschema@._attendance_room_sessions(room_name text, room_session bigint)
RETURNS SETOF bigint LANGUAGE sql STABLE AS $$
    SELECT s.session_id FROM @extschema@.attendance_session_schedule s WHERE s.room_name = $1
    UNION
    SELECT l.session_id FROM @extschema@.attendance_session_rooms l WHERE l.room_name = $1
    UNION
    SELECT s.session_id FROM @extschema@.attendance_session_schedule s
    WHERE s.room_name = @extschema@._attendance_parent_room($1)
    UNION
    SELECT s.session_id FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = $2
      AND NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule m WHERE m.room_name = $1);
$$;

-------------------------------------------------------------------------------
-- Which sessions an event counts for
-------------------------------------------------------------------------------
-- The rule functions never read the log themselves: its readers do (this one and
-- _attendance_room_events below), in PL/pgSQL, one room at a time, by the index (room, time).
-- On one server that is the index range the derivation needs; on a Citus cluster, where the
-- log is distributed by room, each statement goes to the one node that holds the room, and
-- no rule is evaluated on a node that does not hold the schedule (docs/architecture.md,
-- "The log's readers").
-- Whether a connection of the room has a leave or an abort in [from_at, before).
CREATE FUNCTION @extschema@._attendance_left_between(room_name text, participant_sid text,
                                                    from_at timestamptz, before timestamptz)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM @extschema@.meeting_attendance_events l
        WHERE l.room_name = $1 AND l.participant_sid = $2
          AND l.event_type IN ('participant_left', 'participant_connection_aborted')
          AND l.event_timestamp >= $3 AND l.event_timestamp < $4);
END;
$$;

-- Which sessions claim an event: a session one of whose rooms the event is in, and whose
-- window its connection meets, give or take attendance.early_join_tolerance before the start.
-- A leave or an abort is claimed when its connection (from its joinedAt, else its own time,
-- to its own time) meets [starts_at - tolerance, ends_at): a leave after the end of a
-- connection that began inside the window is claimed. A join is claimed when it is before
-- the end and its connection has no leave before starts_at - tolerance (an open connection
-- of someone who joined early counts from the start). A room event is claimed by its time,
-- within the tolerance on either side. An unscheduled session named by the room pattern
-- claims its room's events whatever their time (it has no window). The one home of "which
-- sessions an event counts for": the fold, the late-webhook rule, the views and retention.
CREATE FUNCTION @extschema@._attendance_claims(room_name text, at timestamptz, joined_at timestamptz,
                                              room_session bigint, event_type text, participant_sid text)
RETURNS SETOF bigint LANGUAGE sql STABLE AS $$
    WITH rooms AS (SELECT r AS session_id FROM @extschema@._attendance_room_sessions($1, $4) r),
    tolerance AS (
        SELECT @extschema@._attendance_setting_interval('attendance.early_join_tolerance', '15 minutes') AS t)
    SELECT s.session_id
    FROM rooms r JOIN @extschema@.attendance_session_schedule s ON s.session_id = r.session_id, tolerance
    WHERE CASE WHEN $5 IN ('room_started', 'room_finished')
               THEN $2 >= s.starts_at - tolerance.t AND $2 < s.ends_at + tolerance.t
               WHEN $5 = 'participant_joined'
               THEN least(coalesce($3, $2), $2) < s.ends_at
                    AND ($2 >= s.starts_at - tolerance.t OR NOT @extschema@._attendance_left_between(
                        $1, $6, least(coalesce($3, $2), $2), s.starts_at - tolerance.t))
               ELSE least(coalesce($3, $2), $2) < s.ends_at AND $2 >= s.starts_at - tolerance.t END
    UNION ALL
    SELECT $4 WHERE $4 IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule s WHERE s.session_id = $4);
$$;

-- The times whose events a session may count for, whatever their kind: its window, widened by
-- attendance.max_connection_age before the start (a connection that began that early may
-- still be open) and the tolerance after the end. The one home of that reach (0.5.3): the
-- match below, and retention, which keeps a partition a session not yet final may still
-- receive webhooks for (30_jobs.sql).
CREATE FUNCTION @extschema@._attendance_session_reach(starts_at timestamptz, ends_at timestamptz)
RETURNS tstzrange LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.tstzrange(
        $1 - @extschema@._attendance_setting_interval('attendance.max_connection_age', '6 hours'),
        $2 + @extschema@._attendance_setting_interval('attendance.early_join_tolerance', '15 minutes'));
$$;

-- The sessions an event at this time may count for, whatever its kind: a session of its room
-- whose reach (_attendance_session_reach) holds it. A superset of _attendance_claims, for the
-- one caller that must not miss a session: retention keeps a partition while a session its
-- events may count for is not final.
CREATE FUNCTION @extschema@._attendance_match(room_name text, at timestamptz, room_session bigint)
RETURNS SETOF bigint LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT s.session_id
    FROM @extschema@._attendance_room_sessions($1, $3) r
    JOIN @extschema@.attendance_session_schedule s ON s.session_id = r
    WHERE $2 <@ @extschema@._attendance_session_reach(s.starts_at, s.ends_at)
    UNION ALL
    SELECT $3 WHERE $3 IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule s WHERE s.session_id = $3);
$$;

-- The sessions whose stored connections an event changes, whatever its time: those holding
-- its connection (a leave that came after they were derived with the connection open), and
-- for a room_finished those holding a connection of the room, open or closed by
-- reconciliation, that began before it. With _attendance_claims, the sessions the fold
-- derives again for an event, and the ones a late event flags: the claims are what the log
-- says; this is what a derivation stored before the event came.
CREATE FUNCTION @extschema@._attendance_holds(room_name text, at timestamptz, event_type text, participant_sid text)
RETURNS SETOF bigint LANGUAGE sql STABLE AS $$
    SELECT c.session_id FROM @extschema@.attendance_sessions c
    WHERE $3 <> 'room_finished' AND c.room_name = $1 AND c.participant_sid = $4
    UNION
    SELECT c.session_id FROM @extschema@.attendance_sessions c
    WHERE $3 = 'room_finished' AND c.room_name = $1
      AND (c.leave_time IS NULL OR c.leave_is_synthetic) AND c.join_time <= $2;
$$;

-- The claims as values, with search_path pinned and running as the owner, for the views,
-- attendancectl and ad hoc SQL:
-- the earliest session claiming an event at this time, as a room event is claimed (the
-- views that know the event's kind, connection and joinedAt use _attendance_event_claimed_by);
CREATE FUNCTION @extschema@._attendance_event_session(room_name text, at timestamptz, room_session bigint)
RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT min(c) FROM @extschema@._attendance_claims($1, $2, NULL, $3, 'room_finished', NULL) c;
$$;
-- the earliest session claiming an event;
CREATE FUNCTION @extschema@._attendance_event_claimed_by(room_name text, at timestamptz, joined_at timestamptz,
                                                         room_session bigint, event_type text, participant_sid text)
RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT min(c) FROM @extschema@._attendance_claims($1, $2, $3, $4, $5, $6) c;
$$;
-- every session claiming an event, as an array (attendancectl events --session);
CREATE FUNCTION @extschema@._attendance_event_sessions(room_name text, at timestamptz, joined_at timestamptz,
                                                       room_session bigint, event_type text, participant_sid text)
RETURNS bigint[] LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(c ORDER BY c), '{}') FROM @extschema@._attendance_claims($1, $2, $3, $4, $5, $6) c;
$$;
-- whether any scheduled session has the room (by any link), for attendance_unmatched_events;
CREATE FUNCTION @extschema@._attendance_room_known(room_name text, room_session bigint)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM @extschema@._attendance_room_sessions($1, $2));
$$;
-- the rooms of one session, for the view attendance_session_room_links.
CREATE FUNCTION @extschema@._attendance_room_links(session_id bigint)
RETURNS TABLE (room_name text, link text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.room_name, r.link FROM @extschema@._attendance_session_rooms(ARRAY[$1]) r;
$$;

-------------------------------------------------------------------------------
-- Late webhooks and the events a session reads
-------------------------------------------------------------------------------
-- Late webhooks (docs/architecture.md, "Calculation"): an event whose logging transaction
-- the session's last calculation did not see. The rule reads logged_xid, a full transaction
-- id kept with the row, instead of the row's 32-bit xmin, which any rewrite of the row
-- changes.
CREATE FUNCTION @extschema@._attendance_unseen_by(x xid8, snapshot pg_snapshot)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT $2 IS NOT NULL AND NOT pg_catalog.pg_visible_in_snapshot($1, $2);
$$;

-- The events of sessions as the derivation reads them: every event of the session's rooms
-- within attendance.max_connection_age of its window (a connection that meets the window has
-- an event there), or, for an unscheduled session named by the room pattern, every event of
-- its rooms. user_keys: only these persons' participant events, and the room events (the
-- fold's incremental unit; NULL: all). The log's reader: each room of a session is read by its
-- own statement, an index range (room, time) whatever the log's size (docs/performance.md,
-- "0.5.1"), which on a Citus cluster goes to the node holding the room; the keys are looked
-- up in a hashed set; only unscheduled sessions are read by session id. A room reached
-- through two links is read once.
CREATE FUNCTION @extschema@._attendance_room_events(session_ids bigint[], user_keys text[] DEFAULT NULL)
RETURNS TABLE (session_id bigint, event_id text, event_type text, event_timestamp timestamptz,
               participant_sid text, participant_identity text, user_key text, user_id bigint,
               participant_name text, role text, joined_at timestamptz, disconnect_reason text,
               logged_xid xid8, room_name text, room_session bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    r record;
    unscheduled bigint[];
BEGIN
    FOR r IN
        SELECT DISTINCT l.session_id AS sid, l.room_name AS room,
               s.starts_at - t.reach AS low, s.ends_at + t.reach AS high
        FROM @extschema@._attendance_session_rooms($1) l
        JOIN @extschema@.attendance_session_schedule s ON s.session_id = l.session_id
        CROSS JOIN (SELECT @extschema@._attendance_setting_interval('attendance.max_connection_age',
                                                                    '6 hours') AS reach) t
    LOOP
        RETURN QUERY
            SELECT r.sid, e.event_id, e.event_type, e.event_timestamp, e.participant_sid,
                   e.participant_identity, e.user_key, e.user_id, e.participant_name, e.role,
                   e.joined_at, e.disconnect_reason, e.logged_xid, e.room_name, e.session_id
            FROM @extschema@.meeting_attendance_events e
            WHERE e.room_name = r.room AND e.event_timestamp >= r.low AND e.event_timestamp < r.high
              AND e.result = 'recorded'
              AND ($2 IS NULL OR e.event_type IN ('room_started', 'room_finished')
                   OR e.user_key IN (SELECT k FROM pg_catalog.unnest($2) k));
    END LOOP;
    unscheduled := ARRAY(SELECT u FROM pg_catalog.unnest($1) u
                         WHERE NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule x
                                           WHERE x.session_id = u));
    IF pg_catalog.cardinality(unscheduled) > 0 THEN
        RETURN QUERY
            SELECT e.session_id, e.event_id, e.event_type, e.event_timestamp, e.participant_sid,
                   e.participant_identity, e.user_key, e.user_id, e.participant_name, e.role,
                   e.joined_at, e.disconnect_reason, e.logged_xid, e.room_name, e.session_id
            FROM @extschema@.meeting_attendance_events e
            WHERE e.session_id = ANY (unscheduled) AND e.result = 'recorded'
              AND ($2 IS NULL OR e.event_type IN ('room_started', 'room_finished')
                   OR e.user_key IN (SELECT k FROM pg_catalog.unnest($2) k));
    END IF;
END;
$$;

-- The log's other readers. The events logged with ids in (after_id, upto_id], for the fold.
CREATE FUNCTION @extschema@._attendance_new_events(after_id bigint, upto_id bigint)
RETURNS TABLE (id bigint, received_at timestamptz, result text, event_type text, user_key text,
               room_name text, event_timestamp timestamptz, joined_at timestamptz, session_id bigint,
               participant_sid text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT e.id, e.received_at, e.result, e.event_type, e.user_key, e.room_name, e.event_timestamp,
               e.joined_at, e.session_id, e.participant_sid
        FROM @extschema@.meeting_attendance_events e WHERE e.id > $1 AND e.id <= $2;
END;
$$;

-- The distinct recorded events of one partition of the log (room, time, room session), for
-- retention.
CREATE FUNCTION @extschema@._attendance_partition_events(part regclass)
RETURNS TABLE (room_name text, event_timestamp timestamptz, session_id bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT DISTINCT e.room_name, e.event_timestamp, e.session_id FROM %s e WHERE e.result = ''recorded''', $1);
END;
$$;

-- The same events, with `unseen`: an event its last calculation did not see that the
-- session claims, or that changes a connection the session holds (_attendance_holds).
CREATE FUNCTION @extschema@._attendance_session_events(session_ids bigint[], user_keys text[] DEFAULT NULL)
RETURNS TABLE (session_id bigint, event_id text, event_type text, at_ms bigint, participant_sid text,
               participant_identity text, user_key text, user_id bigint, participant_name text, role text,
               joined_ms bigint, disconnect_reason text, unseen boolean, room_name text)
LANGUAGE sql STABLE AS $$
    SELECT c.session_id, c.event_id, c.event_type,
           floor(extract(epoch FROM c.event_timestamp) * 1000)::bigint, c.participant_sid,
           c.participant_identity, c.user_key, c.user_id, c.participant_name, c.role,
           floor(extract(epoch FROM c.joined_at) * 1000)::bigint, c.disconnect_reason,
           CASE WHEN s.session_id IS NOT NULL AND @extschema@._attendance_unseen_by(c.logged_xid, s.calculated_snapshot)
                THEN c.session_id IN (SELECT x.x FROM @extschema@._attendance_claims(c.room_name, c.event_timestamp, c.joined_at,
                                                                                     c.room_session, c.event_type, c.participant_sid) x(x)
                                      UNION ALL
                                      SELECT y.y FROM @extschema@._attendance_holds(c.room_name, c.event_timestamp,
                                                                                    c.event_type, c.participant_sid) y(y))
                ELSE false END,
           c.room_name
    FROM @extschema@._attendance_room_events($1, $2) c
    LEFT JOIN @extschema@.attendance_session_schedule s ON s.session_id = c.session_id;
$$;

-------------------------------------------------------------------------------
-- Flagging a calculated session for recalculation
-------------------------------------------------------------------------------
-- A calculated session must be calculated again, for `cause`. Which cause stands is
-- _attendance_prevailing_cause's (a pending cause is kept unless the new one is a late
-- webhook, which is what the audit then says). With event_ids
-- (one per element of session_ids: an event of that session), only sessions whose last
-- calculation did not see such an event are flagged; evaluated under the row lock, so a
-- calculation committing meanwhile is judged by its own snapshot. The fold flags the
-- sessions whose derivation met an unseen event (`unseen` above) without event_ids.
CREATE FUNCTION @extschema@._attendance_flag(session_ids bigint[], cause text, event_ids bigint[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer;
    event_sessions bigint[];
    event_xids xid8[];
BEGIN
    -- Lock the rows first, in id order as calculations do: a calculation running now is
    -- waited for, and the UPDATE below (a new snapshot) then sees what it stored.
    PERFORM 1 FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = ANY ($1) ORDER BY s.session_id FOR UPDATE;
    -- The events' logging transactions, read from the log by themselves (the log is never
    -- joined to the schedule in one statement: docs/architecture.md, "The log's readers").
    IF $3 IS NOT NULL THEN
        SELECT pg_catalog.array_agg(x.session_id), pg_catalog.array_agg(e.logged_xid)
        INTO event_sessions, event_xids
        FROM pg_catalog.unnest($1, $3) AS x(session_id, event_id)
        JOIN @extschema@.meeting_attendance_events e ON e.id = x.event_id;
    END IF;
    UPDATE @extschema@.attendance_session_schedule s
    SET needs_calculation = true,
        recalculation_cause = @extschema@._attendance_prevailing_cause(
            CASE WHEN s.needs_calculation THEN s.recalculation_cause END, $2),
        needs_fold = true,
        updated_at = now()
    WHERE s.session_id = ANY ($1) AND s.calculated_at IS NOT NULL
      AND (NOT s.needs_calculation OR s.recalculation_cause IS DISTINCT FROM $2)
      AND ($3 IS NULL OR EXISTS (
            SELECT 1 FROM unnest(event_sessions, event_xids) AS x(session_id, logged_xid)
            WHERE x.session_id = s.session_id
              AND @extschema@._attendance_unseen_by(x.logged_xid, s.calculated_snapshot)));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM @extschema@._attendance_wake_worker();
    END IF;
    RETURN n;
END;
$$;

-------------------------------------------------------------------------------
-- The attendance rate
-------------------------------------------------------------------------------
-- The one home of the attendance rate: the statuses of a person's final results in some
-- sessions, counted. present and late attend; excused sessions are out of the
-- denominator; every other status (partial, absent, any other override) is missed.
-- rate = attended / (sessions - excused) * 100, rounded to 0.01; NULL when every session
-- is excused (or there is none): no rate, and never an alert.
CREATE FUNCTION @extschema@._attendance_tally(statuses text[])
RETURNS TABLE (sessions integer, present integer, late integer, partial integer, absent integer,
               excused integer, other integer, counted integer, attendance_rate numeric(5,2))
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.sessions, t.present, t.late, t.partial, t.absent, t.excused,
           t.sessions - t.present - t.late - t.partial - t.absent - t.excused,
           t.sessions - t.excused,
           CASE WHEN t.sessions > t.excused
                THEN round(100.0 * (t.present + t.late) / (t.sessions - t.excused), 2) END
    FROM (SELECT count(*)::int AS sessions,
                 count(*) FILTER (WHERE s = 'present')::int AS present,
                 count(*) FILTER (WHERE s = 'late')::int AS late,
                 count(*) FILTER (WHERE s = 'partial')::int AS partial,
                 count(*) FILTER (WHERE s = 'absent')::int AS absent,
                 count(*) FILTER (WHERE s = 'excused')::int AS excused
          FROM unnest(coalesce($1, '{}'::text[])) s) t;
$$;
