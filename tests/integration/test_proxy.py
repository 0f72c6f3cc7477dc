"""End-to-end tests of the data plane (docs/configuration.md, "Canonical path";
README.md, "Data plane") against the real `tokengate serve` and the demo upstream,
over raw sockets."""

import hashlib
import os
import re
import socket
import threading
import time
import unittest

import harness
from harness import bearer, echo_headers, headers_named, unique_marker

ROUTES = """\
routes:
  - path: /public/**
    upstream: echo
    public: true
  - path: /__status/*
    upstream: echo
    public: true
  - path: /__download
    upstream: echo
    public: true
  - path: /__close
    upstream: echo
    public: true
  - path: /__ws
    upstream: echo
    public: true
  - path: /__slow
    upstream: echo
    public: true
  - path: /down/**
    upstream: down
    public: true
  - path: /orders/*/refund
    methods: [POST]
    upstream: echo
    require:
      permissions: [orders.write]
      licenses: [pro]
  - path: /orders/**
    methods: [GET, HEAD]
    upstream: echo
    require: { permissions: [orders.read] }
  - path: /admin/**
    upstream: echo
    require:
      any_of:
        - roles: [writer]
        - groups: [ops]
  - path: /billing/**
    upstream: echo
    require: { permissions: [billing.read] }
  - path: /api/**
    upstream: echo
"""


def gateway_body(upstream_port, down_port):
    return (
        "upstreams:\n"
        "  echo:\n"
        "    url: http://127.0.0.1:%d\n"
        "  down:\n"
        "    url: http://127.0.0.1:%d\n" % (upstream_port, down_port)
        + harness.DEFAULT_ROLES
        + ROUTES
    )


MIB = 1 << 20
CHALLENGE = 'Bearer realm="tokengate"'
CHALLENGE_INVALID = 'Bearer realm="tokengate", error="invalid_token"'
CHALLENGE_SCOPE = 'Bearer realm="tokengate", error="insufficient_scope"'
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")


class GatewayTestCase(harness.GatewayTestCase):
    """The proxy test gateway (ROUTES above) in front of the demo upstream; helpers
    for requests."""

    limits = {"max_body_bytes": 256 * MIB}
    identity_config = None
    workers = 2

    @classmethod
    def make_gateway(cls, upstream_port):
        return harness.Gateway(gateway_body(upstream_port, harness.closed_port()), limits=cls.limits,
                               identity=cls.identity_config, workers=cls.workers)

    def request(self, method, target, token=None, headers=(), body=b""):
        hdrs = list(headers)
        if token:
            hdrs.append(bearer(token))
        with self.gw.connect() as c:
            return c.request(method, target, hdrs, body)

    def get(self, target, token=None, headers=()):
        return self.request("GET", target, token, headers)

    def assert_json_error(self, resp, status):
        self.assertEqual(resp.status, status, resp)
        ctype = resp.header("Content-Type") or ""
        self.assertEqual(ctype.split(";")[0].strip().lower(), "application/json", resp)
        body = resp.json()
        self.assertIsInstance(body.get("error"), str, body)
        self.assertTrue(body["error"], body)
        self.assertIsInstance(body.get("message"), str, body)

    def assert_not_forwarded(self, marker):
        self.assertEqual(harness.upstream_targets(self.upstream, marker), [],
                         "the upstream received a request it should not have")

    def assert_gateway_alive(self):
        self.assertTrue(self.gw.process.alive(), self.gw.process.stderr_text())
        r = self.get("/public/alive-" + unique_marker())
        self.assertEqual(r.status, 200, r)


