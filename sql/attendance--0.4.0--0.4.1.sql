-- attendance 0.4.0 -> 0.4.1: abuse, privacy and operations (issue 21).
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.4.1'" to load this file. \quit

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
