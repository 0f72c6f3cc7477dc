"""End-to-end tests of the `tokengate` command line (README.md, "Command line").

Runs the real binary (env TOKENGATE_BIN) against a config and store in a fresh
temporary directory: token lifecycle, check, explain, version and exit codes.
"""

import datetime
import http.server
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import unittest
import urllib.error
import urllib.request

BIN = os.environ.get("TOKENGATE_BIN", "tokengate")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN_RE = re.compile(r"^tg_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$")
TIMEOUT = 60

CONFIG = """\
listen: 127.0.0.1:0
store:
  path: var/tokens
  key_file: var/tokengate.key
tokens:
  max_lifetime: {max_lifetime}
upstreams:
  orders:
    url: http://127.0.0.1:{upstream_port}
roles:
  orders-reader: {{ permissions: [orders.read] }}
  orders-admin:  {{ permissions: [orders.read, orders.write] }}
groups:
  ops: {{ roles: [orders-admin], permissions: [billing.read] }}
licenses: [pro, enterprise]
routes:
  - path: /healthz
    upstream: orders
    public: true
  - path: /api/orders/**
    methods: [GET, HEAD]
    upstream: orders
    require: {{ permissions: [orders.read] }}
  - path: /api/orders/*/refund
    methods: [POST]
    upstream: orders
    require:
      permissions: [orders.write]
      licenses: [pro]
  - path: /api/admin/**
    upstream: orders
    require:
      any_of:
        - roles: [orders-admin]
        - groups: [ops]
  - path: /reports/*
    methods: [GET]
    upstream: orders
    public: true
  - path: /api/**
    upstream: orders
"""


