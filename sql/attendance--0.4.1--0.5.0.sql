-- attendance 0.4.1 -> 0.5.0: rooms are timelines, sessions are windows
-- (docs/architecture.md, "Rooms and windows").
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.5.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Settings read by SQL. Each has its one definition in the library (docs/configuration.md);
-- when the library is not loaded (an upgrade run before a restart) the default applies.
-------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._attendance_setting_interval(name text, fallback interval)
RETURNS interval LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(pg_catalog.current_setting($1, true), '')::interval, $2);
$$;

-------------------------------------------------------------------------------
-- The rooms of a session: its main room, rooms linked to it, breakout rooms by name
-------------------------------------------------------------------------------
-- Every room the log has seen, kept by the fold (a room's first and last event time, and the
-- session its name names through attendance.room_pattern when it was logged). It is what the
-- naming rule for breakout rooms is evaluated over.
CREATE TABLE @extschema@.attendance_rooms (
    room_name       text PRIMARY KEY,
    room_session    bigint,
    first_event_at  timestamptz NOT NULL,
    last_event_at   timestamptz NOT NULL
);
-- Not marked for pg_dump: it is derived (after a restore the fold sees every event again).
CREATE INDEX attendance_rooms_session_idx ON @extschema@.attendance_rooms (room_session) WHERE room_session IS NOT NULL;
COMMENT ON TABLE @extschema@.attendance_rooms IS
  'Every room name the log has seen (kept by the fold): what breakout rooms are found among.';
INSERT INTO @extschema@.attendance_rooms (room_name, room_session, first_event_at, last_event_at)
SELECT e.room_name, max(e.session_id), min(e.event_timestamp), max(e.event_timestamp)
FROM @extschema@.meeting_attendance_events e
WHERE e.room_name IS NOT NULL
GROUP BY e.room_name;

-- Rooms linked to a session explicitly (attendance_link_room), e.g. breakout rooms.
CREATE TABLE @extschema@.attendance_session_rooms (
    session_id  bigint NOT NULL REFERENCES @extschema@.attendance_session_schedule (session_id) ON DELETE CASCADE,
    room_name   text NOT NULL CHECK (room_name <> ''),
    linked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, room_name)
);
CREATE INDEX attendance_session_rooms_room_idx ON @extschema@.attendance_session_rooms (room_name);
COMMENT ON TABLE @extschema@.attendance_session_rooms IS
  'Rooms linked to a session besides its main room (attendance_link_room): time in them is presence in the session.';

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
                    AND ($2 >= s.starts_at - tolerance.t OR NOT EXISTS (
                        SELECT 1 FROM @extschema@.meeting_attendance_events l
                        WHERE l.room_name = $1 AND l.participant_sid = $6
                          AND l.event_type IN ('participant_left', 'participant_connection_aborted')
                          AND l.event_timestamp >= least(coalesce($3, $2), $2)
                          AND l.event_timestamp < s.starts_at - tolerance.t))
               ELSE least(coalesce($3, $2), $2) < s.ends_at AND $2 >= s.starts_at - tolerance.t END
    UNION ALL
    SELECT $4 WHERE $4 IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule s WHERE s.session_id = $4);
$$;

-- The sessions an event at this time may count for, whatever its kind: a session of its room
-- whose window, widened by attendance.max_connection_age before the start (a connection that
-- began that early may still be open) and the tolerance after the end, holds it. A superset
-- of _attendance_claims, for the one caller that must not miss a session: retention keeps a
-- partition while a session its events may count for is not final.
CREATE OR REPLACE FUNCTION @extschema@._attendance_match(room_name text, at timestamptz, room_session bigint)
RETURNS SETOF bigint LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT s.session_id
    FROM @extschema@._attendance_room_sessions($1, $3) r
    JOIN @extschema@.attendance_session_schedule s ON s.session_id = r
    WHERE $2 >= s.starts_at - @extschema@._attendance_setting_interval('attendance.max_connection_age', '6 hours')
      AND $2 < s.ends_at + @extschema@._attendance_setting_interval('attendance.early_join_tolerance', '15 minutes')
    UNION ALL
    SELECT $3 WHERE $3 IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule s WHERE s.session_id = $3);
$$;
-- For views and ad hoc SQL (search_path pinned): the earliest session claiming an event at
-- this time, as a room event is claimed (the views that know the event's kind, connection
-- and joinedAt use _attendance_event_claimed_by).
CREATE OR REPLACE FUNCTION @extschema@._attendance_event_session(room_name text, at timestamptz, room_session bigint)
RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT min(c) FROM @extschema@._attendance_claims($1, $2, NULL, $3, 'room_finished', NULL) c;
$$;
CREATE FUNCTION @extschema@._attendance_event_claimed_by(room_name text, at timestamptz, joined_at timestamptz,
                                                         room_session bigint, event_type text, participant_sid text)
RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT min(c) FROM @extschema@._attendance_claims($1, $2, $3, $4, $5, $6) c;
$$;
-- Every session claiming an event, as an array (attendancectl events --session).
CREATE FUNCTION @extschema@._attendance_event_sessions(room_name text, at timestamptz, joined_at timestamptz,
                                                       room_session bigint, event_type text, participant_sid text)
