#!/usr/bin/env python3
"""Regenerates the seed corpora in test/fuzz/corpus/ from test/fixtures/livekit/*.jsonl
plus a few hand-made bodies and tokens. Deterministic: same fixtures, same files.

    test/fuzz/make_corpus.py            (rewrites corpus/webhook and corpus/token)
"""
import base64
import hashlib
import hmac
import json
import pathlib
import shutil

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "livekit"
KEY, SECRET = "APIfixture", b"fixture-secret-0123456789abcdef0123"
NOW = 1763130600

# Hand-made bodies: the proto3 JSON variants a parser must accept (snake_case names,
# numbers for 64-bit integers, numeric enums, omitted defaults, nulls, unknown fields)
# and the edges it must reject.
HANDMADE = {
    "snake_case_join": {"event": "participant_joined", "id": "EV_snake1", "created_at": "1763130580",
                        "room": {"sid": "RM_x", "name": "session-456"},
                        "participant": {"sid": "PA_s1", "identity": "456_ahmed", "joined_at_ms": "1763130579100",
                                        "disconnect_reason": "CLIENT_INITIATED"}},
    "numeric_enums": {"event": "participant_left", "id": "EV_num1", "createdAt": 1763130580,
                      "room": {"name": "session-7"},
                      "participant": {"sid": "PA_n1", "identity": "user_12", "state": 3, "kind": 4,
                                      "disconnectReason": 9, "joinedAt": 1763130000}},
    "joined_at_seconds": {"event": "participant_joined", "id": "EV_js", "createdAt": "1763130580",
                          "room": {"name": "session-1"},
                          "participant": {"sid": "PA_j", "identity": "guest", "joinedAt": "1763130579",
                                          "joinedAtMs": None, "state": "ACTIVE"}},
    "attributes_metadata": {"event": "participant_joined", "id": "EV_attr", "createdAt": "1763130580",
                            "room": {"sid": "RM_a", "name": "physics-session-0042"},
                            "participant": {"sid": "PA_a", "identity": "x-\u0623\u062d\u0645\u062f",
                                            "attributes": {"user_id": " 19 ", "role": "Student"},
                                            "metadata": "{\"user_id\":\"23\",\"role\":\"OBSERVER\"}",
                                            "permission": {"hidden": False, "recorder": True}}},
    "metadata_only": {"event": "participant_joined", "id": "EV_meta", "createdAt": "1763130580",
                      "room": {"name": "session-9"},
                      "participant": {"sid": "PA_m", "identity": "zoom-guest",
                                      "metadata": "{\"user_id\":9223372036854775807,\"role\":\"teacher\"}",
                                      "kind": "SIP", "permission": {"hidden": True}}},
    "aborted": {"event": "participant_connection_aborted", "id": "EV_ab", "createdAt": "1763130605",
                "room": {"name": "session-456"},
                "participant": {"sid": "PA_ab", "identity": "user-23", "state": "JOINING"}},
    "room_finished_unknown_fields": {"event": "room_finished", "id": "EV_rf", "createdAt": 1763133340,
                                     "room": {"sid": "RM_r", "name": "session-456", "futureField": [1, 2.5e3, None, {"x": True}]},
                                     "numDropped": 0, "newThing": {"deep": {"er": [[], {}]}}},
    "track_published": {"event": "track_published", "id": "EV_tp", "createdAt": "1763130700",
                        "room": {"name": "lobby"}, "track": {"sid": "TR_1", "type": "AUDIO"},
                        "participant": {"sid": "PA_t", "identity": "456"}},
    "egress_no_room": {"event": "egress_started", "id": "EV_eg", "createdAt": "1763130700",
                       "egressInfo": {"egressId": "EG_1", "status": "EGRESS_STARTING"}},
    "max_time": {"event": "room_started", "id": "EV_max", "createdAt": "253402300799",
                 "room": {"name": "session-9223372036854775807"}},
    "over_max_time": {"event": "room_started", "id": "EV_over", "createdAt": "253402300800",
                      "room": {"name": "session-1"}},
    "negative_joined": {"event": "participant_joined", "id": "EV_neg", "createdAt": "-1",
                        "room": {"name": "session-1"},
                        "participant": {"sid": "PA_x", "identity": "1", "joinedAtMs": "-5"}},
    "wrong_types": {"event": "participant_joined", "id": 5, "createdAt": True,
                    "room": [], "participant": "user-1"},
}
RAW_BODIES = {  # not expressible through json.dumps
    "nul_escape": '{"event":"room_started","id":"EV_\\u0000","createdAt":"1763130300","room":{"name":"session-1"}}',
    "not_json": '{"event":"room_started","id":"EV_1",',
    "deep": '{"event":"x","id":"EV_d","createdAt":1,"n":' + "[" * 70 + "]" * 70 + "}",
    "array": '[{"event":"room_started"}]',
}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(header: dict, claims: dict, secret: bytes = SECRET) -> str:
    signing_input = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def main() -> None:
    webhook_dir, token_dir = HERE / "corpus" / "webhook", HERE / "corpus" / "token"
    for d in (webhook_dir, token_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)

    seen_bodies = set()
    for jsonl in sorted(FIXTURES.glob("*.jsonl")):
        stem = jsonl.stem.replace(".", "-")
        for n, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            req = json.loads(line)
            body = req["body"].encode("utf-8")
            name = f"{stem}-{n:02d}" + (f"-{req['variant']}" if "variant" in req else "")
            if body not in seen_bodies:  # the duplicate delivery adds nothing
                seen_bodies.add(body)
                (webhook_dir / f"{name}.json").write_bytes(body)
            auth = (req.get("authorization") or "").encode()
            (token_dir / f"{name}.txt").write_bytes(auth + b"\n" + body)

    for name, obj in HANDMADE.items():
        (webhook_dir / f"hand-{name}.json").write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    for name, text in RAW_BODIES.items():
        (webhook_dir / f"hand-{name}.json").write_text(text, encoding="utf-8")

    # Hand-made tokens over a small body, signed with the fixture secret so they get
    # past the signature check and reach the claim checks.
    body = json.dumps(HANDMADE["aborted"], separators=(",", ":")).encode()
    good = {"iss": KEY, "nbf": NOW, "iat": NOW, "exp": NOW + 600, "sha256": body_hash(body)}
    hs256 = {"alg": "HS256", "typ": "JWT"}
    tokens = {
        "bearer": "Bearer " + token(hs256, good),
        "bearer-blanks": " \tbearer\t " + token(hs256, good) + " \r",
        "alg-none": token({"alg": "none"}, good),
        "alg-hs512": token({"alg": "HS512", "typ": "JWT"}, good),
        "no-exp": token(hs256, {k: v for k, v in good.items() if k != "exp"}),
        "no-sha256": token(hs256, {k: v for k, v in good.items() if k != "sha256"}),
        "float-claims": token(hs256, dict(good, exp=NOW + 600.5, nbf=1.5e9)),
        "huge-exp": token(hs256, dict(good, exp=18446744073709551615)),
        "negative-nbf": token(hs256, dict(good, nbf=-9223372036854775808)),
        "string-exp": token(hs256, dict(good, exp=str(NOW + 600))),
        "expired": token(hs256, dict(good, exp=NOW - 61, nbf=NOW - 700)),
        "future": token(hs256, dict(good, nbf=NOW + 61)),
        "bad-secret": token(hs256, good, b"another-secret"),
        "four-parts": token(hs256, good) + ".x",
        "padded-sig": token(hs256, good) + "==",
    }
    for name, tok in tokens.items():
        (token_dir / f"hand-{name}.txt").write_bytes(tok.encode() + b"\n" + body)


if __name__ == "__main__":
    main()
