#!/usr/bin/env python3
"""Deterministic, realistic LiveKit webhook workload for the attendance benchmarks.

N sessions x M people. Every person follows a seeded behaviour (on time, late, leaves
early, reconnects with new sids, two overlapping devices, absent) and the delivery is
spoiled the way LiveKit spoils it: byte-identical duplicates (retries), leaves that
arrive before their join, lost leaves, connections that abort before they become
active, a recorder (EGRESS) participant, room_started and room_finished.

The same seed and base time give byte-identical bodies; only the tokens (signed with
the current clock so that they are valid while the benchmark runs) differ per run.

Writes, for PREFIX:
  PREFIX.sessions.csv  session_id,room_name,starts_at,ends_at
  PREFIX.roster.csv    session_id,user_id,role
  PREFIX.hooks.csv     seq,event_id,session_id,body,authorization   (delivery order, CSV)
  PREFIX.hooks.tsv     authorization<TAB>body                       (for the HTTP load generator)
and prints a JSON summary on stdout.
"""
import argparse
import base64
import csv
import hashlib
import hmac
import json
import random
import sys
import time

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CODECS = [{"mime": m} for m in ("audio/PCMU", "audio/PCMA", "audio/opus", "audio/red", "video/VP8",
                                "video/H264", "video/VP9", "video/AV1", "video/H265", "video/rtx")]
PERMISSION = {"canSubscribe": True, "canPublish": True, "canPublishData": True}
FIRST_NAMES = ["Ahmed", "Fatima", "Lena", "Jonas", "Mei", "Arjun", "Sofia", "Omar", "Yuki", "Noah",
               "Amira", "Lucas", "Zainab", "Elif", "Mateo", "Hana", "Ivan", "Chloe", "Ravi", "Nora"]


