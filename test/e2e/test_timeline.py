#!/usr/bin/env python3
"""attendancectl timeline: the HTML page is self-contained, escapes what people named
themselves, and renders in headless Chromium (Debian's `chromium`, installed by
scripts/deps.sh chromium when missing) with one lane per person and a picture that is not
blank. Needs the throwaway cluster of scripts/test.sh (PGHOST/PGPORT) and the CMake build."""
import functools
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(__file__))
import pgtest  # noqa: E402
from pgtest import ROOT, case, finish, psql, wait_for  # noqa: E402

SESSION_456 = os.path.join(ROOT, "test", "fixtures", "livekit", "session-456.jsonl")
DB = "e2e_timeline"
TMP = tempfile.mkdtemp(prefix="attendance-timeline-")
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
ARABIC = "أحمد محمد"

ctl = functools.partial(pgtest.ctl, timeout=120, PGDATABASE=DB, PGTZ="UTC")
sql = functools.partial(psql, db=DB)


def chromium():
    """The browser, installed through scripts/deps.sh when missing."""
    path = shutil.which("chromium")
    if path is None:
        subprocess.run([os.path.join(ROOT, "scripts", "deps.sh"), "chromium"], check=True,
                       timeout=1800)
        path = shutil.which("chromium")
    assert path, "chromium is not installed"
    return path


def browse(*args):
    """Runs headless Chromium on its own empty profile, with nothing that reaches out."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=TMP)
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"chromium exited {proc.returncode}: {proc.stderr[-1500:]}")
    return proc


def png_pixels(path):
    """Decodes an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) with zlib:
    returns (width, height, rows of pixel tuples)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(width)])
        prev = line
    return width, height, rows


# ---- setup: session 456 from the real-format fixture, plus a hostile name --------------
psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
psql(f"CREATE DATABASE {DB}")
sql("SET client_min_messages = warning; CREATE EXTENSION attendance")
sql("SELECT attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z')")
sql("SELECT attendance_expect(456, 7, 'teacher')")
sql("SELECT attendance_expect(456, u) FROM unnest(ARRAY[12, 19, 23, 31, 40]) u")
sql("SELECT attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123')")
ctl("replay", SESSION_456, "--sql", "--replay-mode", check_rc=0)
hostile_body = ('{"event":"participant_joined","id":"EV_hostile1","createdAt":"1763131200",'
                '"room":{"name":"session-456"},"participant":{"sid":"PA_hostile1",'
                '"identity":"user-66","name":' + '"' + HOSTILE.replace('"', '\\"') + '",'
                '"joinedAtMs":"1763131200000"}}')
sql(f"SELECT attendance_ingest_webhook($b${hostile_body}$b$, "
    f"attendance_sign_webhook($b${hostile_body}$b$, 'APIfixture'))")
sql("SELECT attendance_fold()")
sql("SELECT count(*) FROM attendance_calculate(456)")
PAGE = os.path.join(TMP, "timeline-456.html")
PERSONS = int(sql("SELECT count(*) FROM meeting_attendances WHERE session_id = 456"))


@case("timeline 456 --html FILE writes the page (exit 0)")
def _():
    p = ctl("timeline", "456", "--html", PAGE, check_rc=0)
    assert os.path.exists(PAGE) and not os.path.exists(PAGE + ".tmp"), os.listdir(TMP)
    assert f"{PERSONS} persons" in p.stderr, p.stderr


@case("the page is self-contained: no script, no external resource, UTF-8")
def _():
    html = open(PAGE, encoding="utf-8").read()
    assert '<meta charset="utf-8">' in html
    assert "<script" not in html.lower(), "a script element"
    # the only URL is the SVG namespace, which is a name, not a resource
    urls = set(re.findall(r"(?:https?|ftp|wss?)://[^\s\"'<>)]+", html))
    assert urls == {"http://www.w3.org/2000/svg"}, urls
    assert not re.search(r"<[^<>]*\s(src|href)\s*=", html), "a src or href attribute"
    assert re.findall(r"url\(([^)]*)\)", html) == ["#hatch"], re.findall(r"url\(([^)]*)\)", html)
    assert "@import" not in html and "@font-face" not in html
    assert "default-src 'none'" in html, "no Content-Security-Policy"


@case("names are escaped: a <script> name is text; an Arabic name is there as UTF-8")
def _():
    html = open(PAGE, encoding="utf-8").read()
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;&lt;img src=x" in html, \
        "the hostile name is not escaped as expected"
    assert ARABIC in html


@case("errors: a session that is not scheduled exits 4; no --html exits 2; a bad path exits 5")
def _():
    p = ctl("timeline", "999", "--html", os.path.join(TMP, "none.html"), check_rc=4)
    assert "session 999 is not scheduled" in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(TMP, "none.html"))
    ctl("timeline", "456", check_rc=2)
    ctl("timeline", "--html", PAGE, check_rc=2)
    p = ctl("timeline", "456", "--html", os.path.join(TMP, "no-such-dir", "x.html"), check_rc=5)
    assert "cannot write" in p.stderr, p.stderr


