"""Helpers for the integration tests: real processes on port 0, temp dirs, raw sockets.

The binaries come from TOKENGATE_BIN and TOKENGATE_DEMO_UPSTREAM (set by ctest).
Raw-socket HTTP is used instead of http.client because the smuggling and path tests
must send exact bytes and see exactly what comes back.
"""

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _binary(env_name, relative):
    path = os.environ.get(env_name)
    if path:
        return path
    return os.path.join(ROOT, "build", relative)


TOKENGATE_BIN = _binary("TOKENGATE_BIN", "gateway/tokengate")
DEMO_UPSTREAM_BIN = _binary("TOKENGATE_DEMO_UPSTREAM", "tools/tokengate-demo-upstream")

START_TIMEOUT = 20.0
# The public listener: `listening on HOST:PORT`, or `... (tls)` with TLS; never `(admin)`.
LISTENING_RE = re.compile(r"listening on (\[[^\]]+\]|[^\s:]+):(\d+)( \(tls\))?$")
# The gateway logs its admin listener as `listening on HOST:PORT (admin)`.
ADMIN_LISTENING_RE = re.compile(r"listening on (\[[^\]]+\]|[^\s:]+):(\d+) \(admin\)$")
# ... and its forward_auth listener as `listening on HOST:PORT (forward_auth)`.
FORWARD_AUTH_LISTENING_RE = re.compile(r"listening on (\[[^\]]+\]|[^\s:]+):(\d+) \(forward_auth\)$")


class Process:
    """A child process whose stderr is read by a thread (so its pipe never fills)
    until it prints `listening on HOST:PORT`."""

    def __init__(self, args, name, env=None):
        self.name = name
        self.args = args
        self.lines = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._reading = threading.Event()  # cleared by pause_reading()
        self._reading.set()
        self.host = None
        self.port = None
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or self.port is None:
            self.stop()
            raise RuntimeError(
                "%s did not print 'listening on HOST:PORT' within %ss (exit %s); stderr:\n%s"
                % (name, START_TIMEOUT, self.proc.returncode, self.stderr_text())
            )

    def _read_stderr(self):
        for raw in self.proc.stderr:
            self._reading.wait()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.lines.append(line)
            if self.port is None:
                m = LISTENING_RE.search(line)
                if m:
                    self.host = m.group(1).strip("[]")
                    self.port = int(m.group(2))
                    self._ready.set()
        self._ready.set()  # EOF: wake the starter, which then reports the exit

    def pause_reading(self):
        """Stops reading stderr (as a stuck log shipper would): once the pipe is full,
        the child's writes to stderr block."""
        self._reading.clear()

    def resume_reading(self):
        self._reading.set()

    def wait_for_line(self, pattern, timeout=START_TIMEOUT):
        """The first match of `pattern` (a compiled regex) in stderr, polling until
        `timeout`; None if it never appears."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                for line in self.lines:
                    m = pattern.search(line)
                    if m:
                        return m
            if time.monotonic() > deadline or not self.alive():
                return None
            time.sleep(0.02)

    def lines_snapshot(self):
        """Every stderr line so far."""
        with self._lock:
            return list(self.lines)

    def stderr_text(self):
        with self._lock:
            return "\n".join(self.lines[-200:])

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        """Resident set size from /proc/PID/status (VmRSS, kB)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS for pid %d" % self.proc.pid)

    def stop(self):
        self.resume_reading()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)


def start_upstream():
    return Process([DEMO_UPSTREAM_BIN, "--listen", "127.0.0.1:0"], "tokengate-demo-upstream")


def refused(host, port):
    """True if nothing accepts connections on host:port."""
    try:
        s = socket.create_connection((host, port), timeout=2)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


def closed_port():
    """A loopback port with nothing listening (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------- tokens

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62_checksum(prefix):
    """CRC-32 of `prefix` in base62, 6 digits (docs/admin-api.md, "Token records")."""
    n = zlib.crc32(prefix.encode()) & 0xFFFFFFFF
    digits = ""
    while n:
        n, r = divmod(n, 62)
        digits = BASE62[r] + digits
    return digits.rjust(6, "0")


def random_b62(n):
    return "".join(secrets.choice(BASE62) for _ in range(n))


def make_token(token_id=None, secret=None):
    """A well-formed token string (valid checksum) for an id/secret of our choosing."""
    token_id = token_id or random_b62(12)
    secret = secret or random_b62(32)
    prefix = "tg_%s_%s" % (token_id, secret)
    return prefix + base62_checksum(prefix)


def token_id(token):
    return token[3:15]


# ---------------------------------------------------------------------------- gateway

DEFAULT_ROLES = """\
roles:
  reader: { permissions: [orders.read] }
  writer: { permissions: [orders.read, orders.write] }
