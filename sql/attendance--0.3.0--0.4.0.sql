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
-- keeps ingestion idempotent across partitions. The keys and indexes are each
-- partition's own (_attendance_log_index), not the partitioned table's: a key of the
-- partitioned table, which CREATE EXTENSION makes, would be made again on each partition
-- when pg_restore attaches it, beside the partition's own from the dump (docs/operations.md,
-- "Backups"). Since the event time picks the partition, a partition's unique
-- (event_id, event_timestamp) is unique across the log, and ingestion's ON CONFLICT DO
-- NOTHING takes the unique keys of the partition the row goes to.
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
    -- The transaction that logged the row (the late-webhook rule's input,
    -- _attendance_unseen_by). Not the row's xmin: moving a row into a partition of its own,
    -- an upgrade's copy, a redaction or attendance_forget_person rewrite the row and give
    -- it a new xmin, which would make an event seen long ago look like a late webhook.
    logged_xid           xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()
) PARTITION BY RANGE (event_timestamp);
ALTER SEQUENCE @extschema@.meeting_attendance_events_id_seq OWNED BY @extschema@.meeting_attendance_events.id;

-- The keys and indexes of one partition of the log.
CREATE FUNCTION @extschema@._attendance_log_index(part regclass)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n text := (SELECT c.relname FROM pg_class c WHERE c.oid = part);
BEGIN
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (id), '
                   'ADD CONSTRAINT %I UNIQUE (event_id, event_timestamp)', part, n || '_pkey', n || '_event_key');
    EXECUTE format('CREATE INDEX %I ON %s (session_id, event_timestamp)', n || '_session_idx', part);
    EXECUTE format('CREATE INDEX %I ON %s (created_at)', n || '_created_idx', part);
    EXECUTE format('CREATE INDEX %I ON %s (room_name, event_timestamp)', n || '_room_idx', part);
END;
$$;
REVOKE ALL ON FUNCTION @extschema@._attendance_log_index(regclass) FROM PUBLIC;

-- Late webhooks (docs/architecture.md): an event whose logging transaction the session's
-- last calculation did not see. The rule reads logged_xid, a full transaction id kept
-- with the row, instead of the row's 32-bit xmin, which any rewrite of the row changes.
CREATE FUNCTION @extschema@._attendance_unseen_by(x xid8, snapshot pg_snapshot)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT $2 IS NOT NULL AND NOT pg_catalog.pg_visible_in_snapshot($1, $2);
$$;
REVOKE ALL ON FUNCTION @extschema@._attendance_unseen_by(xid8, pg_snapshot) FROM PUBLIC;

-- Flagging (one home: docs/architecture.md). With event_ids (one per element of
-- session_ids: an event of that session the fold just read), only sessions whose last
-- calculation did not see such an event are flagged; evaluated under the row lock, so a
-- calculation committing meanwhile is judged by its own snapshot.
DROP FUNCTION @extschema@._attendance_flag(bigint[], text, bigint[]);
CREATE FUNCTION @extschema@._attendance_flag(session_ids bigint[], cause text, event_ids bigint[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    -- Lock the rows first, in id order as calculations do: a calculation running now is
    -- waited for, and the UPDATE below (a new snapshot) then sees what it stored.
    PERFORM 1 FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = ANY ($1) ORDER BY s.session_id FOR UPDATE;
    UPDATE @extschema@.attendance_session_schedule s
    SET needs_calculation = true,
        recalculation_cause = CASE WHEN s.needs_calculation AND s.recalculation_cause IS NOT NULL
                                        AND $2 <> 'late webhook' THEN s.recalculation_cause ELSE $2 END,
        needs_fold = true,
        updated_at = now()
    WHERE s.session_id = ANY ($1) AND s.calculated_at IS NOT NULL
      AND (NOT s.needs_calculation OR s.recalculation_cause IS DISTINCT FROM $2)
      AND ($3 IS NULL OR EXISTS (
            SELECT 1 FROM unnest($1, $3) AS x(session_id, event_id)
            JOIN @extschema@.meeting_attendance_events e ON e.id = x.event_id
            WHERE x.session_id = s.session_id
              AND @extschema@._attendance_unseen_by(e.logged_xid, s.calculated_snapshot)));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM @extschema@._attendance_wake_worker();
    END IF;
    RETURN n;
END;
$$;
REVOKE ALL ON FUNCTION @extschema@._attendance_flag(bigint[], text, bigint[]) FROM PUBLIC;
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
SELECT @extschema@._attendance_log_index('@extschema@.meeting_attendance_events_default');
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
                   'INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)',
                   '@extschema@', name);
    PERFORM @extschema@._attendance_log_index(pg_catalog.format('%s.%I', '@extschema@', name)::regclass);
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
       api_key, raw_webhook_data, created_at, disconnect_reason, duration_minutes, development_event,
       -- the logging transaction: the row's xmin as a full id (as 0.3.0's rule read it); a
       -- row older than a billion transactions was seen by every calculation
       CASE WHEN pg_catalog.age(e.xmin) < 1000000000
            THEN (x.next - ((x.next - e.xmin::text::bigint) & 4294967295))::text::xid8
            ELSE '3'::xid8 END
