"""Forward authentication (docs/forward-auth.md): tokengate as the auth service of
another proxy.

First the forward_auth listener on its own (what each kind of check gets back),
then a real nginx (auth_request) and a real Caddy (forward_auth) in front of the
demo upstream, each running its file from examples/forward-auth/ with only the
three loopback addresses replaced by the test's ports. Those files are the ones
README.md shows; the last test checks that they are shown unchanged.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import bearer, echo_headers, headers_named, unique_marker, upstream_targets

EXAMPLES = os.path.join(harness.ROOT, "examples", "forward-auth")
FAST_FLUSH = {"TOKENGATE_LAST_USED_FLUSH_MS": "100"}


def body(upstream_port):
    return (
        "upstreams:\n"
        "  app: { url: \"http://127.0.0.1:%d\" }\n" % upstream_port + harness.DEFAULT_ROLES + "routes:\n"
        "  - path: /public/**\n"
        "    methods: [GET, HEAD]\n"
        "    upstream: app\n"
        "    public: true\n"
        "  - path: /api/orders/**\n"
        "    methods: [GET, HEAD]\n"
        "    upstream: app\n"
        "    require: { permissions: [orders.read] }\n"
        "  - path: /admin/**\n"
        "    upstream: app\n"
        "    require: { roles: [writer] }\n"
        "  - path: /api/**\n"
        "    upstream: app\n"
    )


# Spellings of a path that an ingress serves as sent while a decision on their
# canonical form would be about another path. The first ones canonicalise to the
# public route: a gateway that authorized the canonical form would let the raw
# /admin/... target through to the app.
PATH_TRICKS = [
    "/admin/{m}/../../public/x",
    "/admin/{m}/%2e%2e/%2E%2E/public/x",
    "/admin/{m}/./.././../public/x",
    "/public/..%2fadmin/{m}",
    "/public/..%2Fadmin/{m}",
    "//admin/{m}",
    "/public/../admin/{m}",
    "/public/%2e%2e/admin/{m}",
    "/public/./../admin/{m}",
    "/admin/./{m}",
    "/public/..;/admin/{m}",
    "/public/%2561dmin/{m}",
    "/api/orders/%31/{m}",
]


class ForwardAuthCheckTest(harness.GatewayTestCase):
    """The check listener itself, asked the way nginx, Traefik/Caddy and Envoy ask."""

    @classmethod
    def make_gateway(cls, upstream_port):
        return harness.Gateway(body(upstream_port), admin=True, forward_auth={"path_prefix": "/ext"})

    @classmethod
    def create_tokens(cls):
        cls.reader = cls.gw.create_token("fa-reader", roles=["reader"])
        cls.writer = cls.gw.create_token("fa-writer", roles=["writer"], licenses=["pro"])

    @classmethod
    def gateway_env(cls):
        return FAST_FLUSH

    def check(self, target, method="GET", token=None, headers=(), conn=None):
        """An nginx-style check: GET /check with X-Original-URI/-Method."""
        extra = [("X-Original-URI", target), ("X-Original-Method", method)] + list(headers)
        if token:
            extra.append(bearer(token))
        if conn is not None:
            return conn.request("GET", "/check", extra)
        with self.gw.check_connection() as c:
            return c.request("GET", "/check", extra)

    def test_allowed_check_answers_200_with_the_identity(self):
        r = self.check("/api/orders/7?verbose=1", token=self.reader)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.header("X-Auth-Subject"), harness.token_id(self.reader))
        self.assertEqual(r.header("X-Auth-Name"), "fa-reader")
        self.assertEqual(r.header("X-Auth-Roles"), "reader")
        self.assertEqual(r.header("X-Auth-Groups"), "")
        self.assertEqual(r.header("X-Auth-Permissions"), "orders.read")
        self.assertEqual(r.header("X-Auth-Licenses"), "")
        self.assertRegex(r.header("X-Request-Id") or "", r"^[0-9a-f]{32}$")
        w = self.check("/admin/x", method="DELETE", token=self.writer)
        self.assertEqual(w.status, 200, w)
        self.assertEqual(w.header("X-Auth-Licenses"), "pro")
        # Public route without a token: allowed, every identity field empty, so that
        # what the ingress copies replaces a client's own copy.
        p = self.check("/public/x", headers=[("X-Auth-Subject", "spoofed")])
        self.assertEqual(p.status, 200, p)
        self.assertEqual([(n, v) for n, v in p.headers if n.lower().startswith("x-auth-")],
                         [("X-Auth-Subject", ""), ("X-Auth-Name", ""), ("X-Auth-Roles", ""), ("X-Auth-Groups", ""),
                          ("X-Auth-Permissions", ""), ("X-Auth-Licenses", "")])

    def test_every_denial_is_401_or_403_with_its_reason(self):
        bad = harness.make_token()
        cases = [
            # method, target, token, status, reason, WWW-Authenticate
            ("GET", "/api/orders/1", None, 401, "missing_token", 'Bearer realm="tokengate"'),
            ("GET", "/api/orders/1", bad, 401, "invalid_token", 'Bearer realm="tokengate", error="invalid_token"'),
            ("GET", "/admin/x", self.reader, 403, "insufficient_scope",
             'Bearer realm="tokengate", error="insufficient_scope"'),
            ("GET", "/nowhere", self.writer, 403, "no_route", None),
            ("POST", "/public/x", self.writer, 403, "method_not_allowed", None),
            ("GET", "/public/../admin/x", self.writer, 403, "non_canonical_target", None),
            ("GET", "/api/a%2fb", self.writer, 403, "non_canonical_target", None),
            ("GET", "/api/x%00", self.writer, 403, "non_canonical_target", None),
        ]
        for method, target, token, status, reason, challenge in cases:
            with self.subTest(method=method, target=target, reason=reason):
                r = self.check(target, method=method, token=token)
                self.assertEqual(r.status, status, r)
                self.assertEqual(r.header("X-Tokengate-Reason"), reason)
                self.assertEqual(r.header("WWW-Authenticate"), challenge)
                self.assertIsNone(r.header("Allow"))
                self.assertEqual(r.header("Content-Type"), "application/json")
                self.assertEqual(r.json()["error"], {401: r.json()["error"], 403: "forbidden"}[status]
                                 if reason != "insufficient_scope" else "insufficient_scope")
                self.assertIsNone(r.header("X-Auth-Subject"))
        # Basic credentials are a missing bearer token.
        r = self.check("/api/orders/1", headers=[("Authorization", "Basic dTpw")])
        self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (401, "wrong_scheme"))

    def test_path_tricks_are_denied_even_for_a_token_that_may_see_the_target(self):
        for trick in PATH_TRICKS:
            target = trick.format(m="x")
            for token in (None, self.reader, self.writer):
                with self.subTest(target=target, token=token and harness.token_id(token)):
                    r = self.check(target, token=token)
                    self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (403, "non_canonical_target"))

    def test_every_source_of_the_original_request(self):
        with self.gw.check_connection() as c:
            # ingress-nginx: X-Original-URL.
            r = c.request("GET", "/check", [("X-Original-URL", "https://shop.test/api/orders/1?a=b"),
                                            ("X-Original-Method", "GET"), bearer(self.reader)])
            self.assertEqual(r.status, 200, r)
            # Traefik and Caddy: X-Forwarded-Method/-Uri.
            r = c.request("GET", "/check", [("X-Forwarded-Uri", "/public/x"), ("X-Forwarded-Method", "POST"),
                                            bearer(self.reader)])
            self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (403, "method_not_allowed"))
            # Envoy ext_authz: the check is the request, behind path_prefix.
            r = c.request("HEAD", "/ext/api/orders/1", [bearer(self.reader)])
            self.assertEqual(r.status, 200, r)
            r = c.request("GET", "/ext/admin/x", [bearer(self.reader)])
            self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (403, "insufficient_scope"))
            r = c.request("GET", "/api/orders/1", [bearer(self.reader)])
            self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (403, "bad_check_request"))
            # A second description of the request is a client's (Caddy, Traefik and
            # ingress-nginx pass the client's headers on): never "the first one found".
            for extra in ([("X-Forwarded-Uri", "/admin/x"), ("X-Original-URI", "/public/x")],
                          [("X-Original-URL", "http://h/admin/x"), ("X-Original-URI", "/public/x")],
                          [("X-Forwarded-Uri", "/admin/x"), ("X-Original-Method", "GET")],
                          [("X-Original-URI", "/public/ /admin/x")]):
                r = c.request("GET", "/check", extra + [bearer(self.writer)])
                self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (403, "bad_check_request"), extra)
            r = c.request("GET", "/ext/admin/x", [("X-Original-URI", "/public/x")])
            self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (403, "bad_check_request"))
            # Two copies of the original target: which one the ingress serves is unknown.
            r = c.request("GET", "/check", [("X-Original-URI", "/public/x"), ("X-Original-URI", "/admin/x"),
                                            bearer(self.reader)])
            self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (403, "bad_check_request"))
            # All on one keep-alive connection, still open.
            r = c.request("GET", "/check", [("X-Original-URI", "/public/x")])
            self.assertEqual(r.status, 200)

    def test_a_check_with_a_body_is_refused_and_its_connection_closed(self):
        with self.gw.check_connection() as c:
            r = c.request("POST", "/check", [("X-Original-URI", "/api/orders/1"), ("X-Original-Method", "GET"),
                                             bearer(self.reader)], body=b"a body")
            self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (403, "bad_check_request"))
            self.assertTrue(c.is_closed())
        with self.gw.check_connection() as c:
            r = c.request("POST", "/check", [("X-Original-URI", "/api/orders/1"), ("X-Original-Method", "GET"),
                                             ("Content-Length", "0"), bearer(self.reader)])
            self.assertEqual(r.status, 200, r)

    def test_framing_is_checked_as_on_the_proxy(self):
        with self.gw.check_connection() as c:
            c.send(b"GET /check HTTP/1.1\r\nHost: a, b\r\nX-Original-URI: /public/x\r\n\r\n")
            r = c.read_response()
            self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (403, "bad_framing"))
            self.assertTrue(c.is_closed())

    def test_a_revoked_token_is_refused_by_the_next_check_on_the_same_connection(self):
        token = self.gw.create_token("fa-revoked", roles=["reader"])
        with self.gw.check_connection() as c:
            self.assertEqual(self.check("/api/orders/1", token=token, conn=c).status, 200)
            self.gw.cli("token", "delete", "--config", self.gw.config_path, harness.token_id(token))
            r = self.check("/api/orders/1", token=token, conn=c)
            self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (401, "invalid_token"))

    def test_checks_are_logged_counted_and_update_last_used(self):
        token = self.gw.create_token("fa-used", roles=["reader"])
        start = len(self.gw.log_lines())
        marker = unique_marker()
        r = self.check("/api/orders/" + marker, token=token)
        self.assertEqual(r.status, 200)
        line = self.gw.wait_log(lambda l: marker in l, start=start)
        self.assertIsNotNone(line)
        self.assertIn('"mode":"forward_auth"', line)
        self.assertIn('"method":"GET"', line)
        self.assertIn('"path":"/api/orders/%s"' % marker, line)
        self.assertIn('"token_id":"%s"' % harness.token_id(token), line)
        samples = harness.parse_prometheus(self.gw.metrics_text())
        key = ('tokengate_requests_total{route="/api/orders/**",status="2xx",decision="allow",reason="allowed",'
               'mode="forward_auth"}')
        self.assertGreaterEqual(samples.get(key, 0), 1, key)

        def last_used():
            out = self.gw.cli("token", "show", "--config", self.gw.config_path, harness.token_id(token), "--json")
            return json.loads(out.stdout)["last_used_at"]

        self.assertIsNotNone(harness.wait_until(last_used, 10.0))


class ForwardAuthConnectionBudgetTest(harness.GatewayTestCase):
    """Idle connections filling the public listener's budget never refuse checks."""

    @classmethod
    def make_gateway(cls, upstream_port):
        return harness.Gateway(body(upstream_port), forward_auth={}, limits={"max_connections": 4})

    def test_checks_have_their_own_connection_budget(self):
        held = []
        try:
            # Four public connections that got an answer, so the gateway counts them.
            for _ in range(4):
                c = self.gw.connect()
                held.append(c)
                self.assertEqual(c.request("GET", "/public/held").status, 200)
            # The public listener is full: a fifth connection is closed at once...
            with self.gw.connect() as c:
                try:
                    c.send(harness.build_request("GET", "/public/over", []))
                    closed = c.is_closed(5.0)
                except OSError:
                    closed = True
                self.assertTrue(closed, "a fifth public connection was served with max_connections 4")
            # ... while checks are still answered, up to their own budget.
            for _ in range(3):
                c = self.gw.check_connection()
                held.append(c)
                self.assertEqual(c.request("GET", "/check", [("X-Original-URI", "/public/x")]).status, 200)
        finally:
            for c in held:
                c.close()