class AuthenticationTest(GatewayTestCase):
    """The status table of README.md, "Data plane"."""

    @classmethod
    def create_tokens(cls):
        gw = cls.gw
        cls.alice = gw.create_token("alice", roles=["reader"], groups=["ops"], permissions=["zeta.custom"],
                                    licenses=["pro", "enterprise"])
        cls.reader = gw.create_token("reader", roles=["reader"])
        cls.writer = gw.create_token("writer", roles=["writer"])
        cls.empty = gw.create_token("empty")
        cls.expiring = gw.create_token("expiring", roles=["reader"], expires="3s")
        # Rotated-out and deleted tokens: the CLI works on the store before the gateway starts.
        cls.rotated_error = cls.deleted_error = None
        try:
            cls.rotated_old = gw.create_token("rotated", roles=["reader"])
            gw.cli("token", "rotate", "--config", gw.config_path, harness.token_id(cls.rotated_old))
        except RuntimeError as e:
            cls.rotated_error = str(e)
        try:
            cls.deleted = gw.create_token("deleted", roles=["reader"])
            gw.cli("token", "delete", "--config", gw.config_path, harness.token_id(cls.deleted))
        except RuntimeError as e:
            cls.deleted_error = str(e)

    def test_no_authorization_is_401_with_bare_challenge(self):
        m = unique_marker()
        r = self.get("/api/" + m)
        self.assert_json_error(r, 401)
        self.assertEqual(r.header_all("WWW-Authenticate"), [CHALLENGE])
        self.assert_not_forwarded(m)

    def test_basic_scheme_is_401_with_bare_challenge(self):
        m = unique_marker()
        r = self.get("/api/" + m, headers=[("Authorization", "Basic YWxpY2U6c2VjcmV0")])
        self.assert_json_error(r, 401)
        self.assertEqual(r.header_all("WWW-Authenticate"), [CHALLENGE])
        self.assert_not_forwarded(m)

    def test_access_log_never_contains_a_token(self):
        m = unique_marker()
        wrong_secret = self.reader[:20] + ("A" if self.reader[20] != "A" else "B") + self.reader[21:]
        sent = [self.alice, self.reader, wrong_secret, "tg_malformed_" + m]
        for token in sent:
            self.get("/api/" + m, token=token)

        def logged():
            lines = [l for l in self.gw.process.lines_snapshot() if m in l]
            return lines if len(lines) >= len(sent) else None
        lines = harness.wait_until(logged, 10.0, 0.02)
        self.assertIsNotNone(lines, "the access log did not show the requests")
        everything = "\n".join(self.gw.process.lines_snapshot())
        for token in sent:
            self.assertNotIn(token, everything)
        for token in sent[:3]:
            self.assertNotIn(token[16:48], everything)  # not even the secret part alone
        self.assertNotIn("Bearer", everything)

    def test_bearer_scheme_is_case_insensitive(self):
        for scheme in ("bearer", "BEARER", "BeArEr"):
            r = self.get("/api/x", headers=[("Authorization", "%s %s" % (scheme, self.reader))])
            self.assertEqual(r.status, 200, (scheme, r))

    def test_token_in_query_or_other_header_is_ignored(self):
        m = unique_marker()
        r = self.get("/api/%s?access_token=%s&token=%s" % (m, self.alice, self.alice),
                     headers=[("X-Api-Key", self.alice), ("Cookie", "token=" + self.alice)])
        self.assert_json_error(r, 401)
        self.assertEqual(r.header_all("WWW-Authenticate"), [CHALLENGE])
        self.assert_not_forwarded(m)

    def invalid_tokens(self):
        real_id = harness.token_id(self.reader)
        good = self.reader
        bad_checksum = good[:-1] + ("0" if good[-1] != "0" else "1")
        cases = {
            "malformed": "tg_notatoken",
            "malformed-long": good + "x",
            "bad checksum": bad_checksum,
            "unknown id": harness.make_token(),
            "wrong secret": harness.make_token(token_id=real_id),
        }
        return cases

    def test_invalid_tokens_are_401_invalid_token_with_identical_bodies(self):
        bodies = {}
        for cause, token in self.invalid_tokens().items():
            with self.subTest(cause=cause):
                m = unique_marker()
                r = self.get("/api/" + m, headers=[("Authorization", "Bearer " + token)])
                self.assert_json_error(r, 401)
                self.assertEqual(r.header_all("WWW-Authenticate"), [CHALLENGE_INVALID])
                self.assert_not_forwarded(m)
                bodies[cause] = r.body
        self.assertEqual(len(set(bodies.values())), 1, "401 bodies differ by cause (an oracle): %r" % bodies)

    def test_expired_rotated_deleted_tokens_are_401_with_the_same_body(self):
        reference = self.get("/api/x", headers=[bearer(harness.make_token())])
        self.assert_json_error(reference, 401)
        # "expiring" was created with --expires 3s before the gateway started.
        def expired_response():
            r = self.get("/api/x", token=self.expiring)
            return r if r.status == 401 else None

        r = harness.wait_until(expired_response, timeout=15)
        self.assertIsNotNone(r, "a token created with --expires 3s still works after 15 s")
        cases = {"expired": r}
        if self.rotated_error is None:
            cases["rotated-out"] = self.get("/api/x", token=self.rotated_old)
        if self.deleted_error is None:
            cases["deleted"] = self.get("/api/x", token=self.deleted)
        for cause, resp in cases.items():
            with self.subTest(cause=cause):
                self.assert_json_error(resp, 401)
                self.assertEqual(resp.header_all("WWW-Authenticate"), [CHALLENGE_INVALID])
                self.assertEqual(resp.body, reference.body)
        # A CLI failure is reported, not skipped silently.
        self.assertIsNone(self.rotated_error, "could not prepare a rotated-out token: %s" % self.rotated_error)
        self.assertIsNone(self.deleted_error, "could not prepare a deleted token: %s" % self.deleted_error)

    def test_valid_token_lacking_permission_is_403_insufficient_scope(self):
        cases = [
            ("GET", "/admin/{m}", self.reader),          # any_of: neither role writer nor group ops
            ("GET", "/billing/{m}", self.writer),        # billing.read only via group ops
            ("POST", "/orders/{m}/refund", self.writer),  # has orders.write but not license pro
            ("GET", "/orders/{m}", self.empty),
        ]
        for method, path, token in cases:
            with self.subTest(method=method, path=path):
                m = unique_marker()
                r = self.request(method, path.format(m=m), token=token)
                self.assert_json_error(r, 403)
                self.assertEqual(r.header_all("WWW-Authenticate"), [CHALLENGE_SCOPE])
                self.assert_not_forwarded(m)

    def test_valid_token_with_rights_is_forwarded(self):
        cases = [
            ("GET", "/admin/a", self.alice),      # via group ops
            ("GET", "/admin/a", self.writer),     # via role writer
            ("GET", "/billing/a", self.alice),    # permission via group
            ("POST", "/orders/7/refund", self.alice),  # orders.write via ops->writer, license pro
            ("HEAD", "/orders/1", self.reader),
            ("GET", "/api/a", self.empty),        # no require: any valid token
        ]
        for method, path, token in cases:
            with self.subTest(method=method, path=path):
                r = self.request(method, path, token=token)
                self.assertEqual(r.status, 200, r)

    def test_no_route_is_404_and_not_forwarded(self):
        m = unique_marker()
        r = self.get("/nothing/" + m, token=self.alice)
        self.assert_json_error(r, 404)
        r = self.get("/nothing/" + m)
        self.assert_json_error(r, 404)
        self.assert_not_forwarded(m)

    def test_wrong_method_is_405_with_allow(self):
        m = unique_marker()
        r = self.request("DELETE", "/orders/" + m, token=self.alice)
        self.assert_json_error(r, 405)
        allow = r.header("Allow")
        self.assertIsNotNone(allow, r)
        self.assertEqual({a.strip() for a in allow.split(",")}, {"GET", "HEAD"})
        self.assert_not_forwarded(m)

    def test_public_route_without_token(self):
        r = self.get("/public/x")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["target"], "/public/x")

    def test_public_route_with_invalid_token_is_treated_as_absent(self):
        r = self.get("/public/x", headers=[("Authorization", "Bearer " + harness.make_token())])
        self.assertEqual(r.status, 200, r)
        got = echo_headers(r)
        self.assertEqual([n for n, _ in got if n.lower().startswith("x-auth-")], [], got)

    def test_public_route_with_valid_token_adds_identity(self):
        r = self.get("/public/x", token=self.reader)
        self.assertEqual(r.status, 200, r)
        got = echo_headers(r)
        self.assertEqual(headers_named(got, "X-Auth-Subject"), [harness.token_id(self.reader)])
        self.assertEqual(headers_named(got, "X-Auth-Roles"), ["reader"])


