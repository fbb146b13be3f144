-------------------------------------------------------------------------------
-- The scheduler's jobs (docs/architecture.md, "The worker's loops")
-------------------------------------------------------------------------------
-- The background worker runs these (fold, calculate, reconcile, partitions, cleanup);
-- each can also be run by hand. The calculation and reconciliation are in 50_calculation.sql.

-- Wakes the scheduler when the transaction commits (used by schedule, roster, room and
-- flag changes).
CREATE FUNCTION @extschema@._attendance_wake_worker()
RETURNS void
AS 'MODULE_PATHNAME', 'attendance_wake_worker'
LANGUAGE C VOLATILE;

-- The fold: derives the connections and live rows of the sessions with new events (what
-- the worker runs every attendance.fold_interval) and flags calculated sessions that
-- received a late webhook; returns what it did. Called while an extension script runs
-- (an upgrade script of an earlier version), it derives nothing: the scheduler's next
-- fold, under the new schema, does (docs/decisions.md, "Versions and upgrades").
CREATE FUNCTION @extschema@.attendance_fold()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_fold'
LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attendance_fold() IS
  'Derive the live rows and connections of every session with events logged since the last fold, and flag calculated sessions that received a late webhook.';

-- Runs a job now in this session, recorded in attendance_job_runs.
CREATE FUNCTION @extschema@._attendance_run_job(job text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'attendance_run_job'
LANGUAGE C VOLATILE STRICT SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION @extschema@.attendance_run_job(job text)
RETURNS @extschema@.attendance_job_runs
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    run_id bigint := @extschema@._attendance_run_job(job);
    result @extschema@.attendance_job_runs;
BEGIN
    SELECT * INTO result FROM @extschema@.attendance_job_runs r WHERE r.id = run_id;
    RETURN result;
END;
$$;
COMMENT ON FUNCTION @extschema@.attendance_run_job(text) IS
  'Run a scheduler job (calculate, reconcile, partitions or cleanup) now in this session, recorded in attendance_job_runs.';

-- Whether the scheduler runs, its next due moment and its last runs.
CREATE FUNCTION @extschema@.attendance_worker_status()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_worker_status'
LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;

-------------------------------------------------------------------------------
-- The log's partitions and retention (docs/architecture.md, "Partitions and retention")
-------------------------------------------------------------------------------
-- The range partitions of the log and their bounds (the default partition has none).
CREATE FUNCTION @extschema@._attendance_log_partitions()
RETURNS TABLE (partition regclass, range_start timestamptz, range_end timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO, YMD' SET timezone = 'UTC' AS $$
    SELECT c.oid::regclass, b[1]::timestamptz, b[2]::timestamptz
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                    $re$FROM \('([^']*)'\) TO \('([^']*)'\)$re$) b
    WHERE i.inhparent = '@extschema@.meeting_attendance_events'::regclass AND b IS NOT NULL;
$$;

-- The free range a partition holding time t gets: t's interval (aligned to multiples of
-- attendance.partition_interval since the epoch), cut where partitions or retired ranges
-- already are (they may have another interval). t must lie outside every partition.
CREATE FUNCTION @extschema@._attendance_log_gap(t timestamptz, OUT range_start timestamptz, OUT range_end timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH taken AS (
        SELECT p.range_start AS lo, p.range_end AS hi FROM @extschema@._attendance_log_partitions() p
        UNION ALL
        SELECT r.range_start, r.range_end FROM @extschema@.attendance_retired_events r),
    bucket AS (
        SELECT to_timestamp(floor(extract(epoch FROM $1) / s) * s) AS lo, s
        FROM (SELECT extract(epoch FROM @extschema@._attendance_partition_interval()) AS s) x)
    SELECT greatest(b.lo, (SELECT max(hi) FROM taken WHERE hi <= $1)),
           least(b.lo + make_interval(secs => b.s), (SELECT min(lo) FROM taken WHERE lo > $1))
    FROM bucket b;
$$;

-- Creates the partition [lo, hi) without locking out ingestion: a table of the log's
-- shape, filled with the rows of that range the default partition holds (moved), then
-- attached (SHARE UPDATE EXCLUSIVE on the log: inserts and reads go on; the default
-- partition is locked while its rows move). Returns the number of rows moved.
CREATE FUNCTION @extschema@._attendance_log_add_partition(lo timestamptz, hi timestamptz)
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

-- The key of the maintenance's lock (one home): the oid of the log, unique in the database.
-- In pg_locks: locktype advisory, objid = that oid, objsubid = 1.
CREATE FUNCTION @extschema@._attendance_log_lock_key()
RETURNS bigint LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT '@extschema@.meeting_attendance_events'::regclass::oid::bigint;
$$;

-- The maintenance (the scheduler's `partitions` job, hourly, and every minute while the
-- default partition holds rows; attendance_run_job('partitions') runs it now):
-- 0. one run at a time (the advisory lock above; a second run waits at most lock_wait,
--    then skips and says so);
-- 1. rows of the default partition get partitions of their own (the log is locked in SHARE
--    mode meanwhile, and everything is folded first);
-- 2. partitions ahead of now;
-- 3. retention: partitions past attendance.event_retention whose events are all folded and
--    whose sessions are all final are dropped or detached. Under the retirement's ACCESS
--    EXCLUSIVE lock the log is folded first, so that a late event of a session such a
--    partition touches, logged in a younger partition, flags it before the check.
-- Every lock it takes waits at most lock_wait; what could not be done is postponed to the
-- next run and said in the message.
CREATE FUNCTION @extschema@.attendance_maintain_log(lock_wait interval DEFAULT '2 seconds')
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
COMMENT ON FUNCTION @extschema@.attendance_maintain_log(interval) IS
  'Partition maintenance of the log: create partitions ahead, give rows of the default partition partitions of '
  'their own, retire partitions past attendance.event_retention whose sessions are all final. The scheduler runs it '
  'hourly (job "partitions"). One run at a time: another waits at most lock_wait, then skips and says so.';
