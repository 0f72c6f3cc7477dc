"""Rate limits (README.md, "Rate limits") against the real gateway: exactly `burst`
requests pass back to back and the rest are 429 with Retry-After and the
RateLimit-Policy / RateLimit fields, never forwarded; a refused request fits again
after the advertised Retry-After; a route's limit and a token's limit together; the
configured default against a token's own limit; per client address on a public
route; a limit changed through the admin API applies on an open keep-alive
connection; a tokens.write caller cannot hand out a larger budget; with two workers
and many parallel connections the accepted count is the one budget of the node."""

import json
import re
import socket
import subprocess
import threading
import time
import unittest

import harness
from harness import bearer

DEFAULT = "{ rate: 5/m, burst: 5 }"
BODY = """\
upstreams:
  echo:
    url: http://127.0.0.1:%d
""" + harness.DEFAULT_ROLES + """\
routes:
  - path: /search/**
    upstream: echo
    rate_limit: { rate: 3/m, burst: 3 }
  - path: /public/**
    upstream: echo
    public: true
    rate_limit: { rate: 2/m }
  - path: /api/**
    upstream: echo
"""


def source_connection(gw, source):
    """A RawConnection to the gateway from the loopback address `source`."""
    conn = harness.RawConnection.__new__(harness.RawConnection)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect((gw.host, gw.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sock = sock
    conn.buf = b""
    return conn


class RateLimitTest(harness.GatewayTestCase):
    @classmethod
    def make_gateway(cls, upstream_port):
        return harness.Gateway(BODY % upstream_port, admin=True, tokens={"default_rate_limit": DEFAULT},
                               forward_auth={})

    @classmethod
    def create_tokens(cls):
        cls.admin = cls.gw.create_token("root", permissions=["tokengate.admin"])

    def api(self, method, target, body=None, token=None):
        data = json.dumps(body).encode() if body is not None else b""
        with self.gw.admin() as c:
            return c.request(method, target, [bearer(token or self.admin)], data)

    def token(self, rate_limit=None, **fields):
        """A new token (its own budgets) with `rate_limit` (None: the default)."""
        body = {"name": "client", "roles": ["reader"], **fields}
        if rate_limit is not None:
            body["rate_limit"] = rate_limit
        resp = self.api("POST", "/v1/tokens", body)
        self.assertEqual(resp.status, 201, resp)
        self.assertEqual(resp.json()["rate_limit"], rate_limit)
        return resp.json()

    def connection(self):
        conn = self.gw.connect()
        self.addCleanup(conn.close)
        return conn

    def statuses(self, conn, n, target, token=None):
        headers = [bearer(token)] if token else []
        return [conn.request("GET", target, headers).status for _ in range(n)]

    def assert_limited(self, resp, policy, quota, window):
        self.assertEqual(resp.status, 429, resp)
        self.assertEqual(resp.header("Content-Type"), "application/json")
        body = resp.json()
        self.assertEqual(body["error"], "rate_limited")
        self.assertIn("retry in", body["message"])
        retry = resp.header("Retry-After")
        self.assertIsNotNone(retry, resp)
        self.assertRegex(retry, r"^[1-9][0-9]*$")
        self.assertLessEqual(int(retry), window)
        self.assertEqual(resp.header("RateLimit-Policy"), '"%s";q=%d;w=%d' % (policy, quota, window))
        self.assertEqual(resp.header("RateLimit"), '"%s";r=0;t=%s' % (policy, retry))
        self.assertNotEqual((resp.header("Connection") or "").lower(), "close")  # bodiless: kept
        return int(retry)

    def test_exactly_burst_pass_then_429_never_forwarded(self):
        made = self.token({"rate": "1/m", "burst": 4})
        marker = harness.unique_marker()
        conn = self.connection()
        target = "/api/%s" % marker
        self.assertEqual(self.statuses(conn, 4, target, made["token"]), [200] * 4)
        for _ in range(3):
            self.assert_limited(conn.request("GET", target, [bearer(made["token"])]), "token", 1, 60)
        self.assertEqual(len(harness.upstream_targets(self.upstream, marker)), 4, "a 429 reached the upstream")
        line = self.gw.wait_log(lambda l: marker in l and '"rate_limited"' in l)
        self.assertIsNotNone(line, "no access-log line with reason rate_limited")
        record = json.loads(line)
        self.assertEqual(record["status"], 429)
        metrics = harness.parse_prometheus(self.gw.metrics_text())
        self.assertGreaterEqual(metrics.get('tokengate_rate_limited_total{route="/api/**"}', 0), 3)

    def test_refill_after_the_advertised_retry_after(self):
        made = self.token({"rate": "2/s", "burst": 2})
        conn = self.connection()
        self.assertEqual(self.statuses(conn, 2, "/api/refill", made["token"]), [200, 200])
        retry = self.assert_limited(conn.request("GET", "/api/refill", [bearer(made["token"])]), "token", 2, 1)
        self.assertEqual(retry, 1)
        time.sleep(retry)  # the advertised time, nothing more
        self.assertEqual(conn.request("GET", "/api/refill", [bearer(made["token"])]).status, 200)

    def test_route_and_token_limits_together(self):
        made = self.token({"rate": "1/m", "burst": 5})
        conn = self.connection()
        self.assertEqual(self.statuses(conn, 3, "/search/q", made["token"]), [200] * 3)
        self.assert_limited(conn.request("GET", "/search/q", [bearer(made["token"])]), "route", 3, 60)
        # The refused request did not count against the token: 5 - 3 remain 2.
        self.assertEqual(self.statuses(conn, 2, "/api/other", made["token"]), [200] * 2)
        self.assert_limited(conn.request("GET", "/api/other", [bearer(made["token"])]), "token", 1, 60)
        # Now the token's limit refuses the route as well.
        self.assert_limited(conn.request("GET", "/search/q", [bearer(made["token"])]), "token", 1, 60)

    def test_default_versus_own_limit(self):
        default = self.token(None)
        own = self.token({"rate": "1/m", "burst": 8})
        conn = self.connection()
        self.assertEqual(self.statuses(conn, 5, "/api/d", default["token"]), [200] * 5)
        self.assert_limited(conn.request("GET", "/api/d", [bearer(default["token"])]), "token", 5, 60)
        self.assertEqual(self.statuses(conn, 8, "/api/d", own["token"]), [200] * 8)
        self.assert_limited(conn.request("GET", "/api/d", [bearer(own["token"])]), "token", 1, 60)

    def test_public_route_counts_per_client_address(self):
        a = source_connection(self.gw, "127.0.0.2")
        self.addCleanup(a.close)
        self.assertEqual(self.statuses(a, 2, "/public/x"), [200, 200])
        self.assert_limited(a.request("GET", "/public/x"), "route", 2, 60)
        b = source_connection(self.gw, "127.0.0.3")  # another address, its own budget
        self.addCleanup(b.close)
        self.assertEqual(self.statuses(b, 2, "/public/x"), [200, 200])
        # A valid token on the public route counts per token instead.
        made = self.token({"rate": "1/m", "burst": 10})
        self.assertEqual(self.statuses(a, 2, "/public/x", made["token"]), [200, 200])
        self.assert_limited(a.request("GET", "/public/x", [bearer(made["token"])]), "route", 2, 60)

    def test_a_limit_changed_through_the_admin_api_applies_on_an_open_connection(self):
        made = self.token({"rate": "1/m", "burst": 1})
        conn = self.connection()
        self.assertEqual(conn.request("GET", "/api/k", [bearer(made["token"])]).status, 200)
        self.assert_limited(conn.request("GET", "/api/k", [bearer(made["token"])]), "token", 1, 60)
        resp = self.api("PATCH", "/v1/tokens/" + made["id"], {"rate_limit": {"rate": "100/s", "burst": 3}})
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["rate_limit"], {"rate": "100/s", "burst": 3})
        self.assertEqual(self.statuses(conn, 3, "/api/k", made["token"]), [200] * 3)
        self.assert_limited(conn.request("GET", "/api/k", [bearer(made["token"])]), "token", 100, 1)
        # Back to the configured default (null).
        resp = self.api("PATCH", "/v1/tokens/" + made["id"], {"rate_limit": None})
        self.assertEqual(resp.status, 200, resp)
        self.assertIsNone(resp.json()["rate_limit"])
        self.assertEqual(self.statuses(conn, 5, "/api/k", made["token"]), [200] * 5)
        self.assert_limited(conn.request("GET", "/api/k", [bearer(made["token"])]), "token", 5, 60)

    def test_a_tokens_write_caller_cannot_give_a_larger_budget(self):
        writer = self.token({"rate": "10/s", "burst": 10}, permissions=["tokengate.tokens.write", "orders.read"])
        w = writer["token"]
        for larger in ({"rate": "11/s", "burst": 10}, {"rate": "10/s", "burst": 11}, {"rate": "601/m", "burst": 1}):
            resp = self.api("POST", "/v1/tokens", {"name": "x", "rate_limit": larger}, token=w)
            self.assertEqual(resp.status, 403, (larger, resp))
            self.assertIn("larger rate limit", resp.json()["message"])
        for fits in ({"rate": "10/s", "burst": 10}, {"rate": "600/m", "burst": 2}, None):
            body = {"name": "x"}
            if fits is not None:
                body["rate_limit"] = fits
            resp = self.api("POST", "/v1/tokens", body, token=w)  # None: the default, 5/m
            self.assertEqual(resp.status, 201, (fits, resp))
        made = resp.json()
        resp = self.api("PATCH", "/v1/tokens/" + made["id"], {"rate_limit": {"rate": "20/s"}}, token=w)
        self.assertEqual(resp.status, 403, resp)
        # An admin may; and a malformed value is a 400 for anyone.
        self.assertEqual(self.api("PATCH", "/v1/tokens/" + made["id"], {"rate_limit": {"rate": "20/s"}}).status, 200)
        resp = self.api("PATCH", "/v1/tokens/" + made["id"], {"rate_limit": {"rate": "0/s"}})
        self.assertEqual(resp.status, 400, resp)
        self.assertIn("rate_limit", resp.json()["message"])

    def test_forward_auth_checks_share_the_budget_and_answer_403(self):
        made = self.token({"rate": "1/m", "burst": 3})
        conn = self.connection()
        self.assertEqual(self.statuses(conn, 2, "/api/fa", made["token"]), [200, 200])

        def check(target, token=None, c=None):
            headers = [("X-Original-URI", target), ("X-Original-Method", "GET")]
            if token:
                headers.append(bearer(token))
            return c.request("GET", "/check", headers)

        with self.gw.check_connection() as c:
            self.assertEqual(check("/api/fa", made["token"], c).status, 200)  # the third of the burst
            refused = check("/api/fa", made["token"], c)
            self.assertEqual(refused.status, 403, refused)
            self.assertEqual(refused.header("X-Tokengate-Reason"), "rate_limited")
            self.assertEqual(refused.header("RateLimit-Policy"), '"token";q=1;w=60')
            self.assertRegex(refused.header("Retry-After") or "", r"^[1-9][0-9]*$")
            # Anonymous checks of a public route are never counted per address (the
            # peer is the ingress): more than the route's 2 pass.
            self.assertEqual([check("/public/fa", None, c).status for _ in range(4)], [200] * 4)
        self.assert_limited(conn.request("GET", "/api/fa", [bearer(made["token"])]), "token", 1, 60)

    def test_explain_shows_the_limits_that_apply(self):
        def explain(*args):
            r = subprocess.run([harness.TOKENGATE_BIN, "explain", "--config", self.gw.config_path, *args],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r)
            return r.stdout

        out = json.loads(explain("--json", "--roles", "reader", "GET", "/search/x"))
        self.assertEqual(out["decision"], "allow")
        self.assertEqual(out["rate_limits"], {
            "token": {"rate": "5/m", "burst": 5, "source": "default"},
            "route": {"rate": "3/m", "burst": 3, "per": "token"}})
        out = json.loads(explain("--json", "GET", "/public/x"))
        self.assertEqual(out["rate_limits"], {"token": None, "route": {"rate": "2/m", "burst": 2,
                                                                      "per": "client_address"}})
        made = self.token({"rate": "6000/m", "burst": 500})
        out = json.loads(explain("--json", "--token-id", made["id"], "GET", "/api/x"))
        self.assertEqual(out["rate_limits"]["token"], {"rate": "6000/m", "burst": 500, "source": "token"})
        text = explain("--roles", "reader", "GET", "/search/x")
        self.assertIn("rate limits:    token 5/m burst 5 (tokens.default_rate_limit); route 3/m burst 3 (per token)",
                      text)

    def test_cli_sets_shows_and_clears_a_token_limit(self):
        made = self.token(None)

        def cli(*args):
            r = subprocess.run([harness.TOKENGATE_BIN, "token", *args, "--config", self.gw.config_path],
                               capture_output=True, text=True, timeout=60)
            return r

        r = cli("update", made["id"], "--rate-limit", "6000/m:500", "--json")
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(json.loads(r.stdout)["rate_limit"], {"rate": "6000/m", "burst": 500})
        r = cli("list")
        row = [l for l in r.stdout.splitlines() if l.startswith(made["id"])]
        self.assertIn("RATE LIMIT", r.stdout.splitlines()[0])
        self.assertTrue(row and row[0].rstrip().endswith("6000/m:500"), r.stdout)
        r = cli("update", made["id"], "--rate-limit", "default", "--json")
        self.assertIsNone(json.loads(r.stdout)["rate_limit"])
        r = cli("update", made["id"], "--rate-limit", "0/s")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("--rate-limit", r.stderr)


class RateLimitAcrossWorkersTest(harness.GatewayTestCase):
    """One budget per node: 2 workers, 32 keep-alive connections in parallel."""

    RATE, BURST, SECONDS, CONNECTIONS = 100, 50, 3.0, 32

    @classmethod
    def make_gateway(cls, upstream_port):
        return harness.Gateway(BODY % upstream_port, workers=2)

    @classmethod
    def create_tokens(cls):
        args = ["token", "create", "--config", cls.gw.config_path, "--name", "busy", "--role", "reader",
                "--rate-limit", "%d/s:%d" % (cls.RATE, cls.BURST)]
        cls.busy = cls.gw.cli(*args).stdout.decode().splitlines()[0].strip()

    def test_accepted_count_is_the_node_budget(self):
        marker = harness.unique_marker()
        counts = {200: 0, 429: 0}
        other = []
        lock = threading.Lock()
        start = threading.Barrier(self.CONNECTIONS + 1)
        stop_at = [0.0]
        times = []

        def client():
            conn = self.gw.connect()
            try:
                start.wait()
                while time.monotonic() < stop_at[0]:
                    status = conn.request("GET", "/api/%s" % marker, [bearer(self.busy)]).status
                    with lock:
                        if status in counts:
                            counts[status] += 1
                        else:
                            other.append(status)
            finally:
                conn.close()

        threads = [threading.Thread(target=client) for _ in range(self.CONNECTIONS)]
        for t in threads:
            t.start()
        begin = time.monotonic()
        stop_at[0] = begin + self.SECONDS
        start.wait()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - begin
        self.assertEqual(other, [])
        allowed = self.BURST + self.RATE * elapsed + 1
        accepted = counts[200]
        print("\naccepted %d of %d requests in %.2f s; budget %.1f (%.1f %%)"
              % (accepted, accepted + counts[429], elapsed, allowed, 100.0 * accepted / allowed))
        self.assertGreater(counts[429], 0, "the clients did not offer more than the limit")
        self.assertLessEqual(accepted, allowed)
        self.assertGreaterEqual(accepted, 0.9 * allowed)
        self.assertEqual(len(harness.upstream_targets(self.upstream, marker)), accepted,
                         "the upstream saw a different number of requests than were accepted")


if __name__ == "__main__":
    unittest.main()
