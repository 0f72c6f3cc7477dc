"""The deployment examples: examples/sidecar/run.sh really runs (app on localhost,
tokengate in front, SIGTERM stops both), and the shipped configs pass `tokengate check`."""

import os
import shutil
import signal
import subprocess
import tempfile
import unittest

import harness
from harness import bearer

EXAMPLES = os.path.join(harness.ROOT, "examples")
PACKAGING = os.path.join(harness.ROOT, "packaging")


class SidecarScriptTest(unittest.TestCase):
    def setUp(self):
        self.state = tempfile.mkdtemp(prefix="tokengate-sidecar-")
        env = dict(os.environ)
        env.update(
            TOKENGATE=harness.TOKENGATE_BIN,
            APP=harness.DEMO_UPSTREAM_BIN,
            LISTEN="127.0.0.1:0",
            APP_LISTEN="127.0.0.1:0",
            STATE_DIR=self.state,
        )
        self.proc = harness.Process(["sh", os.path.join(EXAMPLES, "sidecar", "run.sh")], "sidecar run.sh", env=env)

    def tearDown(self):
        self.proc.stop()
        shutil.rmtree(self.state, ignore_errors=True)

    def app_address(self):
        with open(os.path.join(self.state, "app.log")) as f:
            m = harness.LISTENING_RE.search(f.read())
        return m.group(1), int(m.group(2))

    def test_gateway_in_front_of_localhost_app(self):
        with open(os.path.join(self.state, "demo-token")) as f:
            token = f.read().strip()
        self.assertRegex(token, r"^tg_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$")
        app_host, app_port = self.app_address()
        self.assertEqual(app_host, "127.0.0.1")  # the app is not on a public address

        with harness.RawConnection(self.proc.host, self.proc.port) as c:
            r = c.request("GET", "/orders/1", [bearer(token)])
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["target"], "/orders/1")
            self.assertEqual(c.request("GET", "/orders/1").status, 401)
            self.assertEqual(c.request("GET", "/public/x").status, 200)

        self.proc.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.proc.wait(40), 0)
        # Both processes are gone.
        self.assertTrue(harness.refused(self.proc.host, self.proc.port))
        self.assertTrue(harness.wait_until(lambda: harness.refused(app_host, app_port), 10.0))


class ShippedConfigsTest(unittest.TestCase):
    def check(self, path):
        r = subprocess.run([harness.TOKENGATE_BIN, "check", "--config", path], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())

    def test_kubernetes_config_passes_check(self):
        self.check(os.path.join(EXAMPLES, "kubernetes", "tokengate.yaml"))

    def test_systemd_config_passes_check(self):
        self.check(os.path.join(PACKAGING, "tokengate.yaml"))

    def test_systemd_unit_is_hardened(self):
        with open(os.path.join(PACKAGING, "tokengate.service")) as f:
            settings = {}
            for line in f:
                line = line.strip()
                if line and not line.startswith(("#", "[")) and "=" in line:
                    key, _, value = line.partition("=")
                    settings.setdefault(key, []).append(value)
        for key, value in [
            ("DynamicUser", "yes"),
            ("ProtectSystem", "strict"),
            ("StateDirectory", "tokengate"),
            ("NoNewPrivileges", "yes"),
            ("KillSignal", "SIGTERM"),
        ]:
            self.assertIn(value, settings.get(key, []), key)
        self.assertIn("/bin/kill -HUP $MAINPID", settings["ExecReload"])
        self.assertEqual(settings["CapabilityBoundingSet"], [""])
        # systemd's stop timeout must cover tokengate's 30 s drain.
        self.assertGreater(int(settings["TimeoutStopSec"][0]), 30)


if __name__ == "__main__":
    unittest.main()
