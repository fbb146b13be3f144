#!/usr/bin/env python3
"""One schema, however it was installed (docs/development.md, "The SQL scripts").

- The scripts of released versions are never edited: each is listed with its SHA-256 in
  sql/released.sha256, and every script of a version older than default_version is listed.
- A fresh install (CREATE EXTENSION at the current version, which runs the full script
  built from sql/src) and an install of the first version upgraded through every released
  version (ALTER EXTENSION UPDATE) give the same schema: the same pg_dump --schema-only
  (in binary-upgrade mode, which writes every member of the extension with its privileges,
  comments and membership; normalised: the dump's own comments, OIDs, relfrozenxid and
  the order of its entries), the same member objects, the same catalog details
  (functions, columns, defaults, constraints, indexes, triggers, policies, privileges,
  comments, configuration tables) and the same rows in the extension's tables.
- A fresh install runs the full script, not the first version's and the upgrades.
Any difference fails and is printed."""
import difflib
import hashlib
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from pgtest import case, finish, psql, wait_for  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SQL = os.path.join(ROOT, "sql")
FRESH = "e2e_schema_fresh"
UPGRADED = "e2e_schema_upgraded"


def version_tuple(v):
    return tuple(int(x) for x in v.split("."))


def default_version():
    with open(os.path.join(ROOT, "attendance.control")) as f:
        m = re.search(r"^default_version = '([0-9.]+)'$", f.read(), re.M)
    return m.group(1)


def scripts():
    """Every install and upgrade script in sql/, with the version it installs."""
    out = {}
    for name in sorted(os.listdir(SQL)):
        m = re.fullmatch(r"attendance--(?:([0-9.]+)--)?([0-9.]+)\.sql", name)
        if m:
            out[name] = m.group(2)
    return out


def released():
    """sql/released.sha256: `sha256  sql/<script>` per line (sha256sum's format)."""
    listed = {}
    with open(os.path.join(SQL, "released.sha256")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                digest, path = line.split()
                listed[os.path.basename(path)] = digest
    return listed


@case("every listed released script is unchanged (sql/released.sha256)")
def released_unchanged():
    changed = []
    for name, digest in released().items():
        path = os.path.join(SQL, name)
        if not os.path.exists(path):
            changed.append(f"{name}: missing (a released version could no longer be installed or upgraded)")
            continue
        with open(path, "rb") as f:
            actual = hashlib.sha256(f.read()).hexdigest()
        if actual != digest:
            changed.append(f"{name}: sha256 {actual}, released as {digest}")
    assert not changed, "released scripts were edited (put the change in a new upgrade script):\n  " + \
        "\n  ".join(changed)


@case("every script of a version older than default_version is listed as released")
def older_listed():
    current = version_tuple(default_version())
    listed = released()
    unlisted = [name for name, to in scripts().items()
                if version_tuple(to) < current and name not in listed]
    assert not unlisted, (f"scripts of versions before {default_version()} not in sql/released.sha256: "
                          f"{', '.join(unlisted)}")
    # and the chain from the first version reaches the current one
    steps = {}
    for name in scripts():
        m = re.fullmatch(r"attendance--([0-9.]+)--([0-9.]+)\.sql", name)
        if m:
            steps[m.group(1)] = m.group(2)
    v = "0.1.0"
    while v in steps:
        v = steps[v]
    assert v == default_version(), f"the upgrade scripts lead from 0.1.0 to {v}, not to {default_version()}"


# ---- the two installs --------------------------------------------------------------------
for db in (FRESH, UPGRADED):
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    psql(f"CREATE DATABASE {db}")


def install(db, statements):
    """Runs the statements in one session with function call counting on; returns how often
    each of the library's entry points named in `calls` ran (pg_stat_user_functions)."""
    script = "\n".join(["SET client_min_messages = warning;", "SET track_functions = 'all';", *statements,
                        # the counts are the session's until its stats are flushed
                        "SELECT pg_stat_force_next_flush();", "SELECT 1;"])
    proc = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db], input=script,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{db}: {proc.stderr.strip()}")


install(FRESH, ["CREATE EXTENSION attendance;"])
install(UPGRADED, ["CREATE EXTENSION attendance VERSION '0.1.0';", "ALTER EXTENSION attendance UPDATE;"])


def fold_calls(db):
    return psql("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE funcname = 'attendance_fold'",
                db=db)


