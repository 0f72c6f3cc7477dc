"""Path aliases (docs/configuration.md, "paths"): spellings that a backend may
resolve to another path than the one the gateway authorized.

By default a ';' in the path, an encoded '%' and a segment with a trailing dot are
400 and never reach the upstream (each request carries a unique marker; the demo
upstream's /__log shows what arrived). With the matching `paths.allow` entry the
same request is forwarded, spelled as sent, and the other two kinds stay refused.
"""

import json
import subprocess
import unittest

import harness
from harness import unique_marker

ROUTES = """\
routes:
  - path: /public/**
    upstream: echo
    public: true
  - path: /api/**
    upstream: echo
"""

# kind -> targets ({m} is the marker) with the path the upstream gets when allowed.
ATTACKS = {
    "semicolon": [
        ("/api/admin;/{m}", "/api/admin;/{m}"),
        ("/api/x/..;/admin/{m}", "/api/x/..;/admin/{m}"),
        ("/api/{m};jsessionid=0", "/api/{m};jsessionid=0"),
    ],
    "encoded_percent": [
        ("/api/%2561dmin/{m}", "/api/%2561dmin/{m}"),
        ("/api/%252e%252e/{m}", "/api/%252e%252e/{m}"),
    ],
    "trailing_dot": [
        ("/api/admin./{m}", "/api/admin./{m}"),
        ("/api/admin%2E/{m}", "/api/admin./{m}"),
        ("/api/{m}..", "/api/{m}.."),
    ],
}

# The reason the access log gives for each kind.
DETAIL = {"semicolon": "semicolon_in_path", "encoded_percent": "encoded_percent", "trailing_dot": "trailing_dot"}


class PathAliasCase(harness.GatewayTestCase):
    ALLOW = None  # the paths.allow list, None = no `paths` key at all

    @classmethod
    def make_gateway(cls, upstream_port):
        body = "upstreams:\n  echo:\n    url: http://127.0.0.1:%d\n" % upstream_port + harness.DEFAULT_ROLES
        if cls.ALLOW is not None:
            body += "paths:\n  allow: [%s]\n" % ", ".join(cls.ALLOW)
        return harness.Gateway(body + ROUTES)

    @classmethod
    def create_tokens(cls):
        cls.token = cls.gw.create_token("aliases")

    def send(self, target):
        with self.gw.connect() as c:
            c.send(("GET %s HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer %s\r\n\r\n"
                    % (target, self.token)).encode("latin-1"))
            return c.read_response()

    def assert_refused(self, kind, target, m):
        start = len(self.gw.log_lines())
        r = self.send(target)
        self.assertEqual(r.status, 400, r)
        self.assertEqual((r.header("Content-Type") or "").split(";")[0], "application/json", r)
        self.assertEqual(r.json()["error"], "bad_request", r)
        self.assertEqual(harness.upstream_targets(self.upstream, m), [], "forwarded: %s" % target)
        # The access log says why (a refused target is not logged as a path).
        line = self.gw.wait_log(lambda l: DETAIL[kind] in l, timeout=5, start=start)
        self.assertIsNotNone(line, "no access log line naming %s after %s" % (DETAIL[kind], target))

    def assert_forwarded(self, target, expected, m):
        r = self.send(target)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["target"], expected)
        self.assertEqual(harness.upstream_targets(self.upstream, m), [expected])

    def check_every_attack(self):
        allowed = set(self.ALLOW or ())
        for kind, cases in ATTACKS.items():
            for pattern, forwarded in cases:
                with self.subTest(kind=kind, target=pattern):
                    m = unique_marker()
                    target, expected = pattern.format(m=m), forwarded.format(m=m)
                    if kind in allowed:
                        self.assert_forwarded(target, expected, m)
                    else:
                        self.assert_refused(kind, target, m)

    def explain(self, target):
        r = subprocess.run([harness.TOKENGATE_BIN, "explain", "--config", self.gw.config_path, "--json",
                            "--permissions", "x", "GET", target],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)


class DefaultRefusesAliasesTest(PathAliasCase):
    def test_every_alias_is_400_and_not_forwarded(self):
        self.check_every_attack()

    def test_the_same_paths_without_the_alias_are_forwarded(self):
        # Control: the marker check can see a forwarded request, and the near
        # neighbours of the attacks (query, encoded ';', inner dot) are fine.
        m = unique_marker()
        for target in ("/api/admin/%s" % m, "/api/%s?a;b=%%25" % m, "/api/%s%%3bx" % m, "/api/%s.json" % m,
                       "/api/.well-known/%s" % m, "/api/x/../%s" % m):
            with self.subTest(target=target):
                r = self.send(target)
                self.assertEqual(r.status, 200, r)
        self.assertEqual(harness.upstream_targets(self.upstream, m),
                         ["/api/admin/%s" % m, "/api/%s?a;b=%%25" % m, "/api/%s%%3Bx" % m, "/api/%s.json" % m,
                          "/api/.well-known/%s" % m, "/api/%s" % m])

    def test_explain_reports_400(self):
        for target in ("/api/admin;/x", "/api/x/..;/admin/y", "/api/admin./x", "/api/%2561dmin"):
            with self.subTest(target=target):
                out = self.explain(target)
                self.assertEqual((out["decision"], out["status"]), ("deny", 400), out)


class AllowSemicolonTest(PathAliasCase):
    ALLOW = ["semicolon"]

    def test_only_semicolons_are_forwarded(self):
        self.check_every_attack()

    def test_explain_follows_the_config(self):
        out = self.explain("/api/x/..;/admin/y")
        self.assertEqual((out["canonical_path"], out["status"]), ("/api/x/..;/admin/y", 200), out)
        self.assertEqual(self.explain("/api/admin./x")["status"], 400)


class AllowEncodedPercentTest(PathAliasCase):
    ALLOW = ["encoded_percent"]

    def test_only_encoded_percents_are_forwarded(self):
        self.check_every_attack()


class AllowTrailingDotTest(PathAliasCase):
    ALLOW = ["trailing_dot"]

    def test_only_trailing_dots_are_forwarded(self):
        self.check_every_attack()


class AllowEverythingTest(PathAliasCase):
    ALLOW = ["semicolon", "encoded_percent", "trailing_dot"]

    def test_every_alias_is_forwarded(self):
        self.check_every_attack()


if __name__ == "__main__":
    unittest.main()