groups:
  ops: { roles: [writer], permissions: [billing.read] }
licenses: [pro, enterprise]
"""


class Gateway:
    """A temp dir with a config, tokens created through the CLI, then `tokengate serve`.

    Tokens must be created before start(): the store is locked while the gateway runs.
    """

    def __init__(self, body_yaml, limits=None, identity=None, workers=2, admin=False, tokens=None,
                 forward_auth=None, postgres=None, key_file=None):
        """postgres: a dict of store.postgres settings (cluster mode, tests/integration/postgres.py);
        key_file: a key file to share between nodes (default: one in the temp dir)."""
        self.dir = tempfile.mkdtemp(prefix="tokengate-it-")
        self.admin_port = None
        # forward_auth: a dict of forward_auth keys besides `listen` (port 0), or {}.
        self.forward_auth = forward_auth
        self.forward_auth_port = None
        # admin=True: admin.listen on port 0 and admin.socket in the temp dir.
        self.socket_path = os.path.join(self.dir, "admin.sock") if admin else None
        self.config_path = os.path.join(self.dir, "tokengate.yaml")
        lines = [
            "listen: 127.0.0.1:0",
            "workers: %d" % workers,
            "store:",
            "  path: %s" % os.path.join(self.dir, "tokens"),
            "  key_file: %s" % (key_file or os.path.join(self.dir, "tokengate.key")),
        ]
        if postgres:
            lines.append("  postgres:")
            lines += ["    %s: %s" % (k, v) for k, v in postgres.items()]
        if admin:
            lines += ["admin:", "  listen: 127.0.0.1:0", "  socket: %s" % self.socket_path]
        if forward_auth is not None:
            lines += ["forward_auth:", "  listen: 127.0.0.1:0"]
            lines += ["  %s: %s" % (k, v) for k, v in forward_auth.items()]
        if tokens:
            lines.append("tokens:")
            lines += ["  %s: %s" % (k, v) for k, v in tokens.items()]
        if limits:
            lines.append("limits:")
            lines += ["  %s: %s" % (k, v) for k, v in limits.items()]
        if identity:
            lines.append("identity:")
            lines += ["  %s: %s" % (k, v) for k, v in identity.items()]
        self.config_text = "\n".join(lines) + "\n# --- body ---\n" + body_yaml
        with open(self.config_path, "w") as f:
            f.write(self.config_text)
        self.process = None

    def cli(self, *args, check=True):
        cmd = [TOKENGATE_BIN] + list(args)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(
                "%s exited %d: %s" % (" ".join(cmd), r.returncode, r.stderr.decode("utf-8", "replace").strip())
            )
        return r

    def create_token(self, name, roles=(), groups=(), permissions=(), licenses=(), expires=None):
        args = ["token", "create", "--config", self.config_path, "--name", name]
        for r in roles:
            args += ["--role", r]
        for g in groups:
            args += ["--group", g]
        for p in permissions:
            args += ["--permission", p]
        for l in licenses:
            args += ["--license", l]
        if expires:
            args += ["--expires", expires]
        out = self.cli(*args).stdout.decode()
        token = out.splitlines()[0].strip() if out else ""
        if not re.fullmatch(r"tg_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}", token):
            raise RuntimeError("token create printed %r as its first line, not a token" % token)
        return token

    def start(self, args=(), env=None):
        """Starts `tokengate serve`; `args` are extra flags, `env` extra environment
        variables (merged into this process's environment)."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.process = Process(
            [TOKENGATE_BIN, "serve", "--config", self.config_path] + list(args), "tokengate serve", env=full_env
        )
        self.host, self.port = self.process.host, self.process.port
        if self.socket_path:
            m = self.process.wait_for_line(ADMIN_LISTENING_RE)
            if not m:
                self.process.stop()
                raise RuntimeError("no admin listening line; stderr:\n%s" % self.process.stderr_text())
            self.admin_port = int(m.group(2))
        if self.forward_auth is not None:
            m = self.process.wait_for_line(FORWARD_AUTH_LISTENING_RE)
            if not m:
                self.process.stop()
                raise RuntimeError("no forward_auth listening line; stderr:\n%s" % self.process.stderr_text())
            self.forward_auth_port = int(m.group(2))
        return self

    def admin(self, timeout=10.0):
        """A raw connection to the admin listener."""
        return RawConnection(self.host, self.admin_port, timeout)

    def write_config(self, body_yaml):
        """Replaces the routes/upstreams part of the config (the header lines written by
        the constructor stay) atomically, by rename, as an editor or a ConfigMap would."""
        header = self.config_text.split("\n# --- body ---\n")[0] if "\n# --- body ---\n" in self.config_text else None
        if header is None:
            raise RuntimeError("config was not built with a body marker")
        self.config_text = header + "\n# --- body ---\n" + body_yaml
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.config_text)
        os.replace(tmp, self.config_path)

    def log_lines(self):
        with self.process._lock:
            return list(self.process.lines)

    def wait_log(self, predicate, timeout=10.0, start=0):
        """Polls the gateway's stderr from line index `start` for a line matching
        `predicate`; returns it or None at the deadline."""
        def find():
            for line in self.log_lines()[start:]:
                if predicate(line):
                    return line
            return None
        return wait_until(find, timeout, 0.02)

    def metrics_text(self):
        """The gateway's /metrics text (Prometheus format)."""
        return _fetch_metrics(self)

    def connect(self, timeout=10.0):
        return RawConnection(self.host, self.port, timeout)

    def check_connection(self, timeout=10.0):
        """A raw connection to the forward_auth listener."""
        return RawConnection(self.host, self.forward_auth_port, timeout)

    def stop(self):
        """Stops the gateway with SIGTERM; returns its exit status (None if never started)."""
        status = None
        if self.process:
            self.process.stop()
            status = self.process.proc.returncode
        shutil.rmtree(self.dir, ignore_errors=True)
        return status


