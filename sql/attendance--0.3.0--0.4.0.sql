-- attendance 0.3.0 -> 0.4.0: a log that stays fast for years (partitions and retention),
-- high availability, and reports beyond one class (courses, alerts, exports, privacy).
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.4.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Partitions and retention (docs/architecture.md)
-------------------------------------------------------------------------------
-- The log is partitioned by event time (native range partitioning, one partition per
-- attendance.partition_interval); the scheduler's `partitions` job creates partitions
-- ahead, gives rows that landed in the default partition partitions of their own, and
-- retires (drops or detaches) partitions older than attendance.event_retention once every
-- session their events count for is final. docs/decisions.md says why the worker does
-- this rather than pg_partman.

-- The settings as intervals (the library defines them; NULL retention keeps everything).
CREATE FUNCTION @extschema@._attendance_partition_interval()
RETURNS interval AS 'MODULE_PATHNAME', 'attendance_partition_interval' LANGUAGE C STABLE;
CREATE FUNCTION @extschema@._attendance_event_retention()
RETURNS interval AS 'MODULE_PATHNAME', 'attendance_event_retention' LANGUAGE C STABLE;

-- Ranges of the log that were retired: an event whose time falls in one is acknowledged
-- and not stored (every session it could count for is final).
CREATE TABLE @extschema@.attendance_retired_events (
    id             bigserial PRIMARY KEY,
    partition_name text NOT NULL,
    range_start    timestamptz NOT NULL,
    range_end      timestamptz NOT NULL CHECK (range_end > range_start),
    action         text NOT NULL CHECK (action IN ('dropped', 'detached')),
    events         bigint NOT NULL,
    sessions       bigint[] NOT NULL,
    retired_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attendance_retired_events_range_idx ON @extschema@.attendance_retired_events (range_start, range_end);
COMMENT ON TABLE @extschema@.attendance_retired_events IS
  'Partitions of meeting_attendance_events retired by attendance.event_retention: their range, what was done '
  '(dropped or detached), how many events they held and the sessions those counted for.';
GRANT SELECT ON @extschema@.attendance_retired_events TO attendance_reader;

ALTER TABLE @extschema@.attendance_session_schedule ADD COLUMN events_retired_at timestamptz;
COMMENT ON COLUMN @extschema@.attendance_session_schedule.events_retired_at IS
  'When logged events of the session were first retired (attendance.event_retention): its stored results are '
  'kept and it is not derived or calculated again.';

-- Everything logged so far is folded before the rows move: moved rows get a new xmin,
-- which a calculation's snapshot has not seen, so the snapshots of the sessions that have
-- seen all their events are renewed after the move (no session then looks like it got a
-- late webhook). Nothing is ingested meanwhile: the log is locked.
LOCK TABLE @extschema@.meeting_attendance_events IN ACCESS EXCLUSIVE MODE;
SELECT @extschema@.attendance_fold() IS NOT NULL AS folded;

ALTER TABLE @extschema@.meeting_attendance_events RENAME TO meeting_attendance_events_unpartitioned;
ALTER TABLE @extschema@.meeting_attendance_events_unpartitioned
    DROP CONSTRAINT meeting_attendance_events_pkey,
    DROP CONSTRAINT meeting_attendance_events_event_id_key;
DROP INDEX @extschema@.meeting_attendance_events_session_id_event_timestamp_idx,
    @extschema@.meeting_attendance_events_created_at_idx,
    @extschema@.meeting_attendance_events_room_idx;
ALTER SEQUENCE @extschema@.meeting_attendance_events_id_seq OWNED BY NONE;

-- The partition key is part of every unique key, as PostgreSQL requires: a redelivery is
-- byte-identical, so it carries the same event time and (event_id, event_timestamp)
-- keeps ingestion idempotent across partitions.
CREATE TABLE @extschema@.meeting_attendance_events (
    id                   bigint NOT NULL DEFAULT nextval('@extschema@.meeting_attendance_events_id_seq'),
    event_id             text NOT NULL,
    event_type           text NOT NULL,
    event_timestamp      timestamptz NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    session_id           bigint,
    room_name            text,
    room_sid             text,
    participant_sid      text,
    participant_identity text,
    user_id              bigint,
    user_key             text,
    participant_name     text,
    role                 text,
    participant_kind     text,
    joined_at            timestamptz,
    result               text NOT NULL CHECK (result IN ('recorded', 'ignored')),
    reason               text,
    api_key              text,
    raw_webhook_data     jsonb NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    disconnect_reason    text,
    duration_minutes     integer,
    development_event    boolean NOT NULL DEFAULT false,
    CONSTRAINT meeting_attendance_events_pkey PRIMARY KEY (id, event_timestamp),
    CONSTRAINT meeting_attendance_events_event_id_key UNIQUE (event_id, event_timestamp)
) PARTITION BY RANGE (event_timestamp);
ALTER SEQUENCE @extschema@.meeting_attendance_events_id_seq OWNED BY @extschema@.meeting_attendance_events.id;
CREATE INDEX meeting_attendance_events_session_id_event_timestamp_idx
    ON @extschema@.meeting_attendance_events (session_id, event_timestamp);
CREATE INDEX meeting_attendance_events_created_at_idx ON @extschema@.meeting_attendance_events (created_at);
CREATE INDEX meeting_attendance_events_room_idx ON @extschema@.meeting_attendance_events (room_name, event_timestamp);
COMMENT ON TABLE @extschema@.meeting_attendance_events IS
  'Immutable log of accepted LiveKit webhooks (idempotent on event_id); rows are never updated. Partitioned by '
  'event_timestamp (attendance.partition_interval); old partitions are retired by attendance.event_retention.';
COMMENT ON COLUMN @extschema@.meeting_attendance_events.session_id IS
  'The session the room name names through attendance.room_pattern when logged (NULL if none). '
  'The session an event counts for is matched when deriving (_attendance_event_session).';
CREATE TRIGGER meeting_attendance_events_immutable
    BEFORE UPDATE ON @extschema@.meeting_attendance_events
    FOR EACH ROW EXECUTE FUNCTION @extschema@._attendance_events_immutable();
GRANT SELECT ON @extschema@.meeting_attendance_events TO attendance_reader;

-- An event outside every partition is stored in the default partition (never refused);
-- the next maintenance gives it a partition of its own. The only events that route here
-- besides are those of retired ranges: they are skipped (not stored), which ingestion
-- then reports as result "retired".
CREATE TABLE @extschema@.meeting_attendance_events_default
    PARTITION OF @extschema@.meeting_attendance_events DEFAULT;
CREATE FUNCTION @extschema@._attendance_skip_retired() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM @extschema@.attendance_retired_events r
               WHERE NEW.event_timestamp >= r.range_start AND NEW.event_timestamp < r.range_end) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER meeting_attendance_events_skip_retired
    BEFORE INSERT ON @extschema@.meeting_attendance_events_default
    FOR EACH ROW EXECUTE FUNCTION @extschema@._attendance_skip_retired();

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