class ForwardingTest(GatewayTestCase):
    """What the upstream receives (README.md, "Data plane")."""

    @classmethod
    def create_tokens(cls):
        cls.alice = cls.gw.create_token("alice", roles=["reader"], groups=["ops"], permissions=["zeta.custom"],
                                        licenses=["pro", "enterprise"])
        cls.empty = cls.gw.create_token("empty")

    def identity(self, got):
        return {n.lower(): headers_named(got, n) for n in
                ("X-Auth-Subject", "X-Auth-Name", "X-Auth-Roles", "X-Auth-Groups", "X-Auth-Permissions",
                 "X-Auth-Licenses")}

    def test_identity_headers_carry_effective_rights_sorted(self):
        r = self.get("/api/x", token=self.alice)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.identity(echo_headers(r)), {
            "x-auth-subject": [harness.token_id(self.alice)],
            "x-auth-name": ["alice"],
            "x-auth-roles": ["reader,writer"],
            "x-auth-groups": ["ops"],
            "x-auth-permissions": ["billing.read,orders.read,orders.write,zeta.custom"],
            "x-auth-licenses": ["enterprise,pro"],
        })

    def test_empty_sets_send_empty_headers(self):
        r = self.get("/api/x", token=self.empty)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.identity(echo_headers(r)), {
            "x-auth-subject": [harness.token_id(self.empty)],
            "x-auth-name": ["empty"],
            "x-auth-roles": [""],
            "x-auth-groups": [""],
            "x-auth-permissions": [""],
            "x-auth-licenses": [""],
        })

    SPOOF = [("X-Auth-Subject", "admin"), ("x-auth-roles", "writer"), ("X-AUTH-PERMISSIONS", "everything"),
             ("X-Auth-Custom", "1"), ("X_Auth_Subject", "admin"), ("x-auth_groups", "ops")]

    def test_spoofed_identity_never_reaches_upstream_on_public_route(self):
        r = self.get("/public/x", headers=self.SPOOF)
        self.assertEqual(r.status, 200, r)
        got = echo_headers(r)
        # '_' for '-' too: CGI-style upstreams read X_Auth_Subject as X-Auth-Subject.
        self.assertEqual([(n, v) for n, v in got if n.lower().replace("_", "-").startswith("x-auth-")], [])

    def test_spoofed_identity_never_reaches_upstream_on_protected_route(self):
        r = self.get("/api/x", token=self.empty, headers=self.SPOOF)
        self.assertEqual(r.status, 200, r)
        ident = self.identity(echo_headers(r))
        self.assertEqual(ident["x-auth-subject"], [harness.token_id(self.empty)])
        self.assertEqual(ident["x-auth-roles"], [""])
        self.assertEqual(ident["x-auth-permissions"], [""])
        self.assertEqual(headers_named(echo_headers(r), "X-Auth-Custom"), [])
        self.assertEqual([n for n, _ in echo_headers(r) if "_" in n], [])

    def test_connection_header_cannot_strip_gateway_headers(self):
        hdrs = [("Connection", "X-Auth-Subject, X-Auth-Roles, X-Forwarded-For, X-Request-Id")]
        r = self.get("/api/x", token=self.alice, headers=hdrs)
        self.assertEqual(r.status, 200, r)
        got = echo_headers(r)
        self.assertEqual(headers_named(got, "X-Auth-Subject"), [harness.token_id(self.alice)])
        self.assertEqual(headers_named(got, "X-Auth-Roles"), ["reader,writer"])
        self.assertEqual(headers_named(got, "X-Forwarded-For"), ["127.0.0.1"])
        self.assertEqual(len(headers_named(got, "X-Request-Id")), 1)

    def test_hop_by_hop_headers_are_removed(self):
        hdrs = [("Connection", "keep-alive, X-Custom-Hop"), ("X-Custom-Hop", "1"), ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"), ("Trailer", "X-Foo"), ("Proxy-Authorization", "Basic eDp5"),
                ("Proxy-Connection", "keep-alive"), ("Upgrade", "h2c"), ("X-Kept", "yes")]
        r = self.get("/api/x", token=self.alice, headers=hdrs)
        self.assertEqual(r.status, 200, r)
        got = echo_headers(r)
        for name in ("X-Custom-Hop", "Keep-Alive", "TE", "Trailer", "Proxy-Authorization", "Proxy-Connection",
                     "Upgrade"):
            self.assertEqual(headers_named(got, name), [], name)
        for value in headers_named(got, "Connection"):
            self.assertNotIn("x-custom-hop", value.lower())
        self.assertEqual(headers_named(got, "X-Kept"), ["yes"])

    def test_authorization_not_forwarded_by_default(self):
        r = self.get("/api/x", token=self.alice)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(headers_named(echo_headers(r), "Authorization"), [])

    def test_forwarded_headers(self):
        hdrs = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "evil.test")]
        with self.gw.connect() as c:
            r = c.request("GET", "/api/x", hdrs + [bearer(self.alice)], host="shop.example:8443")
        self.assertEqual(r.status, 200, r)
        got = echo_headers(r)
        self.assertEqual(headers_named(got, "X-Forwarded-For"), ["127.0.0.1"])
        self.assertEqual(headers_named(got, "X-Forwarded-Proto"), ["http"])
        self.assertEqual(headers_named(got, "X-Forwarded-Host"), ["shop.example:8443"])

    def test_valid_request_id_is_kept_and_returned(self):
        rid = "req-1.2_" + unique_marker()
        r = self.get("/api/x", token=self.alice, headers=[("X-Request-Id", rid)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(headers_named(echo_headers(r), "X-Request-Id"), [rid])
        self.assertEqual(r.header_all("X-Request-Id"), [rid])

    def test_invalid_request_id_is_replaced(self):
        for bad in ("has space", "x" * 129, "semi;colon", "<script>"):
            with self.subTest(bad=bad):
                r = self.get("/api/x", token=self.alice, headers=[("X-Request-Id", bad)])
                self.assertEqual(r.status, 200, r)
                sent = headers_named(echo_headers(r), "X-Request-Id")
                self.assertEqual(len(sent), 1, sent)
                self.assertNotEqual(sent[0], bad)
                self.assertRegex(sent[0], REQUEST_ID_RE)
                self.assertEqual(r.header_all("X-Request-Id"), sent)

    def test_missing_request_id_is_generated_and_unique(self):
        ids = set()
        for _ in range(3):
            r = self.get("/public/x")
            sent = headers_named(echo_headers(r), "X-Request-Id")
            self.assertEqual(len(sent), 1, sent)
            self.assertRegex(sent[0], REQUEST_ID_RE)
            self.assertEqual(r.header_all("X-Request-Id"), sent)
            ids.add(sent[0])
        self.assertEqual(len(ids), 3)

    def test_request_id_on_error_responses(self):
        rid = "err-" + unique_marker()
        r = self.get("/api/x", headers=[("X-Request-Id", rid)])
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header_all("X-Request-Id"), [rid])

    def test_keep_alive_serves_many_requests_on_one_connection(self):
        with self.gw.connect() as c:
            for i in range(20):
                r = c.request("GET", "/api/k%d" % i, [bearer(self.alice)])
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["target"], "/api/k%d" % i)

    def test_upstream_connections_are_reused(self):
        before = harness.upstream_log(self.upstream)["connections"]
        with self.gw.connect() as c:
            for i in range(20):
                self.assertEqual(c.request("GET", "/api/reuse%d" % i, [bearer(self.alice)]).status, 200)
        opened = harness.upstream_log(self.upstream)["connections"] - before - 1  # -1: our /__log query
        self.assertLessEqual(opened, 2, "20 sequential requests opened %d upstream connections" % opened)

    def test_pipelined_requests_are_answered_in_order(self):
        with self.gw.connect() as c:
            c.send(b"".join(harness.build_request("GET", "/api/p%d" % i, [bearer(self.alice)]) for i in range(5)))
            for i in range(5):
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["target"], "/api/p%d" % i)

    def test_connection_close_is_honoured(self):
        with self.gw.connect() as c:
            r = c.request("GET", "/public/x", [("Connection", "close")])
            self.assertEqual(r.status, 200, r)
            self.assertTrue(c.is_closed(), "gateway kept the connection open after Connection: close")

    def test_request_body_with_content_length_is_forwarded(self):
        body = os.urandom(1000)
        r = self.request("POST", "/api/upload", token=self.alice, body=body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["body_bytes"], 1000)
        self.assertEqual(r.json()["body_sha256"], hashlib.sha256(body).hexdigest())

    def test_empty_post_keeps_content_length_zero(self):
        # Some upstreams answer 411 to a POST without a length.
        r = self.request("POST", "/api/empty", token=self.alice, headers=[("Content-Length", "0")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(headers_named(echo_headers(r), "Content-Length"), ["0"])
        self.assertEqual(r.json()["body_bytes"], 0)

    def check_chunked_upload(self, wire, expected):
        with self.gw.connect() as c:
            c.send(harness.build_request("POST", "/api/chunked", [bearer(self.alice),
                                                                  ("Transfer-Encoding", "chunked")]) + wire)
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        echo = r.json()
        self.assertEqual(echo["body_bytes"], len(expected))
        self.assertEqual(echo["body_sha256"], hashlib.sha256(expected).hexdigest())
        got = echo_headers(r)
        te = headers_named(got, "Transfer-Encoding")
        cl = headers_named(got, "Content-Length")
        # Re-framed: exactly one framing, and a valid one.
        self.assertTrue((te == ["chunked"] and cl == []) or (te == [] and cl == [str(len(expected))]), got)

    def test_chunked_request_body_is_reframed(self):
        self.check_chunked_upload(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world")

    def test_chunked_request_with_extension_and_trailer(self):
        self.check_chunked_upload(b"5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Trailer: t\r\n\r\n",
                                  b"hello, world!!!")

    def test_chunked_response_is_delivered(self):
        r = self.get("/__download?bytes=300000")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, (bytes(range(256)) * 1200)[:300000])

    def test_head_has_no_body_and_keeps_connection_usable(self):
        with self.gw.connect() as c:
            r = c.request("HEAD", "/public/h")
            self.assertEqual(r.status, 200, r)
            r = c.request("HEAD", "/__download?bytes=5000")
            self.assertEqual(r.status, 200, r)
            r = c.request("GET", "/public/after-head")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["target"], "/public/after-head")

    def test_204_and_304_have_no_body(self):
        with self.gw.connect() as c:
            for code in (204, 304):
                r = c.request("GET", "/__status/%d" % code)
                self.assertEqual(r.status, code, r)
                self.assertEqual(r.header_all("Transfer-Encoding"), [])
            r = c.request("GET", "/public/after-204-304")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["target"], "/public/after-204-304")

    def test_upstream_status_is_passed_through(self):
        for code in (201, 404, 418, 500, 503):
            with self.subTest(code=code):
                r = self.get("/__status/%d" % code)
                self.assertEqual(r.status, code, r)

    def test_upstream_truncated_response_closes_client_connection(self):
        with self.gw.connect() as c:
            c.send(harness.build_request("GET", "/__close"))
            try:
                r = c.read_response()
                self.fail("a truncated upstream response was delivered as complete: %r" % r)
            except harness.ConnectionClosed:
                pass
            except ConnectionResetError:
                pass
        self.assert_gateway_alive()

    def test_expect_100_continue_authorized(self):
        body = b"0123456789"
        with self.gw.connect() as c:
            c.send(harness.build_request("POST", "/api/expect", [bearer(self.alice), ("Expect", "100-continue"),
                                                                 ("Content-Length", "10")]))
            r = c.read_response()
            self.assertEqual(r.status, 100, "expected 100 Continue before sending the body, got %r" % r)
            c.send(body)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["body_bytes"], 10)
            self.assertEqual(r.json()["body_sha256"], hashlib.sha256(body).hexdigest())

    def test_expect_100_continue_unauthorized_gets_401_and_no_100(self):
        m = unique_marker()
        with self.gw.connect() as c:
            c.send(harness.build_request("POST", "/api/" + m, [("Expect", "100-continue"),
                                                              ("Content-Length", "1000000")]))
            r = c.read_response()
            self.assertEqual(r.status, 401, "expected 401 without any 100 Continue, got %r" % r)
        self.assert_not_forwarded(m)

    def test_websocket_echo(self):
        key = harness.base64.b64encode(os.urandom(16)).decode()
        with self.gw.connect() as c:
            c.send(harness.build_request("GET", "/__ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                          ("Sec-WebSocket-Key", key),
                                                          ("Sec-WebSocket-Version", "13")]))
            r = c.read_response()
            self.assertEqual(r.status, 101, r)
            self.assertEqual((r.header("Upgrade") or "").lower(), "websocket")
            self.assertEqual(r.header("Sec-WebSocket-Accept"), harness.ws_accept_value(key))
            for message in (b"hello through tokengate", os.urandom(300).hex().encode()):
                c.send(harness.ws_masked_frame(message))
                fin, opcode, payload = harness.ws_read_frame(c)
                self.assertTrue(fin)
                self.assertEqual(opcode, 1)
                self.assertEqual(payload, message)