class ForwardAuthReloadTest(harness.GatewayTestCase):
    """A reload changes what checks decide, like proxied requests."""

    @classmethod
    def make_gateway(cls, upstream_port):
        cls.upstream_port = upstream_port
        return harness.Gateway(body(upstream_port), forward_auth={})

    def test_reload_applies_to_the_next_check_and_request_on_open_connections(self):
        # Both connections sit idle through the reload: their next request was
        # once decided under the config of the previous one.
        with self.gw.check_connection() as c, self.gw.connect() as p:
            r = c.request("GET", "/check", [("X-Original-URI", "/api/orders/1")])
            self.assertEqual(r.status, 401)
            self.assertEqual(p.request("GET", "/api/orders/1").status, 401)
            start = len(self.gw.log_lines())
            self.gw.write_config(body(self.upstream_port).replace(
                "    require: { permissions: [orders.read] }\n", "    public: true\n"))
            self.assertIsNotNone(self.gw.wait_log(lambda l: "config reloaded" in l, start=start),
                                 self.gw.log_lines()[start:])
            r = c.request("GET", "/check", [("X-Original-URI", "/api/orders/1")])
            self.assertEqual((r.status, r.header("X-Tokengate-Reason")), (200, None))
            self.assertEqual(p.request("GET", "/api/orders/1").status, 200)


