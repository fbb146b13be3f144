#!/usr/bin/env python3
"""Compares HTTP server libraries on what chose attendance-proxy's (docs/proxy.md):

  - strict framing: how each answers a conflicting or non-decimal Content-Length,
    Content-Length with Transfer-Encoding, and two pipelined requests;
  - valid requests' latency at 1,000 requests/s with 1,000 idle and 64 slow-drip
    connections held open (bench/loadgen --idle/--slow), and without them;
  - closed-loop throughput over 16 keep-alive connections;
  - memory with the attack's connections open.

Every server reads each request's body completely and answers a small 404 JSON body,
so only the HTTP layer is compared (attendance-proxy on a path it does not serve; the
probes in bench/http_probe/ for libmicrohttpd and cpp-httplib). Loopback only.

  bench/http_probe.sh builds everything and runs this; or by hand:
  http_probe.py --loadgen L --server beast=CMD... --server mhd=CMD... [--seconds 5]
  where CMD contains {port}.
"""
import argparse
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen")


def exchange(port, raw, timeout=3.0):
    """Sends raw bytes; returns (status lines of the answers, closed by the server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(raw)
    data = b""
    closed = False
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            s.settimeout(max(0.05, deadline - time.time()))
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    finally:
        s.close()
    statuses = [m.decode() for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]
    return statuses, closed


def framing(port, path):
    body = b'{"event":"room_started","id":"EV_probe"}'
    head = "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: x\r\n" % path
    chunked = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    cases = {
        "two different Content-Length": (head + "Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
                                         % (len(body), len(body) + 5)).encode() + body,
        "Content-Length with Transfer-Encoding": (head + "Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                  % len(body)).encode() + chunked,
        "Content-Length: 1e3": (head + "Content-Length: 1e3\r\n\r\n").encode() + body,
        "two pipelined requests": ((head + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body) * 2,
    }
    out = {}
    for name, raw in cases.items():
        statuses, closed = exchange(port, raw)
        out[name] = {"answers": statuses, "closed": closed}
    return out


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def loadgen(a, port, path, hooks, rate, seconds, idle=0, slow=0):
    cmd = [a.loadgen, "--port", str(port), "--path", path, "--file", hooks, "--rate", str(rate),
           "--duration", str(seconds), "--connections", "16"]
    if idle or slow:
        cmd += ["--idle", str(idle), "--slow", str(slow)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if p.returncode != 0:
        raise RuntimeError("loadgen failed: %s" % p.stderr[-500:])
    return json.loads(p.stdout)


def measure(a, name, command, hooks):
    port = free_port()
    path = "/probe"
    cmd = [x.replace("{port}", str(port)) for x in shlex.split(command)]
    log = open(os.path.join(a.workdir, "%s.log" % name), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    res = {"command": " ".join(shlex.quote(x) for x in cmd)}
    try:
        wait_listening(port, proc)
        res["rss_start_kib"] = rss_kib(proc.pid)
        res["framing"] = framing(port, path)
        res["closed_loop"] = loadgen(a, port, path, hooks, 0, a.seconds)
        res["rate_1000"] = loadgen(a, port, path, hooks, 1000, a.seconds)
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.wait(0.2):
                peak[0] = max(peak[0], rss_kib(proc.pid) or 0)
        t = threading.Thread(target=sample)
        t.start()
        try:
            res["rate_1000_attacked"] = loadgen(a, port, path, hooks, 1000, a.seconds, 1000, 64)
        finally:
            stop.set()
            t.join()
        res["rss_attacked_peak_kib"] = peak[0]
    except Exception as e:  # noqa: BLE001
        res["error"] = str(e)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    return res


def table(results):
    rows = ["| | " + " | ".join(results) + " |", "|---|" + "---:|" * len(results)]

    def row(label, f):
        cells = []
        for r in results.values():
            try:
                cells.append(f(r))
            except Exception:  # noqa: BLE001
                cells.append(r.get("error", "–"))
        rows.append("| %s | %s |" % (label, " | ".join(cells)))

    row("closed loop, 16 connections: requests/s", lambda r: "%.0f" % r["closed_loop"]["achieved_rate"])
    row("1,000/s: p50 / p99 ms", lambda r: "%.2f / %.2f" % (r["rate_1000"]["p50_ms"], r["rate_1000"]["p99_ms"]))
    row("1,000/s with 1,000 idle + 64 slow-drip: p50 / p99 / max ms",
        lambda r: "%.2f / %.2f / %.0f" % (r["rate_1000_attacked"]["p50_ms"], r["rate_1000_attacked"]["p99_ms"],
                                          r["rate_1000_attacked"]["max_ms"]))
    row("… answered / errors", lambda r: "%d / %d" % (r["rate_1000_attacked"]["ok"] + r["rate_1000_attacked"]["non2xx"],
                                                     r["rate_1000_attacked"]["errors"]))
    row("RSS idle → with the attack's connections (MiB)",
        lambda r: "%.1f → %.1f" % (r["rss_start_kib"] / 1024, r["rss_attacked_peak_kib"] / 1024))
    for case in next(iter(results.values())).get("framing", {}):
        row(case, lambda r, c=case: "%s%s" % (",".join(r["framing"][c]["answers"]) or "no answer",
                                              ", closed" if r["framing"][c]["closed"] else ", kept open"))
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--server", action="append", required=True, help="name=command with {port}")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="attendance-http-probe.") as work:
        a.workdir = work
        hooks = os.path.join(work, "hooks.tsv")
        with open(hooks, "w") as f:
            for i in range(a.seconds * 20000):
                f.write('x.y.z\t{"event":"participant_joined","id":"EV_probe_%d","room":{"name":"r"},'
                        '"participant":{"identity":"u%d","sid":"PA_%d"},"createdAt":"1763131000"}\n' % (i, i, i))
        results = {}
        for spec in a.server:
            name, command = spec.split("=", 1)
            print("== %s" % name, file=sys.stderr, flush=True)
            results[name] = measure(a, name, command, hooks)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
