-- attendance 0.4.0 -> 0.4.1: abuse, privacy and operations (issue 21).
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.4.1'" to load this file. \quit

-------------------------------------------------------------------------------
-- Notifications (issue 21)
-------------------------------------------------------------------------------
-- Any role that can connect may LISTEN on any channel (and NOTIFY on it): PostgreSQL has
-- no privilege for channels. So a payload carries ids only, which mean nothing without
-- SELECT on the tables: attendance_calculated the session id (as before),
-- attendance_low_attendance {"alert_id": ..., "session_id": ...} (until 0.4.0 it named the
-- person, the course and the rate). A listener reads the details through attendance_reader
-- (docs/security.md, "Notifications").

-- Evaluates the alerts of every (course, person) the calculated sessions touch, in the
-- calculation's transaction (called once per batch by the calculation, src/pg/calculate.cpp):
-- raises and clears alerts and notifies each change. `causes` are the sessions'
-- calculation causes (late webhook, override, scheduled, ...). Returns the changes.
CREATE OR REPLACE FUNCTION @extschema@._attendance_evaluate_alerts(session_ids bigint[], causes text[])
RETURNS integer LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH batch AS (
        SELECT s.session_id, s.course, s.starts_at, c.cause
        FROM unnest($1, $2) AS c(session_id, cause)
        JOIN @extschema@.attendance_session_schedule s ON s.session_id = c.session_id
        WHERE s.course IS NOT NULL),
    latest AS (  -- per course: the batch's latest session (the one that crossed)
        SELECT DISTINCT ON (b.course) b.course, b.session_id, b.cause
        FROM batch b ORDER BY b.course, b.starts_at DESC, b.session_id DESC),
    policy AS (  -- per course: the policy of its latest session
        SELECT DISTINCT ON (s.course) s.course, p.name, p.alert_below, p.alert_sessions, p.alert_min_sessions
        FROM @extschema@.attendance_session_schedule s
        JOIN @extschema@.attendance_policies p ON p.name = s.policy_name
        WHERE s.course IN (SELECT l.course FROM latest l)
        ORDER BY s.course, s.starts_at DESC, s.session_id DESC),
    pairs AS (  -- the persons of the batch's sessions, and those with an open alert
        SELECT b.course, m.user_key FROM batch b
        JOIN @extschema@.meeting_attendances m ON m.session_id = b.session_id
        UNION
        SELECT a.course, a.user_key FROM @extschema@.attendance_alerts a
        WHERE a.cleared_at IS NULL AND a.course IN (SELECT l.course FROM latest l)),
    eval AS MATERIALIZED (
        SELECT pr.course, pr.user_key, r.user_id, po.name AS policy_name, po.alert_below,
               t.attendance_rate AS rate, t.counted,
               coalesce(po.alert_below IS NOT NULL AND t.attendance_rate IS NOT NULL
                        AND t.counted >= po.alert_min_sessions AND t.attendance_rate < po.alert_below,
                        false) AS below,
               l.session_id, l.cause
        FROM pairs pr
        JOIN policy po ON po.course = pr.course
        JOIN latest l ON l.course = pr.course
        CROSS JOIN LATERAL (
            SELECT array_agg(x.status) AS statuses, max(x.user_id) AS user_id
            FROM (SELECT m.attendance_status AS status, m.user_id
                  FROM @extschema@.attendance_session_schedule s
                  JOIN @extschema@.meeting_attendances m ON m.session_id = s.session_id
                  WHERE s.course = pr.course AND m.user_key = pr.user_key AND m.is_calculated
                  ORDER BY s.starts_at DESC, s.session_id DESC
                  LIMIT po.alert_sessions) x) r
        CROSS JOIN LATERAL @extschema@._attendance_tally(r.statuses) t),
    cleared AS (
        UPDATE @extschema@.attendance_alerts a
        SET cleared_at = now(), cleared_rate = e.rate, cleared_session_id = e.session_id,
            cleared_cause = e.cause
        FROM eval e
        WHERE a.course = e.course AND a.user_key = e.user_key AND a.cleared_at IS NULL AND NOT e.below
        RETURNING a.id, a.cleared_session_id AS session_id),
    raised AS (
        INSERT INTO @extschema@.attendance_alerts (course, user_key, user_id, policy_name, threshold, rate,
            sessions_counted, raised_session_id, raised_cause)
        SELECT e.course, e.user_key, e.user_id, e.policy_name, e.alert_below, e.rate, e.counted,
               e.session_id, e.cause
        FROM eval e
        WHERE e.below AND NOT EXISTS (
            SELECT 1 FROM @extschema@.attendance_alerts a
            WHERE a.course = e.course AND a.user_key = e.user_key AND a.cleared_at IS NULL)
        -- a concurrent calculation of the same course that raised it first: nothing to do
        ON CONFLICT (course, user_key) WHERE cleared_at IS NULL DO NOTHING
        RETURNING id, raised_session_id AS session_id)
    -- one notification per change, its payload built here: ids only (docs/sql.md)
    SELECT count(*)::integer
    FROM (SELECT * FROM cleared UNION ALL SELECT * FROM raised ORDER BY id) x
    CROSS JOIN LATERAL (SELECT pg_notify('attendance_low_attendance', json_build_object(
        'alert_id', x.id, 'session_id', x.session_id)::text)) n;