def rid(rng, prefix, n=12):
    return prefix + "".join(rng.choice(B62) for _ in range(n))


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Signer:
    def __init__(self, api_key, secret, ttl):
        self.api_key = api_key
        self.secret = secret.encode()
        now = int(time.time())
        self.iat = now
        self.nbf = now - 300
        self.exp = now + ttl
        self.header = b64url(b'{"alg":"HS256","typ":"JWT"}')

    def sign(self, body):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        claims = json.dumps({"iss": self.api_key, "exp": self.exp, "nbf": self.nbf, "iat": self.iat,
                             "sha256": digest}, separators=(",", ":"))
        signing_input = self.header + "." + b64url(claims.encode())
        sig = hmac.new(self.secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + b64url(sig)


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class Session:
    def __init__(self, session_id, start_s, minutes, people, seed):
        self.id = session_id
        self.room = "session-%d" % session_id
        self.start_ms = start_s * 1000
        self.end_ms = (start_s + minutes * 60) * 1000
        self.rng = random.Random("%s/session/%d" % (seed, session_id))
        self.room_sid = rid(self.rng, "RM_")
        self.turn = "".join(self.rng.choice(B62) for _ in range(43))
        self.created_s = start_s - 600
        self.people = people
        self.seed = seed
        self.events = []   # (deliver_ms, seq, event_id, body)
        self.roster = []   # (user_id, role)
        self.count = 0     # participants seen, for numParticipants

    def room_obj(self):
        r = {"sid": self.room_sid, "name": self.room, "emptyTimeout": 300, "departureTimeout": 20,
             "creationTime": str(self.created_s), "creationTimeMs": str(self.created_s * 1000),
             "turnPassword": self.turn, "enabledCodecs": CODECS}
        if self.count:
            r["numParticipants"] = self.count
        return r

    def emit(self, deliver_ms, event, created_s, participant=None, extra=None):
        rng = self.rng
        event_id = rid(rng, "EV_")
        body = {"event": event, "room": self.room_obj()}
        if participant is not None:
            body["participant"] = participant
        if extra:
            body.update(extra)
        body["id"] = event_id
        body["createdAt"] = str(created_s)
        text = dumps(body)
        self.events.append([deliver_ms, len(self.events), event_id, text])
        return self.events[-1]


def participant(sid, identity, name, join_ms, state, metadata=None, attributes=None, kind=None,
                reason=None, version=5):
    p = {"sid": sid, "identity": identity, "state": state}
    if metadata is not None:
        p["metadata"] = metadata
    if join_ms is not None:
        p["joinedAt"] = str(join_ms // 1000)
        p["joinedAtMs"] = str(join_ms)
    p["name"] = name
    p["version"] = version
    p["permission"] = PERMISSION
    if attributes:
        p["attributes"] = attributes
    if kind:
        p["kind"] = kind
    if reason:
        p["disconnectReason"] = reason
    return p


def build_session(s, stats):
    """Connections for every person, then the webhooks with LiveKit's delivery faults."""
    MIN = 60_000
    start, end = s.start_ms, s.end_ms
    connections = []  # (identity, name, meta, attrs, kind, sid, join_ms, leave_ms or None if it never ends)
    aborted = []
    for j in range(s.people):
        rng = random.Random("%s/person/%d/%d" % (s.seed, s.id, j))
        teacher = j == 0
        uid = (10 + s.id % 50) if teacher else 1000 + (s.id * 37 + j) % 50000
        role = "teacher" if teacher else "student"
        s.roster.append((uid, role))
        identity = "user-%d" % uid
        name = "%s %d" % (FIRST_NAMES[uid % len(FIRST_NAMES)], uid)
        meta = dumps({"user_id": uid, "role": "teacher"}) if teacher else None
        attrs = {"user_id": str(uid)} if (not teacher and rng.random() < 0.10) else None

        def conn(join_ms, leave_ms):
            connections.append((identity, name, meta, attrs, None, rid(rng, "PA_"), join_ms, leave_ms))

        if teacher:
            conn(start - 10 * MIN + rng.randrange(0, 5 * MIN), end + rng.randrange(0, 5 * MIN))
            continue
        r = rng.random()
        if r < 0.05:
            stats["absent"] += 1                                             # roster only
        elif r < 0.55:
            stats["on_time"] += 1
            conn(start + rng.randrange(-5 * MIN, 3 * MIN), end + rng.randrange(-3 * MIN, 6 * MIN))
        elif r < 0.65:
            stats["late"] += 1
            conn(start + rng.randrange(16 * MIN, 40 * MIN), end + rng.randrange(-2 * MIN, 5 * MIN))
        elif r < 0.75:
            stats["leaves_early"] += 1
            conn(start + rng.randrange(-3 * MIN, 5 * MIN), start + rng.randrange(10 * MIN, 35 * MIN))
        elif r < 0.90:
            stats["reconnects"] += 1
            t = start + rng.randrange(-4 * MIN, 6 * MIN)
            cycles = rng.randrange(2, 5)
            for c in range(cycles):
                seg = rng.randrange(5 * MIN, 25 * MIN)
                last = c == cycles - 1
                leave = end + rng.randrange(-2 * MIN, 4 * MIN) if last else t + seg
                conn(t, leave)
                t = leave + rng.randrange(1_000, 3 * MIN)                    # new sid after a gap
                if t >= end:
                    break
        else:
            stats["two_devices"] += 1
            conn(start + rng.randrange(-2 * MIN, 3 * MIN), end + rng.randrange(0, 3 * MIN))
            j2 = start + rng.randrange(10 * MIN, 30 * MIN)
            conn(j2, j2 + rng.randrange(5 * MIN, 25 * MIN))                  # overlapping phone
        if rng.random() < 0.02:                                               # never became active
            aborted.append((identity, name, attrs, rid(rng, "PA_"), start + rng.randrange(0, 30 * MIN)))

    # A recorder joins and leaves: logged as ignored.
    rec_sid = rid(s.rng, "PA_")
    connections.append(("egress-rec", "recorder", None, None, "EGRESS", rec_sid, start + 2 * MIN, end + MIN))

    last_leave = max(c[7] for c in connections)
    room_finished_ms = last_leave + 20_000
    fault = random.Random("%s/faults/%d" % (s.seed, s.id))

    s.emit(start - 10 * MIN, "room_started", (start - 10 * MIN) // 1000)
    evs = []  # (kind, time_ms, connection)
    for c in connections:
        evs.append(("join", c[6], c))
        evs.append(("leave", c[7], c))
    evs.sort(key=lambda e: (e[1], e[0] == "join"))
    seen = 0
    for kind, t, c in evs:
        identity, name, meta, attrs, pkind, sid, join_ms, leave_ms = c
        if kind == "join":
            seen += 1
            s.count = seen
            p = participant(sid, identity, name, join_ms, "ACTIVE", meta, attrs, pkind)
            created = join_ms // 1000 + 1
            deliver = created * 1000
            if pkind is None and fault.random() < 0.02:                      # join delayed past its leave
                deliver = leave_ms + 1_000 + fault.randrange(0, 3_000)
                stats["join_after_leave"] += 1
            ev = s.emit(deliver, "participant_joined", created, p)
        else:
            s.count = max(seen - 1, 0)
            p = participant(sid, identity, name, join_ms, "DISCONNECTED", meta, attrs, pkind,
                            reason="CLIENT_INITIATED", version=7)
            if pkind is None and fault.random() < 0.03:                      # the leave is lost
                stats["lost_leaves"] += 1
                continue
            ev = s.emit(leave_ms, "participant_left", leave_ms // 1000, p)
        if fault.random() < 0.05:                                            # retried: byte-identical
            stats["duplicates"] += 1
            s.events.append([ev[0] + fault.randrange(1_000, 8_000), len(s.events), ev[2], ev[3]])
    for identity, name, attrs, sid, t in aborted:
        p = participant(sid, identity, name, None, "JOINING", None, attrs, None, reason="JOIN_FAILURE")
        s.emit(t, "participant_connection_aborted", t // 1000, p)
    s.emit(room_finished_ms, "room_finished", room_finished_ms // 1000)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, required=True)
    ap.add_argument("--people", type=int, default=30)
    ap.add_argument("--first-id", type=int, default=1)
    ap.add_argument("--base", type=int, required=True, help="epoch seconds of the first session start")
    ap.add_argument("--span-hours", type=float, default=20.0, help="session starts spread over this")
    ap.add_argument("--minutes", type=int, default=60, help="scheduled length of a session")
    ap.add_argument("--seed", default="attendance-bench-1")
    ap.add_argument("--api-key", default="APIbench")
    ap.add_argument("--secret", default="bench-secret-0123456789abcdef")
    ap.add_argument("--ttl", type=int, default=3 * 86400)
    ap.add_argument("--out", required=True, help="output prefix")
    ap.add_argument("--tsv", action="store_true", help="also write PREFIX.hooks.tsv")
    a = ap.parse_args()

    signer = Signer(a.api_key, a.secret, a.ttl)
    stats = {k: 0 for k in ("absent", "on_time", "late", "leaves_early", "reconnects", "two_devices",
                            "join_after_leave", "lost_leaves", "duplicates")}
    all_events = []
    sessions = []
    step_s = int(a.span_hours * 3600 / max(a.sessions, 1))
    for k in range(a.sessions):
        sid = a.first_id + k
        start_s = a.base + k * step_s
        start_s -= start_s % 60
        s = Session(sid, start_s, a.minutes, a.people, a.seed)
        build_session(s, stats)
        sessions.append(s)
        for e in s.events:
            all_events.append((e[0], sid, e[1], e[2], e[3]))
    all_events.sort(key=lambda e: (e[0], e[1], e[2]))

    iso = lambda ms: time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(ms // 1000))
    with open(a.out + ".sessions.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        for s in sessions:
            w.writerow([s.id, s.room, iso(s.start_ms), iso(s.end_ms)])
    with open(a.out + ".roster.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        for s in sessions:
            for uid, role in s.roster:
                w.writerow([s.id, uid, role])
    tsv = open(a.out + ".hooks.tsv", "w") if a.tsv else None
    total_bytes = 0
    tokens = {}
    with open(a.out + ".hooks.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        for seq, (_, sid, _, event_id, body) in enumerate(all_events, 1):
            tok = tokens.get(body)
            if tok is None:
                tok = tokens[body] = signer.sign(body)
            w.writerow([seq, event_id, sid, body, tok])
            total_bytes += len(body.encode())
            if tsv:
                tsv.write(tok + "\t" + body + "\n")
    if tsv:
        tsv.close()
    summary = {"sessions": a.sessions, "people": a.people, "webhooks": len(all_events),
               "distinct_webhooks": len(tokens), "mean_body_bytes": round(total_bytes / max(len(all_events), 1)),
               "first_session": a.first_id, "last_session": a.first_id + a.sessions - 1}
    summary.update(stats)
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