-- For operators: the partitions of the log, the default one, and the retired ranges.
CREATE VIEW @extschema@.attendance_log_partitions AS
SELECT c.relname::text AS partition_name, p.range_start, p.range_end, 'attached'::text AS state,
       nullif(c.reltuples, -1)::bigint AS estimated_events, pg_total_relation_size(p.partition) AS bytes, NULL::timestamptz AS retired_at
FROM @extschema@._attendance_log_partitions() p JOIN pg_catalog.pg_class c ON c.oid = p.partition
UNION ALL
SELECT 'meeting_attendance_events_default', NULL, NULL, 'default',
       (SELECT count(*) FROM @extschema@.meeting_attendance_events_default),
       pg_total_relation_size('@extschema@.meeting_attendance_events_default'), NULL
UNION ALL
SELECT r.partition_name, r.range_start, r.range_end, r.action, r.events, NULL, r.retired_at
FROM @extschema@.attendance_retired_events r
ORDER BY 2 NULLS LAST;
GRANT SELECT ON @extschema@.attendance_log_partitions TO attendance_reader;

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
                   'INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE INCLUDING COMPRESSION)',
                   '@extschema@', name);
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

-- The maintenance (the scheduler's `partitions` job, hourly; attendance_run_job('partitions')
-- runs it now). Every lock it takes waits at most lock_wait; what could not be done is
-- postponed to the next run and said in the message.
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
BEGIN
    PERFORM set_config('lock_timeout', (extract(epoch FROM lock_wait) * 1000)::bigint::text, true);

    -- 1. Rows in the default partition (outside every partition when logged) get
    --    partitions of their own. The log is locked in SHARE mode meanwhile (ingestion
    --    waits; this happens only when such rows exist), everything is folded first and
    --    the calculation snapshots of the moved rows' sessions are renewed after the move.
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
            -- The sessions of the moved rows that are calculated and not flagged have seen
            -- every event of theirs (all is folded, nothing is being logged).
            UPDATE @extschema@.attendance_session_schedule s SET calculated_snapshot = pg_current_snapshot()
            WHERE s.calculated_snapshot IS NOT NULL AND NOT s.needs_calculation
              AND s.session_id IN (
                  SELECT m.session_id
                  FROM unnest(moved_ranges) r,
                       @extschema@.meeting_attendance_events e,
                       LATERAL @extschema@._attendance_match(e.room_name, e.event_timestamp, e.session_id) m(session_id)
                  WHERE e.event_timestamp >= lower(r) AND e.event_timestamp < upper(r));
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
    --    final (events matching no scheduled session do not keep a partition). Checked
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
            WHERE s.session_id = ANY (touched) AND (s.calculated_at IS NULL OR s.needs_calculation OR s.needs_fold);
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
        'lock_ms', lock_ms, 'notes', to_jsonb(notes),
        'message', format('created %s partition(s) ahead, moved %s row(s) of the default partition into %s, '
                          'retired (%s) %s partition(s)%s', created, moved_rows, moved_partitions,
                          CASE WHEN action = 'detach' THEN 'detached' ELSE 'dropped' END, retired,
                          CASE WHEN cardinality(notes) > 0 THEN '; ' || array_to_string(notes, '; ') ELSE '' END));
