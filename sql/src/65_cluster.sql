-------------------------------------------------------------------------------
-- Past one primary: the log distributed by room on a Citus cluster (docs/scaling.md, "Citus")
-------------------------------------------------------------------------------
-- Turns this database's log into a Citus table distributed by room, run once on the
-- coordinator of a cluster whose workers are added (citus_add_node). Every webhook is then
-- one single-shard write on the worker holding its room; the fold, the calculations and the
-- scheduler keep running on the coordinator, which holds every other table, and read the
-- log one room at a time (the log's readers in 20_rules.sql), each statement going to the
-- node that holds the room. What it does, in one transaction that holds the partition
-- maintenance's lock and the log's (ingestion waits until it commits):
--   * an event logged without a room (NULL, before 0.5.2) gets the room '' (ingestion writes
--     '' since 0.5.2): Citus stores no row without its distribution value;
--   * each partition's keys hold the room too (_attendance_log_index);
--   * the log's UPDATE trigger goes (Citus refuses a distributed table with triggers): the
--     log stays immutable by privileges, as only the owner may change it; the default
--     partition keeps its trigger that skips events of retired ranges, and the ranges
--     (attendance_retired_events) become a reference table, copied to every node, which the
--     trigger reads where the row lands;
--   * create_distributed_table, co-locating every partition by room.
-- Idempotent: on a log already distributed it changes nothing. Returns what it did.
-- Errors 55000 when Citus is not installed in the database, no worker is added, or this node
-- is a worker.
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