$$;

-------------------------------------------------------------------------------
-- Forgetting (issue 21)
-------------------------------------------------------------------------------
-- attendance_forget_person leaves nothing a non-superuser can read: the planner's
-- statistics of the tables it rewrote (pg_stats, readable by whoever may SELECT the
-- column) lose the erased values in the same call. What stays in heap files, WAL, standbys
-- and backups, and what an operator does about each: docs/security.md and
-- docs/operations.md. (Same function as 0.4.0 but for the partitions noted by the log's
-- UPDATE and the statistics at the end.)
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
        UNION SELECT e.session_id FROM @extschema@.meeting_attendance_events e
              CROSS JOIN LATERAL (SELECT @extschema@._attendance_event_session(e.room_name, e.event_timestamp, e.session_id)
                                  AS session_id) e2(session_id)
              WHERE e.user_id = attendance_forget_person.user_id AND e2.session_id IS NOT NULL) x(sid);
    PERFORM 1 FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = ANY (sessions) ORDER BY s.session_id FOR UPDATE;

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
    UPDATE @extschema@.meeting_attendances m SET
        user_key = k, user_id = p, participant_identity = k, participant_name = NULL, updated_at = now()
    WHERE m.user_key = uk;
    GET DIAGNOSTICS n_att = ROW_COUNT;
    UPDATE @extschema@.attendance_roster r SET user_id = p WHERE r.user_id = attendance_forget_person.user_id;
    GET DIAGNOSTICS n_roster = ROW_COUNT;
    -- An override's reason is free text about the person (e.g. a doctor's note): erased;
    -- its status counts and is kept.
    UPDATE @extschema@.attendance_overrides o SET user_key = k, reason = 'erased (attendance_forget_person)'
    WHERE o.user_key = uk;
    GET DIAGNOSTICS n_over = ROW_COUNT;
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
  'Erase a person''s identifying data (names, identities, metadata) from the log and every derived row, and from the planner''s statistics, keeping counts and statuses under a salted pseudonym (a negative user id); audited in attendance_erasures. Owner only.';

-------------------------------------------------------------------------------
-- Maintenance (issue 21)
-------------------------------------------------------------------------------
-- Two runs of attendance_maintain_log (the scheduler's `partitions` job, a manual call,
-- attendance_run_job('partitions')) deadlocked, e.g. right after CREATE EXTENSION, when
-- both created the same partitions ahead. Now they take turns: a transaction-level
-- advisory lock keyed by the log's oid (pg_locks: locktype advisory, objid = that oid),
-- taken first.

-- The key of that lock (one home): the oid of the log, unique in the database.
CREATE FUNCTION @extschema@._attendance_log_lock_key()
RETURNS bigint LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT '@extschema@.meeting_attendance_events'::regclass::oid::bigint;
$$;
REVOKE ALL ON FUNCTION @extschema@._attendance_log_lock_key() FROM PUBLIC;

