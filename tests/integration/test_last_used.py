"""last_used_at (README.md, "Last used"): recorded through a write-behind buffer, at most once a
minute per token whatever the load, flushed on shutdown, kept across restarts."""

import datetime
import json
import signal
import threading
import time
import unittest

import harness
from harness import bearer

# Flush the write-behind every 100 ms instead of 30 s (test-only override, README).
FAST_FLUSH = {"TOKENGATE_LAST_USED_FLUSH_MS": "100"}


def body(upstream_port):
    return (
        "upstreams:\n  echo: { url: http://127.0.0.1:%d }\n" % upstream_port
        + harness.DEFAULT_ROLES
        + "routes:\n  - path: /api/**\n    upstream: echo\n"
    )


def last_used(gw, token):
    out = gw.cli("token", "show", "--config", gw.config_path, harness.token_id(token), "--json").stdout
    value = json.loads(out)["last_used_at"]
    if value is None:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def writes(gw):
    return harness.parse_prometheus(gw.metrics_text())["tokengate_last_used_writes_total"]


def stop_gracefully(gw):
    gw.process.proc.send_signal(signal.SIGTERM)
    return gw.process.proc.wait(40)


class LastUsedTest(unittest.TestCase):
    def setUp(self):
        self.upstream = harness.start_upstream()
        self.gw = harness.Gateway(body(self.upstream.port), admin=True)

    def tearDown(self):
        self.gw.stop()
        self.upstream.stop()

    def test_recorded_once_a_minute_under_load_and_kept_across_restart(self):
        a = self.gw.create_token("a")
        b = self.gw.create_token("b")
        unused = self.gw.create_token("unused")
        self.assertIsNone(last_used(self.gw, a))
        self.gw.start(env=FAST_FLUSH)
        t0 = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        errors = []

        def hammer(token, seconds):
            deadline = time.monotonic() + seconds
            try:
                while time.monotonic() < deadline:
                    with self.gw.connect() as c:  # new connections spread over both workers
                        for _ in range(10):
                            r = c.request("GET", "/api/x", [bearer(token)])
                            if r.status != 200:
                                errors.append(r.status)
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=hammer, args=(t, 2.0)) for t in (a, a, b, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        # Both tokens written once each; many flushes ran in the 2 s of load.
        self.assertTrue(harness.wait_until(lambda: writes(self.gw) >= 2, 10.0))
        time.sleep(0.5)  # several more 100 ms flush rounds: none may write again
        self.assertEqual(writes(self.gw), 2)

        self.assertEqual(stop_gracefully(self.gw), 0)
        ta, tb = last_used(self.gw, a), last_used(self.gw, b)
        self.assertIsNotNone(ta)
        self.assertIsNotNone(tb)
        self.assertGreaterEqual(ta, t0 - datetime.timedelta(seconds=1))
        self.assertLessEqual(ta, datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1))
        self.assertIsNone(last_used(self.gw, unused))

        # Survives a restart, and is not written again when the token is not used.
        self.gw.start(env=FAST_FLUSH)
        with self.gw.connect() as c:
            self.assertEqual(c.request("GET", "/api/x", [bearer(b)]).status, 200)
        self.assertTrue(harness.wait_until(lambda: writes(self.gw) >= 1, 10.0))
        self.assertEqual(stop_gracefully(self.gw), 0)
        self.assertEqual(last_used(self.gw, a), ta)
        self.assertGreaterEqual(last_used(self.gw, b), tb)

    def test_pending_use_is_flushed_on_shutdown(self):
        a = self.gw.create_token("a")
        self.gw.start()  # default 30 s flush interval: only the shutdown flush can write it
        with self.gw.connect() as c:
            self.assertEqual(c.request("GET", "/api/x", [bearer(a)]).status, 200)
        self.assertEqual(writes(self.gw), 0)
        self.assertEqual(stop_gracefully(self.gw), 0)
        self.assertIsNotNone(last_used(self.gw, a))

    def test_invalid_tokens_are_not_recorded(self):
        a = self.gw.create_token("a")
        self.gw.start(env=FAST_FLUSH)
        forged = harness.make_token(token_id=harness.token_id(a))  # right id, wrong secret
        with self.gw.connect() as c:
            self.assertEqual(c.request("GET", "/api/x", [bearer(forged)]).status, 401)
        time.sleep(0.4)  # a few flush rounds
        self.assertEqual(writes(self.gw), 0)
        self.assertEqual(stop_gracefully(self.gw), 0)
        self.assertIsNone(last_used(self.gw, a))


if __name__ == "__main__":
    unittest.main()