END;
$$;
COMMENT ON FUNCTION @extschema@.attendance_maintain_log(interval) IS
  'Partition maintenance of the log: create partitions ahead, give rows of the default partition partitions of '
  'their own, retire partitions past attendance.event_retention whose sessions are all final. The scheduler runs it '
  'hourly (job "partitions").';

-- Partitions for the rows logged so far (one per interval that holds any) and ahead,
-- then the rows, with their ids; the old table goes once nothing depends on it.
DO $$
DECLARE
    b record;
BEGIN
    FOR b IN SELECT DISTINCT to_timestamp(floor(extract(epoch FROM e.event_timestamp) / s) * s) AS t
             FROM @extschema@.meeting_attendance_events_unpartitioned e,
                  (SELECT extract(epoch FROM @extschema@._attendance_partition_interval()) AS s) x
             ORDER BY 1 LOOP
        PERFORM @extschema@._attendance_log_add_partition(g.range_start, g.range_end)
        FROM @extschema@._attendance_log_gap(b.t) g;
    END LOOP;
END;
$$;
INSERT INTO @extschema@.meeting_attendance_events
SELECT id, event_id, event_type, event_timestamp, received_at, session_id, room_name, room_sid, participant_sid,
       participant_identity, user_id, user_key, participant_name, role, participant_kind, joined_at, result, reason,
       api_key, raw_webhook_data, created_at, disconnect_reason, duration_minutes, development_event
FROM @extschema@.meeting_attendance_events_unpartitioned;
UPDATE @extschema@.attendance_session_schedule s SET calculated_snapshot = pg_current_snapshot()
WHERE s.calculated_snapshot IS NOT NULL AND NOT s.needs_calculation;

-- The views that read the log, now reading the partitioned one.
CREATE OR REPLACE VIEW @extschema@.attendance_recent_events AS
SELECT e.id, e.received_at, e.event_timestamp, e.event_type, e.result,
       @extschema@._attendance_event_session(e.room_name, e.event_timestamp, e.session_id) AS session_id,
       e.room_name, e.user_id, e.user_key, e.participant_name, e.participant_sid, e.joined_at,
       CASE WHEN e.event_type = 'participant_left' AND e.joined_at IS NOT NULL
            THEN e.event_timestamp - e.joined_at END AS connection_duration,
       e.reason, e.event_id
FROM (SELECT * FROM @extschema@.meeting_attendance_events ORDER BY id DESC LIMIT 1000) e
ORDER BY e.id DESC;
CREATE OR REPLACE VIEW @extschema@.attendance_unmatched_events AS
SELECT e.id, e.received_at, e.event_type, e.room_name, e.participant_identity, e.participant_sid,
       CASE WHEN m.session_id IS NULL THEN 'unknown room' ELSE 'no user id for identity' END AS problem,
       e.event_id
FROM @extschema@.meeting_attendance_events e
CROSS JOIN LATERAL (SELECT @extschema@._attendance_event_session(e.room_name, e.event_timestamp, e.session_id)
                    AS session_id) m