FROM @extschema@.meeting_attendance_events_unpartitioned e,
     (SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::bigint AS next) x;

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
           @extschema@._attendance_unseen_by(e.logged_xid, s.calculated_snapshot)
    FROM matched m
    JOIN @extschema@.meeting_attendance_events e ON e.id = m.id AND e.event_timestamp = m.event_timestamp
    LEFT JOIN @extschema@.attendance_session_schedule s ON s.session_id = m.session_id
    WHERE m.session_id = ANY ($1);
$$;
-- The rule on the row's xmin is gone (one home: the rule on logged_xid above).
DROP FUNCTION @extschema@._attendance_unseen_by(xid, pg_snapshot);
GRANT EXECUTE ON FUNCTION @extschema@._attendance_unseen_by(xid8, pg_snapshot) TO attendance_reader;

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

-- The partitions ahead of now are made by the scheduler's first `partitions` run (or
-- attendance_run_job('partitions')), not here: a partition this script made would collide
-- with a dumped one when a backup is restored (see "Backups" at the end of this file).

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
-- A course groups scheduled sessions (a class that meets every week). Existing sessions
-- stay ungrouped (NULL).
ALTER TABLE @extschema@.attendance_session_schedule
    ADD COLUMN course text CHECK (course <> '' AND length(course) <= 200);
COMMENT ON COLUMN @extschema@.attendance_session_schedule.course IS
  'The course (group of sessions) this session belongs to; NULL = ungrouped (docs/sql.md).';
CREATE INDEX attendance_session_schedule_course_idx
    ON @extschema@.attendance_session_schedule (course, starts_at) WHERE course IS NOT NULL;

-- The alert numbers of a policy (docs/configuration.md): a person whose attendance rate
-- over their last alert_sessions sessions of a course is below alert_below is alerted, once
-- at least alert_min_sessions of them count. On by default; alert_below NULL turns them off.
ALTER TABLE @extschema@.attendance_policies
    ADD COLUMN alert_below numeric(5,2) DEFAULT 75 CHECK (alert_below BETWEEN 0 AND 100),
    ADD COLUMN alert_sessions integer NOT NULL DEFAULT 10 CHECK (alert_sessions BETWEEN 1 AND 1000),
    ADD COLUMN alert_min_sessions integer NOT NULL DEFAULT 3 CHECK (alert_min_sessions >= 1);
ALTER TABLE @extschema@.attendance_policies
    ADD CONSTRAINT attendance_policies_alert_min_check CHECK (alert_min_sessions <= alert_sessions);
COMMENT ON COLUMN @extschema@.attendance_policies.alert_below IS
  'Low-attendance alert threshold in percent (rate below it over the last alert_sessions sessions of a course); NULL = no alerts.';

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

