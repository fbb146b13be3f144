#!/usr/bin/env python3
"""pg_dump and pg_restore keep everything attendance stores (docs/operations.md,
"Backups"): a database with a replayed class, a calculation, an override, a custom
policy, a course with an alert, a forgotten person, the log in partitions of its own and
in the default partition, is dumped and restored into a new database; every table reads
the same there, the id sequences go on, a redelivery is still a duplicate, the salt gives
the same pseudonym, and deriving and calculating again changes no result."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from pgtest import case, finish, psql  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SRC = "e2e_dump_src"
DST = "e2e_dump_dst"
TMP = tempfile.mkdtemp(prefix="attendance-dump-")
DUMP = os.path.join(TMP, "attendance.dump")
# What a restore does not bring back, by design (docs/operations.md): the fold's progress,
# and the rooms the fold has seen (0.5.0), which the first fold after a restore notes again.
NOT_DUMPED = {"attendance_fold_state", "attendance_rooms"}
FUTURE_BODY = ('{"event":"participant_joined","id":"EV_dump_future","createdAt":"2240000000",'
               '"room":{"name":"lobby","sid":"RM_lobby"},'
               '"participant":{"sid":"PA_future","identity":"user-31","name":"Later",'
               '"joinedAtMs":"2240000000000"}}')


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return proc.stdout


def tables(db):
    """The tables whose rows attendance keeps: the extension's tables and sequences, and
    the log's partitions (read through the log itself)."""
    return psql("""
        SELECT string_agg(c.relname, ' ' ORDER BY c.relname)
        FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
        WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'attendance')
          AND d.deptype = 'e' AND d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p')""",
                db=db).split()


def digest(db, table):
    """Count and md5 of a table's rows in a fixed order (the text of each whole row). The
    default policy is CREATE EXTENSION's own row, not the dump's (docs/operations.md)."""
    if table == "attendance_policies":
        table = "(SELECT * FROM attendance_policies WHERE name <> 'default')"
    return psql(f"SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '-') "
                f"FROM {table} t", db=db)


def results(db):
    return psql("SELECT string_agg(concat_ws('|', user_key, attendance_status, attendance_percentage, "
                "presence_ms, status_rule, is_calculated), ',' ORDER BY user_key) "
                "FROM meeting_attendances WHERE session_id = 456", db=db)


# ---- the source database ----------------------------------------------------------------
for db in (SRC, DST):
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
psql(f"CREATE DATABASE {SRC}")
script = f"""
\\set ON_ERROR_STOP 1
\\set fixture test/fixtures/livekit/session-456.jsonl
\\i test/sql/setup_456.psql
SET client_min_messages = warning;
SET attendance.replay_mode = on;
\\i test/sql/replay.psql
RESET attendance.replay_mode;
SELECT count(*) FROM attendance_calculate(456);
SELECT attendance_override(456, 23, 'excused', 'a note');
INSERT INTO attendance_policies (name, alert_below, alert_sessions, alert_min_sessions) VALUES ('strict', 99, 2, 1);
SELECT attendance_schedule_session(457, 'algebra-457', '2025-11-15 08:00Z', '2025-11-15 09:00Z', 'strict', 'algebra');
SELECT attendance_expect(457, 40);
SELECT count(*) FROM attendance_calculate(457);
SELECT attendance_forget_person(12);
SELECT status FROM attendance_run_job('partitions');
SELECT attendance_ingest_webhook('{FUTURE_BODY}', attendance_sign_webhook('{FUTURE_BODY}', 'APIfixture'));
SELECT attendance_fold() IS NOT NULL;
"""
run(["psql", "-X", "-q", "-d", SRC, "-f", "-"], input=script)


@case("source_state")
def source_state():
    # what the dump must carry is there: rows in partitions of their own and in the
    # default one, an alert, an erasure, a salt, a custom policy
    counts = psql("SELECT (SELECT count(*) FROM meeting_attendance_events_default), "
                  "(SELECT count(*) FROM meeting_attendance_events), "
                  "(SELECT count(*) FROM attendance_log_partitions WHERE state = 'attached'), "
                  "(SELECT count(*) FROM attendance_alerts), (SELECT count(*) FROM attendance_erasures), "
                  "(SELECT count(*) FROM attendance_privacy_salt), "
                  "(SELECT count(*) FROM attendance_policies WHERE name = 'strict')", db=SRC).split("|")
    default, events, partitions, alerts, erasures, salts, strict = map(int, counts)
    assert default == 1 and events > default, f"log: {events} events, {default} in the default partition"
    assert partitions >= 2, f"{partitions} partitions"
    assert (alerts, erasures, salts, strict) == (1, 1, 1, 1), counts