WHERE e.result = 'recorded'
  AND (m.session_id IS NULL OR (e.participant_sid IS NOT NULL AND e.user_id IS NULL))
ORDER BY e.id DESC;
DROP TABLE @extschema@.meeting_attendance_events_unpartitioned;

-- A session's events, joined back by id and event time, so that each row is looked up in
-- its own partition only (run-time partition pruning).
CREATE OR REPLACE FUNCTION @extschema@._attendance_session_events(session_ids bigint[])
RETURNS TABLE (session_id bigint, event_id text, event_type text, at_ms bigint, participant_sid text,
               participant_identity text, user_key text, user_id bigint, participant_name text, role text,
               joined_ms bigint, disconnect_reason text, unseen boolean)
LANGUAGE sql STABLE AS $$
    WITH candidates AS MATERIALIZED (
        SELECT e.id, e.room_name, e.event_timestamp, e.session_id AS room_session
        FROM @extschema@.meeting_attendance_events e
        WHERE e.room_name = ANY (ARRAY(SELECT x.room_name FROM @extschema@.attendance_session_schedule x
                                       WHERE x.session_id = ANY ($1)))
          AND e.result = 'recorded'
        UNION
        SELECT e.id, e.room_name, e.event_timestamp, e.session_id
        FROM @extschema@.meeting_attendance_events e
        WHERE e.session_id = ANY ($1) AND e.result = 'recorded'),
    matched AS MATERIALIZED (
        SELECT c.id, c.event_timestamp, m.session_id
        FROM candidates c,
             LATERAL @extschema@._attendance_match(c.room_name, c.event_timestamp, c.room_session) m(session_id))
    SELECT m.session_id, e.event_id, e.event_type,
           floor(extract(epoch FROM e.event_timestamp) * 1000)::bigint, e.participant_sid,
           e.participant_identity, e.user_key, e.user_id, e.participant_name, e.role,
           floor(extract(epoch FROM e.joined_at) * 1000)::bigint, e.disconnect_reason,
           @extschema@._attendance_unseen_by(e.xmin, s.calculated_snapshot)
    FROM matched m
    JOIN @extschema@.meeting_attendance_events e ON e.id = m.id AND e.event_timestamp = m.event_timestamp
    LEFT JOIN @extschema@.attendance_session_schedule s ON s.session_id = m.session_id
    WHERE m.session_id = ANY ($1);
$$;

-- The scheduler's jobs, with the partition maintenance.
CREATE OR REPLACE VIEW @extschema@.attendance_job_status AS
SELECT j.job, last.status AS last_status, last.started_at AS last_started, last.finished_at AS last_finished,
       last.processed AS last_processed, last.failed AS last_failed, last.message AS last_message,
       (SELECT count(*) FROM @extschema@.attendance_job_runs f
         WHERE f.job = j.job AND (f.status = 'failed' OR f.failed > 0) AND f.started_at > now() - interval '1 day')
         AS failures_last_day
FROM (VALUES ('calculate'), ('reconcile'), ('partitions'), ('cleanup')) j(job)
LEFT JOIN LATERAL (SELECT * FROM @extschema@.attendance_job_runs r WHERE r.job = j.job ORDER BY r.id DESC LIMIT 1) last
  ON true;
COMMENT ON FUNCTION @extschema@.attendance_run_job(text) IS
  'Run a scheduler job (calculate, reconcile, partitions or cleanup) now in this session, recorded in attendance_job_runs.';

-- Partitions ahead of now, at once.
SELECT @extschema@.attendance_maintain_log() IS NOT NULL AS maintained;

REVOKE ALL ON FUNCTION @extschema@._attendance_partition_interval(), @extschema@._attendance_event_retention(),
    @extschema@._attendance_skip_retired(), @extschema@._attendance_log_partitions(),
    @extschema@._attendance_log_gap(timestamptz), @extschema@._attendance_log_add_partition(timestamptz, timestamptz),
    @extschema@.attendance_maintain_log(interval)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._attendance_log_partitions() TO attendance_reader;

-------------------------------------------------------------------------------
-- High availability
-------------------------------------------------------------------------------
-- (issue 15: nothing yet)

-------------------------------------------------------------------------------
-- Courses, low-attendance alerts and exports
-------------------------------------------------------------------------------
-- (issue 16: nothing yet)

-------------------------------------------------------------------------------
-- Privacy: secrets in stored bodies, forgetting a person
-------------------------------------------------------------------------------
-- (issue 16: nothing yet)