class IdentityConfigTest(GatewayTestCase):
    """identity.header_prefix and identity.forward_authorization."""

    identity_config = {"header_prefix": "X-Tg-", "forward_authorization": "true"}

    @classmethod
    def create_tokens(cls):
        cls.token = cls.gw.create_token("prefixed", roles=["reader"])

    def test_prefix_names_the_identity_headers_and_is_stripped(self):
        spoof = [("X-Tg-Subject", "admin"), ("x-tg-roles", "writer"), ("X-Tg-Other", "1")]
        r = self.get("/api/x", token=self.token, headers=spoof)
        self.assertEqual(r.status, 200, r)
        got = echo_headers(r)
        self.assertEqual(headers_named(got, "X-Tg-Subject"), [harness.token_id(self.token)])
        self.assertEqual(headers_named(got, "X-Tg-Name"), ["prefixed"])
        self.assertEqual(headers_named(got, "X-Tg-Roles"), ["reader"])
        self.assertEqual(headers_named(got, "X-Tg-Permissions"), ["orders.read"])
        self.assertEqual(headers_named(got, "X-Tg-Other"), [])
        self.assertEqual(headers_named(got, "X-Auth-Subject"), [])

    def test_spoofed_prefix_stripped_on_public_route(self):
        r = self.get("/public/x", headers=[("X-Tg-Subject", "admin")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual([n for n, _ in echo_headers(r) if n.lower().startswith("x-tg-")], [])

    def test_authorization_forwarded_when_configured(self):
        r = self.get("/api/x", token=self.token)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(headers_named(echo_headers(r), "Authorization"), ["Bearer " + self.token])


class CanonicalPathTest(GatewayTestCase):
    """docs/configuration.md, "Canonical path": authorize and forward the same canonical path."""

    @classmethod
    def create_tokens(cls):
        cls.token = cls.gw.create_token("paths")

    def forwarded_target(self, target, token=True):
        r = self.get(target, token=self.token if token else None)
        self.assertEqual(r.status, 200, (target, r))
        return r.json()["target"]

    def test_tricks_arrive_in_canonical_form(self):
        m = unique_marker()
        cases = [
            ("/public/../api/%s?q=1" % m, "/api/%s?q=1" % m),
            ("/public/%%2e%%2e/api/%s?q=1" % m, "/api/%s?q=1" % m),
            ("/public/%%2E%%2E/api/%s" % m, "/api/%s" % m),
            ("//api//%s" % m, "/api/%s" % m),
            ("/api/./%s/." % m, "/api/%s/" % m),
            ("/api/a/b/../../%s" % m, "/api/%s" % m),
            ("/api/%%41%%62c-%s" % m, "/api/Abc-%s" % m),
            ("/api/%%7e%%2d%%5f%%2e%s" % m, "/api/~-_.%s" % m),
            ("/api/%%3a%%40%s" % m, "/api/%%3A%%40%s" % m),
            ("/api/%s?next=%%2F..%%2F&x=%%41" % m, "/api/%s?next=%%2F..%%2F&x=%%41" % m),
        ]
        for sent, expected in cases:
            with self.subTest(sent=sent):
                self.assertEqual(self.forwarded_target(sent), expected)

    def test_dot_segments_out_of_public_route_need_a_token(self):
        for trick in ("/public/../api/%s", "/public/%%2e%%2e/api/%s", "/public/%%2e./api/%s"):
            with self.subTest(trick=trick):
                m = unique_marker()
                r = self.get(trick % m)
                self.assertEqual(r.status, 401, r)
                self.assert_not_forwarded(m)

    def test_encoded_dot_segments_into_public_route(self):
        # Authorization and forwarding see the same path: a protected prefix collapsing
        # into a public one is forwarded as the public path, never the raw one.
        m = unique_marker()
        self.assertEqual(self.forwarded_target("/api/%%2e%%2e/public/%s" % m, token=False), "/public/%s" % m)

    def test_rejected_targets_are_400_and_not_forwarded(self):
        cases = [
            "/api/{m}%2Fx", "/api/{m}%2fx", "/api/{m}%5Cx", "/api/{m}%5cx", "/api/{m}\\x", "/api/{m}%00",
            "/api/{m}%zz", "/api/{m}%4", "/../api/{m}", "/api/../../{m}", "/api/{m}#frag",
            "http://gateway.test/api/{m}", "/api/{m}\x7f", "/api/{m}\xff",
        ]
        for pattern in cases:
            with self.subTest(target=pattern):
                m = unique_marker()
                target = pattern.format(m=m)
                with self.gw.connect() as c:
                    c.send(("GET %s HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer %s\r\n\r\n"
                            % (target, self.token)).encode("latin-1"))
                    r = c.read_response()
                self.assertEqual(r.status, 400, r)
                self.assert_not_forwarded(m)

    def test_connect_is_400(self):
        with self.gw.connect() as c:
            c.send(b"CONNECT upstream.test:443 HTTP/1.1\r\nHost: upstream.test:443\r\n\r\n")
            r = c.read_response()
        self.assertEqual(r.status, 400, r)


class ExpiryOnKeepAliveTest(GatewayTestCase):
    """An expired token fails on the next request over an existing connection."""

    @classmethod
    def create_tokens(cls):
        cls.token = cls.gw.create_token("short", expires="8s")

    def test_expiry_applies_to_existing_connection(self):
        with self.gw.connect() as c:
            r = c.request("GET", "/api/first", [bearer(self.token)])
            self.assertEqual(r.status, 200, "token with --expires 8s was already refused at start: %r" % r)
            statuses = []

            def denied():
                resp = c.request("GET", "/api/again", [bearer(self.token)])
                statuses.append(resp.status)
                return resp if resp.status != 200 else None

            r = harness.wait_until(denied, timeout=20, interval=0.25)
            self.assertIsNotNone(r, "token still accepted 20 s after an 8 s expiry")
            self.assertEqual(r.status, 401, r)
            self.assertEqual(r.header_all("WWW-Authenticate"), [CHALLENGE_INVALID])
            self.assertEqual(set(statuses[:-1]), {200} if statuses[:-1] else set())


class UpstreamFailureTest(GatewayTestCase):
    limits = {"upstream_timeout": "500ms", "upstream_connect_timeout": "2s"}

    def test_upstream_down_is_502_and_gateway_keeps_serving(self):
        for _ in range(3):
            r = self.get("/down/x")
            self.assert_json_error(r, 502)
        self.assert_gateway_alive()

    def test_slow_upstream_is_504_and_gateway_keeps_serving(self):
        start = time.monotonic()
        r = self.get("/__slow?ms=3000")
        elapsed = time.monotonic() - start
        self.assert_json_error(r, 504)
        self.assertLess(elapsed, 2.5, "504 came after %.2fs with upstream_timeout 500ms" % elapsed)
        self.assert_gateway_alive()

    def test_fast_enough_upstream_is_not_cut(self):
        r = self.get("/__slow?ms=100")
        self.assertEqual(r.status, 200, r)


class ConnectTimeoutTest(GatewayTestCase):
    """An upstream that never completes the TCP handshake (its accept queue is
    full, so the kernel drops our SYNs) is a 502 after upstream_connect_timeout."""

    limits = {"upstream_connect_timeout": "500ms"}

    @classmethod
    def make_gateway(cls, upstream_port):
        cls.blackhole = socket.socket()
        cls.blackhole.bind(("127.0.0.1", 0))
        cls.blackhole.listen(0)
        cls.fillers = []
        for _ in range(8):  # backlog 0 queues one or two connections; then SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(cls.blackhole.getsockname())
            cls.fillers.append(s)
        return harness.Gateway(gateway_body(upstream_port, cls.blackhole.getsockname()[1]),
                               limits=cls.limits, workers=cls.workers)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            for s in cls.fillers:
                s.close()
            cls.blackhole.close()

    def test_hanging_connect_is_502_after_the_connect_timeout(self):
        start = time.monotonic()
        r = self.get("/down/hang")
        elapsed = time.monotonic() - start
        self.assert_json_error(r, 502)
        self.assertGreaterEqual(elapsed, 0.45, "502 before the connect timeout: not a hanging connect")
        self.assertLess(elapsed, 2.0, "502 came after %.2fs with upstream_connect_timeout 500ms" % elapsed)
        self.assert_gateway_alive()


class ClientTimeoutScopeTest(GatewayTestCase):
    """The client's header and idle timeouts run only while the gateway waits on
    the client, not while a slow upstream works on the request."""

    limits = {"header_timeout": "500ms", "idle_timeout": "500ms", "upstream_timeout": "5s"}

    def test_client_is_not_cut_while_a_slow_upstream_answers(self):
        with self.gw.connect() as c:
            for _ in range(2):  # and the keep-alive connection still serves afterwards
                start = time.monotonic()
                r = c.request("GET", "/__slow?ms=1500")
                self.assertEqual(r.status, 200, r)
                self.assertGreaterEqual(time.monotonic() - start, 1.4)


class UpstreamTimeoutScopeTest(GatewayTestCase):
    """upstream_timeout runs only while the gateway waits on the upstream, not while
    a slow client sends its request body."""

    limits = {"header_timeout": "5s", "idle_timeout": "5s", "upstream_timeout": "500ms"}

    def test_upstream_is_not_cut_while_the_client_sends_slowly(self):
        body = b"x" * 2000
        m = unique_marker()
        with self.gw.connect() as c:
            c.send(harness.build_request("POST", "/public/" + m, [("Content-Length", str(len(body)))]) + body[:1000])
            time.sleep(1.5)  # the slow client itself, not a synchronisation
            c.send(body[1000:])
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["body_sha256"], hashlib.sha256(body).hexdigest())


class UpstreamRestartTest(GatewayTestCase):
    """Pooled upstream connections that the upstream closed while idle (a restart, or
    an upstream keep-alive timeout shorter than ours) are retried on a fresh
    connection, never on another pooled one that is just as dead."""

    limits = None
    workers = 1  # every client connection shares one upstream pool

    def fill_pool(self, n):
        """Leaves n idle connections in the gateway's pool: n concurrent slow requests."""
        statuses = []

        def one():
            statuses.append(self.get("/__slow?ms=300").status)

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(statuses, [200] * n)
        self.assertGreaterEqual(harness.upstream_log(self.upstream)["connections"], n)

    def restart_upstream(self):
        port = self.upstream.port
        self.upstream.stop()  # its process exits: every connection it held is closed
        # On the class: later tests and tearDownClass use (and stop) the new one.
        type(self).upstream = harness.Process(
            [harness.DEMO_UPSTREAM_BIN, "--listen", "127.0.0.1:%d" % port], "tokengate-demo-upstream")

    def test_get_after_upstream_restart_is_retried_on_a_fresh_connection(self):
        self.fill_pool(6)
        self.restart_upstream()
        for i in range(6):
            r = self.get("/public/after-restart-%d" % i)
            self.assertEqual(r.status, 200, r)
        self.assert_gateway_alive()

    def test_post_after_upstream_restart_is_not_sent_on_a_dead_connection(self):
        self.fill_pool(6)
        self.restart_upstream()
        for i in range(6):
            r = self.request("POST", "/public/post-after-restart-%d" % i, body=b"payload")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["body_bytes"], 7)


