-- attendance 0.5.1 -> 0.5.2: attendance on a Citus cluster (docs/scaling.md, "Citus").
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.5.2'" to load this file. \quit

-------------------------------------------------------------------------------
-- The log's readers: no statement both reads the log and applies a rule
-------------------------------------------------------------------------------
-- The same rows as 0.5.1's definitions. The log is read only by PL/pgSQL readers (one room
-- at a time by the index (room, time) for a session's events) and by statements that read
-- it alone; the rules apply to what they read. On a Citus cluster, where the log is
-- distributed by room, Citus plans no SQL-language function that reads a distributed table
-- nor a query into which one is inlined, and a rule evaluated on a worker would read that
-- worker's empty copy of the schedule.

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

CREATE OR REPLACE FUNCTION @extschema@._attendance_claims(room_name text, at timestamptz, joined_at timestamptz,
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

CREATE FUNCTION @extschema@._attendance_partition_events(part regclass)
RETURNS TABLE (room_name text, event_timestamp timestamptz, session_id bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT DISTINCT e.room_name, e.event_timestamp, e.session_id FROM %s e WHERE e.result = ''recorded''', $1);
END;
$$;

CREATE OR REPLACE FUNCTION @extschema@._attendance_session_events(session_ids bigint[], user_keys text[] DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION @extschema@._attendance_flag(session_ids bigint[], cause text, event_ids bigint[] DEFAULT NULL)
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
        recalculation_cause = CASE WHEN s.needs_calculation AND s.recalculation_cause IS NOT NULL
                                        AND $2 <> 'late webhook' THEN s.recalculation_cause ELSE $2 END,
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

CREATE OR REPLACE FUNCTION @extschema@.attendance_webhook_activity(minutes integer DEFAULT 60)
RETURNS TABLE (event_type text, result text, webhooks bigint, first_received timestamptz, last_received timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    -- (PL/pgSQL: Citus plans no SQL-language function that reads a distributed table)
    RETURN QUERY
        SELECT e.event_type, e.result, count(*), min(e.received_at), max(e.received_at)
        FROM @extschema@.meeting_attendance_events e
        WHERE e.created_at >= now() - make_interval(mins => $1)
        GROUP BY e.event_type, e.result ORDER BY 3 DESC, 1, 2;
END;
$$;

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
    ev record;
    claimed bigint[] := '{}';
    new_identity jsonb;
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
    -- (a value, not an expression of the statement: Citus allows no STABLE function in the
    -- CASE of an UPDATE of a distributed table)
    new_identity := jsonb_build_object('identity', k);
    -- The sessions the person appears in: their schedule rows are locked in id order, as
    -- the fold and calculations lock them, so that no derivation writes the person's old
    -- rows meanwhile.
    SELECT coalesce(array_agg(DISTINCT x.sid ORDER BY x.sid), '{}') INTO sessions FROM (
        SELECT m.session_id FROM @extschema@.meeting_attendances m WHERE m.user_key = uk
        UNION SELECT r.session_id FROM @extschema@.attendance_roster r WHERE r.user_id = attendance_forget_person.user_id
        UNION SELECT c.session_id FROM @extschema@.attendance_sessions c WHERE c.user_key = uk
        UNION SELECT o.session_id FROM @extschema@.attendance_overrides o WHERE o.user_key = uk
        ) x(sid)
    WHERE x.sid IS NOT NULL;
    -- and the sessions its events count for (the log read by itself, then the rule:
    -- docs/architecture.md, "The log's readers")
    FOR ev IN SELECT e.room_name, e.event_timestamp, e.joined_at, e.session_id, e.event_type, e.participant_sid
              FROM @extschema@.meeting_attendance_events e WHERE e.user_id = attendance_forget_person.user_id LOOP
        claimed := claimed || ARRAY(
            SELECT c FROM @extschema@._attendance_claims(ev.room_name, ev.event_timestamp, ev.joined_at,
                                                         ev.session_id, ev.event_type, ev.participant_sid) c);
    END LOOP;
    sessions := ARRAY(SELECT DISTINCT u FROM pg_catalog.unnest(sessions || claimed) u WHERE u IS NOT NULL ORDER BY u);
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
                               || new_identity)
                ELSE e.raw_webhook_data END
        WHERE e.user_id = attendance_forget_person.user_id
        RETURNING e.tableoid)
    SELECT count(*), coalesce(array_agg(DISTINCT c.tableoid), '{}')::regclass[] INTO n_log, parts FROM changed c;
    -- On a Citus cluster the rows came from the workers' shards, whose oids mean nothing
    -- here: the coordinator's partitions (the shards' statistics are the workers':
    -- docs/scaling.md, "Citus").
    IF @extschema@._attendance_log_distributed() THEN
        parts := ARRAY(SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
                       WHERE i.inhparent = '@extschema@.meeting_attendance_events'::regclass);
    END IF;

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
            SELECT coalesce(array_agg(DISTINCT m.session_id), '{}') INTO touched
            FROM @extschema@._attendance_partition_events(p.partition) e,
                 LATERAL @extschema@._attendance_match(e.room_name, e.event_timestamp, e.session_id) m(session_id)
            WHERE m.session_id IS NOT NULL;
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

CREATE OR REPLACE VIEW @extschema@.attendance_unmatched_events AS
WITH e AS MATERIALIZED (  -- the log read by itself (docs/architecture.md, "The log's readers")
    SELECT e.id, e.received_at, e.event_type, e.room_name, e.participant_identity, e.participant_sid,
           e.event_id, e.event_timestamp, e.joined_at, e.session_id, e.user_id
    FROM @extschema@.meeting_attendance_events e WHERE e.result = 'recorded')
SELECT e.id, e.received_at, e.event_type, e.room_name, e.participant_identity, e.participant_sid,
       CASE WHEN m.session_id IS NOT NULL THEN 'no user id for identity'
            WHEN NOT @extschema@._attendance_room_known(e.room_name, e.session_id) THEN 'unknown room'
            ELSE 'outside every session window' END AS problem,
       e.event_id
FROM e
CROSS JOIN LATERAL (SELECT @extschema@._attendance_event_claimed_by(e.room_name, e.event_timestamp, e.joined_at,
                                                                    e.session_id, e.event_type, e.participant_sid)
                    AS session_id) m
WHERE m.session_id IS NULL OR (e.participant_sid IS NOT NULL AND e.user_id IS NULL)
ORDER BY e.id DESC;


-------------------------------------------------------------------------------
-- The log's shape on a cluster: keys holding the room, attendance_distribute
-------------------------------------------------------------------------------
DROP FUNCTION @extschema@._attendance_log_index(regclass);

CREATE FUNCTION @extschema@._attendance_log_index(part regclass, by_room boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n text := (SELECT c.relname FROM pg_class c WHERE c.oid = part);
    r text := CASE WHEN by_room THEN ', room_name' ELSE '' END;
BEGIN
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (id%s), '
                   'ADD CONSTRAINT %I UNIQUE (event_id, event_timestamp%s)', part, n || '_pkey', r, n || '_event_key', r);
    EXECUTE format('CREATE INDEX %I ON %s (session_id, event_timestamp)', n || '_session_idx', part);
    EXECUTE format('CREATE INDEX %I ON %s (created_at)', n || '_created_idx', part);
    EXECUTE format('CREATE INDEX %I ON %s (room_name, event_timestamp)', n || '_room_idx', part);
END;
$$;

CREATE FUNCTION @extschema@._attendance_log_distributed()
RETURNS boolean LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    RETURN EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d
                   WHERE d.logicalrelid = '@extschema@.meeting_attendance_events'::regclass);
END;
$$;

CREATE OR REPLACE FUNCTION @extschema@._attendance_log_add_partition(lo timestamptz, hi timestamptz)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO, YMD' SET timezone = 'UTC' AS $$
DECLARE
    name text := 'meeting_attendance_events_' || to_char(lo, 'YYYYMMDD"_"HH24MI');
    moved bigint;
BEGIN
    EXECUTE format('CREATE TABLE %s.%I (LIKE @extschema@.meeting_attendance_events INCLUDING DEFAULTS '
                   'INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)',
                   '@extschema@', name);
    PERFORM @extschema@._attendance_log_index(pg_catalog.format('%s.%I', '@extschema@', name)::regclass,
                                              @extschema@._attendance_log_distributed());
    -- Lets ATTACH skip checking the table's rows.
    EXECUTE format('ALTER TABLE %s.%I ADD CONSTRAINT %I CHECK (event_timestamp >= %L AND event_timestamp < %L)',
                   '@extschema@', name, name || '_range', lo, hi);
    EXECUTE format('WITH moved AS (DELETE FROM @extschema@.meeting_attendance_events_default '
                   'WHERE event_timestamp >= $1 AND event_timestamp < $2 RETURNING *) '
                   'INSERT INTO %s.%I SELECT * FROM moved', '@extschema@', name) USING lo, hi;
    GET DIAGNOSTICS moved = ROW_COUNT;
    EXECUTE format('ALTER TABLE @extschema@.meeting_attendance_events ATTACH PARTITION %s.%I FOR VALUES FROM (%L) TO (%L)',
                   '@extschema@', name, lo, hi);
    EXECUTE format('ALTER TABLE %s.%I DROP CONSTRAINT %I', '@extschema@', name, name || '_range');
    RETURN moved;
END;
$$;

CREATE FUNCTION @extschema@.attendance_distribute(shard_count integer DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part record;
    c record;
    roomless bigint;
    partitions integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'Citus is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'CREATE EXTENSION citus, add the workers (citus_add_node), then call attendance_distribute() again.';
    END IF;
    IF (SELECT groupid FROM pg_catalog.pg_dist_local_group) <> 0 THEN
        RAISE EXCEPTION 'this node is a Citus worker: attendance_distribute runs on the coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node n
                   WHERE n.groupid <> 0 AND n.noderole = 'primary' AND n.isactive) THEN
        RAISE EXCEPTION 'no Citus worker is added to this coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add the workers first: SELECT citus_add_node(host, port).';
    END IF;
    IF @extschema@._attendance_log_distributed() THEN
        RETURN jsonb_build_object('distributed', false, 'message', 'the log is already distributed by room');
    END IF;
    IF shard_count IS NOT NULL AND shard_count < 1 THEN
        RAISE EXCEPTION 'shard_count must be at least 1, not %', shard_count USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- One maintenance of the log at a time (the partition maintenance takes the same lock),
    -- and the log locked before any of its partitions, as ingestion locks them: no partition
    -- is made, moved or written meanwhile.
    PERFORM pg_advisory_xact_lock(@extschema@._attendance_log_lock_key());
    LOCK TABLE @extschema@.meeting_attendance_events IN ACCESS EXCLUSIVE MODE;

    -- Events without a room: the room ''. The log's one sanctioned rewrite besides
    -- forgetting (the UPDATE trigger is bypassed as attendance_forget_person does).
    SET LOCAL session_replication_role = replica;
    UPDATE @extschema@.meeting_attendance_events e SET room_name = '' WHERE e.room_name IS NULL;
    GET DIAGNOSTICS roomless = ROW_COUNT;
    SET LOCAL session_replication_role = origin;

    -- Each partition's keys and indexes, again, with the room.
    FOR part IN
        SELECT i.inhrelid::regclass AS rel FROM pg_catalog.pg_inherits i
        WHERE i.inhparent = '@extschema@.meeting_attendance_events'::regclass ORDER BY 1
    LOOP
        FOR c IN SELECT x.conname FROM pg_catalog.pg_constraint x
                 WHERE x.conrelid = part.rel AND x.contype IN ('p', 'u') LOOP
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', part.rel, c.conname);
        END LOOP;
        FOR c IN SELECT x.indexrelid::regclass AS idx FROM pg_catalog.pg_index x WHERE x.indrelid = part.rel LOOP
            EXECUTE format('DROP INDEX %s', c.idx);
        END LOOP;
        PERFORM @extschema@._attendance_log_index(part.rel, true);
        partitions := partitions + 1;
    END LOOP;

    DROP TRIGGER meeting_attendance_events_immutable ON @extschema@.meeting_attendance_events;
    PERFORM create_reference_table('@extschema@.attendance_retired_events');
    -- The default partition's trigger only reads (the retired ranges, on the node where the
    -- row lands): what Citus calls an unsafe trigger is one that writes elsewhere.
    SET LOCAL citus.enable_unsafe_triggers = on;
    IF shard_count IS NULL THEN
        PERFORM create_distributed_table('@extschema@.meeting_attendance_events', 'room_name');
    ELSE
        PERFORM create_distributed_table('@extschema@.meeting_attendance_events', 'room_name',
                                         shard_count => shard_count);
    END IF;
    RETURN jsonb_build_object('distributed', true, 'partitions', partitions, 'roomless_events', roomless,
                              'shards', (SELECT count(*) FROM pg_catalog.pg_dist_shard s
                                         WHERE s.logicalrelid = '@extschema@.meeting_attendance_events'::regclass));
END;
$$;

COMMENT ON FUNCTION @extschema@.attendance_distribute(integer) IS
  'Distributes the webhook log by room on a Citus cluster (run once on the coordinator; docs/scaling.md).';


REVOKE ALL ON FUNCTION @extschema@._attendance_left_between(text, text, timestamptz, timestamptz),
    @extschema@._attendance_room_events(bigint[], text[]), @extschema@._attendance_new_events(bigint, bigint),
    @extschema@._attendance_partition_events(regclass), @extschema@._attendance_log_index(regclass, boolean),
    @extschema@._attendance_log_distributed(), @extschema@.attendance_distribute(integer) FROM PUBLIC;

-- Whoever may call a rule may call its new reader: a role granted _attendance_session_events
-- (a calculation with its caller's rights, e.g. examples/roles.sql's school_override) is
-- granted _attendance_room_events, and one granted _attendance_claims
-- _attendance_left_between, which the claims now call.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT p.old, p.new, a.grantee::regrole AS grantee
        FROM (VALUES ('@extschema@._attendance_session_events(bigint[], text[])'::regprocedure,
                      '@extschema@._attendance_room_events(bigint[], text[])'::regprocedure),
                     ('@extschema@._attendance_claims(text, timestamptz, timestamptz, bigint, text, text)'::regprocedure,
                      '@extschema@._attendance_left_between(text, text, timestamptz, timestamptz)'::regprocedure)) p(old, new)
        CROSS JOIN LATERAL aclexplode((SELECT x.proacl FROM pg_catalog.pg_proc x WHERE x.oid = p.old)) a
        WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> 0
          AND a.grantee <> (SELECT x.proowner FROM pg_catalog.pg_proc x WHERE x.oid = p.old)
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', g.new, g.grantee);
    END LOOP;
END;
$$;