RETURNS bigint[] LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(c ORDER BY c), '{}') FROM @extschema@._attendance_claims($1, $2, $3, $4, $5, $6) c;
$$;
-- Whether any scheduled session has the room (by any link), for attendance_unmatched_events.
CREATE FUNCTION @extschema@._attendance_room_known(room_name text, room_session bigint)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM @extschema@._attendance_room_sessions($1, $2));
$$;
-- The rooms of one session, for the view attendance_session_room_links.
CREATE FUNCTION @extschema@._attendance_room_links(session_id bigint)
RETURNS TABLE (room_name text, link text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.room_name, r.link FROM @extschema@._attendance_session_rooms(ARRAY[$1]) r;
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

-- The events of sessions as the derivation reads them: every event of the session's rooms
-- within attendance.max_connection_age of its window (a connection that meets the window has
-- an event there), or, for an unscheduled session named by the room pattern, every event of
-- its rooms. `unseen`: an event its last calculation did not see that the session claims,
-- or that changes a connection the session holds (_attendance_holds). user_keys: only these
-- persons' participant events, and the room events (the fold's incremental unit; NULL: all).
DROP FUNCTION @extschema@._attendance_session_events(bigint[]);
CREATE FUNCTION @extschema@._attendance_session_events(session_ids bigint[], user_keys text[] DEFAULT NULL)
RETURNS TABLE (session_id bigint, event_id text, event_type text, at_ms bigint, participant_sid text,
               participant_identity text, user_key text, user_id bigint, participant_name text, role text,
               joined_ms bigint, disconnect_reason text, unseen boolean, room_name text)
LANGUAGE sql STABLE AS $$
    WITH settings AS (
        SELECT @extschema@._attendance_setting_interval('attendance.max_connection_age', '6 hours') AS reach),
    candidates AS MATERIALIZED (
        SELECT r.session_id, e.id, e.event_timestamp
        FROM @extschema@._attendance_session_rooms($1) r
        JOIN @extschema@.attendance_session_schedule s ON s.session_id = r.session_id
        CROSS JOIN settings
        JOIN @extschema@.meeting_attendance_events e
          ON e.room_name = r.room_name
         AND e.event_timestamp >= s.starts_at - settings.reach
         AND e.event_timestamp < s.ends_at + settings.reach
        WHERE e.result = 'recorded'
          AND ($2 IS NULL OR e.user_key = ANY ($2) OR e.event_type IN ('room_started', 'room_finished'))
        UNION
        SELECT e.session_id, e.id, e.event_timestamp
        FROM @extschema@.meeting_attendance_events e
        WHERE e.session_id = ANY ($1) AND e.result = 'recorded'
          AND ($2 IS NULL OR e.user_key = ANY ($2) OR e.event_type IN ('room_started', 'room_finished'))
          AND NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule x WHERE x.session_id = e.session_id))
    SELECT c.session_id, e.event_id, e.event_type,
           floor(extract(epoch FROM e.event_timestamp) * 1000)::bigint, e.participant_sid,
           e.participant_identity, e.user_key, e.user_id, e.participant_name, e.role,
           floor(extract(epoch FROM e.joined_at) * 1000)::bigint, e.disconnect_reason,
           CASE WHEN s.session_id IS NOT NULL AND @extschema@._attendance_unseen_by(e.logged_xid, s.calculated_snapshot)
                THEN c.session_id IN (SELECT x.x FROM @extschema@._attendance_claims(e.room_name, e.event_timestamp, e.joined_at,
                                                                                     e.session_id, e.event_type, e.participant_sid) x(x)
                                      UNION ALL
                                      SELECT y.y FROM @extschema@._attendance_holds(e.room_name, e.event_timestamp,
                                                                                    e.event_type, e.participant_sid) y(y))
                ELSE false END,
           e.room_name
    FROM candidates c
    JOIN @extschema@.meeting_attendance_events e ON e.id = c.id AND e.event_timestamp = c.event_timestamp
    LEFT JOIN @extschema@.attendance_session_schedule s ON s.session_id = c.session_id;
$$;

