"""Upstream connection pools survive a reload that keeps their upstream: a config
change to a route's rules must not drop the idle keep-alive connections (or TLS
contexts) of upstreams it did not touch; a changed upstream URL gets a new pool."""

import socket
import threading
import unittest

import harness


class CountingUpstream:
    """Keep-alive upstream on 127.0.0.1:0 answering every request with 200 "ok";
    counts the TCP connections it accepted."""

    def __init__(self):
        self.accepted = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        with conn:
            try:
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except OSError:
                return

    def connections(self):
        with self.lock:
            return self.accepted

    def stop(self):
        self.sock.close()


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
        self.upstream = CountingUpstream()
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
        self.assertEqual(self.upstream.connections(), 1)
        self.reload(body(self.upstream.port, "orders.write"))
        for _ in range(3):
            self.assertEqual(self.get("/pub/b").status, 200)
        self.assertEqual(self.upstream.connections(), 1, "the reload dropped the pooled upstream connection")

    def test_a_changed_upstream_gets_new_connections(self):
        self.assertEqual(self.get("/pub/a").status, 200)
        other = CountingUpstream()
        self.addCleanup(other.stop)
        self.reload(body(other.port, "orders.read"))
        self.assertEqual(self.get("/pub/b").status, 200)
        self.assertEqual(other.connections(), 1)
        self.assertEqual(self.upstream.connections(), 1)


if __name__ == "__main__":
    unittest.main()
