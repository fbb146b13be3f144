-- attendance 0.4.0 -> 0.5.0: rooms are timelines, sessions are windows
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
RETURNS bigint LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT min(c) FROM @extschema@._attendance_claims($1, $2, NULL, $3, 'room_finished', NULL) c;
$$;
CREATE FUNCTION @extschema@._attendance_event_claimed_by(room_name text, at timestamptz, joined_at timestamptz,
                                                         room_session bigint, event_type text, participant_sid text)
RETURNS bigint LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT min(c) FROM @extschema@._attendance_claims($1, $2, $3, $4, $5, $6) c;
$$;

-- The events of sessions as the derivation reads them: every event of the session's rooms
-- within attendance.max_connection_age of its window (a connection that meets the window has
-- an event there), or, for an unscheduled session named by the room pattern, every event of
-- its rooms. `unseen`: an event the session claims that its last calculation did not see.
DROP FUNCTION @extschema@._attendance_session_events(bigint[]);
CREATE FUNCTION @extschema@._attendance_session_events(session_ids bigint[])
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
        UNION
        SELECT e.session_id, e.id, e.event_timestamp
        FROM @extschema@.meeting_attendance_events e
        WHERE e.session_id = ANY ($1) AND e.result = 'recorded'
          AND NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule x WHERE x.session_id = e.session_id))
    SELECT c.session_id, e.event_id, e.event_type,
           floor(extract(epoch FROM e.event_timestamp) * 1000)::bigint, e.participant_sid,
           e.participant_identity, e.user_key, e.user_id, e.participant_name, e.role,
           floor(extract(epoch FROM e.joined_at) * 1000)::bigint, e.disconnect_reason,
           CASE WHEN s.session_id IS NOT NULL AND @extschema@._attendance_unseen_by(e.logged_xid, s.calculated_snapshot)
                THEN c.session_id IN (SELECT @extschema@._attendance_claims(e.room_name, e.event_timestamp, e.joined_at,
                                                                            e.session_id, e.event_type, e.participant_sid))
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
SELECT r.session_id, r.room_name, r.link
FROM @extschema@.attendance_session_schedule s,
     LATERAL @extschema@._attendance_session_rooms(ARRAY[s.session_id]) r;

REVOKE ALL ON FUNCTION @extschema@._attendance_setting_interval(text, interval),
    @extschema@._attendance_room_sessions(text, bigint),
    @extschema@._attendance_parent_room(text), @extschema@._attendance_session_rooms(bigint[]),
    @extschema@._attendance_claims(text, timestamptz, timestamptz, bigint, text, text),
    @extschema@._attendance_session_events(bigint[]),
    @extschema@._attendance_event_claimed_by(text, timestamptz, timestamptz, bigint, text, text),
    @extschema@.attendance_link_room(bigint, text), @extschema@.attendance_unlink_room(bigint, text),
    @extschema@._attendance_rooms_changed(bigint)
  FROM PUBLIC;
-- attendance_explain runs as its caller and reads these (as it read the 0.4.0 ones).
GRANT EXECUTE ON FUNCTION @extschema@._attendance_event_claimed_by(text, timestamptz, timestamptz, bigint, text, text),
    @extschema@._attendance_setting_interval(text, interval), @extschema@._attendance_parent_room(text),
    @extschema@._attendance_session_rooms(bigint[]), @extschema@._attendance_room_sessions(text, bigint),
    @extschema@._attendance_claims(text, timestamptz, timestamptz, bigint, text, text),
    @extschema@._attendance_session_events(bigint[])
  TO attendance_reader;
GRANT SELECT ON @extschema@.attendance_rooms, @extschema@.attendance_session_rooms,
    @extschema@.attendance_session_room_links TO attendance_reader;

-------------------------------------------------------------------------------
-- Connections carry their room
-------------------------------------------------------------------------------
ALTER TABLE @extschema@.attendance_sessions ADD COLUMN room_name text NOT NULL DEFAULT '';
ALTER TABLE @extschema@.attendance_sessions DROP CONSTRAINT attendance_sessions_pkey;
ALTER TABLE @extschema@.attendance_sessions ADD PRIMARY KEY (session_id, room_name, participant_sid);
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
            WHEN NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule s WHERE s.room_name = e.room_name)
                 AND NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_rooms l WHERE l.room_name = e.room_name)
                 AND e.session_id IS NULL
                 AND @extschema@._attendance_parent_room(e.room_name) IS NULL THEN 'unknown room'
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