-- Linking a room to a session, and unlinking it. A calculated session is calculated again
-- (cause 'rooms changed'): its rows depend on its rooms.
CREATE FUNCTION @extschema@.attendance_link_room(session_id bigint, room_name text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR $2 IS NULL OR $2 = '' THEN
        RAISE EXCEPTION 'attendance_link_room: session_id and a non-empty room_name are required'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM 1 FROM @extschema@.attendance_session_schedule s WHERE s.session_id = $1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'attendance_link_room: session % is not scheduled', $1
            USING ERRCODE = 'no_data_found', HINT = 'Schedule it first with attendance_schedule_session.';
    END IF;
    INSERT INTO @extschema@.attendance_session_rooms (session_id, room_name) VALUES ($1, $2)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM @extschema@._attendance_rooms_changed($1);
    END IF;
END;
$$;
CREATE FUNCTION @extschema@.attendance_unlink_room(session_id bigint, room_name text)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM @extschema@.attendance_session_schedule s WHERE s.session_id = $1 FOR UPDATE;
    DELETE FROM @extschema@.attendance_session_rooms l WHERE l.session_id = $1 AND l.room_name = $2;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM @extschema@._attendance_rooms_changed($1);
    RETURN true;
END;
$$;
CREATE FUNCTION @extschema@._attendance_rooms_changed(session_id bigint)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE @extschema@.attendance_session_schedule s
    SET needs_fold = true,
        needs_calculation = needs_calculation OR calculated_at IS NOT NULL,
        recalculation_cause = CASE WHEN calculated_at IS NULL OR (needs_calculation AND recalculation_cause IS NOT NULL)
                                   THEN recalculation_cause ELSE 'rooms changed' END,
        updated_at = now()
    WHERE s.session_id = $1;
    SELECT @extschema@._attendance_wake_worker();
$$;

-- The rooms of every session, for reading.
CREATE VIEW @extschema@.attendance_session_room_links AS
SELECT s.session_id, r.room_name, r.link
FROM @extschema@.attendance_session_schedule s,
     LATERAL @extschema@._attendance_room_links(s.session_id) r;

-- Nothing is executable by PUBLIC. The rule functions have no SET clause, so that
-- PostgreSQL inlines them, and are the owner's only (an inlined body resolves operators
-- through the caller's search_path); other roles reach them through the pinned functions
-- that run as the owner (docs/security.md).
REVOKE ALL ON FUNCTION @extschema@._attendance_holds(text, timestamptz, text, text),
    @extschema@._attendance_setting_interval(text, interval),
    @extschema@._attendance_room_sessions(text, bigint),
    @extschema@._attendance_parent_room(text), @extschema@._attendance_session_rooms(bigint[]),
    @extschema@._attendance_claims(text, timestamptz, timestamptz, bigint, text, text),
    @extschema@._attendance_session_events(bigint[], text[]),
    @extschema@._attendance_event_claimed_by(text, timestamptz, timestamptz, bigint, text, text),
    @extschema@._attendance_room_known(text, bigint), @extschema@._attendance_room_links(bigint),
    @extschema@._attendance_event_sessions(text, timestamptz, timestamptz, bigint, text, text),
    @extschema@.attendance_link_room(bigint, text), @extschema@.attendance_unlink_room(bigint, text),
    @extschema@._attendance_rooms_changed(bigint)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._attendance_event_claimed_by(text, timestamptz, timestamptz, bigint, text, text),
    @extschema@._attendance_room_known(text, bigint), @extschema@._attendance_room_links(bigint),
    @extschema@._attendance_event_sessions(text, timestamptz, timestamptz, bigint, text, text)
  TO attendance_reader;
GRANT SELECT ON @extschema@.attendance_rooms, @extschema@.attendance_session_rooms,
    @extschema@.attendance_session_room_links TO attendance_reader;

-------------------------------------------------------------------------------
-- Connections carry their room
-------------------------------------------------------------------------------
ALTER TABLE @extschema@.attendance_sessions ADD COLUMN room_name text NOT NULL DEFAULT '';
ALTER TABLE @extschema@.attendance_sessions DROP CONSTRAINT attendance_sessions_pkey;
ALTER TABLE @extschema@.attendance_sessions ADD PRIMARY KEY (session_id, room_name, participant_sid);
-- The sessions holding a connection: an event of it may change their rows (the fold derives
-- them again, docs/architecture.md, "The worker's loops").
CREATE INDEX attendance_sessions_connection_idx ON @extschema@.attendance_sessions (room_name, participant_sid);
-- The role the derivation gives the person now (the roster's, else the events', else student),
-- kept by every fold and calculation; `role` is the one the stored result used. A
-- calculation that reads what the fold stored takes the role from here.
ALTER TABLE @extschema@.meeting_attendances ADD COLUMN derived_role text;
COMMENT ON COLUMN @extschema@.meeting_attendances.derived_role IS
    'The role the derivation gives the person now (roster, else the events, else student); role is the one the stored result used.';
COMMENT ON COLUMN @extschema@.attendance_sessions.room_name IS
  'The room the connection was in: the session''s main room or one linked to it (breakout rooms).';

-------------------------------------------------------------------------------
-- Reconnect grace, a policy number (per role like the others)
-------------------------------------------------------------------------------
ALTER TABLE @extschema@.attendance_policies
    ADD COLUMN reconnect_grace interval NOT NULL DEFAULT '0'
        CHECK (reconnect_grace >= interval '0' AND reconnect_grace <= interval '1 hour');
ALTER TABLE @extschema@.attendance_policy_roles
    ADD COLUMN reconnect_grace interval CHECK (reconnect_grace >= interval '0' AND reconnect_grace <= interval '1 hour');
COMMENT ON COLUMN @extschema@.attendance_policies.reconnect_grace IS
  'A gap shorter than this after a network-type disconnect (SIGNAL_CLOSE, CONNECTION_TIMEOUT, MIGRATION, '
  'MEDIA_FAILURE, STATE_MISMATCH, SERVER_SHUTDOWN) before the person''s next join counts as presence; 0 = off.';

-------------------------------------------------------------------------------
-- The views that name an event's session
-------------------------------------------------------------------------------
CREATE OR REPLACE VIEW @extschema@.attendance_recent_events AS
SELECT e.id, e.received_at, e.event_timestamp, e.event_type, e.result,
       @extschema@._attendance_event_claimed_by(e.room_name, e.event_timestamp, e.joined_at, e.session_id,
                                                e.event_type, e.participant_sid) AS session_id,
       e.room_name, e.user_id, e.user_key, e.participant_name, e.participant_sid, e.joined_at,
       CASE WHEN e.event_type = 'participant_left' AND e.joined_at IS NOT NULL
            THEN e.event_timestamp - e.joined_at END AS connection_duration,
       e.reason, e.event_id
FROM (SELECT * FROM @extschema@.meeting_attendance_events ORDER BY id DESC LIMIT 1000) e
ORDER BY e.id DESC;

-------------------------------------------------------------------------------
-- Events no session claims
-------------------------------------------------------------------------------
CREATE OR REPLACE VIEW @extschema@.attendance_unmatched_events AS
SELECT e.id, e.received_at, e.event_type, e.room_name, e.participant_identity, e.participant_sid,
       CASE WHEN m.session_id IS NOT NULL THEN 'no user id for identity'
            WHEN NOT @extschema@._attendance_room_known(e.room_name, e.session_id) THEN 'unknown room'
            ELSE 'outside every session window' END AS problem,
       e.event_id
FROM @extschema@.meeting_attendance_events e
CROSS JOIN LATERAL (SELECT @extschema@._attendance_event_claimed_by(e.room_name, e.event_timestamp, e.joined_at,
                                                                    e.session_id, e.event_type, e.participant_sid)
                    AS session_id) m
WHERE e.result = 'recorded'
  AND (m.session_id IS NULL OR (e.participant_sid IS NOT NULL AND e.user_id IS NULL))
ORDER BY e.id DESC;

-- Every session's connections and live rows are derived again under these rules.
UPDATE @extschema@.attendance_session_schedule SET needs_fold = true WHERE NOT needs_fold AND events_retired_at IS NULL;

-------------------------------------------------------------------------------
-- Scheduling inside a retired range of the log
-------------------------------------------------------------------------------
-- A session scheduled (or moved) into a range of the log that retention already retired
-- would be calculated from nothing (its events are gone) and show everyone absent. It is
-- refused with a clear error instead (55000), whichever function writes the schedule. A
-- row whose window does not change (a new policy or course for a retired session) passes.
CREATE FUNCTION @extschema@._attendance_schedule_not_retired() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.starts_at = OLD.starts_at AND NEW.ends_at = OLD.ends_at
       AND NEW.room_name = OLD.room_name THEN
        RETURN NEW;
    END IF;
    -- (an upsert's insert that will meet the same row, window unchanged)
    IF TG_OP = 'INSERT' AND EXISTS (
           SELECT 1 FROM @extschema@.attendance_session_schedule s
           WHERE s.session_id = NEW.session_id AND s.starts_at = NEW.starts_at AND s.ends_at = NEW.ends_at
             AND s.room_name = NEW.room_name) THEN
        RETURN NEW;
    END IF;
    SELECT x.range_start, x.range_end INTO r FROM @extschema@.attendance_retired_events x
    WHERE x.range_start < NEW.ends_at AND x.range_end > NEW.starts_at
    ORDER BY x.range_start LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'session %: its window [%, %) lies in a range of the log that was retired (% to %, attendance.event_retention)',
            NEW.session_id, NEW.starts_at, NEW.ends_at, r.range_start, r.range_end
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Its webhooks are no longer logged, so it cannot be calculated; see attendance_log_partitions.';
    END IF;
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION @extschema@._attendance_schedule_not_retired() FROM PUBLIC;
CREATE TRIGGER attendance_session_schedule_not_retired
    BEFORE INSERT OR UPDATE OF starts_at, ends_at, room_name ON @extschema@.attendance_session_schedule
    FOR EACH ROW EXECUTE FUNCTION @extschema@._attendance_schedule_not_retired();

-------------------------------------------------------------------------------
-- Forgetting a person twice; the sessions of the erasure
-------------------------------------------------------------------------------
-- Two fixes to 0.4.1's function: forgetting a person a second time, after new webhooks
-- named them again in a session that already had their pseudonym's row, failed with 23505
-- (and the session showed one person as two); and the erasure's `sessions` held NULL for
-- events of rooms the room pattern does not name (it listed the pattern's column instead of
-- the sessions the events count for). The sessions are now those that claim the person's
-- events (_attendance_claims).
CREATE OR REPLACE FUNCTION @extschema@.attendance_forget_person(user_id bigint)
RETURNS @extschema@.attendance_erasures
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica AS $$
DECLARE
    p bigint;
    k text;
    uk text := attendance_forget_person.user_id::text;
    sessions bigint[];
    n_log integer;
    n_conn integer;
    n_att integer;
    n_roster integer;
    n_over integer;
    n_audit integer;
    n_alert integer;
    n_merged integer;
    parts regclass[];
    result @extschema@.attendance_erasures;
BEGIN
    IF attendance_forget_person.user_id IS NULL THEN
        RAISE EXCEPTION 'attendance_forget_person: user_id is required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- The installation's salt, made once (48 bytes from three random UUIDs' hex digits).
    INSERT INTO @extschema@.attendance_privacy_salt AS x (salt)
    SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
    ON CONFLICT (only_row) DO NOTHING;
    p := @extschema@._attendance_pseudonym(attendance_forget_person.user_id);
    k := p::text;
    -- The sessions the person appears in: their schedule rows are locked in id order, as
    -- the fold and calculations lock them, so that no derivation writes the person's old
    -- rows meanwhile.
    SELECT coalesce(array_agg(DISTINCT x.sid ORDER BY x.sid), '{}') INTO sessions FROM (
        SELECT m.session_id FROM @extschema@.meeting_attendances m WHERE m.user_key = uk
        UNION SELECT r.session_id FROM @extschema@.attendance_roster r WHERE r.user_id = attendance_forget_person.user_id
        UNION SELECT c.session_id FROM @extschema@.attendance_sessions c WHERE c.user_key = uk
        UNION SELECT o.session_id FROM @extschema@.attendance_overrides o WHERE o.user_key = uk
        UNION SELECT c.session_id FROM @extschema@.meeting_attendance_events e
              CROSS JOIN LATERAL @extschema@._attendance_claims(e.room_name, e.event_timestamp, e.joined_at,
                                                                e.session_id, e.event_type, e.participant_sid) c(session_id)
              WHERE e.user_id = attendance_forget_person.user_id) x(sid)
    WHERE x.sid IS NOT NULL;
    PERFORM 1 FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = ANY (sessions) ORDER BY s.session_id FOR UPDATE;
    -- A fold that read the person's old key before this commits derives these sessions
    -- whole (it reads needs_fold after taking the same locks).
    UPDATE @extschema@.attendance_session_schedule s SET needs_fold = true
    WHERE s.session_id = ANY (sessions) AND NOT s.needs_fold;

    -- The log: the person's rows keep their times, kinds, sids and role; the identity
    -- becomes the pseudonym, the name goes, and the body loses the participant's name,
    -- metadata and attributes (the identity in it becomes the pseudonym too).
    -- The partitions that held them are noted for their statistics (below).
    WITH changed AS (
        UPDATE @extschema@.meeting_attendance_events e SET
            user_id = p, user_key = k, participant_identity = k, participant_name = NULL,
            raw_webhook_data = CASE WHEN jsonb_typeof(e.raw_webhook_data -> 'participant') = 'object'
                THEN jsonb_set(e.raw_webhook_data, '{participant}',
                               ((e.raw_webhook_data -> 'participant') - 'name' - 'metadata' - 'attributes')
                               || jsonb_build_object('identity', k))
                ELSE e.raw_webhook_data END
        WHERE e.user_id = attendance_forget_person.user_id
        RETURNING e.tableoid)
    SELECT count(*), coalesce(array_agg(DISTINCT c.tableoid), '{}')::regclass[] INTO n_log, parts FROM changed c;

    -- The derived rows and the inputs, under the same key, so that a later fold or
    -- calculation derives the same counts and statuses for the pseudonym.
    UPDATE @extschema@.attendance_sessions c SET user_key = k WHERE c.user_key = uk;
    GET DIAGNOSTICS n_conn = ROW_COUNT;
    -- Forgotten before: a row of the pseudonym may already be in a session where new webhooks
    -- (or a new roster entry or override) named the person again. One person, one row: the
    -- live row under the old key goes and the session is derived again (its log rows are all
    -- the pseudonym's now); a newer override replaces the pseudonym's; a roster entry and an
    -- open alert the pseudonym already has are kept.
    WITH gone AS (
        DELETE FROM @extschema@.meeting_attendances m
        WHERE m.user_key = uk
          AND EXISTS (SELECT 1 FROM @extschema@.meeting_attendances x WHERE x.session_id = m.session_id AND x.user_key = k)
        RETURNING m.session_id)
    UPDATE @extschema@.attendance_session_schedule s SET needs_fold = true
    WHERE s.session_id IN (SELECT g.session_id FROM gone g);
    GET DIAGNOSTICS n_merged = ROW_COUNT;
    UPDATE @extschema@.meeting_attendances m SET
        user_key = k, user_id = p, participant_identity = k, participant_name = NULL, updated_at = now()
    WHERE m.user_key = uk;
    GET DIAGNOSTICS n_att = ROW_COUNT;
    n_att := n_att + n_merged;
    DELETE FROM @extschema@.attendance_roster r
    WHERE r.user_id = attendance_forget_person.user_id
      AND EXISTS (SELECT 1 FROM @extschema@.attendance_roster x WHERE x.session_id = r.session_id AND x.user_id = p);
    GET DIAGNOSTICS n_merged = ROW_COUNT;
    UPDATE @extschema@.attendance_roster r SET user_id = p WHERE r.user_id = attendance_forget_person.user_id;
    GET DIAGNOSTICS n_roster = ROW_COUNT;
    n_roster := n_roster + n_merged;
    DELETE FROM @extschema@.attendance_overrides o
    WHERE o.user_key = k
      AND EXISTS (SELECT 1 FROM @extschema@.attendance_overrides x WHERE x.session_id = o.session_id AND x.user_key = uk);
    -- An override's reason is free text about the person (e.g. a doctor's note): erased;
    -- its status counts and is kept.
    UPDATE @extschema@.attendance_overrides o SET user_key = k, reason = 'erased (attendance_forget_person)'
    WHERE o.user_key = uk;
    GET DIAGNOSTICS n_over = ROW_COUNT;
    UPDATE @extschema@.attendance_alerts a SET cleared_at = now(), cleared_cause = 'merged (attendance_forget_person)'
    WHERE a.user_key = uk AND a.cleared_at IS NULL
      AND EXISTS (SELECT 1 FROM @extschema@.attendance_alerts x
                  WHERE x.course = a.course AND x.user_key = k AND x.cleared_at IS NULL);
    UPDATE @extschema@.attendance_status_changes a SET user_key = k WHERE a.user_key = uk;
    GET DIAGNOSTICS n_audit = ROW_COUNT;
    -- Low-attendance alerts name the person by key and id; the rate and the times stay.
    UPDATE @extschema@.attendance_alerts a SET user_key = k, user_id = p WHERE a.user_key = uk;
    GET DIAGNOSTICS n_alert = ROW_COUNT;

    IF n_log + n_conn + n_att + n_roster + n_over + n_audit + n_alert = 0 THEN
        IF EXISTS (SELECT 1 FROM @extschema@.attendance_erasures x WHERE x.pseudonym = p) THEN
            RAISE EXCEPTION 'attendance_forget_person: user % was already forgotten', attendance_forget_person.user_id
                USING ERRCODE = 'undefined_object';
        END IF;
        RAISE EXCEPTION 'attendance_forget_person: no attendance data for user %', attendance_forget_person.user_id
            USING ERRCODE = 'undefined_object';
    END IF;

    -- The planner's statistics (pg_stats) hold values sampled from these tables: names,
    -- identities, user ids, bodies. A role sees those of every column it may read, and they
    -- stay until the next ANALYZE of the table. They lose the erased values here, in this
    -- transaction, so exactly when the erasure commits (docs/security.md, "Forgetting a
    -- person"; what each way costs: docs/performance.md, "Forgetting a person"):
    -- - the log: the statistics of the columns erased above are deleted, for the partitions
    --   that held the person's rows and for the log as a whole (which has some only if
    --   someone analyzed it). Sampling them again would cost a sample of each of those
    --   partitions, nearly all of them for a person of a year-long course; and the
    --   extension's queries find log rows by room, session, time or id, not by these
    --   columns. The next ANALYZE of a partition (autovacuum's) makes them again, from the
    --   erased rows. Deleting statistics rows needs a superuser: the owner, who created
    --   the extension.
    IF n_log > 0 THEN
        DELETE FROM pg_statistic s
        USING pg_attribute a
        WHERE s.starelid = ANY (parts || '@extschema@.meeting_attendance_events'::regclass)
          AND a.attrelid = s.starelid AND a.attnum = s.staattnum
          AND a.attname IN ('user_id', 'user_key', 'participant_identity', 'participant_name', 'raw_webhook_data');
    END IF;
    -- - the derived tables and inputs it changed are analyzed again (ANALYZE needs their
    --   owner): in this transaction ANALYZE samples the call's new row versions, not the
    --   old ones, and its statistics commit with the erasure. The planner uses these
    --   columns (course reports and alerts group and join on user_key).
    IF n_conn > 0 THEN
        ANALYZE @extschema@.attendance_sessions;
    END IF;
    IF n_att > 0 THEN
        ANALYZE @extschema@.meeting_attendances;
    END IF;
    IF n_roster > 0 THEN
        ANALYZE @extschema@.attendance_roster;
    END IF;
    IF n_over > 0 THEN
        ANALYZE @extschema@.attendance_overrides;
    END IF;
    IF n_audit > 0 THEN
        ANALYZE @extschema@.attendance_status_changes;
    END IF;
    IF n_alert > 0 THEN
        ANALYZE @extschema@.attendance_alerts;
    END IF;

    INSERT INTO @extschema@.attendance_erasures AS x (pseudonym, sessions, log_rows, connection_rows, attendance_rows,
                                                       roster_rows, override_rows, audit_rows, alert_rows)
    VALUES (p, sessions, n_log, n_conn, n_att, n_roster, n_over, n_audit, n_alert)
    ON CONFLICT (pseudonym) DO UPDATE SET
        erased_at = now(), actor = excluded.actor,
        sessions = ARRAY(SELECT DISTINCT u FROM unnest(x.sessions || excluded.sessions) u ORDER BY u),
        log_rows = x.log_rows + excluded.log_rows, connection_rows = x.connection_rows + excluded.connection_rows,
        attendance_rows = x.attendance_rows + excluded.attendance_rows, roster_rows = x.roster_rows + excluded.roster_rows,
        override_rows = x.override_rows + excluded.override_rows, audit_rows = x.audit_rows + excluded.audit_rows,
        alert_rows = x.alert_rows + excluded.alert_rows
    RETURNING * INTO result;
    RETURN result;
END;
$$;
COMMENT ON FUNCTION @extschema@.attendance_forget_person(bigint) IS
  'Erase a person''s identifying data (names, identities, metadata) from the log and every derived row, keeping counts and statuses under a salted pseudonym (a negative user id), and sample the changed tables'' statistics again; audited in attendance_erasures. Owner only.';


-- Retention waits for unfolded events (0.5.0)
-- Retiring a partition while a late event of a session it touches sat unfolded in a younger
-- partition lost the event's flag (the session looked final). Under the retirement's lock the
-- log is folded first, and the check that follows sees the flag. (Same function as 0.4.1 but
-- for that fold.)
CREATE OR REPLACE FUNCTION @extschema@.attendance_maintain_log(lock_wait interval DEFAULT '2 seconds')
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    iv interval := @extschema@._attendance_partition_interval();
    retention interval := @extschema@._attendance_event_retention();
    action text := current_setting('attendance.retention_action');
    ahead integer := current_setting('attendance.partitions_ahead')::integer;
    created integer := 0;
    moved_partitions integer := 0;
    moved_rows bigint := 0;
    retired integer := 0;
    retired_events bigint := 0;
    notes text[] := '{}';
    t timestamptz;
    g record;
    p record;
    k integer;
    n bigint;
    safe bigint;
    touched bigint[];
    blocking bigint[];
    candidates jsonb := '[]';
    moved_ranges tstzrange[] := '{}';
    c jsonb;
    locked_at timestamptz;
    lock_ms numeric;
    holders text;
BEGIN
    PERFORM set_config('lock_timeout', (extract(epoch FROM lock_wait) * 1000)::bigint::text, true);

    -- 0. One run at a time: two runs would create the same partitions and attach them, and
    --    deadlock on the catalogs and the default partition. The run's lock is taken
    --    first and held to the end of the transaction; a second run waits for it at most
    --    lock_wait, then skips and says so (the run holding it does the same work).
    BEGIN
        PERFORM pg_advisory_xact_lock(@extschema@._attendance_log_lock_key());
    EXCEPTION WHEN lock_not_available THEN
        SELECT string_agg(l.pid::text, ', ' ORDER BY l.pid) INTO holders
        FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
          AND ((l.classid::bigint << 32) | l.objid::bigint) = @extschema@._attendance_log_lock_key();
        RETURN jsonb_build_object(
            'created', 0, 'moved_partitions', 0, 'moved_rows', 0, 'retired', 0,
            'retention', CASE WHEN retention IS NULL THEN 'keep everything' ELSE retention::text END,
            'lock_ms', NULL, 'notes', '[]'::jsonb, 'skipped', true,
            'message', format('skipped: another partition maintenance%s still held '
                              'the log''s maintenance lock after %s ms; that run does the same work',
                              CASE WHEN holders IS NULL THEN '' ELSE ' in backend ' || holders END,
                              round(extract(epoch FROM lock_wait) * 1000)));
    END;

    -- 1. Rows in the default partition (outside every partition when logged) get
    --    partitions of their own. The log is locked in SHARE mode meanwhile (ingestion
    --    waits; this happens only when such rows exist) and everything is folded first.
    IF EXISTS (SELECT 1 FROM @extschema@.meeting_attendance_events_default) THEN
        BEGIN
            LOCK TABLE @extschema@.meeting_attendance_events IN SHARE MODE;
            locked_at := clock_timestamp();
            PERFORM @extschema@.attendance_fold();
            LOOP
                SELECT min(d.event_timestamp) INTO t FROM @extschema@.meeting_attendance_events_default d;
                EXIT WHEN t IS NULL;
                SELECT * INTO g FROM @extschema@._attendance_log_gap(t);
                moved_rows := moved_rows + @extschema@._attendance_log_add_partition(g.range_start, g.range_end);
                moved_partitions := moved_partitions + 1;
                moved_ranges := moved_ranges || tstzrange(g.range_start, g.range_end);
            END LOOP;
            -- Moved rows keep their logged_xid, so no calculated session takes them for
            -- late webhooks.
            lock_ms := round(extract(epoch FROM clock_timestamp() - locked_at) * 1000, 1);
        EXCEPTION WHEN lock_not_available THEN
            notes := notes || 'moving rows out of the default partition postponed: the log was busy'::text;
            moved_rows := 0;
            moved_partitions := 0;
        END;
    END IF;

    -- 2. Partitions ahead: the one holding now and attendance.partitions_ahead after it.
    FOR k IN 0 .. ahead LOOP
        t := now() + iv * k;
        CONTINUE WHEN EXISTS (SELECT 1 FROM @extschema@._attendance_log_partitions() x
                              WHERE t >= x.range_start AND t < x.range_end);
        SELECT * INTO g FROM @extschema@._attendance_log_gap(t);
        -- Rows of that range still in the default partition (their move was postponed).
        CONTINUE WHEN EXISTS (SELECT 1 FROM @extschema@.meeting_attendance_events_default d
                              WHERE d.event_timestamp >= g.range_start AND d.event_timestamp < g.range_end);
        BEGIN
            PERFORM @extschema@._attendance_log_add_partition(g.range_start, g.range_end);
            created := created + 1;
        EXCEPTION WHEN lock_not_available THEN
            notes := notes || format('creating the partition from %s postponed: the log was busy', g.range_start);
        END;
    END LOOP;

    -- 3. Retention: partitions whose whole range is older than the retention, whose events
    --    are all folded, and whose events count only for sessions that are calculated and
    --    final, as are the sessions scheduled in the range (events matching no scheduled
    --    session do not keep a partition). Checked
    --    without locks first, then again under the lock, which is taken once for all.
    IF retention IS NOT NULL THEN
        SELECT f.safe_id INTO safe FROM @extschema@.attendance_fold_state f;
        FOR p IN SELECT * FROM @extschema@._attendance_log_partitions() x
                 WHERE x.range_end <= now() - retention ORDER BY x.range_start LOOP
            EXECUTE format('SELECT coalesce(max(id), 0) FROM %s', p.partition) INTO n;
            IF n > safe THEN
                notes := notes || format('%s kept: events not folded yet', (SELECT x.relname FROM pg_class x WHERE x.oid = p.partition));
                CONTINUE;
            END IF;
            EXECUTE format('SELECT coalesce(array_agg(DISTINCT m.session_id), ''{}'') FROM %s e, '
                           'LATERAL @extschema@._attendance_match(e.room_name, e.event_timestamp, e.session_id) m(session_id) '
                           'WHERE e.result = ''recorded'' AND m.session_id IS NOT NULL', p.partition) INTO touched;
            SELECT coalesce(array_agg(s.session_id ORDER BY s.session_id), '{}') INTO blocking
            FROM @extschema@.attendance_session_schedule s
            WHERE (s.session_id = ANY (touched)
                   -- a session scheduled in the range (give or take an hour) whose webhooks
                   -- have not come, or not all: retiring the range would make them "retired"
                   OR tstzrange(s.starts_at - interval '1 hour', s.ends_at + interval '1 hour')
                      && tstzrange(p.range_start, p.range_end))
              AND (s.calculated_at IS NULL OR s.needs_calculation OR s.needs_fold);
            IF cardinality(blocking) > 0 THEN
                notes := notes || format('%s kept: session(s) %s not final', (SELECT x.relname FROM pg_class x WHERE x.oid = p.partition),
                                         array_to_string(blocking, ', '));
                CONTINUE;
            END IF;
            candidates := candidates || jsonb_build_object(
                'partition', (SELECT x.relname FROM pg_class x WHERE x.oid = p.partition), 'oid', p.partition::oid,
                'range_start', p.range_start, 'range_end', p.range_end, 'max_id', n,
                'sessions', to_jsonb(touched));
        END LOOP;
        IF jsonb_array_length(candidates) > 0 THEN
            BEGIN
                -- Dropping or detaching a partition takes ACCESS EXCLUSIVE on the log (ingestion
                -- waits until this transaction ends); taken first, so that the partition is never
                -- locked before the log (as inserts lock them).
                LOCK TABLE @extschema@.meeting_attendance_events IN ACCESS EXCLUSIVE MODE;
                locked_at := clock_timestamp();
                -- No event can be logged under this lock: fold what is not folded yet, so that
                -- a late event of a session these partitions touch, logged in a younger
                -- partition, flags it before the check below (docs/architecture.md,
                -- "Partitions and retention").
                PERFORM @extschema@.attendance_fold();
                FOR c IN SELECT * FROM jsonb_array_elements(candidates) LOOP
                    touched := ARRAY(SELECT jsonb_array_elements_text(c->'sessions')::bigint);
                    EXECUTE format('SELECT coalesce(max(id), 0), count(*) FROM %s', (c->>'oid')::oid::regclass) INTO n, retired_events;
                    -- An event logged since the check, or a session flagged since: not now.
                    IF n <> (c->>'max_id')::bigint OR EXISTS (
                           SELECT 1 FROM @extschema@.attendance_session_schedule s
                           WHERE s.session_id = ANY (touched)
                             AND (s.calculated_at IS NULL OR s.needs_calculation OR s.needs_fold)) THEN
                        notes := notes || format('%s kept: it changed during the check', c->>'partition');
                        CONTINUE;
                    END IF;
                    INSERT INTO @extschema@.attendance_retired_events
                        (partition_name, range_start, range_end, action, events, sessions)
                    VALUES (c->>'partition', (c->>'range_start')::timestamptz, (c->>'range_end')::timestamptz,
                            CASE WHEN action = 'detach' THEN 'detached' ELSE 'dropped' END, retired_events, touched);
                    UPDATE @extschema@.attendance_session_schedule s SET events_retired_at = coalesce(s.events_retired_at, now())
                    WHERE s.session_id = ANY (touched);
                    -- Partitions made by an upgrade script belong to the extension.
                    IF EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                               AND d.objid = (c->>'oid')::oid AND d.deptype = 'e') THEN
                        EXECUTE format('ALTER EXTENSION attendance DROP TABLE %s', (c->>'oid')::oid::regclass);
                    END IF;
                    IF action = 'detach' THEN
                        EXECUTE format('ALTER TABLE @extschema@.meeting_attendance_events DETACH PARTITION %s',
                                       (c->>'oid')::oid::regclass);
                    ELSE
                        EXECUTE format('DROP TABLE %s', (c->>'oid')::oid::regclass);
                    END IF;
                    retired := retired + 1;
                END LOOP;
                lock_ms := greatest(lock_ms, round(extract(epoch FROM clock_timestamp() - locked_at) * 1000, 1));
            EXCEPTION WHEN lock_not_available THEN
                notes := notes || 'retiring partitions postponed: the log was busy'::text;
                retired := 0;
            END;
        END IF;
    END IF;

    RETURN jsonb_build_object(
        'created', created, 'moved_partitions', moved_partitions, 'moved_rows', moved_rows,
        'retired', retired, 'retention', CASE WHEN retention IS NULL THEN 'keep everything' ELSE retention::text END,
        'lock_ms', lock_ms, 'notes', to_jsonb(notes), 'skipped', false,
        'message', format('created %s partition(s) ahead, moved %s row(s) of the default partition into %s, '
                          'retired (%s) %s partition(s)%s', created, moved_rows, moved_partitions,
                          CASE WHEN action = 'detach' THEN 'detached' ELSE 'dropped' END, retired,
                          CASE WHEN cardinality(notes) > 0 THEN '; ' || array_to_string(notes, '; ') ELSE '' END));
END;
$$;

-- END retention (0.5.0)

-------------------------------------------------------------------------------
-- Results calculated under 0.4.0's rules are calculated again under these
-------------------------------------------------------------------------------
-- Matching by window instead of by the nearest session, breakout rooms and the reconnect
-- grace can change a calculated session's rows. The upgrade cannot run the new rules (they
-- are the library's), so every calculated session whose events are still logged is flagged
-- (cause 'rules of 0.5.0') and listed here; the scheduler recalculates them and audits every
-- change under that cause. Nothing is rewritten silently.
CREATE TABLE @extschema@.attendance_upgrade_review (
    session_id   bigint PRIMARY KEY,
    version      text NOT NULL,
    flagged_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.attendance_upgrade_review IS
  'Calculated sessions an upgrade flagged for recalculation under new rules (the audit says what changed).';
INSERT INTO @extschema@.attendance_upgrade_review (session_id, version)
SELECT s.session_id, '0.5.0' FROM @extschema@.attendance_session_schedule s
WHERE s.calculated_at IS NOT NULL AND s.events_retired_at IS NULL;
UPDATE @extschema@.attendance_session_schedule s
SET needs_calculation = true, needs_fold = true,
    recalculation_cause = CASE WHEN s.needs_calculation AND s.recalculation_cause IS NOT NULL
                               THEN s.recalculation_cause ELSE 'rules of 0.5.0' END
WHERE s.session_id IN (SELECT r.session_id FROM @extschema@.attendance_upgrade_review r);
DO $$
DECLARE n bigint;
BEGIN
    SELECT count(*) INTO n FROM @extschema@.attendance_upgrade_review WHERE version = '0.5.0';
    IF n > 0 THEN
        RAISE NOTICE 'attendance 0.5.0: % calculated session(s) flagged for recalculation under the new rules (listed in attendance_upgrade_review; the audit shows what changed)', n;
    END IF;
END $$;
-- The audited changes those recalculations made.
CREATE VIEW @extschema@.attendance_upgrade_changes AS
SELECT r.version, c.*
FROM @extschema@.attendance_upgrade_review r
JOIN @extschema@.attendance_status_changes c ON c.session_id = r.session_id AND c.cause = 'rules of ' || r.version;
GRANT SELECT ON @extschema@.attendance_upgrade_review, @extschema@.attendance_upgrade_changes TO attendance_reader;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.attendance_session_rooms', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.attendance_upgrade_review', '');