class GatewayTestCase(unittest.TestCase):
    """One demo upstream and one gateway per class. Subclasses build the gateway in
    make_gateway(upstream_port) and create tokens in create_tokens() (before the
    start: a running gateway locks its store). After the class, the gateway must
    exit cleanly on SIGTERM (README.md, "Signals"; a sanitizer report also ends up here)."""

    @classmethod
    def make_gateway(cls, upstream_port):
        raise NotImplementedError

    @classmethod
    def create_tokens(cls):
        pass

    @classmethod
    def gateway_env(cls):
        return None

    @classmethod
    def setUpClass(cls):
        cls.upstream = start_upstream()
        cls.gw = None
        try:
            cls.gw = cls.make_gateway(cls.upstream.port)
            cls.create_tokens()
            cls.gw.start(env=cls.gateway_env())
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        status = cls.gw.stop() if cls.gw else None
        cls.upstream.stop()
        if status not in (None, 0):
            raise AssertionError("the gateway exited with status %s after SIGTERM; its stderr ends with:\n%s"
                                 % (status, cls.gw.process.stderr_text()))

    def tearDown(self):
        # A crashed gateway makes every later test fail on connect: say so where it happened.
        if self.gw and self.gw.process and not self.gw.process.alive():
            self.fail("the gateway exited (status %s) during this test; its stderr ends with:\n%s"
                      % (self.gw.process.proc.returncode, self.gw.process.stderr_text()))


# ---------------------------------------------------------------------------- raw HTTP


class Response:
    def __init__(self, status, reason, headers, body, version):
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] in received order
        self.body = body
        self.version = version

    def header_all(self, name):
        name = name.lower()
        return [v for (n, v) in self.headers if n.lower() == name]

    def header(self, name):
        values = self.header_all(name)
        return values[0] if values else None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r headers=%r body=%r>" % (self.status, self.reason, self.headers, self.body[:300])


class ConnectionClosed(Exception):
    pass