class BlockedLogReaderTest(GatewayTestCase):
    """A stderr nobody reads (a stuck log shipper, a full pipe) must not stall the
    data plane: access-log lines are written by their own thread, never a worker."""

    def test_requests_flow_while_stderr_is_blocked(self):
        self.gw.process.pause_reading()
        try:
            # Each access line is ~300 bytes: 3,000 requests overflow a 64 KiB pipe
            # several times over. A worker writing stderr itself would block here and
            # the connection would time out.
            marker = unique_marker()
            with self.gw.connect(timeout=5.0) as c:
                for i in range(3000):
                    r = c.request("GET", "/public/%s-%d" % (marker, i))
                    self.assertEqual(r.status, 200, r)
        finally:
            self.gw.process.resume_reading()
        last = "/public/%s-2999" % marker
        self.assertIsNotNone(self.gw.wait_log(lambda line: last in line, timeout=20),
                             "the blocked access-log lines did not arrive once stderr was read again")


class ScriptedUpstream:
    """A raw TCP upstream on 127.0.0.1:0 that answers each request with what
    `script(index_on_connection, request_head, conn)` does; counts request heads by
    target."""

    def __init__(self, script):
        self.script = script
        self.targets = []
        self.accepted = 0  # TCP connections accepted
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
        try:
            self._exchange(conn)
        except OSError:
            pass  # the gateway closed the connection: nothing left to answer

    def _exchange(self, conn):
        buf = b""
        index = 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                target = head.split(b" ")[1].decode()
                with self.lock:
                    self.targets.append(target)
                if not self.script(index, head, conn):
                    return
                index += 1

    def count(self, target):
        with self.lock:
            return self.targets.count(target)

    def stop(self):
        self.sock.close()


