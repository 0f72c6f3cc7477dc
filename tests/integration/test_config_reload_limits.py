"""Config files that used to hang the loader, written over a running gateway's file:
each reload fails within seconds with file:line:col in the log, the old config keeps
serving, and the gateway's memory does not grow. (yaml-cpp 0.7's LoadAll looped
forever, allocating, on a file holding just ','.)"""

import os
import time
import unittest

import harness

ERROR_WITHIN = 3.0  # seconds from the write to the logged error (the watcher debounces 150 ms)


def body(upstream_port):
    return (
        "upstreams:\n  echo: { url: http://127.0.0.1:%d }\n" % upstream_port
        + "routes:\n"
        "  - path: /probe/**\n"
        "    upstream: echo\n"
        "    public: true\n"
    )


def billion_laughs():
    lines = ["licenses: &a [x, x, x, x, x, x, x, x, x, x]"]
    previous = "a"
    for c in "bcdefghi":
        lines.append("x%s: &%s [%s]" % (c, c, ", ".join(["*" + previous] * 10)))
        previous = c
    return "\n".join(lines) + "\n"


class ConfigReloadLimitsTest(harness.GatewayTestCase):
    @classmethod
    def make_gateway(cls, upstream_port):
        return harness.Gateway(body(upstream_port))

    def status(self, path):
        with self.gw.connect() as c:
            return c.request("GET", path).status

    def write_whole_file(self, text):
        # The whole file, header included: these contents must be the file's only text.
        tmp = self.gw.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.gw.config_path)

    def restore(self):
        start = len(self.gw.log_lines())
        self.write_whole_file(self.gw.config_text)
        self.assertIsNotNone(self.gw.wait_log(lambda l: "config reloaded" in l, timeout=10, start=start),
                             self.gw.process.stderr_text())

    def assert_rejected_quickly(self, text, expected):
        self.assertEqual(self.status("/probe/before"), 200)
        rss_before = self.gw.process.rss_kib()
        start = len(self.gw.log_lines())
        written = time.monotonic()
        self.write_whole_file(text)
        line = self.gw.wait_log(lambda l: "keeping the old config" in l, timeout=ERROR_WITHIN, start=start)
        self.assertIsNotNone(line, "no reload error within %ss; log:\n%s"
                             % (ERROR_WITHIN, self.gw.process.stderr_text()))
        self.assertLess(time.monotonic() - written, ERROR_WITHIN)
        self.assertIn(self.gw.config_path, line)
        self.assertIn(expected, line)
        self.assertEqual(self.status("/probe/after"), 200, "the old config stopped serving")
        self.assertLess(self.gw.process.rss_kib() - rss_before, 64 * 1024, "the failed reload grew the gateway")
        self.restore()

    def test_lone_comma(self):
        self.assert_rejected_quickly(",", ":1:1: syntax error: unexpected ','")

    def test_comma_after_a_valid_config(self):
        self.assert_rejected_quickly(self.gw.config_text + ",\n", "end of map not found")

    def test_second_document(self):
        self.assert_rejected_quickly(self.gw.config_text + "---\nworkers: 2\n", "only one YAML document is allowed")

    def test_billion_laughs(self):
        self.assert_rejected_quickly(billion_laughs(), "the document expands to more than 1000000 nodes")

    def test_file_over_one_mebibyte(self):
        self.assert_rejected_quickly(self.gw.config_text + "#" + "x" * (1 << 20) + "\n",
                                     "the configuration is larger than 1048576 bytes")


if __name__ == "__main__":
    unittest.main()
