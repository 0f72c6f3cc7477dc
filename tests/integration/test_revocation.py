"""Revocation is immediate (README.md, "Admin API"): a client keeps one keep-alive
connection to the PUBLIC listener, a token is deleted, rotated or downgraded through
the admin API or the CLI (admin socket), and the very next request on that same
connection is refused. Also: the CLI gives the same output through the socket."""

import datetime
import json
import os
import re
import socket
import subprocess
import unittest

import harness
from harness import bearer

UPSTREAMS = """\
upstreams:
  echo:
    url: http://127.0.0.1:%d
"""
ROUTES = """\
routes:
  - path: /orders/**
    upstream: echo
    require: { permissions: [orders.read] }
  - path: /api/**
    upstream: echo
"""
BODY = UPSTREAMS + harness.DEFAULT_ROLES + ROUTES


class RevocationTest(harness.GatewayTestCase):
    @classmethod
    def make_gateway(cls, upstream_port):
        return harness.Gateway(BODY % upstream_port, admin=True)

    @classmethod
    def create_tokens(cls):
        cls.admin = cls.gw.create_token("root", permissions=["tokengate.admin"])

    def api(self, method, target, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        with self.gw.admin() as c:
            return c.request(method, target, [bearer(self.admin)], data)

    def create(self, **fields):
        resp = self.api("POST", "/v1/tokens", {"name": "victim", **fields})
        self.assertEqual(resp.status, 201, resp)
        return resp.json()

    def cli(self, *args):
        r = subprocess.run([harness.TOKENGATE_BIN, *args, "--config", self.gw.config_path], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r)
        return r

    def keep_alive(self, token):
        """An open public connection on which `token` has just been accepted."""
        conn = self.gw.connect()
        self.addCleanup(conn.close)
        resp = conn.request("GET", "/orders/1", [bearer(token)])
        self.assertEqual(resp.status, 200, resp)
        self.assertNotEqual((resp.header("Connection") or "").lower(), "close")
        return conn

    def test_delete_through_api(self):
        made = self.create(roles=["reader"])
        conn = self.keep_alive(made["token"])
        self.assertEqual(self.api("DELETE", "/v1/tokens/" + made["id"]).status, 204)
        resp = conn.request("GET", "/orders/1", [bearer(made["token"])])
        self.assertEqual(resp.status, 401, resp)
        self.assertIn("invalid_token", resp.header("WWW-Authenticate"))

    def test_delete_through_cli_socket(self):
        made = self.create(roles=["reader"])
        conn = self.keep_alive(made["token"])
        r = self.cli("token", "delete", made["id"])
        self.assertIn("deleted token " + made["id"], r.stderr)
        self.assertEqual(conn.request("GET", "/orders/1", [bearer(made["token"])]).status, 401)

    def test_rotate_without_grace_through_api(self):
        made = self.create(roles=["reader"])
        conn = self.keep_alive(made["token"])
        rotated = self.api("POST", "/v1/tokens/%s/rotate" % made["id"], {}).json()
        self.assertEqual(conn.request("GET", "/orders/1", [bearer(made["token"])]).status, 401)
        self.assertEqual(conn.request("GET", "/orders/1", [bearer(rotated["token"])]).status, 200)

    def test_rotate_without_grace_through_cli_socket(self):
        made = self.create(roles=["reader"])
        conn = self.keep_alive(made["token"])
        new = self.cli("token", "rotate", made["id"]).stdout.splitlines()[0]
        self.assertEqual(conn.request("GET", "/orders/1", [bearer(made["token"])]).status, 401)
        self.assertEqual(conn.request("GET", "/orders/1", [bearer(new)]).status, 200)

    def test_update_removing_permission_through_api(self):
        made = self.create(roles=["reader"], permissions=["x.y"])
        conn = self.keep_alive(made["token"])
        self.assertEqual(self.api("PATCH", "/v1/tokens/" + made["id"], {"roles": []}).status, 200)
        resp = conn.request("GET", "/orders/1", [bearer(made["token"])])
        self.assertEqual(resp.status, 403, resp)
        self.assertIn("insufficient_scope", resp.header("WWW-Authenticate"))
        self.assertEqual(conn.request("GET", "/api/x", [bearer(made["token"])]).status, 200)

    def test_update_removing_permission_through_cli_socket(self):
        made = self.create(permissions=["orders.read"])
        conn = self.keep_alive(made["token"])
        self.cli("token", "update", made["id"], "--remove-permission", "orders.read")
        self.assertEqual(conn.request("GET", "/orders/1", [bearer(made["token"])]).status, 403)

    def test_explain_token_id_through_cli_socket(self):
        # The gateway holds the store: explain reads the record through the admin socket.
        made = self.create(roles=["reader"])
        r = self.cli("explain", "--json", "--token-id", made["id"], "GET", "/orders/1")
        out = json.loads(r.stdout)
        self.assertEqual((out["decision"], out["status"]), ("allow", 200), out)
        self.assertEqual(out["rights"]["permissions"], ["orders.read"], out)
        self.cli("token", "update", made["id"], "--remove-role", "reader")
        out = json.loads(self.cli("explain", "--json", "--token-id", made["id"], "GET", "/orders/1").stdout)
        self.assertEqual((out["decision"], out["status"], out["reason"]), ("deny", 403, "insufficient_scope"), out)

    def test_api_create_works_at_once(self):
        made = self.create(roles=["reader"])
        with self.gw.connect() as conn:
            self.assertEqual(conn.request("GET", "/orders/1", [bearer(made["token"])]).status, 200)


# ---------------------------------------------------------------------------- CLI transcript

TOKEN_RE = re.compile(r"tg_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}")
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def transcript(config_path):
    """The token commands of test_cli.py's lifecycle, as (args, exit, stdout, stderr)
    with ids, tokens and times replaced by placeholders so two runs compare."""
    ids = {}
    out = []

    def norm(text):
        text = TOKEN_RE.sub("<TOKEN>", text)
        for real, alias in ids.items():
            text = text.replace(real, alias)
        return TIME_RE.sub("<TIME>", text)

    def run(*args):
        r = subprocess.run([harness.TOKENGATE_BIN, "token", *args, "--config", config_path], capture_output=True,
                           text=True, timeout=60)
        m = TOKEN_RE.search(r.stdout)
        if m and m.group(0)[3:15] not in ids:
            ids[m.group(0)[3:15]] = "<ID%d>" % len(ids)
        stdout = r.stdout
        # Tokens made in the same second are listed in id order, and ids are random:
        # compare listings as sets of rows.
        if args[0] == "list" and r.returncode == 0 and "--json" in args:
            assert len(stdout.splitlines()) == 1, stdout
            stdout = json.dumps(sorted(json.loads(stdout), key=lambda record: record["name"]))
        elif args[0] == "list" and r.returncode == 0:
            lines = stdout.splitlines()
            stdout = "\n".join(lines[:1] + sorted(lines[1:], key=lambda line: line[14:]))
        out.append((tuple(norm(a) for a in args), r.returncode, norm(stdout), norm(r.stderr)))
        return r

    for record in json.loads(run("list", "--json").stdout):  # the seed token
        ids.setdefault(record["id"], "<ID%d>" % len(ids))
    out.clear()
    first = run("create", "--name", "ci deploy", "--description", "deploys", "--role", "reader", "--license", "pro",
                "--expires", "30d").stdout.splitlines()[0][3:15]
    second = json.loads(run("create", "--name", "backup", "--group", "ops", "--permission", "x.y",
                            "--json").stdout)["id"]
    run("list")
    run("list", "--json")
    run("show", first)
    run("show", second, "--json")
    run("update", first, "--name", "ci", "--add-role", "writer", "--remove-license", "pro", "--expires", "never")
    run("update", second, "--add-permission", "z.w", "--json")
    run("rotate", first)
    run("rotate", second, "--grace", "10m", "--json")
    run("create", "--name", "bad", "--role", "nope")
    run("create", "--name", "bad", "--license", "gold")
    run("create", "--name", "", "--role", "reader")
    run("create", "--name", "past", "--expires", "2001-01-01")
    run("show", "AAAAAAAAAAAA")
    run("show", "short")
    run("update", "AAAAAAAAAAAA", "--name", "x")
    run("update", first, "--add-group", "nope")
    run("rotate", "AAAAAAAAAAAA")
    run("delete", "AAAAAAAAAAAA")
    run("delete", second)
    run("list")
    run("list", "--json")
    return out


class CliThroughSocketTest(unittest.TestCase):
    def test_same_output_with_and_without_a_running_gateway(self):
        upstream = harness.start_upstream()
        self.addCleanup(upstream.stop)
        offline = harness.Gateway(BODY % upstream.port, admin=True)
        self.addCleanup(offline.stop)
        online = harness.Gateway(BODY % upstream.port, admin=True)
        self.addCleanup(online.stop)
        online.create_token("seed", roles=["reader"])
        offline.create_token("seed", roles=["reader"])
        online.start()

        without = transcript(offline.config_path)
        with_gateway = transcript(online.config_path)
        self.assertTrue(online.process.alive())
        for a, b in zip(without, with_gateway):
            self.assertEqual(a, b)
        self.assertEqual(len(without), len(with_gateway))
        # It really went through the socket: the gateway audited the writes as "cli".
        audits = [json.loads(line) for line in online.process.stderr_text().splitlines()
                  if line.startswith("{") and '"audit"' in line]
        self.assertTrue(any(e["via"] == "socket" and e["actor"] == "cli" and e["audit"] == "token.delete"
                            for e in audits), audits)
        # and the new tokens work on the public listener at once
        token = subprocess.run([harness.TOKENGATE_BIN, "token", "create", "--config", online.config_path, "--name",
                                "live", "--role", "reader"], capture_output=True, text=True,
                               timeout=60).stdout.strip()
        with online.connect() as c:
            self.assertEqual(c.request("GET", "/orders/1", [bearer(token)]).status, 200)

    def test_locked_store_without_socket_says_what_to_do(self):
        upstream = harness.start_upstream()
        self.addCleanup(upstream.stop)
        gw = harness.Gateway(BODY % upstream.port)  # no admin section
        self.addCleanup(gw.stop)
        gw.start()
        r = gw.cli("token", "list", "--config", gw.config_path, check=False)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("locked by a running gateway", err)
        self.assertIn("admin.socket", err)

    def test_locked_store_with_a_dead_socket_says_what_to_do(self):
        upstream = harness.start_upstream()
        self.addCleanup(upstream.stop)
        gw = harness.Gateway(BODY % upstream.port, admin=True)
        self.addCleanup(gw.stop)
        gw.start()
        # A second config for the same store whose socket nobody listens on.
        dead = os.path.join(gw.dir, "dead.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(dead)
        s.close()
        other = os.path.join(gw.dir, "other.yaml")
        with open(other, "w") as f:
            f.write(gw.config_text.replace("socket: %s" % gw.socket_path, "socket: %s" % dead))
        r = gw.cli("token", "list", "--config", other, check=False)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(dead, err)
        self.assertIn("does not answer", err)


if __name__ == "__main__":
    unittest.main()