@case("CREATE EXTENSION runs the current version's full script, not the first version's and the upgrades")
def fresh_runs_the_full_script():
    version = default_version()
    for db in (FRESH, UPGRADED):
        got = psql("SELECT extversion FROM pg_extension WHERE extname = 'attendance'", db=db)
        assert got == version, f"{db} is at {got}, not {version}"
    # The upgrade scripts of 0.2.0 -> 0.3.0 and 0.3.0 -> 0.4.0 call attendance_fold(); the
    # full script never does.
    assert wait_for(lambda: fold_calls(UPGRADED) == "2", 30), \
        f"the upgraded database counted {fold_calls(UPGRADED)} calls of attendance_fold(), not 2"
    assert fold_calls(FRESH) == "0", f"the fresh install called attendance_fold() {fold_calls(FRESH)} times"
    shared = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True).stdout.strip()
    full = os.path.join(shared, "extension", f"attendance--{version}.sql")
    assert os.path.exists(full), f"{full} is not installed"


def statements(text):
    """The top-level statements of a script (dollar-quoted bodies and quoted strings kept
    whole; comments and psql's meta-commands dropped)."""
    out, cur, i = [], [], 0
    while i < len(text):
        # comments, and psql's meta-commands (the \echo ... \quit line) at a line's start
        if text.startswith("--", i) or (text[i] == "\\" and (i == 0 or text[i - 1] == "\n")):
            i = text.find("\n", i) if text.find("\n", i) >= 0 else len(text)
            continue
        m = re.match(r"\$(\w*)\$", text[i:])
        if m:
            end = text.find(m.group(0), i + len(m.group(0)))
            end = len(text) if end < 0 else end + len(m.group(0))
            cur.append(text[i:end])
            i = end
            continue
        if text[i] == "'":
            end = i + 1
            while end < len(text) and not (text[end] == "'" and not text.startswith("''", end)):
                end += 2 if text.startswith("''", end) else 1
            cur.append(text[i:end + 1])
            i = end + 1
            continue
        if text[i] == ";":
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(text[i])
        i += 1
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return [s for s in out if s]


@case("no upgrade script of an unreleased version calls a C function of the library")
def upgrades_call_no_library_code():
    # During ALTER EXTENSION UPDATE the new library runs against the old version's objects:
    # an upgrade script changes tables and data in SQL and creates the functions it touches,
    # and calls none of the library's (docs/development.md). Creating, altering, dropping,
    # commenting and granting a function is not calling it.
    c_functions = set(psql("""
        SELECT string_agg(DISTINCT p.proname, ' ') FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
        WHERE l.lanname = 'c'""", db=FRESH).split())
    assert "attendance_fold" in c_functions, c_functions
    listed = released()
    calls = []
    for name in scripts():
        if "--" not in name[len("attendance--"):] or name in listed:
            continue
        with open(os.path.join(SQL, name)) as f:
            for stmt in statements(f.read()):
                if re.match(r"(CREATE|ALTER|DROP|COMMENT|GRANT|REVOKE)\b(\s+OR\s+REPLACE)?\s+(FUNCTION|ON\s+FUNCTION)\b",
                            stmt, re.I) or re.match(r"(GRANT|REVOKE)\b", stmt, re.I):
                    continue
                for fn in sorted(c_functions):
                    if re.search(r"\b" + re.escape(fn) + r"\s*\(", stmt):
                        calls.append(f"{name}: {fn}() in: {stmt[:120]}")
    assert not calls, "upgrade scripts call the library:\n  " + "\n  ".join(calls)


# ---- pg_dump ---------------------------------------------------------------------------------
def dump_entries(db):
    """pg_dump --schema-only --binary-upgrade, cut into its entries (each begins with the
    dump's `-- Name: ...; Type: ...` comment), normalised: the dump's comments, the OIDs
    binary upgrade preserves, relfrozenxid/relminmxid, the extension's configuration OIDs
    (compared by name below) and the session's restrict key go; blank lines collapse."""
    proc = subprocess.run(["pg_dump", "--schema-only", "--binary-upgrade", "-d", db],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"pg_dump {db}: {proc.stderr.strip()}")
    entries = {}
    key = "(preamble)"
    body = []

    def flush():
        text = "\n".join(line for line in body if line.strip())
        entries.setdefault(key, []).append(text)

    for line in proc.stdout.split("\n"):
        m = re.match(r"-- (?:Data for )?Name: (.*); Owner: .*$", line)
        if m:
            flush()
            key, body = m.group(1), []
            continue
        if line.startswith("--") or re.match(r"\\(un)?restrict ", line):
            continue
        if re.match(r"SELECT pg_catalog\.binary_upgrade_set_next_\w+\(", line):
            continue
        # A column an upgrade added with a default keeps that default as its "missing
        # value", what rows written before it read: how PostgreSQL stores them, not schema.
        if re.match(r"SELECT pg_catalog\.binary_upgrade_set_missing_value\(", line):
            continue
        line = re.sub(r"relfrozenxid = '\d+', relminmxid = '\d+'", "relfrozenxid = X, relminmxid = X", line)
        line = re.sub(r"^WHERE oid = '\d+';$", "WHERE oid = X;", line)
        line = re.sub(r"(binary_upgrade_create_empty_extension\('attendance', '[^']*', \w+, '[^']*'), "
                      r"'\{[^}]*\}', '\{.*\}', ", r"\1, <config tables>, <conditions>, ", line)
        body.append(line)
    flush()
    return {k: sorted(v) for k, v in entries.items()}


