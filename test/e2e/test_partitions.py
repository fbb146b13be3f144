#!/usr/bin/env python3
"""The log's partitions maintained by the background scheduler against the test cluster
(attendance.database_name = postgres, attendance.calculation_delay = 2s): partitions created
ahead by the scheduler itself and each run recorded; rows outside every partition moved into
partitions of their own; retention dropping only the partitions whose sessions are final;
a session whose oldest partition was retired keeps its results and is not recalculated."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from pgtest import case, finish, psql, wait_for  # noqa: E402

SETTINGS = ("attendance.partitions_ahead", "attendance.partition_interval",
            "attendance.event_retention", "attendance.retention_action")


def set_system(**values):
    for name, value in values.items():
        psql(f"ALTER SYSTEM SET attendance.{name} = '{value}'")
    psql("SELECT pg_reload_conf()")
    # New processes (the scheduler's runs) see the values once the postmaster has reloaded.
    for name, value in values.items():
        seen = wait_for(lambda: psql(f"SHOW attendance.{name}") == str(value), 30)
        assert seen, f"attendance.{name} not reloaded"


def reset_system():
    for name in SETTINGS:
        psql(f"ALTER SYSTEM RESET {name}")
    psql("SELECT pg_reload_conf()")


def ingest(event, event_id, created_s, room, sid, user):
    body = ('{"event":"%s","id":"%s","createdAt":"%d","room":{"name":"%s"},'
            '"participant":{"sid":"%s","identity":"user-%d","joinedAtMs":"%d"}}'
            % (event, event_id, created_s, room, sid, user, created_s * 1000 - 60_000))
    q = body.replace("'", "''")
    return psql(f"SELECT attendance_ingest_webhook('{q}', attendance_sign_webhook('{q}', 'APIparts'))->>'result'")


def run_partitions_now():
    """Forgets the last runs of the job, so that the scheduler's next run does it, and
    wakes the scheduler; returns the id the run will have to exceed."""
    last = psql("SELECT coalesce(max(id), 0) FROM attendance_job_runs")
    psql("DELETE FROM attendance_job_runs WHERE job = 'partitions'; SELECT _attendance_wake_worker()")
    return int(last)


def partitions_run_after(last_id):
    return psql(f"SELECT status || '|' || message FROM attendance_job_runs WHERE job = 'partitions' "
                f"AND id > {last_id} AND status <> 'running' ORDER BY id DESC LIMIT 1")


reset_system()
psql("SET client_min_messages = warning; DROP EXTENSION IF EXISTS attendance CASCADE; CREATE EXTENSION attendance")
psql("SELECT attendance_add_webhook_key('APIparts', 'partitions-secret-0123456789abcdef')")

try:
    @case("the scheduler creates partitions ahead by itself and records the run")
    def _():
        set_system(partitions_ahead=5)
        last = run_partitions_now()
        run = wait_for(lambda: partitions_run_after(last), 60)
        assert run and run.startswith("succeeded|created "), run
        ahead = psql("SELECT count(*) FROM attendance_log_partitions WHERE state = 'attached' AND range_start > now()")
        assert int(ahead) >= 5, ahead
        holding = psql("SELECT count(*) FROM attendance_log_partitions WHERE state = 'attached' "
                       "AND range_start <= now() AND range_end > now()")
        assert holding == "1", holding
        status = psql("SELECT last_status FROM attendance_job_status WHERE job = 'partitions'")
        assert status == "succeeded", status

    @case("retention drops only the partitions of final sessions; results, overrides and audit are kept")
    def _():
        # 3001 on 2025-11-14 (calculated by the scheduler), 3002 on 2025-11-15 (its
        # calculation fails, so it never becomes final); their events lie outside every
        # partition: stored in the default partition, then moved by the scheduler.
        set_system(partition_interval="1d")  # whichever run moves the rows makes daily partitions
        psql("""CREATE OR REPLACE FUNCTION public.fail_3002() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF NEW.session_id = 3002 AND NEW.attendance_status IS NOT NULL THEN
                  RAISE EXCEPTION 'boom in session 3002'; END IF; RETURN NEW; END $$""")
        psql("CREATE TRIGGER fail_3002 BEFORE INSERT OR UPDATE ON meeting_attendances "
             "FOR EACH ROW EXECUTE FUNCTION public.fail_3002()")
        psql("SELECT attendance_schedule_session(3001, 'session-3001', '2025-11-14 10:00Z', '2025-11-14 11:00Z');"
             "SELECT attendance_schedule_session(3002, 'session-3002', '2025-11-15 10:00Z', '2025-11-15 11:00Z');"
             "SELECT attendance_expect(3001, 31); SELECT attendance_expect(3002, 32)")
        t1, t2 = 1763114400, 1763200800  # 2025-11-14 10:00Z, 2025-11-15 10:00Z
        assert ingest("participant_joined", "EV_p3001j", t1 + 60, "session-3001", "PA_3001", 31) == "recorded"
        assert ingest("participant_left", "EV_p3001l", t1 + 3000, "session-3001", "PA_3001", 31) == "recorded"
        assert ingest("participant_joined", "EV_p3002j", t2 + 60, "session-3002", "PA_3002", 32) == "recorded"
        assert psql("SELECT count(*) FROM meeting_attendance_events_default") == "3"
        # final: calculated, and the fold has passed its webhooks (it flags a session calculated
        # before they were logged in the same transaction, so nothing late is still to come)
        calculated = wait_for(lambda: psql("SELECT calculated_at IS NOT NULL AND NOT needs_calculation "
                                           "AND (SELECT safe_id FROM attendance_fold_state) >= "
                                           "(SELECT max(id) FROM meeting_attendance_events) "
                                           "FROM attendance_session_schedule WHERE session_id = 3001") == "t", 60)
        assert calculated, psql("SELECT * FROM attendance_session_schedule")
        failed = wait_for(lambda: psql("SELECT failed_attempts > 0 FROM attendance_session_schedule "
                                       "WHERE session_id = 3002") == "t", 60)
        assert failed, psql("SELECT * FROM attendance_session_schedule WHERE session_id = 3002")
        psql("SELECT attendance_override(3001, 31, 'excused', 'e2e')")
        results = psql("SELECT user_key, attendance_status, attendance_percentage FROM meeting_attendances "
                       "WHERE session_id = 3001 ORDER BY 1")
        audit_before = psql("SELECT string_agg(concat_ws(' ', user_key, old_status, new_status, cause), '; ' ORDER BY id) "
                            "FROM attendance_status_changes WHERE session_id = 3001")
        set_system(event_retention="30d")
        last = run_partitions_now()
        run = wait_for(lambda: partitions_run_after(last), 60)
        assert run and run.startswith("succeeded|"), run
        assert "retired (dropped) 1 partition(s)" in run, run
        assert "3002 not final" in run, run
        assert psql("SELECT count(*) FROM meeting_attendance_events_default") == "0"
        retired = psql("SELECT partition_name || ':' || sessions::text FROM attendance_retired_events ORDER BY id")
        assert retired == "meeting_attendance_events_20251114_0000:{3001}", retired
        kept = psql("SELECT count(*) FROM attendance_log_partitions WHERE state = 'attached' "
                    "AND range_start = '2025-11-15 00:00Z'")
        assert kept == "1", kept
        assert psql("SELECT count(*) FROM meeting_attendance_events WHERE event_id LIKE 'EV_p3001%'") == "0"
        assert psql("SELECT count(*) FROM meeting_attendance_events WHERE event_id = 'EV_p3002j'") == "1"
        after = psql("SELECT user_key, attendance_status, attendance_percentage FROM meeting_attendances "
                     "WHERE session_id = 3001 ORDER BY 1")
        assert after == results, (results, after)
        assert psql("SELECT count(*) FROM attendance_overrides WHERE session_id = 3001") == "1"
        # the audit is kept as it was: the override's row (and, when the scheduler calculated
        # 3001 before its webhooks were logged, the late webhook's recalculation before it)
        audit = psql("SELECT string_agg(concat_ws(' ', user_key, old_status, new_status, cause), '; ' ORDER BY id) "
                     "FROM attendance_status_changes WHERE session_id = 3001")
        assert audit == audit_before and audit.endswith("31 present excused override"), (audit_before, audit)

    @case("a session recalculated after its partition was retired keeps its results, and says why")
    def _():
        before = psql("SELECT user_key, attendance_status, attendance_percentage FROM meeting_attendances "
                      "WHERE session_id = 3001 ORDER BY 1")
        psql("SELECT attendance_expect(3001, 33)")  # a roster change flags it
        said = wait_for(lambda: psql("SELECT NOT needs_calculation AND last_error LIKE 'not calculated again: "
                                     "its logged events were retired at %' FROM attendance_session_schedule "
                                     "WHERE session_id = 3001") == "t", 60)
        assert said, psql("SELECT * FROM attendance_session_schedule WHERE session_id = 3001")
        after = psql("SELECT user_key, attendance_status, attendance_percentage FROM meeting_attendances "
                     "WHERE session_id = 3001 ORDER BY 1")
        assert after == before, (before, after)
        explain = psql("SELECT e->>'events_retired_at' IS NOT NULL FROM attendance_explain(3001, 31) e")
        assert explain == "t", explain
        # a redelivery of a retired event: acknowledged, not stored
        assert ingest("participant_joined", "EV_p3001j", 1763114400 + 60, "session-3001", "PA_3001", 31) == "retired"
        assert psql("SELECT count(*) FROM meeting_attendance_events WHERE event_id = 'EV_p3001j'") == "0"
finally:
    # Nothing left for the scheduler to retry (3002 failed on purpose), then a fresh
    # extension for the next suite. DROP EXTENSION may still meet a scheduler run and be
    # chosen as a deadlock's victim: that is retried.
    psql("DELETE FROM attendance_session_schedule WHERE session_id = 3002; "
         "DROP TRIGGER IF EXISTS fail_3002 ON meeting_attendances; DROP FUNCTION IF EXISTS public.fail_3002()",
         check=False)
    reset_system()
    for attempt in range(5):
        try:
            psql("SET client_min_messages = warning; DROP EXTENSION IF EXISTS attendance CASCADE; "
                 "CREATE EXTENSION attendance")
            break
        except RuntimeError as exc:
            if "deadlock detected" not in str(exc) or attempt == 4:
                raise

finish()