class FaultyUpstreamTest(unittest.TestCase):
    """Upstreams that misbehave on a pooled keep-alive connection must not make the
    gateway send a request twice or hand one client's bytes to another."""

    # What a faulty upstream sends later on the connection, hoping it answers the
    # next request.
    FORGED = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"

    @staticmethod
    def answer_with_target(head, conn):
        body = b"real:" + head.split(b" ")[1]
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    def start(self, script):
        self.upstream = ScriptedUpstream(script)
        self.addCleanup(self.upstream.stop)
        self.gw = harness.Gateway(
            "upstreams:\n  raw:\n    url: http://127.0.0.1:%d\n" % self.upstream.port
            + harness.DEFAULT_ROLES
            + "routes:\n  - path: /**\n    upstream: raw\n    public: true\n",
            workers=1)
        self.gw.start()
        self.addCleanup(self.gw.stop)

    def test_request_answered_with_1xx_then_close_is_not_retried(self):
        def script(index, head, conn):
            if index == 0:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return True
            # The second request on the (now pooled) connection: an interim response,
            # then the upstream goes away. It has seen the request.
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
            return False

        self.start(script)
        with self.gw.connect() as c:
            self.assertEqual(c.request("GET", "/first").status, 200)
            r = c.request("GET", "/second")
        self.assertEqual(r.status, 502, r)
        self.assertEqual(self.upstream.count("/second"), 1, "the request was sent upstream twice")

    def test_stray_body_after_head_response_never_answers_the_next_request(self):
        stray = threading.Event()
        sent = threading.Event()

        def script(index, head, conn):
            if head.startswith(b"HEAD"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
                # A faulty upstream sends the body anyway, after the head went out.
                stray.wait(10)
                conn.sendall(self.FORGED)
                sent.set()
                return True
            return self.answer_with_target(head, conn)

        self.start(script)
        with self.gw.connect() as c:
            r = c.request("HEAD", "/head")
            self.assertEqual(r.status, 200, r)
            stray.set()
            self.assertTrue(sent.wait(10))
            r = c.request("GET", "/next")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"real:/next")

    def test_response_with_both_transfer_encoding_and_content_length_is_refused(self):
        # RFC 9112 §6.3: a response framed both ways is a response-splitting attempt.
        # Taking the Content-Length and pooling the connection would let the rest
        # (here a forged response sent a moment later) answer the next request.
        answered = threading.Event()

        def script(index, head, conn):
            if b" /first " in head:
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello")
                answered.wait(10)
                conn.sendall(self.FORGED)
                return True
            return self.answer_with_target(head, conn)

        self.start(script)
        with self.gw.connect() as c:
            first = c.request("GET", "/first")
        answered.set()
        with self.gw.connect() as c:
            second = c.request("GET", "/next")
        self.assertEqual(second.body, b"real:/next", "another request's client got the forged response")
        self.assertEqual(first.status, 502, first)
        self.assertEqual(first.json()["error"], "bad_gateway")