-- (Same function as 0.4.0 but for step 0 and the result's `skipped`.)
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

-------------------------------------------------------------------------------
-- Grants (issue 21)
-------------------------------------------------------------------------------
-- Nothing is executable by PUBLIC, and every function granted to a role other than the
-- owner pins its search_path (pg_regress `grants` checks every function of the extension).
-- The rule functions _attendance_match, _attendance_session_events and
-- _attendance_unseen_by have no SET clause so that PostgreSQL inlines them; an inlined
-- body resolves its operators through the search_path of the query it is inlined into,
-- so a direct call under a hostile search_path ran planted operators. They are the
-- owner's only now, and other roles reach them through pinned functions that run as the
-- owner: _attendance_event_session (the views, attendancectl events) and
-- attendance_explain (which derives through _attendance_session_events). Both only read
-- what attendance_reader may read anyway.

-- 0.2.0 never revoked it from PUBLIC; the reader keeps it (the view attendance_sessions_due
-- reads it), now pinned.
REVOKE ALL ON FUNCTION @extschema@._attendance_calculation_delay() FROM PUBLIC;
ALTER FUNCTION @extschema@._attendance_calculation_delay() SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION @extschema@._attendance_match(text, timestamptz, bigint),
    @extschema@._attendance_session_events(bigint[]),
    @extschema@._attendance_unseen_by(xid8, pg_snapshot)
  FROM attendance_reader;

ALTER FUNCTION @extschema@._attendance_event_session(text, timestamptz, bigint) SECURITY DEFINER;
ALTER FUNCTION @extschema@.attendance_explain(bigint, bigint) SECURITY DEFINER;
ALTER FUNCTION @extschema@.attendance_explain(bigint, text) SECURITY DEFINER;

-------------------------------------------------------------------------------
-- Receiver: webhook key names (issue 21)
-------------------------------------------------------------------------------
-- attendance-proxy rejects, before any call of attendance_ingest_webhook, a token whose
-- iss names no active key (docs/proxy.md, "Rejected before the database"). It may learn
-- the key names, never the secrets: this function is what the ingest-only role may
-- execute for that. The proxy reads it every few seconds, and again when a token names
-- a key it does not know. Ingestion stays the authority: it verifies everything again.
CREATE FUNCTION @extschema@.attendance_webhook_key_names()
RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT k.api_key FROM @extschema@.attendance_webhook_keys k
    WHERE k.retired_at IS NULL OR k.retired_at > now()
    ORDER BY k.api_key;
$$;
COMMENT ON FUNCTION @extschema@.attendance_webhook_key_names() IS
    'The names of the active webhook keys (never their secrets), for the receiver''s precheck.';
REVOKE ALL ON FUNCTION @extschema@.attendance_webhook_key_names() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.attendance_webhook_key_names() TO attendance_ingest;

-------------------------------------------------------------------------------
-- Receiver: readiness write probe (issue 21)
-------------------------------------------------------------------------------
-- attendance-proxy's GET /readyz says whether the database accepts writes now: a full
-- data disk (53100), a read-only server (25006) ... (docs/proxy.md, "Health and metrics";
-- docs/operations.md, "Disk full"). SELECT 1 succeeds on such a server, so the probe
-- writes: a temporary table of its own gets a page, which is written to the disk of
-- the database's temporary tablespace (by default the database's own), and the
-- catalog rows of the table are logged; then everything is rolled back. It leaves
-- nothing behind and locks nothing anyone else uses.
CREATE FUNCTION @extschema@.attendance_write_probe()
RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    BEGIN
        CREATE TEMPORARY TABLE attendance_write_probe (b integer);
        INSERT INTO pg_temp.attendance_write_probe VALUES (1);  -- the file grows by a page
        RAISE EXCEPTION USING ERRCODE = 'P0004', MESSAGE = 'attendance write probe done';
    EXCEPTION WHEN assert_failure THEN  -- P0004: raised just above, nothing else raises it
        RETURN true;
    END;
END;
$$;
COMMENT ON FUNCTION @extschema@.attendance_write_probe() IS
    'Writes a page and rolls it back: raises the error that a write meets now (53100 disk full, 25006 read-only ...).';
REVOKE ALL ON FUNCTION @extschema@.attendance_write_probe() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.attendance_write_probe() TO attendance_ingest;
