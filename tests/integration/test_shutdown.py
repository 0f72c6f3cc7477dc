"""Graceful shutdown (README.md, "Signals"): on SIGTERM/SIGINT the gateway stops accepting,
finishes in-flight requests, closes idle keep-alive connections, closes the store
cleanly and exits 0."""

import signal
import threading
import unittest

import harness
from harness import bearer, unique_marker


def body(upstream_port):
    return (
        "upstreams:\n  echo: { url: http://127.0.0.1:%d }\n" % upstream_port
        + harness.DEFAULT_ROLES
        + "routes:\n"
        "  - path: /__slow\n"
        "    upstream: echo\n"
        "  - path: /api/**\n"
        "    upstream: echo\n"
    )


class ShutdownTest(unittest.TestCase):
    def setUp(self):
        self.upstream = harness.start_upstream()
        self.gw = harness.Gateway(body(self.upstream.port))
        self.token = self.gw.create_token("t")
        self.gw.start()

    def tearDown(self):
        self.gw.stop()
        self.upstream.stop()

    def test_in_flight_request_finishes_new_connections_refused_idle_closed(self):
        idle = self.gw.connect()
        self.assertEqual(idle.request("GET", "/api/x", [bearer(self.token)]).status, 200)

        marker = unique_marker()
        slow = self.gw.connect(timeout=30)
        slow.send(harness.build_request("GET", "/__slow?ms=4000&" + marker, [bearer(self.token)]))
        # The request has reached the upstream before the signal.
        self.assertTrue(harness.wait_until(lambda: harness.upstream_targets(self.upstream, marker), 10.0))

        self.gw.process.proc.send_signal(signal.SIGTERM)
        # Idle keep-alive connections are closed at once; new connections are refused
        # while the slow request is still running.
        self.assertTrue(idle.is_closed(3.0), "idle keep-alive connection not closed on SIGTERM")
        self.assertTrue(harness.wait_until(lambda: harness.refused(self.gw.host, self.gw.port), 3.0))
        self.assertTrue(self.gw.process.alive(), "exited before the in-flight request finished")

        r = slow.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Connection"), "close")
        slow.close()
        self.assertEqual(self.gw.process.proc.wait(40), 0)
        self.assertIsNotNone(self.gw.wait_log(lambda l: "stopped" in l, timeout=5.0))

        # The store was closed cleanly: the CLI opens it, and the gateway starts again.
        listed = self.gw.cli("token", "list", "--config", self.gw.config_path, "--json").stdout
        self.assertIn(harness.token_id(self.token), listed.decode())
        self.gw.start()
        with self.gw.connect() as c:
            self.assertEqual(c.request("GET", "/api/x", [bearer(self.token)]).status, 200)

    def test_sigint_exits_zero(self):
        with self.gw.connect() as c:
            self.assertEqual(c.request("GET", "/api/x", [bearer(self.token)]).status, 200)
        self.gw.process.proc.send_signal(signal.SIGINT)
        self.assertEqual(self.gw.process.proc.wait(40), 0)

    def test_idle_server_stops_promptly(self):
        conns = [self.gw.connect() for _ in range(5)]  # connected, nothing sent
        self.gw.process.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.gw.process.proc.wait(10), 0)
        for c in conns:
            self.assertTrue(c.is_closed(2.0))
            c.close()


if __name__ == "__main__":
    unittest.main()
