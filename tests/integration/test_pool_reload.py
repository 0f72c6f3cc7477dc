"""Upstream connection pools survive a reload that keeps their upstream: a config
change to a route's rules must not drop the idle keep-alive connections (or TLS
contexts) of upstreams it did not touch; a changed upstream URL gets a new pool."""

import unittest

import harness
from test_proxy import ScriptedUpstream


def answer_ok(index, head, conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return True


def counting_upstream():
    """A keep-alive upstream answering 200 "ok"; `accepted` counts its connections."""
    return ScriptedUpstream(answer_ok)


def body(port, permission):
    return (
        "upstreams:\n  app: { url: http://127.0.0.1:%d }\n" % port
        + harness.DEFAULT_ROLES
        + "routes:\n"
        "  - path: /pub/**\n"
        "    upstream: app\n"
        "    public: true\n"
        "  - path: /api/**\n"
        "    upstream: app\n"
        "    require: { permissions: [%s] }\n" % permission
    )


class PoolAcrossReloadTest(unittest.TestCase):
    def setUp(self):
        self.upstream = counting_upstream()
        self.addCleanup(self.upstream.stop)
        self.gw = harness.Gateway(body(self.upstream.port, "orders.read"), workers=1)
        self.gw.start()
        self.addCleanup(self.gw.stop)

    def get(self, path):
        with self.gw.connect() as c:
            return c.request("GET", path)

    def reload(self, text):
        start = len(self.gw.log_lines())
        self.gw.write_config(text)
        line = self.gw.wait_log(lambda l: "config reloaded" in l, timeout=10.0, start=start)
        self.assertIsNotNone(line, self.gw.process.stderr_text())

    def test_idle_connection_is_reused_after_a_rule_change(self):
        self.assertEqual(self.get("/pub/a").status, 200)
        self.assertEqual(self.upstream.accepted, 1)
        self.reload(body(self.upstream.port, "orders.write"))
        for _ in range(3):
            self.assertEqual(self.get("/pub/b").status, 200)
        self.assertEqual(self.upstream.accepted, 1, "the reload dropped the pooled upstream connection")

    def test_a_changed_upstream_gets_new_connections(self):
        self.assertEqual(self.get("/pub/a").status, 200)
        other = counting_upstream()
        self.addCleanup(other.stop)
        self.reload(body(other.port, "orders.read"))
        self.assertEqual(self.get("/pub/b").status, 200)
        self.assertEqual(other.accepted, 1)
        self.assertEqual(self.upstream.accepted, 1)


if __name__ == "__main__":
    unittest.main()
