"""Hot reload (docs/configuration.md, "Reload and restart"): SIGHUP and config file
changes swap in a new config for new requests without failing any request; an
invalid file is logged with file:line:col and the old rules keep serving;
listen/store/workers need a restart."""

import os
import re
import signal
import threading
import unittest

import harness
from harness import bearer


def body(upstream_port, generation, broken=False):
    text = (
        "upstreams:\n  echo: { url: http://127.0.0.1:%d }\n" % upstream_port
        + harness.DEFAULT_ROLES
        + "routes:\n"
        "  - path: /probe\n"
        "    upstream: echo\n"
        "    public: true\n"
        "  - path: /api/**\n"
        "    upstream: echo\n"
        "    require: { permissions: [orders.read] }\n"
        "  - path: /gen/%d/**\n"
        "    upstream: echo\n" % generation
    )
    # An unknown key (with a did-you-mean) on the generation's route: invalid.
    return text + ("    publik: true\n" if broken else "    public: true\n")


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.upstream = harness.start_upstream()
        self.gw = harness.Gateway(body(self.upstream.port, 0))
        self.reader = self.gw.create_token("reader", roles=["reader"])
        self.gw.start()

    def tearDown(self):
        self.gw.stop()
        self.upstream.stop()

    def status(self, path, headers=()):
        with self.gw.connect() as c:
            return c.request("GET", path, list(headers)).status

    def wait_for_line(self, start, needle):
        line = self.gw.wait_log(lambda l: needle in l, timeout=10.0, start=start)
        self.assertIsNotNone(line, "no log line with %r; log:\n%s" % (needle, self.gw.process.stderr_text()))
        return line

    def write_in_place(self, text):
        # Truncate and rewrite (IN_CLOSE_WRITE), unlike write_config's rename.
        header = self.gw.config_text.split("\n# --- body ---\n")[0]
        self.gw.config_text = header + "\n# --- body ---\n" + text
        with open(self.gw.config_path, "w") as f:
            f.write(self.gw.config_text)

    def test_twenty_rewrites_under_load(self):
        stop = threading.Event()
        results = {"ok": 0, "failures": []}

        def load(protected):
            try:
                c = self.gw.connect()
                n = 0
                while not stop.is_set():
                    n += 1
                    if n % 20 == 0:  # a fresh connection now and then, keep-alive otherwise
                        c.close()
                        c = self.gw.connect()
                    if protected:
                        r = c.request("GET", "/api/x", [bearer(self.reader)])
                    else:
                        r = c.request("GET", "/probe")
                    if r.status == 200:
                        results["ok"] += 1
                    else:
                        results["failures"].append(r.status)
                c.close()
            except Exception as e:  # a reset or closed connection is a failure
                results["failures"].append(repr(e))

        threads = [threading.Thread(target=load, args=(p,)) for p in (False, True, False, True)]
        for t in threads:
            t.start()
        try:
            current = 0
            for i in range(1, 21):
                start = len(self.gw.log_lines())
                valid = i % 2 == 1
                generation = i if valid else current
                text = body(self.upstream.port, i if valid else i, broken=not valid)
                if i % 4 < 2:
                    self.gw.write_config(text)
                else:
                    self.write_in_place(text)
                if valid:
                    self.wait_for_line(start, "config reloaded")
                    self.assertEqual(self.status("/gen/%d/x" % i), 200, "generation %d not in force" % i)
                    if current:
                        self.assertEqual(self.status("/gen/%d/x" % current), 404)
                    current = generation
                else:
                    line = self.wait_for_line(start, "keeping the old config")
                    # file:line:col of the bad key
                    self.assertRegex(line, re.escape(self.gw.config_path) + r":\d+:\d+")
                    self.assertIn("publik", line)
                    self.assertEqual(self.status("/gen/%d/x" % current), 200, "previous rules not kept")
                    self.assertEqual(self.status("/gen/%d/x" % i), 404)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(results["failures"], [])
        self.assertGreater(results["ok"], 100)
        self.assertTrue(self.gw.process.alive())

    def test_sighup_reloads(self):
        start = len(self.gw.log_lines())
        # The watcher reloads the change; SIGHUP then reloads the same file again.
        self.gw.write_config(body(self.upstream.port, 5))
        self.wait_for_line(start, "config reloaded")
        start = len(self.gw.log_lines())
        self.gw.process.proc.send_signal(signal.SIGHUP)
        self.wait_for_line(start, "config reloaded (SIGHUP)")
        self.assertEqual(self.status("/gen/5/x"), 200)

    def test_changes_that_need_a_restart_are_refused_whole(self):
        start = len(self.gw.log_lines())
        header = self.gw.config_text.partition("\n# --- body ---\n")[0].replace("workers: 2", "workers: 3")
        tmp = self.gw.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(header + "\n# --- body ---\n" + body(self.upstream.port, 9))
        os.replace(tmp, self.gw.config_path)
        line = self.wait_for_line(start, "keeping the old config")
        self.assertIn("workers changed from 2 to 3", line)
        self.assertIn("restart", line)
        # Nothing of it was applied: not even the route change.
        self.assertEqual(self.status("/gen/0/x"), 200)
        self.assertEqual(self.status("/gen/9/x"), 404)

    def test_token_rights_follow_the_new_config(self):
        # The reader role loses orders.read: the cached rights must not survive the reload.
        self.assertEqual(self.status("/api/x", [bearer(self.reader)]), 200)
        start = len(self.gw.log_lines())
        self.gw.write_config(body(self.upstream.port, 1).replace("reader: { permissions: [orders.read] }",
                                                                  "reader: { permissions: [other.read] }"))
        self.wait_for_line(start, "config reloaded")
        self.assertEqual(self.status("/api/x", [bearer(self.reader)]), 403)


if __name__ == "__main__":
    unittest.main()