@case("pg_dump --schema-only --binary-upgrade: fresh and upgraded are the same (normalised)")
def same_dump():
    fresh, upgraded = dump_entries(FRESH), dump_entries(UPGRADED)
    problems = []
    for key in sorted(set(fresh) | set(upgraded)):
        a, b = fresh.get(key), upgraded.get(key)
        if a == b:
            continue
        if a is None:
            problems.append(f"only after the upgrade: {key}\n" + "\n".join(b))
        elif b is None:
            problems.append(f"only in the fresh install: {key}\n" + "\n".join(a))
        else:
            diff = difflib.unified_diff("\n".join(b).split("\n"), "\n".join(a).split("\n"),
                                        "upgraded", "fresh", lineterm="", n=2)
            problems.append(f"differs: {key}\n" + "\n".join(diff))
    assert not problems, f"{len(problems)} entries differ:\n" + "\n\n".join(problems)


# ---- the catalog, object by object -------------------------------------------------------------
# What pg_dump already says is asked again from the catalog, in one normal form per object,
# so that a difference names its object; and what a schema-only dump does not show: the rows
# the scripts write into the extension's own tables (the default policy, the fold's state).
MEMBERS = """
    SELECT d.classid, d.objid, d.objsubid FROM pg_catalog.pg_depend d
    WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
      AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'attendance')"""
CATALOG = f"""
SET search_path = pg_catalog;
WITH members AS ({MEMBERS}),
rels AS (SELECT c.oid FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid),
procs AS (SELECT p.oid FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid)
SELECT x FROM (
  SELECT 'member ' || (pg_identify_object(m.classid, m.objid, m.objsubid)).type || ' '
         || (pg_identify_object(m.classid, m.objid, m.objsubid)).identity FROM members m
  UNION ALL
  SELECT format('function %s: %s returns %s; %s %s strict=%s secdef=%s leakproof=%s parallel=%s cost=%s rows=%s '
                'config=%s acl=%s body=%s bin=%s', p.oid::regprocedure, pg_get_function_arguments(p.oid),
                pg_get_function_result(p.oid), l.lanname, p.provolatile, p.proisstrict, p.prosecdef,
                p.proleakproof, p.proparallel, p.procost, p.prorows, p.proconfig, p.proacl, md5(p.prosrc), p.probin)
  FROM procs x JOIN pg_proc p ON p.oid = x.oid JOIN pg_language l ON l.oid = p.prolang
  UNION ALL
  SELECT format('relation %s: kind=%s persistence=%s rls=%s/%s options=%s acl=%s partkey=%s bound=%s replident=%s',
                c.oid::regclass, c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity,
                c.reloptions, c.relacl, pg_get_partkeydef(c.oid), pg_get_expr(c.relpartbound, c.oid),
                c.relreplident)
  FROM rels x JOIN pg_class c ON c.oid = x.oid
  UNION ALL
  SELECT format('column %s.%s #%s: %s notnull=%s default=%s identity=%s generated=%s collation=%s storage=%s '
                'compression=%s stattarget=%s dropped=%s', a.attrelid::regclass, a.attname, a.attnum,
                format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid),
                a.attidentity, a.attgenerated, a.attcollation, a.attstorage, a.attcompression, a.attstattarget,
                a.attisdropped)
  FROM rels x JOIN pg_attribute a ON a.attrelid = x.oid AND a.attnum > 0
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
  UNION ALL
  SELECT format('constraint %s on %s: %s deferrable=%s deferred=%s validated=%s local=%s inherited=%s',
                co.conname, co.conrelid::regclass, pg_get_constraintdef(co.oid), co.condeferrable,
                co.condeferred, co.convalidated, co.conislocal, co.coninhcount)
  FROM rels x JOIN pg_constraint co ON co.conrelid = x.oid
  UNION ALL
  SELECT format('index %s: %s', i.indexrelid::regclass, pg_get_indexdef(i.indexrelid))
  FROM rels x JOIN pg_index i ON i.indrelid = x.oid
  UNION ALL
  SELECT format('trigger %s on %s: %s enabled=%s', t.tgname, t.tgrelid::regclass, pg_get_triggerdef(t.oid),
                t.tgenabled)
  FROM rels x JOIN pg_trigger t ON t.tgrelid = x.oid AND NOT t.tgisinternal
  UNION ALL
  SELECT format('policy %s on %s: %s %s roles=%s using=%s check=%s', po.polname, po.polrelid::regclass,
                po.polcmd, po.polpermissive, po.polroles::regrole[], pg_get_expr(po.polqual, po.polrelid),
                pg_get_expr(po.polwithcheck, po.polrelid))
  FROM rels x JOIN pg_policy po ON po.polrelid = x.oid
  UNION ALL
  SELECT format('view %s: %s', c.oid::regclass, pg_get_viewdef(c.oid))
  FROM rels x JOIN pg_class c ON c.oid = x.oid AND c.relkind IN ('v', 'm')
  UNION ALL
  SELECT format('sequence %s: %s start=%s increment=%s min=%s max=%s cache=%s cycle=%s owned by %s',
                s.seqrelid::regclass, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
                s.seqmax, s.seqcache, s.seqcycle,
                (SELECT d.refobjid::regclass || '.' || a.attname FROM pg_depend d
                 JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid AND d.deptype = 'a'))
  FROM rels x JOIN pg_sequence s ON s.seqrelid = x.oid
  UNION ALL
  SELECT format('comment on %s: %s', (pg_identify_object(d.classoid, d.objoid, d.objsubid)).identity, d.description)
  FROM pg_description d
  WHERE (d.classoid, d.objoid) IN (SELECT m.classid, m.objid FROM members m)
  UNION ALL
  SELECT format('initial privileges of %s: %s', (pg_identify_object(ip.classoid, ip.objoid, ip.objsubid)).identity,
                ip.initprivs)
  FROM pg_init_privs ip WHERE (ip.classoid, ip.objoid) IN (SELECT m.classid, m.objid FROM members m)
  UNION ALL
  SELECT format('configuration table %s: %s', cfg.rel::regclass, cfg.cond)
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS cfg(rel, cond) WHERE e.extname = 'attendance'
  UNION ALL
  SELECT format('extension: schema=%s relocatable=%s version=%s', e.extnamespace::regnamespace,
                e.extrelocatable, e.extversion)
  FROM pg_extension e WHERE e.extname = 'attendance'
  UNION ALL
  SELECT format('schema %s: acl=%s', n.nspname, n.nspacl)
  FROM pg_namespace n WHERE n.oid = (SELECT extnamespace FROM pg_extension WHERE extname = 'attendance')
) lines(x) ORDER BY 1;
"""