@case("headless Chromium: the DOM has one lane per person, the lost leave drawn as reconciled, no script ran")
def _():
    dom = browse("--dump-dom", "file://" + PAGE).stdout
    lanes = re.findall(r'<g class="lane" data-lane="\d+" data-user-key="([^"]*)"', dom)
    assert len(lanes) == PERSONS, f"{len(lanes)} lanes for {PERSONS} persons"
    keys = sql("SELECT string_agg(user_key, ',' ORDER BY user_key) FROM meeting_attendances "
               "WHERE session_id = 456").split(",")
    assert sorted(lanes) == sorted(keys), (lanes, keys)
    # user 12's second connection lost its leave: closed by reconciliation, drawn so
    assert 'data-connection="PA_abc123ahmed2" data-end="reconciled"' in dom, "no reconciled bar"
    reconciled = int(sql("SELECT count(*) FROM attendance_sessions WHERE session_id = 456 "
                         "AND end_reason = 'reconciled'"))
    assert dom.count('data-end="reconciled"') == reconciled, dom.count('data-end="reconciled"')
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1), "a script ran"
    assert "<img" not in dom, "the hostile name became an element"
    assert 'data-window="scheduled"' in dom


@case("headless Chromium: the screenshot is not blank")
def _():
    shot = os.path.join(TMP, "timeline.png")
    browse(f"--screenshot={shot}", "--window-size=1280,520", "--hide-scrollbars",
           "file://" + PAGE)
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1280, 520), (width, height)
    colours = {px for row in rows[::2] for px in row[::2]}
    assert len(colours) > 8, f"only {len(colours)} colours"
    # the bars' green and the window's blue are painted (colours of the page's style)
    assert (0x16, 0xa3, 0x4a) in colours, "no connection bar painted"
    assert (0xdb, 0xea, 0xfe) in colours, "no scheduled window painted"


def connections_agree(session):
    """Every connection of every person: attendance_explain's join and leave (derived now)
    are those of attendance_sessions, which the timeline draws, and the page's tooltip shows
    them. Returns the number of connections compared."""
    page = os.path.join(TMP, f"timeline-{session}.html")
    ctl("timeline", str(session), "--html", page, check_rc=0)
    html = open(page, encoding="utf-8").read()
    stored = {}
    for line in sql(f"SELECT participant_sid, user_key, floor(extract(epoch FROM join_time) * 1000)::bigint, "
                    f"floor(extract(epoch FROM leave_time) * 1000)::bigint FROM attendance_sessions "
                    f"WHERE session_id = {session}").splitlines():
        sid, key, join, leave = line.split("|")
        stored[sid] = (key, int(join) if join else None, int(leave) if leave else None)
    explained = {}
    for key in sql(f"SELECT user_key FROM meeting_attendances WHERE session_id = {session}").splitlines():
        trace = json.loads(sql(f"SELECT attendance_explain({session}, $k${key}$k$)"))
        for c in trace["connections"]:
            explained[c["sid"]] = (key, c.get("join_ms"), c.get("leave_ms"))
    assert explained == stored, f"explain {explained} != attendance_sessions {stored}"

    def clock(ms):
        return time.strftime("%H:%M:%S", time.gmtime(ms // 1000))
    for sid, (_, join, leave) in stored.items():
        if join is None:
            continue
        tip = re.search(r'data-connection="%s"[^>]*><title>([^<]*)</title>' % re.escape(sid), html)
        assert tip, f"no bar for {sid}"
        want = f"{sid}: {clock(join)} – " + (clock(leave) if leave is not None else "still connected")
        assert tip.group(1).startswith(want), (tip.group(1), want)
    return len(stored)


@case("explain and the timeline show the same join and leave for every connection of the fixture class")
def _():
    assert connections_agree(456) >= 6


@case("a room_finished stamped after the calculation: explain and the timeline still agree later")
def _():
    # The session ends 2 s from now; user 88 joined and never left; the room_finished is
    # stamped 6 s from now (a clock ahead of the database's, or a re-timed replay). The
    # calculation runs after the end but before that time, explain after it: both must
    # close the connection at the room_finished.
    now = float(sql("SELECT extract(epoch FROM now())"))
    start, end, finished = int(now) - 60, int(now) + 2, int(now) + 6
    sql(f"SELECT attendance_schedule_session(457, 'session-457', to_timestamp({start}), to_timestamp({end}))")
    for body in (
            '{"event":"participant_joined","id":"EV_tl457_join","createdAt":"%d","room":{"name":"session-457"},'
            '"participant":{"sid":"PA_tl457_88","identity":"user-88","joinedAtMs":"%d"}}' % (start + 30, (start + 30) * 1000),
            '{"event":"room_finished","id":"EV_tl457_fin","createdAt":"%d","room":{"name":"session-457"}}' % finished):
        sql(f"SELECT attendance_ingest_webhook($b${body}$b$, attendance_sign_webhook($b${body}$b$, 'APIfixture'))")
    sql("SELECT attendance_fold()")
    assert wait_for(lambda: sql(f"SELECT now() > to_timestamp({end})") == "t", 30), "the session did not end"
    assert sql("SELECT now() < to_timestamp(%d)" % finished) == "t", "too slow: the room_finished time passed"
    sql("SELECT count(*) FROM attendance_calculate(457)")
    assert wait_for(lambda: sql(f"SELECT now() > to_timestamp({finished})") == "t", 30), "the clock stood still"
    assert connections_agree(457) == 1
    leave = sql("SELECT floor(extract(epoch FROM leave_time))::bigint || ' ' || disconnect_reason "
                "FROM attendance_sessions WHERE participant_sid = 'PA_tl457_88'")
    assert leave == f"{finished} reconciled: room_finished", leave


if os.environ.get("ATTENDANCE_KEEP_TIMELINE"):
    print(f"kept {TMP}")
else:
    shutil.rmtree(TMP, ignore_errors=True)
psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
finish()
