"""End-to-end tests of the admin API (docs/admin-api.md) on the real `tokengate serve`:
every endpoint and error path over the admin TCP listener, the privilege rules
for write-only callers, audit lines on stderr, the trusted unix socket, OpenAPI."""

import datetime
import json
import os
import re
import socket
import stat
import unittest

import harness
from harness import bearer

BODY = """\
upstreams:
  echo:
    url: http://127.0.0.1:%d
roles:
  reader: { permissions: [orders.read] }
  writer: { permissions: [orders.read, orders.write] }
  token-admin: { permissions: [tokengate.admin] }
groups:
  ops: { roles: [writer], permissions: [billing.read] }
licenses: [pro, enterprise]
routes:
  - path: /orders/**
    upstream: echo
    require: { permissions: [orders.read] }
  - path: /api/**
    upstream: echo
"""

TOKEN_RE = re.compile(r"tg_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}")


def rfc3339(delta):
    t = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + delta
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def unix_request(path, method, target, body=b""):
    """One HTTP/1.1 request over the admin unix socket; returns harness.Response."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    conn = harness.RawConnection.__new__(harness.RawConnection)
    conn.sock, conn.buf = s, b""
    try:
        return conn.request(method, target, [("Content-Type", "application/json")] if body else [], body)
    finally:
        conn.close()


class AdminApiTest(harness.GatewayTestCase):
    @classmethod
    def make_gateway(cls, upstream_port):
        return harness.Gateway(BODY % upstream_port, admin=True, tokens={"max_lifetime": "30d"})

    @classmethod
    def create_tokens(cls):
        soon = rfc3339(datetime.timedelta(days=1))
        later = rfc3339(datetime.timedelta(days=2))
        cls.admin = cls.gw.create_token("root", permissions=["tokengate.admin"], expires=later)
        cls.reader = cls.gw.create_token("auditor", permissions=["tokengate.tokens.read"], expires=soon)
        cls.writer = cls.gw.create_token(
            "deputy", roles=["reader"], permissions=["tokengate.tokens.write"], expires=soon)
        cls.plain = cls.gw.create_token("plain", roles=["reader"], expires=soon)
        cls.soon, cls.later = soon, later

    # ------------------------------------------------------------------ helpers

    def call(self, method, target, token=None, body=None, raw=None, headers=()):
        hdrs = list(headers)
        if token:
            hdrs.append(bearer(token))
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        if data:
            hdrs.append(("Content-Type", "application/json"))
        with self.gw.admin() as c:
            resp = c.request(method, target, hdrs, data)
        self.assertLess(resp.status, 500, resp)
        self.assertEqual(resp.header("X-Frame-Options"), "DENY", resp)
        csp = resp.header("Content-Security-Policy") or ""
        self.assertIn("default-src 'self'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        return resp

    def assert_error(self, resp, status, needle=""):
        self.assertEqual(resp.status, status, resp)
        self.assertEqual((resp.header("Content-Type") or "").split(";")[0], "application/json", resp)
        body = resp.json()
        self.assertEqual(sorted(body), ["error", "message"], body)
        self.assertIn(needle, body["message"])
        return body

    def create(self, token=None, **fields):
        fields.setdefault("expires_at", self.soon)
        resp = self.call("POST", "/v1/tokens", token or self.admin, fields)
        self.assertEqual(resp.status, 201, resp)
        return resp.json()

    def ids(self):
        return sorted(r["id"] for r in self.call("GET", "/v1/tokens", self.admin).json())

    def public_status(self, token, target="/orders/1"):
        with self.gw.connect() as c:
            return c.request("GET", target, [bearer(token)]).status

    # ------------------------------------------------------------------ tests

    def test_health_ready_and_headers(self):
        for target in ("/healthz", "/readyz"):
            resp = self.call("GET", target)
            self.assertEqual(resp.status, 200, resp)
        resp = self.call("GET", "/v1/tokens", self.admin)
        self.assertEqual(resp.header("Cache-Control"), "no-store")
        # Filled by the metrics and UI work (404 until they land); the headers above hold for them too.
        self.assertIn(self.call("GET", "/metrics").status, (200, 404))
        self.assertIn(self.call("GET", "/ui/").status, (200, 404))
        self.assert_error(self.call("POST", "/healthz"), 405)

    def test_openapi_documents_every_route(self):
        doc = self.call("GET", "/v1/openapi.json").json()
        self.assertTrue(doc["openapi"].startswith("3."))
        made = self.create(name="openapi probe")
        documented = []
        for path, item in doc["paths"].items():
            for method in item:
                if method != "parameters":
                    documented.append((method.upper(), path))
        # Every route the server answers is documented: probe the server's route
        # surface (each documented operation routes, i.e. is not 404/405 by path)...
        for method, path in documented:
            target = path.replace("{id}", made["id"])
            if method == "DELETE":
                continue  # deleting the probe would make the rotate below 404
            body = {"description": "x"} if method == "PATCH" else ({"name": "p"} if target == "/v1/tokens" else None)
            resp = self.call(method, target, self.admin, body)
            if path in ("/metrics", "/ui/"):
                continue  # filled by the metrics and UI work; 404 until then
            self.assertNotIn(resp.status, (404, 405), (method, path, resp))
        self.assertEqual(self.call("DELETE", "/v1/tokens/" + made["id"], self.admin).status, 204)
        # ...and what the server refuses by method is exactly what is undocumented.
        for method in ("GET", "POST", "PATCH", "DELETE", "PUT"):
            for path in ("/v1/tokens", "/v1/tokens/AAAAAAAAAAAA", "/v1/tokens/AAAAAAAAAAAA/rotate", "/v1/config"):
                resp = self.call(method, path, self.admin, {} if method in ("POST", "PATCH") else None)
                if resp.status == 405:
                    self.assertNotIn((method, path.replace("AAAAAAAAAAAA", "{id}")), documented)
                    self.assertTrue(resp.header("Allow"))
                elif method != "PUT":
                    self.assertIn((method, path.replace("AAAAAAAAAAAA", "{id}")), documented, resp)
        self.assert_error(self.call("GET", "/v1/nothing", self.admin), 404)

    def test_crud_lifecycle(self):
        made = self.create(name="ci deploy", description="d", roles=["reader"], licenses=["pro"])
        self.assertRegex(made["token"], TOKEN_RE)
        self.assertEqual(made["created_by"], harness.token_id(self.admin))
        for key in ("id", "name", "description", "roles", "groups", "permissions", "licenses", "created_at",
                    "updated_at", "expires_at", "last_used_at", "rotated_at", "created_by"):
            self.assertIn(key, made)
        self.assertEqual(self.public_status(made["token"]), 200)

        got = self.call("GET", "/v1/tokens/" + made["id"], self.admin).json()
        self.assertNotIn("token", got)
        self.assertEqual(got["name"], "ci deploy")
        listed = self.call("GET", "/v1/tokens?q=CI%20dep", self.admin).json()
        self.assertEqual([r["id"] for r in listed], [made["id"]])
        self.assertEqual([r["id"] for r in self.call("GET", "/v1/tokens?q=" + made["id"][2:9], self.admin).json()],
                         [made["id"]])
        for record in self.call("GET", "/v1/tokens", self.admin).json():
            self.assertNotIn("token", record)

        # max_lifetime 30d: "never" is refused, and nothing of the patch is applied
        self.assert_error(self.call("PATCH", "/v1/tokens/" + made["id"], self.admin,
                                    {"name": "renamed", "groups": ["ops"], "expires_at": None}), 422, "max_lifetime")
        self.assertEqual(self.call("GET", "/v1/tokens/" + made["id"], self.admin).json()["name"], "ci deploy")
        resp = self.call("PATCH", "/v1/tokens/" + made["id"], self.admin, {"name": "renamed", "groups": ["ops"]})
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["groups"], ["ops"])
        self.assertEqual(resp.json()["name"], "renamed")

        rotated = self.call("POST", "/v1/tokens/" + made["id"] + "/rotate", self.admin, {"grace_seconds": 600}).json()
        self.assertNotEqual(rotated["token"], made["token"])
        self.assertIsNotNone(rotated["rotated_at"])
        self.assertEqual(self.public_status(made["token"]), 200)  # in grace
        self.assertEqual(self.public_status(rotated["token"]), 200)

        resp = self.call("DELETE", "/v1/tokens/" + made["id"], self.admin)
        self.assertEqual(resp.status, 204, resp)
        self.assertEqual(resp.body, b"")
        self.assert_error(self.call("GET", "/v1/tokens/" + made["id"], self.admin), 404, made["id"])
        self.assert_error(self.call("DELETE", "/v1/tokens/" + made["id"], self.admin), 404)
        self.assertEqual(self.public_status(rotated["token"]), 401)

    def test_retried_create_with_idempotency_key_is_409(self):
        before = len(self.ids())
        body = {"name": "idempotent", "expires_at": self.soon}
        key = ("Idempotency-Key", "run-%s" % harness.random_b62(8))
        first = self.call("POST", "/v1/tokens", self.admin, body, headers=[key])
        self.assertEqual(first.status, 201, first)
        again = self.call("POST", "/v1/tokens", self.admin, body, headers=[key])
        self.assert_error(again, 409, first.json()["id"])
        self.assertNotIn("tg_", again.body.decode())
        self.assertEqual(len(self.ids()), before + 1)
        self.assertEqual(self.call("DELETE", "/v1/tokens/" + first.json()["id"], self.admin).status, 204)

    def test_config_view(self):
        view = self.call("GET", "/v1/config", self.reader).json()
        self.assertEqual([r["name"] for r in view["roles"]], ["reader", "writer", "token-admin"])
        self.assertEqual(view["groups"][0], {"name": "ops", "roles": ["writer"], "permissions": ["billing.read"]})
        self.assertEqual(view["licenses"], ["pro", "enterprise"])
        self.assertEqual([r["path"] for r in view["routes"]], ["/orders/**", "/api/**"])
        self.assertEqual(view["routes"][0]["require"], {"permissions": ["orders.read"]})

    def test_bad_input_is_4xx_and_writes_nothing(self):
        before = self.ids()
        cases = [
            ("POST", "/v1/tokens", b"{", 400, "not valid JSON"),
            ("POST", "/v1/tokens", b"\"name\"", 400, "JSON object"),
            ("POST", "/v1/tokens", b'{"name": "x", "expires_at": null, "colour": "red"}', 400, "unknown field 'colour'"),
            ("POST", "/v1/tokens", b'{"name": ["x"]}', 400, "must be a string"),
            ("POST", "/v1/tokens", b'{"name": "x", "groups": [1]}', 400, "array of strings"),
            ("POST", "/v1/tokens", b'{"name": "x", "expires_at": 12}', 400, "RFC 3339"),
            ("POST", "/v1/tokens", b'{"name": "x", "created_by": "me"}', 400, "cannot be changed"),
            ("POST", "/v1/tokens", ('{"name": "x", "roles": ["reeder"], "expires_at": "%s"}' % self.soon).encode(),
             422, "unknown role 'reeder'"),
            ("POST", "/v1/tokens", ('{"name": "x", "licenses": ["gold"], "expires_at": "%s"}' % self.soon).encode(),
             422, "unknown license 'gold'"),
            ("POST", "/v1/tokens", ('{"name": "x", "expires_at": "%s"}' % rfc3339(datetime.timedelta(days=40))).encode(),
             422, "max_lifetime"),
            ("POST", "/v1/tokens", b'{"name": "x", "expires_at": "2001-01-01T00:00:00Z"}', 422, "not in the future"),
            ("POST", "/v1/tokens", ('{"name": "%s", "expires_at": "%s"}' % ("n" * 129, self.soon)).encode(), 422,
             "at most 128"),
            ("PATCH", "/v1/tokens/" + harness.token_id(self.plain), b'{"roles": ["nope"]}', 422, "unknown role 'nope'"),
            ("PATCH", "/v1/tokens/" + harness.token_id(self.plain), b'{}', 400, "nothing to update"),
            ("PATCH", "/v1/tokens/" + harness.token_id(self.plain), b'{"id": "x"}', 400, "cannot be changed"),
            ("PATCH", "/v1/tokens/AAAAAAAAAAAA", b'{"name": "x"}', 404, "no token"),
            ("POST", "/v1/tokens/AAAAAAAAAAAA/rotate", b"", 404, "no token"),
            ("POST", "/v1/tokens/" + harness.token_id(self.plain) + "/rotate", b'{"grace_seconds": "5m"}', 400,
             "integer"),
            ("POST", "/v1/tokens/" + harness.token_id(self.plain) + "/rotate", b'{"grace_seconds": -5}', 422,
             "negative"),
            ("GET", "/v1/tokens/not-an-id", b"", 404, "no token"),
            ("GET", "/v1/tokens?limit=3", b"", 400, "unknown query parameter"),
            ("DELETE", "/v1/tokens/AAAAAAAAAAAA", b"", 404, "no token"),
        ]
        for method, target, raw, status, needle in cases:
            with self.subTest(method=method, target=target, raw=raw[:60]):
                self.assert_error(self.call(method, target, self.admin, raw=raw), status, needle)
        self.assertEqual(self.ids(), before)
        plain = self.call("GET", "/v1/tokens/" + harness.token_id(self.plain), self.admin).json()
        self.assertEqual(plain["roles"], ["reader"])
        self.assertIsNone(plain["rotated_at"])
        self.assertEqual(self.public_status(self.plain), 200)
        # oversized body: refused, not buffered without bound
        with self.gw.admin() as c:
            # Only the head: the limit is checked on Content-Length, before any body byte.
            c.send(harness.build_request("POST", "/v1/tokens", [bearer(self.admin),
                                                                ("Content-Length", str(2 << 20))]))
            resp = c.read_response("POST")
        self.assertEqual(resp.status, 413, resp)
        self.assertEqual(self.ids(), before)

    def test_authentication(self):
        resp = self.call("GET", "/v1/tokens")
        self.assert_error(resp, 401)
        self.assertEqual(resp.header("WWW-Authenticate"), 'Bearer realm="tokengate"')
        resp = self.call("GET", "/v1/tokens", headers=[("Authorization", "Basic dXNlcjpwYXNz")])
        self.assert_error(resp, 401)
        resp = self.call("GET", "/v1/tokens", harness.make_token())
        self.assert_error(resp, 401)
        self.assertIn("invalid_token", resp.header("WWW-Authenticate"))
        resp = self.call("GET", "/v1/tokens", self.plain)
        self.assert_error(resp, 403, "tokengate")
        resp = self.call("GET", "/v1/tokens", headers=[bearer(self.admin), bearer(self.admin)])
        self.assert_error(resp, 400)
        # the public listener does not serve the admin API
        with self.gw.connect() as c:
            self.assertNotEqual(c.request("GET", "/v1/tokens", [bearer(self.admin)]).status, 200)

    def test_read_only_caller(self):
        self.assertEqual(self.call("GET", "/v1/tokens", self.reader).status, 200)
        self.assertEqual(self.call("GET", "/v1/tokens/" + harness.token_id(self.plain), self.reader).status, 200)
        before = self.ids()
        self.assert_error(self.call("POST", "/v1/tokens", self.reader, {"name": "x", "expires_at": self.soon}), 403,
                          "tokengate.tokens.write")
        self.assert_error(self.call("PATCH", "/v1/tokens/" + harness.token_id(self.plain), self.reader,
                                    {"name": "x"}), 403)
        self.assert_error(self.call("POST", "/v1/tokens/" + harness.token_id(self.plain) + "/rotate", self.reader),
                          403)
        self.assert_error(self.call("DELETE", "/v1/tokens/" + harness.token_id(self.plain), self.reader), 403)
        self.assertEqual(self.ids(), before)

    def test_write_only_caller_cannot_escalate(self):
        before = self.ids()
        for fields, needle in [
            ({"roles": ["writer"]}, "role 'writer'"),
            ({"groups": ["ops"]}, "group 'ops'"),
            ({"permissions": ["tokengate.admin"]}, "permission 'tokengate.admin'"),
            ({"permissions": ["billing.read"]}, "permission 'billing.read'"),
            ({"licenses": ["pro"]}, "license 'pro'"),
            ({"roles": ["reader"], "expires_at": self.later}, "no later than"),
        ]:
            with self.subTest(fields=fields):
                body = {"name": "escalate", "expires_at": self.soon, **fields}
                self.assert_error(self.call("POST", "/v1/tokens", self.writer, body), 403, needle)
        self.assertEqual(self.ids(), before)

        # What it holds it may grant; created_by is the writer's id.
        child = self.create(self.writer, name="child", roles=["reader"], permissions=["orders.read"])
        self.assertEqual(child["created_by"], harness.token_id(self.writer))
        self.assert_error(self.call("PATCH", "/v1/tokens/" + child["id"], self.writer, {"roles": ["writer"]}), 403,
                          "role 'writer'")
        self.assert_error(self.call("PATCH", "/v1/tokens/" + child["id"], self.writer, {"expires_at": self.later}),
                          403, "no later than")
        self.assert_error(self.call("PATCH", "/v1/tokens/" + harness.token_id(self.writer), self.writer,
                                    {"expires_at": self.later}), 403, "no later than")
        self.assertEqual(self.call("PATCH", "/v1/tokens/" + child["id"], self.writer, {"name": "kid"}).status, 200)

        # Tokens holding tokengate.admin (directly or through a role) are out of reach.
        role_admin = self.create(name="role admin", roles=["token-admin"])
        for admin_id in (harness.token_id(self.admin), role_admin["id"]):
            for method, suffix, body in (("PATCH", "", {"name": "pwned"}), ("POST", "/rotate", {}),
                                         ("DELETE", "", None)):
                with self.subTest(method=method, admin_id=admin_id):
                    self.assert_error(self.call(method, "/v1/tokens/" + admin_id + suffix, self.writer, body), 403,
                                      "tokengate.admin")
        self.assertEqual(self.call("GET", "/v1/tokens/" + harness.token_id(self.admin), self.admin).json()["name"],
                         "root")
        self.assertEqual(self.public_status(self.admin, "/api/x"), 200)
        # Nor tokens holding rights the writer lacks (rotating one would hand over its secret).
        strong = self.create(name="strong", groups=["ops"])
        self.assert_error(self.call("POST", "/v1/tokens/" + strong["id"] + "/rotate", self.writer), 403, "group 'ops'")
        self.assertEqual(self.call("DELETE", "/v1/tokens/" + child["id"], self.writer).status, 204)

    def test_audit_lines_and_no_secrets_in_logs(self):
        made = self.create(name="audited")
        self.call("PATCH", "/v1/tokens/" + made["id"], self.admin, {"description": "x"})
        rotated = self.call("POST", "/v1/tokens/" + made["id"] + "/rotate", self.admin).json()
        self.call("DELETE", "/v1/tokens/" + made["id"], self.admin)
        self.call("POST", "/v1/tokens", self.writer, {"name": "x", "roles": ["writer"], "expires_at": self.soon})

        def audits():
            out = []
            for line in self.gw.process.lines_snapshot():
                if line.startswith("{") and '"audit"' in line:
                    out.append(json.loads(line))
            return out

        def refused(entries):
            return [e for e in entries if e["actor"] == harness.token_id(self.writer) and e["status"] == 403]

        def wanted(entries):
            seen = {(e["audit"], e.get("token_id"), e["status"]) for e in entries}
            return {("token.create", made["id"], 201), ("token.update", made["id"], 200),
                    ("token.rotate", made["id"], 200), ("token.delete", made["id"], 204)} <= seen and refused(entries)

        # Audit lines are written just after each answer: poll until all five are there.
        self.assertTrue(harness.wait_until(lambda: wanted(audits()), 10), audits())
        admin_id = harness.token_id(self.admin)
        for e in audits():
            if e.get("token_id") == made["id"]:
                self.assertEqual(e["actor"], admin_id, e)
                self.assertEqual(e["via"], "http")
        text = "\n".join(self.gw.process.lines_snapshot())
        for token in (made["token"], rotated["token"], self.admin, self.writer, self.reader, self.plain):
            self.assertNotIn(token, text)
            self.assertNotIn(token[16:], text)

    def test_unix_socket_is_trusted_and_private(self):
        mode = stat.S_IMODE(os.stat(self.gw.socket_path).st_mode)
        self.assertEqual(mode, 0o600)
        resp = unix_request(self.gw.socket_path, "POST", "/v1/tokens",
                            json.dumps({"name": "via socket", "groups": ["ops"], "expires_at": self.soon}).encode())
        self.assertEqual(resp.status, 201, resp)
        made = resp.json()
        self.assertEqual(made["created_by"], "cli")
        self.assertEqual(unix_request(self.gw.socket_path, "GET", "/v1/tokens/" + made["id"]).json()["name"],
                         "via socket")
        self.assertEqual(unix_request(self.gw.socket_path, "DELETE", "/v1/tokens/" + made["id"]).status, 204)


class AdminLifecycleTest(unittest.TestCase):
    """Start-up and shutdown: the socket file goes away; a stale one is replaced."""

    def test_stale_socket_replaced_and_removed_on_stop(self):
        upstream = harness.start_upstream()
        self.addCleanup(upstream.stop)
        gw = harness.Gateway(BODY % upstream.port, admin=True)
        self.addCleanup(gw.stop)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(gw.socket_path)  # bound, never listening: what a killed gateway leaves
        stale.close()
        gw.start()
        self.assertEqual(unix_request(gw.socket_path, "GET", "/healthz").status, 200)
        with gw.admin() as c:
            self.assertEqual(c.request("GET", "/readyz").status, 200)
        gw.process.stop()
        self.assertEqual(gw.process.proc.returncode, 0, gw.process.stderr_text())
        self.assertFalse(os.path.exists(gw.socket_path))

    def test_readyz_is_503_while_draining(self):
        upstream = harness.start_upstream()
        self.addCleanup(upstream.stop)
        gw = harness.Gateway(BODY.replace("  - path: /api/**", "  - path: /__slow\n    upstream: echo\n    public: true\n"
                                          "  - path: /api/**") % upstream.port, admin=True)
        self.addCleanup(gw.stop)
        gw.start()
        with gw.admin() as c:
            r = c.request("GET", "/readyz")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json(), {"status": "ready", "store": {"mode": "local", "source": "connected",
                                                                       "revision": None, "last_sync": None}})
        slow = gw.connect()
        self.addCleanup(slow.close)
        slow.send(harness.build_request("GET", "/__slow?ms=4000"))
        self.assertTrue(harness.wait_until(lambda: harness.upstream_targets(upstream, "__slow"), 10))
        gw.process.proc.terminate()

        def readyz():
            try:
                with gw.admin() as c:
                    r = c.request("GET", "/readyz")
                    return r.status, r.json()["status"]
            except OSError:
                return None

        self.assertEqual(harness.wait_until(lambda: readyz() == (503, "not_ready"), 3, 0.02), True)
        with gw.admin() as c:
            self.assertEqual(c.request("GET", "/healthz").status, 200)  # still alive while draining
        self.assertEqual(slow.read_response().status, 200)  # the in-flight request finishes

    def test_socket_path_that_is_a_file_is_refused(self):
        upstream = harness.start_upstream()
        self.addCleanup(upstream.stop)
        gw = harness.Gateway(BODY % upstream.port, admin=True)
        self.addCleanup(gw.stop)
        with open(gw.socket_path, "w") as f:
            f.write("precious")
        with self.assertRaises(RuntimeError) as ctx:
            gw.start()
        self.assertIn("not a socket", str(ctx.exception))
        with open(gw.socket_path) as f:
            self.assertEqual(f.read(), "precious")


if __name__ == "__main__":
    unittest.main()
