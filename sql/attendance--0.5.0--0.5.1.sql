-- attendance 0.5.0 -> 0.5.1. From 0.5.1 the schema is built from topical sources (sql/src);
-- this script carries what changes from 0.5.0.
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.5.1'" to load this file. \quit

-------------------------------------------------------------------------------
-- The fold reads a session's events by index, whatever the log's size (issue 26)
-------------------------------------------------------------------------------
-- The same events as 0.5.0's definition, read differently (docs/performance.md, "0.5.1"):
-- * each room of a session is read by its own index range (room, time): the planner can no
--   longer choose to scan the log's partitions and hash them, which grew with the log;
-- * the persons' keys are looked up in a hashed set, not compared one by one against the
--   whole array for every event (quadratic in the persons of a fold);
-- * the branch for unscheduled sessions reads only unscheduled sessions' events: it read
--   every event of the scheduled ones by session id and dropped them afterwards.
-- A room reached through two links is read once (the rooms are made distinct first), so the
-- rows need no deduplication and no second read of the log.
CREATE OR REPLACE FUNCTION @extschema@._attendance_session_events(session_ids bigint[], user_keys text[] DEFAULT NULL)
RETURNS TABLE (session_id bigint, event_id text, event_type text, at_ms bigint, participant_sid text,
               participant_identity text, user_key text, user_id bigint, participant_name text, role text,
               joined_ms bigint, disconnect_reason text, unseen boolean, room_name text)
LANGUAGE sql STABLE AS $$
    WITH settings AS (
        SELECT @extschema@._attendance_setting_interval('attendance.max_connection_age', '6 hours') AS reach),
    rooms AS (
        SELECT DISTINCT r.session_id, r.room_name,
               s.starts_at - settings.reach AS low, s.ends_at + settings.reach AS high
        FROM @extschema@._attendance_session_rooms($1) r
        JOIN @extschema@.attendance_session_schedule s ON s.session_id = r.session_id
        CROSS JOIN settings),
    candidates AS (
        SELECT r.session_id, e.*
        FROM rooms r CROSS JOIN LATERAL (
            SELECT e.event_id, e.event_type, e.event_timestamp, e.participant_sid, e.participant_identity,
                   e.user_key, e.user_id, e.participant_name, e.role, e.joined_at, e.disconnect_reason,
                   e.logged_xid, e.room_name, e.session_id AS room_session
            FROM @extschema@.meeting_attendance_events e
            WHERE e.room_name = r.room_name AND e.event_timestamp >= r.low AND e.event_timestamp < r.high
              AND e.result = 'recorded'
              AND ($2 IS NULL OR e.event_type IN ('room_started', 'room_finished')
                   OR e.user_key IN (SELECT k FROM pg_catalog.unnest($2) k))
            OFFSET 0) e  -- (not flattened: one index range per room)
        UNION ALL
        SELECT e.session_id, e.event_id, e.event_type, e.event_timestamp, e.participant_sid,
               e.participant_identity, e.user_key, e.user_id, e.participant_name, e.role, e.joined_at,
               e.disconnect_reason, e.logged_xid, e.room_name, e.session_id
        FROM @extschema@.meeting_attendance_events e
        WHERE e.session_id = ANY (ARRAY(SELECT u FROM pg_catalog.unnest($1) u
                                        WHERE NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule x
                                                          WHERE x.session_id = u)))
          AND e.result = 'recorded'
          AND ($2 IS NULL OR e.event_type IN ('room_started', 'room_finished')
               OR e.user_key IN (SELECT k FROM pg_catalog.unnest($2) k)))
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
    FROM candidates c
    LEFT JOIN @extschema@.attendance_session_schedule s ON s.session_id = c.session_id;
$$;