class LimitsTest(GatewayTestCase):
    limits = {"max_body_bytes": 1024, "max_header_bytes": 4096}

    def test_body_over_limit_is_413(self):
        m = unique_marker()
        r = self.request("POST", "/public/" + m, body=b"x" * 2048)
        self.assert_json_error(r, 413)
        self.assertEqual(harness.upstream_targets(self.upstream, m, complete_only=True), [])

    def test_chunked_body_over_limit_is_413(self):
        m = unique_marker()
        chunk = b"x" * 600
        wire = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
        with self.gw.connect() as c:
            c.send(harness.build_request("POST", "/public/" + m, [("Transfer-Encoding", "chunked")]) + wire)
            r = c.read_response()
        self.assert_json_error(r, 413)
        self.assertEqual(harness.upstream_targets(self.upstream, m, complete_only=True), [])

    def test_body_at_limit_passes(self):
        r = self.request("POST", "/public/at-limit", body=b"y" * 1024)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["body_bytes"], 1024)

    def test_header_over_limit_is_431(self):
        m = unique_marker()
        r = self.get("/public/" + m, headers=[("X-Big", "a" * 5000)])
        self.assert_json_error(r, 431)
        self.assert_not_forwarded(m)

    def test_many_headers_over_limit_is_431(self):
        m = unique_marker()
        r = self.get("/public/" + m, headers=[("X-H%d" % i, "v" * 50) for i in range(100)])
        self.assert_json_error(r, 431)
        self.assert_not_forwarded(m)

    def test_header_under_limit_passes(self):
        r = self.get("/public/small", headers=[("X-Big", "a" * 2000)])
        self.assertEqual(r.status, 200, r)


class MaxConnectionsTest(unittest.TestCase):
    """limits.max_connections counts client connections on all workers together
    (the kernel spreads connections over the workers unevenly), and a reload
    changes it for new connections. Over the limit, a connection is closed at once."""

    def body(self, limit):
        return ("limits:\n  max_connections: %d\n" % limit
                + "upstreams:\n  echo: { url: http://127.0.0.1:%d }\n" % self.upstream.port
                + harness.DEFAULT_ROLES
                + "routes:\n  - path: /**\n    upstream: echo\n    public: true\n")

    def setUp(self):
        self.upstream = harness.start_upstream()
        self.addCleanup(self.upstream.stop)
        self.gw = harness.Gateway(self.body(2), workers=2)
        self.gw.start()
        self.addCleanup(self.gw.stop)
        self.held = []
        self.addCleanup(lambda: [c.close() for c in self.held])

    def hold(self):
        """A new connection that got a response (so the gateway counts it), kept open."""
        c = self.gw.connect()
        self.held.append(c)
        r = c.request("GET", "/held")
        self.assertEqual(r.status, 200, r)

    def refused(self):
        with self.gw.connect() as c:
            try:
                c.send(harness.build_request("GET", "/over", []))
            except OSError:
                return True
            return c.is_closed(5.0)

    def served(self):
        try:
            with self.gw.connect() as c:
                return c.request("GET", "/again").status == 200
        except (OSError, harness.ConnectionClosed):
            return False

    def reload(self, limit):
        start = len(self.gw.log_lines())
        self.gw.write_config(self.body(limit))
        line = self.gw.wait_log(lambda l: "config reloaded" in l, timeout=10.0, start=start)
        self.assertIsNotNone(line, self.gw.process.stderr_text())

    def test_limit_counts_the_connections_of_all_workers(self):
        self.hold()
        self.hold()
        for _ in range(6):
            self.assertTrue(self.refused(), "a third connection was served with max_connections 2")
        self.held.pop(0).close()
        self.assertTrue(harness.wait_until(self.served, timeout=10), "no connection served after one closed")
        self.assertTrue(self.gw.wait_log(lambda l: "max_connections (2) reached" in l, timeout=5))

    def test_reload_changes_the_limit(self):
        self.hold()
        self.reload(1)
        for _ in range(4):
            self.assertTrue(self.refused(), "a second connection was served after a reload to max_connections 1")
        self.reload(3)
        self.hold()
        self.hold()
        self.assertTrue(self.refused())


