#!/usr/bin/env python3
"""Cluster mode figures (README.md, "Running several gateways"), on loopback with a
private PostgreSQL (tests/integration/postgres.py) and two gateways A and B:

- propagation: a token is created through A's admin socket; the time from A's
  response to the first request B accepts with it, then the same for its delete
  (first 401 on B), over N writes (default 200): p50, p99, max;
- catch-up (--catch-up N): B is stopped with SIGSTOP while N tokens are created on A,
  then continued; the time until B accepts the last of them.

Usage: bench/cluster_propagation.py [--writes 200] [--catch-up 10000]
Needs a release build (build/) and PostgreSQL (scripts/setup.sh). Not a test: it
prints figures and always exits 0 unless something breaks.
"""

import argparse
import os
import signal
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

import harness  # noqa: E402
import postgres  # noqa: E402
from test_cluster import BODY, unix_request, write_key  # noqa: E402


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def until_status(conn, token, expected, limit=10.0):
    start = time.monotonic()
    while True:
        if conn.request("GET", "/orders/1", [harness.bearer(token)]).status == expected:
            return time.monotonic()
        if time.monotonic() - start > limit:
            raise RuntimeError("B never answered %d" % expected)


def report(name, seconds):
    ms = [s * 1000 for s in seconds]
    print("%-28s n=%d  p50 %.1f ms  p99 %.1f ms  max %.1f ms  mean %.1f ms" % (
        name, len(ms), percentile(ms, 50), percentile(ms, 99), max(ms), statistics.mean(ms)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--catch-up", type=int, default=0)
    args = ap.parse_args()

    pg = postgres.PostgresServer()
    upstream = harness.start_upstream()
    nodes = []
    try:
        key = os.path.join(pg.dir, "bench.key")
        write_key(key)
        settings = {"url": pg.url()}
        a = harness.Gateway(BODY % upstream.port, admin=True, postgres=settings, key_file=key).start()
        nodes.append(a)
        b = harness.Gateway(BODY % upstream.port, admin=True, postgres=settings, key_file=key).start()
        nodes.append(b)
        conn = b.connect()
        create, delete = [], []
        for i in range(args.writes):
            r = unix_request(a.socket_path, "POST", "/v1/tokens", {"name": "p%d" % i, "roles": ["reader"]})
            t0 = time.monotonic()
            assert r.status == 201, r
            made = r.json()
            create.append(until_status(conn, made["token"], 200) - t0)
            r = unix_request(a.socket_path, "DELETE", "/v1/tokens/" + made["id"])
            t0 = time.monotonic()
            assert r.status == 204, r
            delete.append(until_status(conn, made["token"], 401) - t0)
        conn.close()
        report("create visible on B", create)
        report("delete visible on B", delete)

        if args.catch_up:
            b.process.proc.send_signal(signal.SIGSTOP)
            last = None
            t_write = time.monotonic()
            for i in range(args.catch_up):
                r = unix_request(a.socket_path, "POST", "/v1/tokens", {"name": "c%d" % i, "roles": ["reader"]})
                assert r.status == 201, r
                last = r.json()["token"]
            t_write = time.monotonic() - t_write
            b.process.proc.send_signal(signal.SIGCONT)
            t0 = time.monotonic()
            conn = b.connect(timeout=60)
            done = until_status(conn, last, 200, limit=120)
            conn.close()
            print("catch-up of %d changes: %.0f ms (writing them on A took %.1f s)" % (
                args.catch_up, (done - t0) * 1000, t_write))
    finally:
        for n in nodes:
            n.stop()
        upstream.stop()
        pg.close()


if __name__ == "__main__":
    main()
