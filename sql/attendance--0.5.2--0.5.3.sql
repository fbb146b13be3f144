-- attendance 0.5.2 -> 0.5.3: one home for cause precedence and for a session's reach
-- (docs/architecture.md, "One home for each rule").
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.5.3'" to load this file. \quit

-- Which cause stands when a cause meets a session's pending one: the library's
-- core::prevailing_cause, which the calculation's audit asks too.
CREATE FUNCTION @extschema@._attendance_prevailing_cause(pending text, incoming text)
RETURNS text AS 'MODULE_PATHNAME', 'attendance_prevailing_cause' LANGUAGE C IMMUTABLE PARALLEL SAFE;
REVOKE ALL ON FUNCTION @extschema@._attendance_prevailing_cause(text, text) FROM PUBLIC;

-- The flag asks it instead of a CASE of its own (the same causes as 0.5.2's).
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

-- A session's reach: its window widened by attendance.max_connection_age before the start
-- and the tolerance after the end. The match reads it as before; retention now keeps a
-- partition that a session not yet final may still receive webhooks for by the same reach
-- (until 0.5.2 by its window give or take an hour: the range of an early join not logged
-- yet could be retired, and the join, when it came, was "retired").
CREATE FUNCTION @extschema@._attendance_session_reach(starts_at timestamptz, ends_at timestamptz)
RETURNS tstzrange LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.tstzrange(
        $1 - @extschema@._attendance_setting_interval('attendance.max_connection_age', '6 hours'),
        $2 + @extschema@._attendance_setting_interval('attendance.early_join_tolerance', '15 minutes'));
$$;
REVOKE ALL ON FUNCTION @extschema@._attendance_session_reach(timestamptz, timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@._attendance_match(room_name text, at timestamptz, room_session bigint)
RETURNS SETOF bigint LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT s.session_id
    FROM @extschema@._attendance_room_sessions($1, $3) r
    JOIN @extschema@.attendance_session_schedule s ON s.session_id = r
    WHERE $2 <@ @extschema@._attendance_session_reach(s.starts_at, s.ends_at)
    UNION ALL
    SELECT $3 WHERE $3 IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule s WHERE s.session_id = $3);
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
                   -- a session whose reach meets the range and whose webhooks have not come,
                   -- or not all: retiring the range would make them "retired"
                   OR @extschema@._attendance_session_reach(s.starts_at, s.ends_at)
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

-- Whoever may call a rule may call what it now asks: a role granted _attendance_flag (a
-- schedule or roster change with its caller's rights, e.g. examples/roles.sql's school_app)
-- is granted _attendance_prevailing_cause, and one granted _attendance_match
-- _attendance_session_reach.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT p.old, p.new, a.grantee::regrole AS grantee
        -- (the functions by name: each has one signature in this schema)
        FROM (SELECT o.oid AS old, n.oid::regprocedure AS new
              FROM (VALUES ('_attendance_flag', '_attendance_prevailing_cause'),
                           ('_attendance_match', '_attendance_session_reach')) v(old_name, new_name)
              JOIN pg_catalog.pg_proc o ON o.proname = v.old_name
                AND o.pronamespace = '@extschema@'::regnamespace
              JOIN pg_catalog.pg_proc n ON n.proname = v.new_name
                AND n.pronamespace = '@extschema@'::regnamespace) p
        CROSS JOIN LATERAL aclexplode((SELECT x.proacl FROM pg_catalog.pg_proc x WHERE x.oid = p.old)) a
        WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> 0
          AND a.grantee <> (SELECT x.proowner FROM pg_catalog.pg_proc x WHERE x.oid = p.old)
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', g.new, g.grantee);
    END LOOP;
END;
$$;