-- The report per person of a course's sessions that start between from_date and to_date
-- (both inclusive, dates in the caller's TimeZone). Only final results count.
CREATE FUNCTION @extschema@.attendance_course_report(course text, from_date date, to_date date)
RETURNS TABLE (user_id bigint, user_key text, participant_name text, role text,
               sessions_expected integer, present integer, late integer, partial integer,
               absent integer, excused integer, other integer, attended_minutes bigint,
               attendance_rate numeric(5,2))
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    c text := attendance_course_report.course;
BEGIN
    IF c IS NULL OR from_date IS NULL OR to_date IS NULL THEN
        RAISE EXCEPTION 'attendance_course_report: no argument may be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF from_date > to_date THEN
        RAISE EXCEPTION 'attendance_course_report: from_date (%) is after to_date (%)', from_date, to_date
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule s WHERE s.course = c) THEN
        RAISE EXCEPTION 'attendance_course_report: unknown course "%"', c
            USING ERRCODE = 'undefined_object',
                  HINT = 'A course is named by attendance_schedule_session(..., course => ...).';
    END IF;
    RETURN QUERY
    SELECT g.user_id, g.user_key, g.participant_name, g.role, t.sessions, t.present, t.late,
           t.partial, t.absent, t.excused, t.other, g.minutes, t.attendance_rate
    FROM (SELECT m.user_key,
                 (array_agg(m.user_id ORDER BY s.starts_at DESC) FILTER (WHERE m.user_id IS NOT NULL))[1] AS user_id,
                 (array_agg(m.participant_name ORDER BY s.starts_at DESC)
                    FILTER (WHERE m.participant_name IS NOT NULL))[1] AS participant_name,
                 (array_agg(m.role ORDER BY s.starts_at DESC))[1] AS role,
                 array_agg(m.attendance_status) AS statuses,
                 round(sum(coalesce(m.presence_ms, 0)) / 60000.0)::bigint AS minutes
          FROM @extschema@.attendance_session_schedule s
          JOIN @extschema@.meeting_attendances m ON m.session_id = s.session_id
          WHERE s.course = c AND m.is_calculated
            AND s.starts_at >= from_date::timestamptz AND s.starts_at < (to_date + 1)::timestamptz
          GROUP BY m.user_key) g,
         LATERAL @extschema@._attendance_tally(g.statuses) t
    ORDER BY g.user_id NULLS LAST, g.user_key;
END;
$$;
COMMENT ON FUNCTION @extschema@.attendance_course_report(text, date, date) IS
  'Per person of a course: sessions expected, counts per status, attended minutes and the attendance rate (excused sessions out of the denominator).';

-- Low-attendance alerts: one row per crossing. An alert is open (cleared_at NULL) while the
-- person stays below the threshold; at most one open alert per course and person.
CREATE TABLE @extschema@.attendance_alerts (
    id                  bigserial PRIMARY KEY,
    course              text NOT NULL,
    user_key            text NOT NULL,
    user_id             bigint,
    policy_name         text,
    threshold           numeric(5,2) NOT NULL,
    rate                numeric(5,2) NOT NULL,
    sessions_counted    integer NOT NULL,
    raised_at           timestamptz NOT NULL DEFAULT now(),
    raised_session_id   bigint NOT NULL,
    raised_cause        text NOT NULL,
    cleared_at          timestamptz,
    cleared_rate        numeric(5,2),
    cleared_session_id  bigint,
    cleared_cause       text,
    actor               text NOT NULL DEFAULT session_user
);
CREATE UNIQUE INDEX attendance_alerts_open_idx ON @extschema@.attendance_alerts (course, user_key)
    WHERE cleared_at IS NULL;
COMMENT ON TABLE @extschema@.attendance_alerts IS
  'Low-attendance alerts: raised when a calculation makes a person''s rate in a course cross below the policy''s alert_below, cleared when one makes it recover (docs/sql.md).';

-- Evaluates the alerts of every (course, person) the calculated sessions touch, in the
-- calculation's transaction (called once per batch by the calculation, src/pg/calculate.cpp):
-- raises and clears alerts and notifies each change. `causes` are the sessions'
-- calculation causes (late webhook, override, scheduled, ...). Returns the changes.
CREATE FUNCTION @extschema@._attendance_evaluate_alerts(session_ids bigint[], causes text[])
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
        RETURNING a.id, 'cleared' AS state, a.course, a.user_id, a.user_key, a.cleared_rate AS rate,
                  a.threshold, a.sessions_counted, a.cleared_session_id AS session_id, a.cleared_cause AS cause),
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
        RETURNING id, 'raised' AS state, course, user_id, user_key, rate, threshold, sessions_counted,
                  raised_session_id AS session_id, raised_cause AS cause)
    -- one notification per change, its payload built here (docs/sql.md)
    SELECT count(*)::integer
    FROM (SELECT * FROM cleared UNION ALL SELECT * FROM raised ORDER BY id) x
    CROSS JOIN LATERAL (SELECT pg_notify('attendance_low_attendance', json_build_object(
        'state', x.state, 'alert_id', x.id, 'course', x.course, 'user_id', x.user_id,
        'user_key', x.user_key, 'rate', x.rate, 'threshold', x.threshold,
        'sessions_counted', x.sessions_counted, 'session_id', x.session_id, 'cause', x.cause)::text)) n;