def route_line(text, pattern):
    """1-based line of the `path: PATTERN` key in the config text."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() == f"- path: {pattern}":
            return number
    raise AssertionError(f"no route {pattern} in config")


class Result:
    def __init__(self, completed):
        self.code = completed.returncode
        self.out = completed.stdout
        self.err = completed.stderr

    def __repr__(self):
        return f"exit {self.code}\nstdout: {self.out!r}\nstderr: {self.err!r}"


class CliTestCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tokengate-cli-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.config_text = CONFIG.format(upstream_port=9, max_lifetime=0)
        self.config = self.write("tokengate.yaml", self.config_text)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def tg(self, *args):
        completed = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=TIMEOUT, check=False)
        return Result(completed)

    def ok(self, *args):
        result = self.tg(*args)
        self.assertEqual(result.code, 0, result)
        return result

    def user_error(self, *args):
        """Exit 1 with exactly one stderr line starting with `error: ` and no stdout."""
        result = self.tg(*args)
        self.assertEqual(result.code, 1, result)
        lines = result.err.splitlines()
        self.assertEqual(len(lines), 1, result)
        self.assertTrue(lines[0].startswith("error: "), result)
        self.assertEqual(result.out, "", result)
        return lines[0]

    def create(self, *args):
        result = self.ok("token", "create", "--config", self.config, *args)
        lines = result.out.splitlines()
        self.assertEqual(len(lines), 1, result)
        self.assertRegex(lines[0], TOKEN_RE)
        return lines[0], result

    def show_json(self, token_id):
        return json.loads(self.ok("token", "show", "--config", self.config, token_id, "--json").out)

    def explain(self, *args):
        result = self.ok("explain", "--config", self.config, "--json", *args)
        self.assertEqual(len(result.out.splitlines()), 1, result)
        return json.loads(result.out)


class TokenLifecycleTest(CliTestCase):
    def test_create_prints_plaintext_alone_and_details_on_stderr(self):
        token, result = self.create("--name", "ci deploy", "--description", "deploys", "--role", "orders-reader",
                                    "--license", "pro", "--expires", "30d")
        token_id = token[3:15]
        self.assertIn(token_id, result.err)
        self.assertIn("ci deploy", result.err)
        self.assertIn("orders-reader", result.err)
        self.assertIn("only time", result.err)
        self.assertNotIn(token, result.err)
        record = self.show_json(token_id)
        self.assertEqual(record["name"], "ci deploy")
        self.assertEqual(record["description"], "deploys")
        self.assertEqual(record["roles"], ["orders-reader"])
        self.assertEqual(record["licenses"], ["pro"])
        self.assertEqual(record["created_by"], "cli")
        self.assertIsNotNone(record["expires_at"])

    def test_create_json_is_one_object_with_token_and_record(self):
        result = self.ok("token", "create", "--config", self.config, "--name", "j", "--group", "ops",
                         "--permission", "x.read,y.read", "--json")
        self.assertEqual(len(result.out.splitlines()), 1, result)
        body = json.loads(result.out)
        self.assertRegex(body["token"], TOKEN_RE)
        self.assertEqual(body["id"], body["token"][3:15])
        self.assertEqual(body["groups"], ["ops"])
        self.assertEqual(body["permissions"], ["x.read", "y.read"])
        self.assertIsNone(body["expires_at"])
        for key in ("created_at", "updated_at", "last_used_at", "rotated_at", "created_by", "licenses", "roles"):
            self.assertIn(key, body)

    def test_lifecycle_create_list_show_update_rotate_delete(self):
        token, _ = self.create("--name", "reader", "--role", "orders-reader")
        token_id = token[3:15]
        other, _ = self.create("--name", "a much longer token name", "--group", "ops", "--license", "pro,enterprise")
        other_id = other[3:15]

        # list: aligned table
        listing = self.ok("token", "list", "--config", self.config)
        lines = listing.out.splitlines()
        self.assertRegex(lines[0], r"^ID +NAME +ROLES +GROUPS +PERMISSIONS +LICENSES +EXPIRES +LAST USED +RATE LIMIT$")
        self.assertEqual(len(lines), 3, listing)
        columns = [lines[0].index(h) for h in ("ID", "NAME", "ROLES", "GROUPS", "PERMISSIONS", "LICENSES",
                                              "EXPIRES", "LAST USED", "RATE LIMIT")]
        rows = {line[:12]: line for line in lines[1:]}
        self.assertEqual(set(rows), {token_id, other_id})
        reader = rows[token_id]
        self.assertEqual(reader[columns[1]:].split("  ")[0], "reader")
        self.assertTrue(reader[columns[2]:].startswith("orders-reader "), reader)
        self.assertTrue(reader[columns[3]:].startswith("- "), reader)
        self.assertTrue(reader[columns[6]:].startswith("- "), reader)
        self.assertTrue(reader[columns[7]:].startswith("- "), reader)  # never used
        self.assertTrue(reader.endswith("default"), reader)  # no own rate limit
        self.assertTrue(rows[other_id][columns[5]:].startswith("enterprise,pro "), rows[other_id])
        self.assertEqual(columns[2] - columns[1], len("a much longer token name") + 2)

        # list --json: records only, never a secret
        raw = self.ok("token", "list", "--config", self.config, "--json").out
        self.assertNotIn(token, raw)
        self.assertNotIn(token[16:], raw)
        records = json.loads(raw)
        self.assertIsInstance(records, list)
        self.assertEqual({r["id"] for r in records}, {token_id, other_id})
        for record in records:
            for key in record:
                self.assertNotRegex(key, r"(?i)secret|hash|hmac|token|credential|digest")

        # show, human and json
        shown = self.ok("token", "show", "--config", self.config, token_id)
        self.assertRegex(shown.out, rf"(?m)^id: +{token_id}$")
        self.assertRegex(shown.out, r"(?m)^roles: +orders-reader$")
        self.assertRegex(shown.out, r"(?m)^expires_at: +never$")
        before = self.show_json(token_id)

        # update: add/remove roles, expiry and back to never
        updated = json.loads(self.ok("token", "update", "--config", self.config, token_id, "--add-role",
                                     "orders-admin", "--remove-role", "orders-reader", "--expires", "2099-01-01",
                                     "--name", "renamed", "--json").out)
        self.assertEqual(updated["roles"], ["orders-admin"])
        self.assertEqual(updated["name"], "renamed")
        self.assertEqual(updated["expires_at"], "2099-01-02T00:00:00Z")
        updated = json.loads(self.ok("token", "update", "--config", self.config, token_id, "--expires", "never",
                                     "--add-permission", "reports.read", "--json").out)
        self.assertIsNone(updated["expires_at"])
        self.assertEqual(updated["permissions"], ["reports.read"])
        self.assertEqual(updated["roles"], ["orders-admin"])
        self.assertEqual(self.show_json(token_id), updated)
        self.assertIsNone(before["rotated_at"])

        # rotate: a new plaintext for the same id and grants
        rotated = self.ok("token", "rotate", "--config", self.config, token_id)
        new_lines = rotated.out.splitlines()
        self.assertEqual(len(new_lines), 1, rotated)
        new_token = new_lines[0]
        self.assertRegex(new_token, TOKEN_RE)
        self.assertNotEqual(new_token, token)
        self.assertEqual(new_token[3:15], token_id)
        self.assertIn("only time", rotated.err)
        after = self.show_json(token_id)
        self.assertIsNotNone(after["rotated_at"])
        self.assertEqual(after["roles"], ["orders-admin"])

        graced = json.loads(self.ok("token", "rotate", "--config", self.config, other_id, "--grace", "10m",
                                    "--json").out)
        self.assertRegex(graced["token"], TOKEN_RE)
        self.assertNotEqual(graced["token"], other)

        # delete, then it is gone
        deleted = self.ok("token", "delete", "--config", self.config, token_id)
        self.assertEqual(deleted.out, "")
        self.assertEqual(len(deleted.err.splitlines()), 1, deleted)
        self.assertIn(token_id, deleted.err)
        line = self.user_error("token", "show", "--config", self.config, token_id)
        self.assertEqual(line, f"error: no token with id '{token_id}'")
        self.user_error("token", "delete", "--config", self.config, token_id)
        self.user_error("token", "rotate", "--config", self.config, token_id)
        self.user_error("token", "update", "--config", self.config, token_id, "--name", "x")
        remaining = json.loads(self.ok("token", "list", "--config", self.config, "--json").out)
        self.assertEqual([r["id"] for r in remaining], [other_id])

    def test_unknown_names_are_refused_naming_them(self):
        line = self.user_error("token", "create", "--config", self.config, "--name", "x", "--role", "orders-reeder")
        self.assertIn("orders-reeder", line)
        line = self.user_error("token", "create", "--config", self.config, "--name", "x", "--group", "nops")
        self.assertIn("nops", line)
        line = self.user_error("token", "create", "--config", self.config, "--name", "x", "--license", "gold")
        self.assertIn("gold", line)
        token, _ = self.create("--name", "y")
        line = self.user_error("token", "update", "--config", self.config, token[3:15], "--add-role", "nope")
        self.assertIn("nope", line)
        self.assertEqual(self.show_json(token[3:15])["roles"], [])

    def test_expiry_rules(self):
        self.user_error("token", "create", "--config", self.config, "--name", "x", "--expires", "soonish")
        self.user_error("token", "create", "--config", self.config, "--name", "x", "--expires", "2001-01-01")
        self.config = self.write("limited.yaml", CONFIG.format(upstream_port=9, max_lifetime="365d"))
        self.user_error("token", "create", "--config", self.config, "--name", "x", "--expires", "400d")
        self.user_error("token", "create", "--config", self.config, "--name", "x", "--expires", "soonish")
        self.create("--name", "x", "--expires", "365d")
        line = self.user_error("token", "create", "--config", self.config, "--name", "x")  # never > 365d
        self.assertIn("max_lifetime", line)
        when = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=10)).replace(microsecond=0)
        token, _ = self.create("--name", "y", "--expires", when.strftime("%Y-%m-%dT%H:%M:%SZ"))
        record = self.show_json(token[3:15])
        self.assertEqual(record["expires_at"], when.strftime("%Y-%m-%dT%H:%M:%SZ"))
        line = self.user_error("token", "update", "--config", self.config, token[3:15], "--expires", "never")
        self.assertIn("max_lifetime", line)
        line = self.user_error("token", "update", "--config", self.config, token[3:15], "--expires", "500d")
        self.assertIn("max_lifetime", line)

    def test_read_commands_do_not_create_a_store(self):
        listing = self.ok("token", "list", "--config", self.config)
        self.assertEqual(len(listing.out.splitlines()), 1, listing)  # header only
        self.assertEqual(json.loads(self.ok("token", "list", "--config", self.config, "--json").out), [])
        self.user_error("token", "show", "--config", self.config, "AAAAAAAAAAAA")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "var", "tokens")))


class UpstreamHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "subject": self.headers.get("X-Auth-Subject")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class RotationThroughGatewayTest(CliTestCase):
    """Old secret 401, new secret 200 after `token rotate`, through `tokengate serve`."""

    def start_upstream(self):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), UpstreamHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return server.server_address[1]

    def start_gateway(self):
        proc = subprocess.Popen([BIN, "serve", "--config", self.config, "--log-format", "text"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines = queue.Queue()

        def pump():
            for line in proc.stderr:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

        def stop():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stderr.close()

        self.addCleanup(stop)
        seen = []
        while True:
            try:
                line = lines.get(timeout=20)
            except queue.Empty:
                self.fail(f"gateway did not log 'listening on' in 20 s: {seen}")
            if line is None:
                proc.wait()
                self.skipTest(f"tokengate serve not implemented yet (exit {proc.returncode}): {''.join(seen)[-300:]}")
            seen.append(line)
            match = re.search(r"listening on \[?([0-9.:a-f]+?)\]?:(\d+)", line)
            if match:
                return proc, stop, int(match.group(2))

    def status(self, port, token):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/orders/7",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, None

    def test_rotated_out_secret_fails_and_new_one_works(self):
        upstream_port = self.start_upstream()
        self.config_text = CONFIG.format(upstream_port=upstream_port, max_lifetime=0)
        self.write("tokengate.yaml", self.config_text)
        old, _ = self.create("--name", "rotating", "--role", "orders-reader")
        new = self.ok("token", "rotate", "--config", self.config, old[3:15]).out.splitlines()[0]
        self.assertNotEqual(old, new)
        graced_old, _ = self.create("--name", "graced", "--role", "orders-reader")
        graced_new = json.loads(self.ok("token", "rotate", "--config", self.config, graced_old[3:15], "--grace",
                                        "10m", "--json").out)["token"]

        _, stop, port = self.start_gateway()
        status, body = self.status(port, new)
        self.assertEqual(status, 200)
        self.assertEqual(body["subject"], new[3:15])
        self.assertEqual(body["path"], "/api/orders/7")
        self.assertEqual(self.status(port, old)[0], 401)
        # Within --grace both the old and the new secret work.
        self.assertEqual(self.status(port, graced_new)[0], 200)
        self.assertEqual(self.status(port, graced_old)[0], 200)

        # While the gateway holds the store, token commands either work (admin
        # socket) or fail with one clear line; never a trace.
        listing = self.tg("token", "list", "--config", self.config)
        if listing.code != 0:
            self.assertEqual(listing.code, 1, listing)
            self.assertEqual(len(listing.err.splitlines()), 1, listing)
            self.assertTrue(listing.err.startswith("error: "), listing)
        stop()


class CheckTest(CliTestCase):
    def test_valid_config_passes(self):
        result = self.ok("check", "--config", self.config)
        self.assertRegex(result.out, r"^ok: 6 routes, 2 roles, 1 group, 2 licenses, 1 upstream")

    @unittest.skipUnless(os.path.exists(os.path.join(REPO, "conf", "example.yaml")), "conf/example.yaml not written yet")
    def test_example_config_passes(self):
        example = os.path.join(self.dir, "example.yaml")
        shutil.copy(os.path.join(REPO, "conf", "example.yaml"), example)
        result = self.ok("check", "--config", example)
        self.assertTrue(result.out.startswith("ok: "), result)
        self.assertNotIn("error:", result.err)

    def test_shadowed_route_is_an_error_naming_both_routes(self):
        text = self.config_text.replace("routes:\n", "routes:\n  - path: /api/**\n    upstream: orders\n", 1)
        config = self.write("shadow.yaml", text)
        result = self.tg("check", "--config", config)
        self.assertEqual(result.code, 1, result)
        self.assertEqual(result.out, "", result)
        errors = [line for line in result.err.splitlines() if ": error: " in line]
        self.assertTrue(errors, result)
        shadow = [line for line in errors if "/api/orders/**" in line]
        self.assertTrue(shadow, result)
        self.assertIn("/api/**", shadow[0])
        self.assertRegex(shadow[0], rf"^{re.escape(config)}:{route_line(text, '/api/orders/**')}:\d+: error: ")

    def test_bad_config_names_file_line_column(self):
        config = self.write("bad.yaml", self.config_text.replace("listen:", "listn:", 1))
        result = self.tg("check", "--config", config)
        self.assertEqual(result.code, 1, result)
        lines = result.err.splitlines()
        self.assertEqual(len(lines), 1, result)
        self.assertRegex(lines[0], r"bad\.yaml:1:1: error: .*listn")
        line = self.user_error("token", "list", "--config", config)
        self.assertRegex(line, r"^error: .*bad\.yaml:1:1: .*listn")
        line = self.user_error("explain", "--config", config, "GET", "/")
        self.assertRegex(line, r"bad\.yaml:1:1: ")
        missing = self.tg("check", "--config", os.path.join(self.dir, "missing.yaml"))
        self.assertEqual(missing.code, 1, missing)
        self.assertEqual(len(missing.err.splitlines()), 1, missing)
        self.assertIn("missing.yaml", missing.err)


class ExplainTest(CliTestCase):
    def route(self, pattern, index):
        return {"index": index, "path": pattern, "line": route_line(self.config_text, pattern)}

    def test_json_shape_and_anonymous_request(self):
        out = self.explain("GET", "/api/orders/42")
        self.assertEqual(set(out), {"canonical_path", "route", "rights", "decision", "status", "reason",
                                    "forward_auth", "rate_limits"})
        self.assertEqual(out["forward_auth"], {"status": 401, "reason": "missing_token"})
        self.assertEqual(out["rate_limits"], {"token": None, "route": None})  # denied: none apply
        self.assertEqual(out["canonical_path"], "/api/orders/42")
        self.assertEqual(out["route"], self.route("/api/orders/**", 1))
        self.assertEqual(out["rights"], {"roles": [], "groups": [], "permissions": [], "licenses": []})
        self.assertEqual((out["decision"], out["status"], out["reason"]), ("deny", 401, "missing_token"))

    def test_forward_auth_answer_refuses_a_target_that_is_not_canonical(self):
        out = self.explain("--roles", "orders-reader", "GET", "/api/orders/./42")
        self.assertEqual((out["decision"], out["reason"]), ("allow", "allowed"))
        self.assertEqual(out["forward_auth"], {"status": 403, "reason": "non_canonical_target"})
        out = self.explain("GET", "/nowhere?x=/../")
        self.assertEqual(out["forward_auth"], {"status": 403, "reason": "no_route"})

    def test_allow_with_given_rights(self):
        out = self.explain("--roles", "orders-reader", "GET", "/api/orders/42")
        self.assertEqual((out["decision"], out["status"], out["reason"]), ("allow", 200, "allowed"))
        self.assertEqual(out["rights"]["permissions"], ["orders.read"])
        self.assertEqual(out["rights"]["roles"], ["orders-reader"])

    def test_effective_rights_through_groups(self):
        out = self.explain("--groups", "ops", "--licenses", "pro", "POST", "/api/orders/42/refund")
        self.assertEqual(out["rights"], {"roles": ["orders-admin"], "groups": ["ops"],
                                         "permissions": ["billing.read", "orders.read", "orders.write"],
                                         "licenses": ["pro"]})
        self.assertEqual(out["route"], self.route("/api/orders/*/refund", 2))
        self.assertEqual((out["decision"], out["status"]), ("allow", 200))

    def test_insufficient_scope(self):
        out = self.explain("--roles", "orders-admin", "POST", "/api/orders/42/refund")
        self.assertEqual((out["decision"], out["status"], out["reason"]), ("deny", 403, "insufficient_scope"))
        human = self.ok("explain", "--config", self.config, "--roles", "orders-admin", "POST", "/api/orders/42/refund")
        self.assertRegex(human.out, r"(?m)^reason: +insufficient_scope .*pro")
        self.assertRegex(human.out, r"(?m)^requirement: +permissions \[orders.write\] and licenses \[pro\]$")

    def test_public_route_after_dot_segments(self):
        out = self.explain("GET", "/api/../healthz")
        self.assertEqual(out["canonical_path"], "/healthz")
        self.assertEqual(out["route"], self.route("/healthz", 0))
        self.assertEqual((out["decision"], out["status"], out["reason"]), ("allow", 200, "public_route"))

    def test_no_route_404(self):
        out = self.explain("--roles", "orders-admin", "GET", "/nothing/here")
        self.assertIsNone(out["route"])
        self.assertEqual((out["decision"], out["status"], out["reason"]), ("deny", 404, "no_route"))

    def test_method_not_allowed_405(self):
        out = self.explain("POST", "/reports/daily")
        self.assertIsNone(out["route"])
        self.assertEqual((out["decision"], out["status"]), ("deny", 405))
        human = self.ok("explain", "--config", self.config, "POST", "/reports/daily")
        self.assertRegex(human.out, r"(?m)^status: +405$")
        self.assertIn("GET", human.out)

    def test_rejected_path_400(self):
        for path in ("/api/a%2Fb", "/api/../../etc", "/api/%zz"):
            out = self.explain("GET", path)
            self.assertIsNone(out["canonical_path"], path)
            self.assertIsNone(out["route"], path)
            self.assertEqual((out["decision"], out["status"]), ("deny", 400), path)

    def test_stored_token(self):
        token, _ = self.create("--name", "svc", "--role", "orders-reader")
        out = self.explain("--token-id", token[3:15], "GET", "/api/admin/users")
        self.assertEqual(out["route"], self.route("/api/admin/**", 3))
        self.assertEqual(out["rights"]["permissions"], ["orders.read"])
        self.assertEqual((out["decision"], out["status"]), ("deny", 403))
        out = self.explain("--token-id", token[3:15], "HEAD", "/api/orders")
        self.assertEqual((out["decision"], out["status"]), ("allow", 200))
        human = self.ok("explain", "--config", self.config, "--token-id", token[3:15], "GET", "/api/x")
        self.assertRegex(human.out, rf"(?m)^credential: +token {token[3:15]} \(svc\)$")
        self.assertRegex(human.out, r"(?m)^route: +#5 /api/\*\* \(line \d+\)$")
        self.assertRegex(human.out, r"(?m)^decision: +allow$")
        line = self.user_error("explain", "--config", self.config, "--token-id", "AAAAAAAAAAAA", "GET", "/")
        self.assertEqual(line, "error: no token with id 'AAAAAAAAAAAA'")

    def test_human_output_is_aligned(self):
        human = self.ok("explain", "--config", self.config, "GET", "/api/orders/1")
        lines = human.out.splitlines()
        self.assertTrue(lines, human)
        value_columns = {len(re.match(r"^[a-z ]+: +", line).group(0)) for line in lines}
        self.assertEqual(len(value_columns), 1, human.out)


class UsageTest(CliTestCase):
    def usage(self, *args):
        result = self.tg(*args)
        self.assertEqual(result.code, 2, result)
        self.assertTrue(result.err, result)
        self.assertEqual(result.out, "", result)

    def test_usage_errors_exit_2(self):
        self.usage()
        self.usage("frobnicate")
        self.usage("token")
        self.usage("token", "create", "--name", "x")  # no --config
        self.usage("token", "create", "--config", self.config)  # no --name
        self.usage("token", "show", "--config", self.config)  # no ID
        self.usage("explain", "--config", self.config, "GET")  # no PATH
        self.usage("explain", "--config", self.config, "--token-id", "x", "--roles", "r", "GET", "/")
        self.usage("serve", "--config", self.config, "--log-format", "xml")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "var")))

    def test_help_exits_0(self):
        result = self.ok("--help")
        self.assertIn("token", result.out)
        self.assertIn("rotate", self.ok("token", "--help").out)

    def test_version(self):
        result = self.ok("version")
        self.assertRegex(result.out, r"^tokengate \d+\.\d+\.\d+\n$")
        self.assertEqual(self.ok("--version").out, result.out)

    def test_nothing_to_update_is_a_user_error(self):
        token, _ = self.create("--name", "z")
        self.user_error("token", "update", "--config", self.config, token[3:15])


if __name__ == "__main__":
    unittest.main()
