"""Metrics (README.md, "Metrics"): counters move as expected for allowed, denied
and failed requests, and the output parses as Prometheus text."""

import unittest

import harness
from harness import bearer


def body(upstream_port, down_port):
    return (
        "upstreams:\n"
        "  echo: { url: http://127.0.0.1:%d }\n"
        "  down: { url: http://127.0.0.1:%d }\n" % (upstream_port, down_port)
        + harness.DEFAULT_ROLES
        + "routes:\n"
        "  - path: /down/**\n"
        "    upstream: down\n"
        "    public: true\n"
        "  - path: /orders/**\n"
        "    upstream: echo\n"
        "    require: { permissions: [orders.read] }\n"
    )


def requests_total(samples, route, status, decision, reason, mode="proxy"):
    key = 'tokengate_requests_total{route="%s",status="%s",decision="%s",reason="%s",mode="%s"}' % (
        route, status, decision, reason, mode)
    return samples.get(key, 0.0)


class MetricsTest(harness.GatewayTestCase):
    @classmethod
    def make_gateway(cls, upstream_port):
        return harness.Gateway(body(upstream_port, harness.closed_port()), admin=True)

    @classmethod
    def create_tokens(cls):
        cls.reader = cls.gw.create_token("reader", roles=["reader"])
        cls.nobody = cls.gw.create_token("nobody")

    def scrape(self):
        return harness.parse_prometheus(self.gw.metrics_text())

    def test_counters_move_for_allowed_denied_and_failed_requests(self):
        before = self.scrape()
        with self.gw.connect() as c:
            for _ in range(3):
                self.assertEqual(c.request("GET", "/orders/1", [bearer(self.reader)]).status, 200)
            self.assertEqual(c.request("GET", "/orders/1", [bearer(self.nobody)]).status, 403)
            self.assertEqual(c.request("GET", "/orders/1").status, 401)
            self.assertEqual(c.request("GET", "/orders/1", [bearer(harness.make_token())]).status, 401)
            self.assertEqual(c.request("GET", "/nothing").status, 404)
        with self.gw.connect() as c:
            self.assertEqual(c.request("GET", "/down/x").status, 502)

        # A request is counted once its response is written, which can be just after
        # the client has read it: scrape until all 8 are counted (or the deadline).
        def all_counted():
            s = self.scrape()
            done = s.get("tokengate_request_duration_seconds_count", 0.0) - before.get(
                "tokengate_request_duration_seconds_count", 0.0) >= 8
            return s if done else None
        after = harness.wait_until(all_counted, 10.0, 0.05) or self.scrape()

        def delta(key):
            return after.get(key, 0.0) - before.get(key, 0.0)

        def req_delta(route, status, decision, reason):
            return (requests_total(after, route, status, decision, reason)
                    - requests_total(before, route, status, decision, reason))

        self.assertEqual(req_delta("/orders/**", "2xx", "allow", "allowed"), 3)
        self.assertEqual(req_delta("/orders/**", "4xx", "deny", "insufficient_scope"), 1)
        self.assertEqual(req_delta("/orders/**", "4xx", "deny", "missing_token"), 1)
        self.assertEqual(req_delta("/orders/**", "4xx", "deny", "invalid_token"), 1)
        self.assertEqual(req_delta("none", "4xx", "deny", "no_route"), 1)
        # Allowed, then the upstream failed: the decision stays "allow".
        self.assertEqual(req_delta("/down/**", "5xx", "allow", "upstream_connect_failed"), 1)
        self.assertEqual(delta('tokengate_upstream_errors_total{kind="connect_failed"}'), 1)
        self.assertEqual(delta('tokengate_token_verifications_total{result="valid"}'), 4)
        # A well-formed token that is not in the store.
        self.assertEqual(delta('tokengate_token_verifications_total{result="unknown"}'), 1)
        self.assertEqual(
            delta("tokengate_token_cache_hits_total") + delta("tokengate_token_cache_misses_total"), 4
        )
        self.assertEqual(delta("tokengate_request_duration_seconds_count"), 8)
        self.assertEqual(delta('tokengate_request_duration_seconds_bucket{le="+Inf"}'), 8)
        self.assertGreater(delta("tokengate_request_duration_seconds_sum"), 0)

    def test_histogram_buckets_are_cumulative(self):
        with self.gw.connect() as c:
            c.request("GET", "/orders/1", [bearer(self.reader)])
        s = self.scrape()
        buckets = sorted(
            (float(k.split('le="')[1].rstrip('"}').replace("+Inf", "inf")), v)
            for k, v in s.items()
            if k.startswith("tokengate_request_duration_seconds_bucket")
        )
        self.assertGreater(len(buckets), 5)
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts))
        self.assertEqual(counts[-1], s["tokengate_request_duration_seconds_count"])

    def test_open_connections_gauge(self):
        # Connections of earlier tests are closed, but the gateway may not have seen it yet.
        self.assertTrue(harness.wait_until(lambda: self.scrape()["tokengate_open_connections"] == 0, 10.0))
        base = 0
        conns = [self.gw.connect() for _ in range(3)]
        try:
            for c in conns:  # a request each, so the gateway has surely accepted them
                self.assertEqual(c.request("GET", "/orders/1", [bearer(self.reader)]).status, 200)
            self.assertEqual(self.scrape()["tokengate_open_connections"], base + 3)
        finally:
            for c in conns:
                c.close()
        self.assertTrue(
            harness.wait_until(lambda: self.scrape()["tokengate_open_connections"] == base, 10.0),
            "open connections did not go back down",
        )

    def test_reload_counters_and_timestamp(self):
        before = self.scrape()
        start = len(self.gw.log_lines())
        self.gw.process.proc.send_signal(__import__("signal").SIGHUP)
        self.assertIsNotNone(self.gw.wait_log(lambda l: "config reloaded" in l, start=start))
        after = self.scrape()
        self.assertEqual(
            after['tokengate_config_reloads_total{result="ok"}'] - before['tokengate_config_reloads_total{result="ok"}'],
            1,
        )
        self.assertGreaterEqual(
            after["tokengate_config_last_reload_success_timestamp_seconds"],
            before["tokengate_config_last_reload_success_timestamp_seconds"],
        )

    def test_parser_rejects_malformed_text(self):
        # The parser the other tests rely on must be able to fail.
        for bad in ["metric{a=b} 1", "metric 1 2 3", 'm{a="x"} one', "# TYPE m counter\nm 1\nm 1"]:
            with self.assertRaises(ValueError, msg=bad):
                harness.parse_prometheus(bad if bad.startswith("#") else "# TYPE metric counter\n# TYPE m counter\n" + bad)


class ExpiringTokensTest(unittest.TestCase):
    def test_tokens_expiring_within_seven_days(self):
        upstream = harness.start_upstream()
        gw = harness.Gateway(body(upstream.port, harness.closed_port()), admin=True)
        try:
            gw.create_token("soon", expires="3d")
            gw.create_token("soon2", expires="6d")
            gw.create_token("later", expires="30d")
            gw.create_token("never")
            gw.start()
            s = harness.parse_prometheus(gw.metrics_text())
            self.assertEqual(s["tokengate_tokens_expiring_soon"], 2)
        finally:
            gw.stop()
            upstream.stop()


if __name__ == "__main__":
    unittest.main()
