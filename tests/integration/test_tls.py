"""TLS (issue 6): termination on the public listener (TLS 1.2+, ALPN http/1.1,
certificate reload on SIGHUP) and https upstreams with certificate and hostname
verification. Certificates are generated with the openssl CLI at test time."""

import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest

import harness
from harness import bearer

OPENSSL = shutil.which("openssl")


def run(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


class Pki:
    """A throwaway CA in a temp dir, and leaf certificates signed by it."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tokengate-pki-")
        self.ca = self.path("ca.pem")
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tokengate test CA", cwd=self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def leaf(self, name, san, cn=None):
        """Writes NAME.pem / NAME.key for subjectAltName `san`; returns (cert, key)."""
        with open(self.path(name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" % san)
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=%s" % (cn or name), cwd=self.dir)
        run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext", cwd=self.dir)
        return self.path(name + ".pem"), self.path(name + ".key")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.endswith("/__cut"):
            # A body delimited by the close, then the TCP connection ends without a TLS
            # close_notify: what a forged FIN on the path looks like.
            self.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial-body")
            self.wfile.flush()
            self.close_connection = True
            return
        body = json.dumps({"path": self.path, "headers": [[k, v] for k, v in self.headers.items()]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class TlsUpstream:
    """A Python https server on 127.0.0.1:0 with the given certificate."""

    def __init__(self, cert, key):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


ROUTES = """\
routes:
  - path: /good/**
    upstream: good
    public: true
  - path: /wronghost/**
    upstream: wronghost
    public: true
  - path: /untrusted/**
    upstream: untrusted
    public: true
  - path: /api/**
    upstream: echo
"""


def tls_request(host, port, ca, path, headers=(), max_version=None, alpn=None, server_hostname="localhost"):
    ctx = ssl.create_default_context(cafile=ca)
    if max_version:
        ctx.maximum_version = max_version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection((host, port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=server_hostname)
    return s


@unittest.skipIf(OPENSSL is None, "openssl CLI not installed")
class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.cert, cls.key = cls.pki.leaf("gateway", "DNS:localhost,IP:127.0.0.1", cn="gateway-1")
        good_cert, good_key = cls.pki.leaf("upstream", "DNS:localhost,IP:127.0.0.1")
        wrong_cert, wrong_key = cls.pki.leaf("wrong", "DNS:wrong.example")
        cls.good = TlsUpstream(good_cert, good_key)
        cls.wrong = TlsUpstream(wrong_cert, wrong_key)
        cls.upstream = harness.start_upstream()
        # The listener's files are copied so a test can rotate them in place.
        cls.live_cert = cls.pki.path("live.pem")
        cls.live_key = cls.pki.path("live.key")
        shutil.copy(cls.cert, cls.live_cert)
        shutil.copy(cls.key, cls.live_key)
        body = (
            "tls:\n  cert: %s\n  key: %s\n" % (cls.live_cert, cls.live_key)
            + "upstreams:\n"
            "  echo: { url: http://127.0.0.1:%d }\n" % cls.upstream.port
            + "  good: { url: https://localhost:%d, ca: %s }\n" % (cls.good.port, cls.pki.ca)
            + "  wronghost: { url: https://localhost:%d, ca: %s }\n" % (cls.wrong.port, cls.pki.ca)
            + "  untrusted: { url: https://localhost:%d }\n" % cls.good.port
            + harness.DEFAULT_ROLES
            + ROUTES
        )
        cls.gw = harness.Gateway(body)
        cls.token = cls.gw.create_token("t")
        cls.gw.start()

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.upstream.stop()
        cls.good.stop()
        cls.wrong.stop()
        cls.pki.cleanup()

    def get(self, sock, path, headers=()):
        conn = harness.RawConnection.__new__(harness.RawConnection)
        conn.sock = sock
        conn.buf = b""
        return conn.request("GET", path, list(headers))

    def test_handshake_with_test_ca_and_alpn(self):
        s = tls_request(self.gw.host, self.gw.port, self.pki.ca, "/", alpn=["h2", "http/1.1"])
        try:
            self.assertEqual(s.selected_alpn_protocol(), "http/1.1")
            self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
            r = self.get(s, "/api/x", [bearer(self.token)])
            self.assertEqual(r.status, 200)
            sent = dict((k.lower(), v) for k, v in harness.echo_headers(r))
            self.assertEqual(sent["x-forwarded-proto"], "https")
            # keep-alive over TLS
            self.assertEqual(self.get(s, "/api/y", [bearer(self.token)]).status, 200)
        finally:
            s.close()

    def test_tls12_is_accepted(self):
        s = tls_request(self.gw.host, self.gw.port, self.pki.ca, "/", max_version=ssl.TLSVersion.TLSv1_2)
        try:
            self.assertEqual(s.version(), "TLSv1.2")
            self.assertEqual(self.get(s, "/api/x", [bearer(self.token)]).status, 200)
        finally:
            s.close()

    def test_tls10_and_tls11_are_refused(self):
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(self.pki.ca)
            try:
                ctx.minimum_version = version
                ctx.maximum_version = version
                ctx.set_ciphers("ALL:@SECLEVEL=0")
            except (ValueError, ssl.SSLError):
                pass  # this Python/OpenSSL cannot even offer it: still must not connect
            raw = socket.create_connection((self.gw.host, self.gw.port), timeout=10)
            with self.assertRaises((ssl.SSLError, ConnectionResetError, OSError), msg=str(version)):
                s = ctx.wrap_socket(raw, server_hostname="localhost")
                s.close()
            raw.close()

    def test_client_offering_only_h2_is_refused(self):
        with self.assertRaises((ssl.SSLError, ConnectionResetError)):
            s = tls_request(self.gw.host, self.gw.port, self.pki.ca, "/", alpn=["h2"])
            s.close()

    def test_plain_http_on_tls_listener_gets_no_http_response(self):
        with self.gw.connect() as c:
            c.send(b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = c.sock.recv(4096)
            except ConnectionResetError:
                data = b""
            self.assertFalse(data.startswith(b"HTTP/"))

    def test_https_upstream_verified(self):
        s = tls_request(self.gw.host, self.gw.port, self.pki.ca, "/")
        try:
            r = self.get(s, "/good/x")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["path"], "/good/x")
        finally:
            s.close()

    def test_https_upstream_cut_without_close_notify_is_not_complete(self):
        s = tls_request(self.gw.host, self.gw.port, self.pki.ca, "/")
        try:
            try:
                r = self.get(s, "/good/__cut")
                self.fail("a TLS-truncated upstream response was delivered as complete: %r" % r)
            except (harness.ConnectionClosed, ConnectionResetError, ssl.SSLError):
                pass
        finally:
            s.close()

    def test_upstream_with_wrong_hostname_is_502_with_reason_logged(self):
        start = len(self.gw.log_lines())
        s = tls_request(self.gw.host, self.gw.port, self.pki.ca, "/")
        try:
            r = self.get(s, "/wronghost/x")
            self.assertEqual(r.status, 502)
        finally:
            s.close()
        line = self.gw.wait_log(lambda l: "verification failed" in l and "wronghost" in l, start=start)
        self.assertIsNotNone(line, self.gw.process.stderr_text())
        self.assertIn("hostname mismatch", line)

    def test_upstream_signed_by_unknown_ca_is_502(self):
        start = len(self.gw.log_lines())
        s = tls_request(self.gw.host, self.gw.port, self.pki.ca, "/")
        try:
            self.assertEqual(self.get(s, "/untrusted/x").status, 502)
        finally:
            s.close()
        line = self.gw.wait_log(lambda l: "verification failed" in l and "untrusted" in l, start=start)
        self.assertIsNotNone(line, self.gw.process.stderr_text())
        self.assertIn("issuer", line)

    def test_certificate_rotated_by_sighup_is_served_to_new_connections(self):
        old = tls_request(self.gw.host, self.gw.port, self.pki.ca, "/")
        old_der = old.getpeercert(binary_form=True)
        self.assertEqual(self.get(old, "/api/x", [bearer(self.token)]).status, 200)

        new_cert, new_key = self.pki.leaf("rotated", "DNS:localhost,IP:127.0.0.1", cn="gateway-2")
        start = len(self.gw.log_lines())
        shutil.copy(new_cert, self.live_cert + ".tmp")
        shutil.copy(new_key, self.live_key + ".tmp")
        os.replace(self.live_key + ".tmp", self.live_key)
        os.replace(self.live_cert + ".tmp", self.live_cert)
        self.gw.process.proc.send_signal(signal.SIGHUP)
        self.assertIsNotNone(self.gw.wait_log(lambda l: "config reloaded (SIGHUP)" in l, start=start),
                             self.gw.process.stderr_text())

        fresh = tls_request(self.gw.host, self.gw.port, self.pki.ca, "/")
        try:
            self.assertNotEqual(fresh.getpeercert(binary_form=True), old_der)
            self.assertEqual(dict(x[0] for x in fresh.getpeercert()["subject"])["commonName"], "gateway-2")
            self.assertEqual(self.get(fresh, "/api/x", [bearer(self.token)]).status, 200)
            # The connection made before the rotation was not dropped.
            self.assertEqual(self.get(old, "/api/y", [bearer(self.token)]).status, 200)
        finally:
            fresh.close()
            old.close()


@unittest.skipIf(OPENSSL is None, "openssl CLI not installed")
class TlsStartupTest(unittest.TestCase):
    def test_missing_or_mismatched_key_fails_startup_naming_the_file(self):
        pki = Pki()
        try:
            cert, _ = pki.leaf("a", "DNS:localhost")
            _, other_key = pki.leaf("b", "DNS:localhost")
            gw = harness.Gateway("tls:\n  cert: %s\n  key: %s\n" % (cert, other_key)
                                 + "upstreams:\n  e: { url: http://127.0.0.1:1 }\nroutes:\n  - path: /x\n    upstream: e\n")
            try:
                r = subprocess.run([harness.TOKENGATE_BIN, "serve", "--config", gw.config_path],
                                   capture_output=True, timeout=30)
                self.assertEqual(r.returncode, 1)
                self.assertIn(other_key.encode(), r.stderr)
                self.assertIn(b"mismatch", r.stderr)
            finally:
                gw.stop()
        finally:
            pki.cleanup()


if __name__ == "__main__":
    unittest.main()