class RawConnection:
    """One TCP connection; sends exact bytes and parses responses (RFC 9112 framing)."""

    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionClosed("connection closed by peer")
        self.buf += chunk

    def _read_until(self, marker, limit=1 << 20):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = self.buf[: i + len(marker)]
                self.buf = self.buf[i + len(marker):]
                return out
            if len(self.buf) > limit:
                raise ValueError("no %r within %d bytes" % (marker, limit))
            self._fill()

    def _read_exact(self, n, sink=None):
        out = [] if sink is None else None
        while n > 0:
            if not self.buf:
                self._fill()
            take = self.buf[:n]
            self.buf = self.buf[len(take):]
            n -= len(take)
            if sink is None:
                out.append(take)
            else:
                sink(take)
        return b"".join(out) if out is not None else b""

    def read_response(self, method="GET", sink=None):
        """Reads one response (interim 1xx included: the caller loops). With `sink`,
        body bytes are passed to it instead of being kept."""
        head = self._read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        m = re.match(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise ValueError("bad status line %r" % lines[0])
        version, status, reason = m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        resp = Response(status, reason, headers, b"", version)
        if method == "HEAD" or status // 100 == 1 or status in (204, 304):
            return resp
        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        chunks = []
        collect = sink if sink is not None else chunks.append
        if te is not None:
            if te.lower() != "chunked":
                raise ValueError("unexpected Transfer-Encoding %r" % te)
            while True:
                size_line = self._read_until(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers until an empty line
                    while self._read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                self._read_exact(size, collect)
                if self._read_exact(2) != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
        elif cl is not None:
            self._read_exact(int(cl), collect)
        else:
            while True:  # read until close
                try:
                    self._fill()
                except ConnectionClosed:
                    break
                collect(self.buf)
                self.buf = b""
        resp.body = b"".join(chunks)
        return resp

    def request(self, method, target, headers=(), body=b"", host="gateway.test"):
        """Sends a simple request (Content-Length framing when there is a body) and
        returns the final response (interim 1xx responses are skipped)."""
        self.send(build_request(method, target, headers, body, host))
        while True:
            resp = self.read_response(method)
            if resp.status // 100 != 1:
                return resp

    def is_closed(self, timeout=5.0):
        """True if the peer closes the connection (EOF or reset) within `timeout`
        without sending anything more; False if it stays open or sends more bytes."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if data:
            self.buf += data
            return False
        return True


def build_request(method, target, headers=(), body=b"", host="gateway.test"):
    lines = ["%s %s HTTP/1.1" % (method, target)]
    if host is not None:
        lines.append("Host: %s" % host)
    names = {n.lower() for n, _ in headers}
    for name, value in headers:
        lines.append("%s: %s" % (name, value))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def bearer(token):
    return ("Authorization", "Bearer " + token)


def upstream_log(upstream):
    """The demo upstream's record of every request it received (GET /__log)."""
    with RawConnection(upstream.host, upstream.port) as c:
        r = c.request("GET", "/__log")
        return r.json()


def upstream_targets(upstream, marker, complete_only=False):
    """Targets received by the demo upstream that contain `marker`."""
    return [
        r["target"]
        for r in upstream_log(upstream)["requests"]
        if marker in r["target"] and (r["complete"] or not complete_only)
    ]


def unique_marker():
    return "m" + secrets.token_hex(8)


def echo_headers(resp):
    """The [(name, value)] list the demo upstream reports having received."""
    return [(n, v) for n, v in resp.json()["headers"]]


def headers_named(pairs, name):
    name = name.lower()
    return [v for n, v in pairs if n.lower() == name]


# ---------------------------------------------------------------------------- websocket

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept_value(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_masked_frame(payload, opcode=0x1):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read_frame(conn):
    """Reads one unmasked server frame: (fin, opcode, payload)."""
    b0, b1 = conn._read_exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(conn._read_exact(2), "big")
    elif n == 127:
        n = int.from_bytes(conn._read_exact(8), "big")
    if b1 & 0x80:
        raise ValueError("server frame is masked")
    return bool(b0 & 0x80), b0 & 0x0F, conn._read_exact(n)


def wait_until(predicate, timeout, interval=0.1):
    """Polls `predicate` until it returns a truthy value or `timeout` passes; returns
    the last value. For conditions that depend on wall-clock time (token expiry)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---------------------------------------------------------------------------- metrics

_METRIC_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$'
)
_METRIC_META = re.compile(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$")


def parse_prometheus(text):
    """Parses Prometheus text exposition format strictly enough for tests: returns
    {'name{labels}': value}; raises ValueError on a malformed line, a duplicate
    sample, a TYPE that is not counter/gauge/histogram, or a sample whose family has
    no TYPE line before it."""
    samples = {}
    typed = {}
    for line in text.splitlines():
        if not line:
            continue
        m = _METRIC_META.match(line)
        if m:
            if m.group(1) == "TYPE":
                if m.group(3) not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ValueError("bad TYPE line %r" % line)
                typed[m.group(2)] = m.group(3)
            continue
        if line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            raise ValueError("malformed metrics line %r" % line)
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        if family not in typed and name not in typed:
            raise ValueError("sample %r has no TYPE line" % line)
        key = name + (m.group(2) or "")
        if key in samples:
            raise ValueError("duplicate sample %r" % key)
        samples[key] = float(m.group(3))
    return samples


def _fetch_metrics(gw):
    """GET /metrics on the admin listener (the gateway must run with admin=True)."""
    if gw.admin_port is None:
        raise RuntimeError("gateway started without an admin listener (use admin=True)")
    with gw.admin() as c:
        resp = c.request("GET", "/metrics")
    if resp.status != 200:
        raise RuntimeError("GET /metrics answered %d" % resp.status)
    return resp.body.decode()