class SlowClientTest(GatewayTestCase):
    """Slow-loris and idle connections are cut by header_timeout and idle_timeout."""
    limits = {"header_timeout": "1s", "idle_timeout": "1s"}

    def _closed_within(self, sock, seconds):
        """Reads until the gateway closes the connection; the elapsed time, or None
        if it is still open after `seconds`."""
        start = time.monotonic()
        sock.settimeout(seconds)
        try:
            while sock.recv(65536):
                pass
        except socket.timeout:
            return None
        except ConnectionResetError:
            pass
        return time.monotonic() - start

    def test_drip_fed_head_is_cut_at_header_timeout(self):
        m = unique_marker()
        sock = socket.create_connection((self.gw.host, self.gw.port))
        with sock:
            sock.sendall(("GET /public/%s HTTP/1.1\r\nHost: a\r\n" % m).encode())
            start = time.monotonic()
            # One header byte every 100 ms keeps the connection busy but never
            # completes the head; the deadline is for the whole head.
            cut = False
            while time.monotonic() - start < 5.0:
                try:
                    sock.sendall(b"X")
                except OSError:
                    cut = True
                    break
                sock.settimeout(0.1)
                try:
                    if sock.recv(65536) == b"":
                        cut = True
                        break
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    cut = True
                    break
            elapsed = time.monotonic() - start
        self.assertTrue(cut, "the gateway kept a drip-fed head open for 5 s")
        self.assertLess(elapsed, 3.0)
        self.assert_not_forwarded(m)

    def test_idle_keep_alive_connection_is_closed(self):
        with self.gw.connect() as c:
            c.send(harness.build_request("GET", "/public/idle", []))
            self.assertEqual(c.read_response().status, 200)
            elapsed = self._closed_within(c.sock, 5.0)
        self.assertIsNotNone(elapsed, "an idle keep-alive connection stayed open for 5 s")
        self.assertLess(elapsed, 3.0)

    def test_silent_new_connection_is_closed(self):
        sock = socket.create_connection((self.gw.host, self.gw.port))
        with sock:
            elapsed = self._closed_within(sock, 5.0)
        self.assertIsNotNone(elapsed, "a connection that never sent a byte stayed open for 5 s")


class StreamingTest(GatewayTestCase):
    """100 MiB each way through the gateway without the gateway's memory growing with it."""

    SIZE = 100 * MIB
    BUDGET_KIB = 64 * 1024

    @classmethod
    def create_tokens(cls):
        cls.token = cls.gw.create_token("streamer")

    @classmethod
    def gateway_env(cls):
        # Under AddressSanitizer freed blocks sit in a quarantine (256 MiB by default)
        # that counts in RSS; keep it small so RSS measures what the gateway holds.
        # No effect on a build without ASan.
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "quarantine_size_mb=1"]))
        return env

    def setUp(self):
        # Warm up (worker threads, upstream pool) before taking the idle figure.
        for _ in range(3):
            self.assertEqual(self.get("/api/warm", token=self.token).status, 200)
        self.idle_kib = self.gw.process.rss_kib()
        self.peak_kib = self.idle_kib
        self.sampling = True
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def _sample(self):
        while self.sampling:
            try:
                self.peak_kib = max(self.peak_kib, self.gw.process.rss_kib())
            except (OSError, RuntimeError):
                return
            time.sleep(0.02)

    def tearDown(self):
        self.sampling = False
        self.sampler.join(5)
        super().tearDown()

    def assert_rss_bounded(self):
        self.sampling = False
        self.sampler.join(5)
        grew = self.peak_kib - self.idle_kib
        self.assertLess(grew, self.BUDGET_KIB, "gateway RSS grew by %d KiB (idle %d KiB) moving %d MiB"
                        % (grew, self.idle_kib, self.SIZE // MIB))

    def test_100mib_upload_streams(self):
        block = os.urandom(MIB)
        digest = hashlib.sha256()
        with self.gw.connect(timeout=60) as c:
            c.send(harness.build_request("POST", "/api/upload", [bearer(self.token),
                                                                 ("Content-Length", str(self.SIZE))]))
            for _ in range(self.SIZE // MIB):
                c.send(block)
                digest.update(block)
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["body_bytes"], self.SIZE)
        self.assertEqual(r.json()["body_sha256"], digest.hexdigest())
        self.assert_rss_bounded()

    def test_100mib_download_streams(self):
        self.check_download("/__download?bytes=%d" % self.SIZE)  # upstream sends it chunked

    def test_100mib_download_with_content_length_streams(self):
        self.check_download("/__download?bytes=%d&cl=1" % self.SIZE)

    def check_download(self, target):
        got = hashlib.sha256()
        count = [0]

        def sink(data):
            got.update(data)
            count[0] += len(data)
            if count[0] >= 8 * MIB and not stalled[0]:
                # Stop reading for a moment: a gateway that does not apply back-pressure
                # keeps reading the upstream into memory now.
                stalled[0] = True
                time.sleep(1.0)

        stalled = [False]
        with self.gw.connect(timeout=60) as c:
            c.send(harness.build_request("GET", target, [bearer(self.token)]))
            r = c.read_response(sink=sink)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(count[0], self.SIZE)
        expected = hashlib.sha256()
        block = bytes(range(256)) * 256
        for _ in range(self.SIZE // len(block)):
            expected.update(block)
        self.assertEqual(got.hexdigest(), expected.hexdigest())
        self.assert_rss_bounded()


if __name__ == "__main__":
    unittest.main()