@case("every_table_is_kept_or_named")
def every_table_is_kept_or_named():
    # a new table must be marked for pg_dump (pg_extension_config_dump) or named here
    marked = set(psql("SELECT string_agg(c.relname, ' ') FROM pg_extension x, unnest(x.extconfig) o "
                      "JOIN pg_class c ON c.oid = o WHERE x.extname = 'attendance' AND c.relkind = 'r'",
                      db=SRC).split())
    unmarked = set(tables(SRC)) - marked - {"meeting_attendance_events"} - NOT_DUMPED
    assert not unmarked, f"tables pg_dump would write without their rows: {sorted(unmarked)}"
    seqs = psql("SELECT count(*) FROM pg_depend d JOIN pg_class c ON c.oid = d.objid "
                "WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'attendance') "
                "AND d.deptype = 'e' AND c.relkind = 'S' AND c.oid <> ALL ((SELECT extconfig FROM pg_extension "
                "WHERE extname = 'attendance')::oid[])", db=SRC)
    assert seqs == "0", f"{seqs} sequence(s) of the extension not marked"


# ---- dump and restore -------------------------------------------------------------------
restored = False


@case("dump_and_restore")
def dump_and_restore():
    global restored
    run(["pg_dump", "-Fc", "-f", DUMP, SRC])
    psql(f"CREATE DATABASE {DST}")
    run(["pg_restore", "--exit-on-error", "-d", DST, DUMP])
    restored = True


@case("every_row_comes_back")
def every_row_comes_back():
    assert restored, "not restored"
    names = sorted(set(tables(SRC)) - NOT_DUMPED)
    assert names == sorted(set(tables(DST)) - NOT_DUMPED), (tables(SRC), tables(DST))
    differing = [(t, digest(SRC, t), digest(DST, t)) for t in names if digest(SRC, t) != digest(DST, t)]
    assert not differing, f"tables that differ after the restore: {differing}"
    # the partitions came back as partitions, the stray row in the default partition
    shape = ("SELECT string_agg(partition_name || ':' || state, ' ' ORDER BY partition_name) "
             "FROM attendance_log_partitions")
    assert psql(shape, db=SRC) == psql(shape, db=DST), (psql(shape, db=SRC), psql(shape, db=DST))


@case("the_restored_database_goes_on")
def the_restored_database_goes_on():
    assert restored, "not restored"
    before = results(DST)
    # a redelivery is still a duplicate; a new event takes an id after every restored one
    with open(os.path.join(ROOT, "test/fixtures/livekit/session-456.jsonl"), encoding="utf-8") as f:
        first = json.loads(f.readline())
    dup = psql("SET attendance.replay_mode = on; SELECT r->>'result' FROM attendance_ingest_webhook("
               f"$b${first['body']}$b$, $a${first['authorization']}$a$) r", db=DST).splitlines()[-1]
    assert dup == "duplicate", f"redelivery after the restore: {dup}"
    body = FUTURE_BODY.replace("EV_dump_future", "EV_dump_new").replace("2240000000", "2240000600")
    psql(f"SELECT attendance_ingest_webhook('{body}', attendance_sign_webhook('{body}', 'APIfixture'))", db=DST)
    newer = psql("SELECT (SELECT id FROM meeting_attendance_events WHERE event_id = 'EV_dump_new') "
                 "> (SELECT max(id) FROM meeting_attendance_events WHERE event_id <> 'EV_dump_new')", db=DST)
    assert newer == "t", "the id sequence did not go on after the restored ids"
    # the salt came back: the same person gets the same pseudonym
    pseudonym = "SELECT _attendance_pseudonym(19)"
    assert psql(pseudonym, db=SRC) == psql(pseudonym, db=DST), "a different pseudonym after the restore"
    # the fold derives every session again from the restored log, and a calculation
    # changes no result and audits nothing
    audits = "SELECT count(*) FROM attendance_status_changes"
    audits_before = psql(audits, db=DST)
    psql("SELECT attendance_fold()", db=DST)
    psql("SET client_min_messages = warning; SELECT count(*) FROM attendance_calculate(456)", db=DST)
    assert results(DST) == before, f"results changed:\n{before}\n{results(DST)}"
    assert psql(audits, db=DST) == audits_before, "the recalculation after the restore audited a change"


for db in (SRC, DST):
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
subprocess.run(["rm", "-rf", TMP])
finish()