# ---------------------------------------------------------------------------- real ingresses

def render_example(name, ports):
    """examples/forward-auth/NAME with the loopback addresses replaced: 8000 the
    ingress, 8081 tokengate's forward_auth listener, 9000 the app."""
    with open(os.path.join(EXAMPLES, name)) as f:
        text = f.read()
    for placeholder, port in ports.items():
        address = "127.0.0.1:%d" % placeholder
        if address not in text:
            raise AssertionError("%s no longer mentions %s" % (name, address))
        text = text.replace(address, "127.0.0.1:%d" % port)
    return text


def wait_port(port, process, name, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("%s exited with status %s" % (name, process.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen on %d within %ss" % (name, port, timeout))


class IngressTests:
    """What every ingress must show with tokengate behind it. Subclasses start the
    ingress in start_ingress(dir, ports) and return its Popen."""

    @classmethod
    def setUpClass(cls):
        cls.upstream = harness.start_upstream()
        cls.gw = None
        cls.ingress = None
        cls.dir = tempfile.mkdtemp(prefix="tokengate-ingress-")
        try:
            cls.gw = harness.Gateway(body(cls.upstream.port), admin=True, forward_auth={})
            cls.reader = cls.gw.create_token("ingress-reader", roles=["reader"])
            cls.writer = cls.gw.create_token("ingress-writer", roles=["writer"])
            cls.gw.start()
            cls.port = harness.closed_port()
            cls.ingress = cls.start_ingress(
                cls.dir, {8000: cls.port, 8081: cls.gw.forward_auth_port, 9000: cls.upstream.port})
            wait_port(cls.port, cls.ingress, cls.__name__)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.ingress is not None and cls.ingress.poll() is None:
            cls.ingress.send_signal(signal.SIGTERM)
            try:
                cls.ingress.wait(10)
            except subprocess.TimeoutExpired:
                cls.ingress.kill()
                cls.ingress.wait(10)
        status = cls.gw.stop() if cls.gw else None
        cls.upstream.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)
        if status not in (None, 0):
            raise AssertionError("the gateway exited with status %s:\n%s" % (status, cls.gw.process.stderr_text()))

    def request(self, target, headers=(), method="GET"):
        with harness.RawConnection("127.0.0.1", self.port) as c:
            return c.request(method, target, list(headers), host="127.0.0.1:%d" % self.port)

    def test_allowed_request_arrives_with_the_identity_tokengate_decided(self):
        spoof = [("X-Auth-Subject", "spoofed"), ("X-Auth-Roles", "writer"), ("X-Auth-Permissions", "everything")]
        r = self.request("/api/orders/1", spoof + [bearer(self.reader)])
        self.assertEqual(r.status, 200, r)
        seen = echo_headers(r)
        self.assertEqual(headers_named(seen, "X-Auth-Subject"), [harness.token_id(self.reader)])
        self.assertEqual(headers_named(seen, "X-Auth-Name"), ["ingress-reader"])
        self.assertEqual(headers_named(seen, "X-Auth-Roles"), ["reader"])
        self.assertEqual(headers_named(seen, "X-Auth-Permissions"), ["orders.read"])
        self.assertEqual(headers_named(seen, "Authorization"), [])

    def test_a_clients_identity_headers_never_arrive(self):
        spoof = [("X-Auth-Subject", "spoofed"), ("X-Auth-Name", "admin"), ("X-Auth-Roles", "writer"),
                 ("X-Auth-Groups", "ops"), ("X-Auth-Permissions", "orders.write"), ("X-Auth-Licenses", "pro")]
        r = self.request("/public/hello", spoof)
        self.assertEqual(r.status, 200, r)
        seen = echo_headers(r)
        for name, value in spoof:
            self.assertNotIn(value, headers_named(seen, name), name)

    def test_an_anonymous_request_gets_no_identity(self):
        r = self.request("/public/hello")
        self.assertEqual(r.status, 200, r)
        for name, value in echo_headers(r):
            if name.lower().startswith("x-auth-"):
                self.assertEqual(value, "", name)

    def test_a_client_cannot_describe_the_request_itself(self):
        # Headers an ingress passes on to the check: a client's own description of a
        # harmless request must not get its real one through.
        for extra in ([("X-Original-URI", "/public/x")], [("X-Original-URL", "http://h/public/x")],
                      [("X-Original-URI", "/public/x"), ("X-Original-Method", "GET")],
                      [("X-Forwarded-Uri", "/public/x"), ("X-Forwarded-Method", "GET")]):
            for token in (None, self.reader):
                marker = unique_marker()
                with self.subTest(extra=extra, token=token and "reader"):
                    headers = extra + ([bearer(token)] if token else [])
                    r = self.request("/admin/" + marker, headers)
                    self.assertIn(r.status, (401, 403), r)
                    self.assertEqual(upstream_targets(self.upstream, marker), [])
        # And an honest request that carries such a header still goes through.
        r = self.request("/api/orders/1", [("X-Original-URI", "/whatever"), bearer(self.reader)])
        self.assertEqual(r.status, 200, r)

    def test_401_with_the_challenge_reaches_the_client(self):
        r = self.request("/api/orders/1")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="tokengate"')
        r = self.request("/api/orders/1", [bearer(harness.make_token())])
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="tokengate", error="invalid_token"')
        r = self.request("/admin/x", [bearer(self.reader)])
        self.assertEqual(r.status, 403, r)

    def test_path_tricks_never_reach_the_app(self):
        for trick in PATH_TRICKS:
            for token in (None, self.reader):
                marker = unique_marker()
                target = trick.format(m=marker)
                with self.subTest(target=target, token=token and "reader"):
                    headers = [bearer(token)] if token else []
                    r = self.request(target, headers)
                    self.assertNotEqual(r.status // 100, 2, r)
                    self.assertEqual(upstream_targets(self.upstream, marker), [])

    def test_a_revoked_token_fails_on_the_next_request(self):
        token = self.gw.create_token("ingress-revoked", roles=["reader"])
        self.assertEqual(self.request("/api/orders/1", [bearer(token)]).status, 200)
        self.gw.cli("token", "delete", "--config", self.gw.config_path, harness.token_id(token))
        self.assertEqual(self.request("/api/orders/1", [bearer(token)]).status, 401)


class NginxAuthRequestTest(IngressTests, unittest.TestCase):
    @classmethod
    def start_ingress(cls, directory, ports):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = os.path.join(directory, "nginx.conf")
        with open(conf, "w") as f:
            f.write(render_example("nginx.conf", ports))
        os.makedirs(os.path.join(directory, "tmp"))
        # Run as root, nginx's workers drop to nobody: let them into the temp dir.
        os.chmod(directory, 0o755)
        os.chmod(os.path.join(directory, "tmp"), 0o777)
        return subprocess.Popen([nginx, "-p", directory, "-c", conf, "-g", "daemon off;"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class CaddyForwardAuthTest(IngressTests, unittest.TestCase):
    @classmethod
    def start_ingress(cls, directory, ports):
        conf = os.path.join(directory, "Caddyfile")
        with open(conf, "w") as f:
            f.write(render_example("Caddyfile", ports))
        env = dict(os.environ, HOME=directory, XDG_DATA_HOME=os.path.join(directory, "data"),
                   XDG_CONFIG_HOME=os.path.join(directory, "config"))
        return subprocess.Popen(["caddy", "run", "--config", conf, "--adapter", "caddyfile"], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class ReadmeShowsTheTestedConfigurationsTest(unittest.TestCase):
    def test_every_example_is_in_the_readme_unchanged(self):
        with open(os.path.join(harness.ROOT, "README.md")) as f:
            readme = f.read()
        names = sorted(os.listdir(EXAMPLES))
        self.assertGreaterEqual(len(names), 5, names)
        for name in names:
            with open(os.path.join(EXAMPLES, name)) as f:
                text = f.read().rstrip("\n")
            with self.subTest(example=name):
                self.assertIn("\n" + text + "\n```", readme, "README.md does not show examples/forward-auth/%s as it is" % name)


if __name__ == "__main__":
    unittest.main()