def catalog(db):
    return psql(CATALOG, db=db).split("\n")


def compare_lines(what, fresh, upgraded):
    fresh_only = sorted(set(fresh) - set(upgraded))
    upgraded_only = sorted(set(upgraded) - set(fresh))
    assert not fresh_only and not upgraded_only, (
        f"{what} differ\n  only in the fresh install:\n    " + "\n    ".join(fresh_only) +
        "\n  only after the upgrade:\n    " + "\n    ".join(upgraded_only))


@case("the extension's member objects and their catalog details are the same")
def same_catalog():
    fresh, upgraded = catalog(FRESH), catalog(UPGRADED)
    assert len([x for x in fresh if x.startswith("member ")]) > 90, "too few members: the query reads nothing"
    compare_lines("the catalogs", fresh, upgraded)


def rows(db):
    """The rows of every table of the extension, each as JSON without the columns that hold
    the time of writing (timestamptz)."""
    tables = psql(f"""
        SET search_path = pg_catalog;
        SELECT string_agg(c.oid::regclass::text, ' ' ORDER BY c.oid::regclass::text)
        FROM ({MEMBERS}) m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
        WHERE c.relkind IN ('r', 'p')""", db=db).split()
    out = []
    for t in tables:
        stamps = psql(f"""SELECT coalesce(string_agg(quote_literal(attname), ','), '''''') FROM pg_attribute
                          WHERE attrelid = '{t}'::regclass AND attnum > 0 AND NOT attisdropped
                            AND atttypid = 'timestamptz'::regtype""", db=db)
        got = psql(f"SELECT coalesce(string_agg((to_jsonb(r) - ARRAY[{stamps}]::text[])::text, E'\\n' "
                   f"ORDER BY (to_jsonb(r) - ARRAY[{stamps}]::text[])::text), '') FROM {t} r", db=db)
        out += [f"{t}: {line}" for line in got.split("\n") if line]
        out.append(f"{t}: {len([line for line in got.split(chr(10)) if line])} rows")
    return out


@case("the extension's tables hold the same rows (timestamps aside)")
def same_rows():
    fresh, upgraded = rows(FRESH), rows(UPGRADED)
    assert any(line.startswith("public.attendance_policies: {") for line in fresh), "no default policy read"
    compare_lines("the rows", fresh, upgraded)


for db in (FRESH, UPGRADED):
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
finish()