$$;

-- Open alerts, for operators: one row per person below the threshold in a course.
CREATE VIEW @extschema@.attendance_low_attendance AS
SELECT a.id AS alert_id, a.course, a.user_id, a.user_key, n.participant_name, a.rate, a.threshold,
       a.sessions_counted, a.policy_name, a.raised_at, a.raised_session_id, a.raised_cause
FROM @extschema@.attendance_alerts a
LEFT JOIN LATERAL (
    SELECT m.participant_name FROM @extschema@.meeting_attendances m
    JOIN @extschema@.attendance_session_schedule s ON s.session_id = m.session_id
    WHERE s.course = a.course AND m.user_key = a.user_key AND m.participant_name IS NOT NULL
    ORDER BY s.starts_at DESC LIMIT 1) n ON true
WHERE a.cleared_at IS NULL
ORDER BY a.course, a.rate, a.user_key;

-- attendance_schedule_session gains the course (a new signature: dropped and created,
-- owner-only as before). Calls without it schedule an ungrouped session.
DROP FUNCTION @extschema@.attendance_schedule_session(bigint, text, timestamptz, timestamptz, text);
CREATE FUNCTION @extschema@.attendance_schedule_session(
    session_id bigint, room_name text, starts_at timestamptz, ends_at timestamptz, policy text DEFAULT 'default',
    course text DEFAULT NULL)
RETURNS @extschema@.attendance_session_schedule
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    result @extschema@.attendance_session_schedule;
    old_room text;
BEGIN
    IF attendance_schedule_session.session_id IS NULL OR attendance_schedule_session.room_name IS NULL
       OR attendance_schedule_session.starts_at IS NULL OR attendance_schedule_session.ends_at IS NULL
       OR attendance_schedule_session.policy IS NULL THEN
        RAISE EXCEPTION 'attendance_schedule_session: no argument may be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF attendance_schedule_session.ends_at <= attendance_schedule_session.starts_at THEN
        RAISE EXCEPTION 'attendance_schedule_session: ends_at (%) must be after starts_at (%)',
            attendance_schedule_session.ends_at, attendance_schedule_session.starts_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF attendance_schedule_session.course = '' OR length(attendance_schedule_session.course) > 200 THEN
        RAISE EXCEPTION 'attendance_schedule_session: a course is a non-empty name of at most 200 characters (NULL = none)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.attendance_policies p WHERE p.name = attendance_schedule_session.policy) THEN
        RAISE EXCEPTION 'attendance_schedule_session: unknown policy "%"', attendance_schedule_session.policy
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Policies are rows of attendance_policies.';
    END IF;
    SELECT s.room_name INTO old_room FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = attendance_schedule_session.session_id FOR UPDATE;
    INSERT INTO @extschema@.attendance_session_schedule AS s
        (session_id, room_name, starts_at, ends_at, policy_name, course)
    VALUES (attendance_schedule_session.session_id, attendance_schedule_session.room_name,
            attendance_schedule_session.starts_at, attendance_schedule_session.ends_at,
            attendance_schedule_session.policy, attendance_schedule_session.course)
    ON CONFLICT ON CONSTRAINT attendance_session_schedule_pkey DO UPDATE SET
        room_name = excluded.room_name, starts_at = excluded.starts_at, ends_at = excluded.ends_at,
        policy_name = excluded.policy_name, course = excluded.course, needs_calculation = true,
        recalculation_cause = CASE WHEN s.calculated_at IS NULL THEN s.recalculation_cause
                                   WHEN s.policy_name <> excluded.policy_name THEN 'policy change'
                                   WHEN s.course IS DISTINCT FROM excluded.course THEN 'course change'
                                   ELSE 'session moved' END,
        updated_at = now()
    RETURNING * INTO result;
    -- Matching is done when deriving: every session of the old and the new room is
    -- derived again, so the events logged before this call count as if it came first.
    UPDATE @extschema@.attendance_session_schedule s SET needs_fold = true
    WHERE (s.room_name IN (result.room_name, old_room) OR s.session_id = result.session_id) AND NOT s.needs_fold;
    PERFORM @extschema@._attendance_wake_worker();
    RETURN result;
END;
$$;

