"""The gateway's rooms depend on each other one way only (gateway/CMakeLists.txt).

Reads every #include of the C++ sources and fails on one that points against the
direction: http/ is pure (no sockets, no other room), policy/ and store/ never see
Beast or Asio, and no lower room reaches up into proxy/, admin/, server/ or cli/.
"""

import os
import re
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)

# room -> include prefixes it must never use
FORBIDDEN = {
    "conf": ["boost/beast", "boost/asio", "gateway/", "policy/", "store/", "cluster/"],
    "store": ["boost/beast", "boost/asio", "gateway/", "policy/", "cluster/"],
    "cluster": ["boost/beast", "gateway/", "policy/"],
    "policy": ["boost/beast", "boost/asio", "gateway/", "store/", "cluster/"],
    "gateway/http": ["boost/asio/ip", "boost/asio/ssl", "boost/asio/io_context", "boost/asio/awaitable",
                     "gateway/obs", "gateway/proxy", "gateway/admin", "gateway/server", "gateway/cli", "store/"],
    "gateway/forward_auth": ["boost/asio", "gateway/obs", "gateway/proxy", "gateway/admin", "gateway/server",
                             "gateway/cli", "store/", "policy/"],
    "gateway/obs": ["gateway/proxy", "gateway/admin", "gateway/server", "gateway/cli"],
    "gateway/ratelimit": ["boost/beast", "boost/asio", "store/", "gateway/obs", "gateway/proxy", "gateway/admin",
                          "gateway/server", "gateway/cli"],
    "gateway/proxy": ["gateway/admin", "gateway/server", "gateway/cli"],
    "gateway/admin": ["gateway/proxy", "gateway/server", "gateway/cli"],
    "gateway/server": ["gateway/cli"],
}


def sources(room):
    top = os.path.join(ROOT, room)
    for dirpath, _, files in os.walk(top):
        for name in files:
            if name.endswith((".cpp", ".hpp")):
                yield os.path.join(dirpath, name)


class LayeringTest(unittest.TestCase):
    def test_rooms_depend_one_way(self):
        violations = []
        checked = 0
        for room, forbidden in FORBIDDEN.items():
            for path in sources(room):
                checked += 1
                with open(path, encoding="utf-8") as f:
                    for included in INCLUDE.findall(f.read()):
                        if any(included.startswith(prefix) for prefix in forbidden):
                            violations.append("%s includes %s" % (os.path.relpath(path, ROOT), included))
        self.assertGreater(checked, 40, "the rooms were not found")
        self.assertEqual(violations, [], "\n".join(violations))


if __name__ == "__main__":
    sys.exit(unittest.main())