REVOKE ALL ON FUNCTION @extschema@.attendance_schedule_session(bigint, text, timestamptz, timestamptz, text, text),
    @extschema@._attendance_tally(text[]), @extschema@.attendance_course_report(text, date, date),
    @extschema@._attendance_evaluate_alerts(bigint[], text[])
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._attendance_tally(text[]),
    @extschema@.attendance_course_report(text, date, date)
  TO attendance_reader;
GRANT SELECT ON @extschema@.attendance_alerts, @extschema@.attendance_low_attendance TO attendance_reader;

-------------------------------------------------------------------------------
-- Privacy: secrets in stored bodies, forgetting a person
-------------------------------------------------------------------------------
-- Secrets in stored bodies (docs/security.md): ingestion stores a body whose
-- secret-bearing fields (room.turnPassword, ingress stream keys, egress upload
-- credentials, ...) are replaced by "[redacted]"; the signature is verified over the
-- received bytes first. This function is the same redaction for a stored body; the
-- rows logged before 0.4.0 pass through it once, here.
CREATE FUNCTION @extschema@._attendance_redact_secrets(body jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_redact_secrets'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION @extschema@._attendance_redact_secrets(jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@._attendance_redact_secrets(jsonb) IS
  'The body with the value of every secret-bearing field LiveKit sends replaced by "[redacted]" (what ingestion stores).';

-- The log is immutable; this upgrade's redaction is, with attendance_forget_person, one of
-- its two sanctioned changes. session_replication_role = replica (superuser only; the
-- upgrade runs as one) keeps the immutability trigger from firing, on whatever partitions
-- the table has, for this statement only.
DO $$
DECLARE
    previous text := pg_catalog.current_setting('session_replication_role');
BEGIN
    PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
    UPDATE @extschema@.meeting_attendance_events e
    SET raw_webhook_data = @extschema@._attendance_redact_secrets(e.raw_webhook_data)
    WHERE @extschema@._attendance_redact_secrets(e.raw_webhook_data) OPERATOR(pg_catalog.<>) e.raw_webhook_data;
    PERFORM pg_catalog.set_config('session_replication_role', previous, true);
END;
$$;

-- Forgetting a person (docs/security.md, "Forgetting a person"). The pseudonym of a user
-- id is a negative bigint taken from SHA-256(salt || user id), where the salt is a
-- per-installation secret (32 random bytes) readable by the owner only: without it, a
-- pseudonym cannot be reversed by trying every user id.
CREATE TABLE @extschema@.attendance_privacy_salt (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    salt       bytea NOT NULL CHECK (length(salt) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON @extschema@.attendance_privacy_salt FROM PUBLIC;
-- The salt is made by the first attendance_forget_person, not here: pg_dump keeps it (see
-- "Backups"), and a salt this script made would collide with the restored one.
COMMENT ON TABLE @extschema@.attendance_privacy_salt IS
  'The per-installation secret salt of the pseudonyms attendance_forget_person gives (made at its first call; '
  'kept by pg_dump). Owner-only.';

-- The audit of every erasure: the pseudonym, never the erased user id.
CREATE TABLE @extschema@.attendance_erasures (
    id               bigserial PRIMARY KEY,
    pseudonym        bigint NOT NULL UNIQUE CHECK (pseudonym < 0),
    erased_at        timestamptz NOT NULL DEFAULT now(),
    actor            text NOT NULL DEFAULT session_user,
    sessions         bigint[] NOT NULL,
    log_rows         integer NOT NULL,
    connection_rows  integer NOT NULL,
    attendance_rows  integer NOT NULL,
    roster_rows      integer NOT NULL,
    override_rows    integer NOT NULL,
    audit_rows       integer NOT NULL,
    alert_rows       integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE @extschema@.attendance_erasures IS
  'One row per attendance_forget_person call: who erased, when, the pseudonym and how many rows changed (never the erased identity).';

CREATE FUNCTION @extschema@._attendance_pseudonym(user_id bigint)
RETURNS bigint LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT -1 - (('x' || encode(substr(sha256(s.salt || convert_to($1::text, 'UTF8')), 1, 8), 'hex'))::bit(64)::bigint
                 & 9223372036854775807)
    FROM @extschema@.attendance_privacy_salt s;
$$;
REVOKE ALL ON FUNCTION @extschema@._attendance_pseudonym(bigint) FROM PUBLIC;

-- The one sanctioned change to the log besides the upgrade's redaction. SECURITY DEFINER
-- with session_replication_role = replica: only a superuser may set that parameter, so
-- the bypass of the immutability trigger exists only inside this function (its owner is
-- the superuser who created the extension); nobody can set it around their own UPDATE.
CREATE FUNCTION @extschema@.attendance_forget_person(user_id bigint)
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
    UPDATE @extschema@.meeting_attendance_events e SET
        user_id = p, user_key = k, participant_identity = k, participant_name = NULL,
        raw_webhook_data = CASE WHEN jsonb_typeof(e.raw_webhook_data -> 'participant') = 'object'
            THEN jsonb_set(e.raw_webhook_data, '{participant}',
                           ((e.raw_webhook_data -> 'participant') - 'name' - 'metadata' - 'attributes')
                           || jsonb_build_object('identity', k))
            ELSE e.raw_webhook_data END
    WHERE e.user_id = attendance_forget_person.user_id;
    GET DIAGNOSTICS n_log = ROW_COUNT;

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
REVOKE ALL ON FUNCTION @extschema@.attendance_forget_person(bigint) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.attendance_forget_person(bigint) IS
  'Erase a person''s identifying data (names, identities, metadata) from the log and every derived row, keeping counts and statuses under a salted pseudonym (a negative user id); audited in attendance_erasures. Owner only.';

GRANT SELECT ON @extschema@.attendance_erasures TO attendance_reader;

-------------------------------------------------------------------------------
-- Backups: pg_dump keeps what the extension stores (docs/operations.md, "Backups")
-------------------------------------------------------------------------------
-- pg_dump writes an extension's tables as its CREATE EXTENSION, without their rows, unless
-- they are marked as configuration tables. Until 0.4.0 none was, so a pg_dump of an
-- attendance database held no event, result, override or key. Every table that holds
-- what was received or decided is marked now, with the sequences of their ids. Not
-- marked: attendance_fold_state (the fold's progress: after a restore the fold derives
-- every session again from the restored log) and the default policy's row, which
-- CREATE EXTENSION makes (restoring it too would collide; its edits are not kept, the
-- docs say so).
DO $$
DECLARE
    t record;
BEGIN
    -- one call per statement: each call updates the extension's catalog row
    FOR t IN SELECT * FROM (VALUES ('@extschema@.attendance_webhook_keys', ''),
             ('@extschema@.attendance_policies', 'WHERE name <> ''default'''),
             ('@extschema@.attendance_policy_roles', ''),
             ('@extschema@.attendance_session_schedule', ''),
             ('@extschema@.attendance_roster', ''),
             ('@extschema@.meeting_attendance_events_default', ''),
             ('@extschema@.attendance_sessions', ''),
             ('@extschema@.meeting_attendances', ''),
             ('@extschema@.attendance_overrides', ''),
             ('@extschema@.attendance_status_changes', ''),
             ('@extschema@.attendance_job_runs', ''),
             ('@extschema@.attendance_retired_events', ''),
             ('@extschema@.attendance_alerts', ''),
             ('@extschema@.attendance_privacy_salt', ''),
             ('@extschema@.attendance_erasures', ''),
             ('@extschema@.meeting_attendance_events_id_seq', ''),
             ('@extschema@.meeting_attendances_id_seq', ''),
             ('@extschema@.attendance_status_changes_id_seq', ''),
             ('@extschema@.attendance_job_runs_id_seq', ''),
             ('@extschema@.attendance_retired_events_id_seq', ''),
             ('@extschema@.attendance_alerts_id_seq', ''),
             ('@extschema@.attendance_erasures_id_seq', '')) v(tab, filter) LOOP
        PERFORM pg_catalog.pg_extension_config_dump(t.tab::regclass, t.filter);
    END LOOP;
END;
$$;

-- The log's range partitions belong to the log, not to the extension: pg_dump then writes
-- each one (its table, its ATTACH and its rows) as it does for a partition the scheduler
-- made. The upgrade made some for the rows logged before 0.4.0; they leave the extension
-- here. (A partitioned table has no rows of its own to mark; the default partition is a
-- member and marked above.)
DO $$
DECLARE
    p regclass;
BEGIN
    FOR p IN SELECT x.partition FROM @extschema@._attendance_log_partitions() x
             WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                           WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = x.partition
                             AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e') LOOP
        EXECUTE pg_catalog.format('ALTER EXTENSION attendance DROP TABLE %s', p);
    END LOOP;
END;
$$;
