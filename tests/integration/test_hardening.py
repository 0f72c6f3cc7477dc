"""Regression tests for the data-plane security findings (docs/http.md):
one test (or a few variants) per finding, each failing on the gateway before the
fix. Every test runs its own gateway (and upstream), so a gateway one test kills
cannot fail the others; a gateway must also still exit cleanly on SIGTERM.
"""

import fcntl
import hashlib
import select
import socket
import termios
import threading
import time
import unittest

import harness
from harness import bearer, echo_headers, unique_marker
import test_proxy

ROUTES = """\
routes:
  - path: /public/**
    upstream: echo
    public: true
  - path: /api/**
    upstream: echo
"""

MIB = 1 << 20
REJECTED_TOO_LARGE = (431, 400)


def chunked_head(target, extra=b""):
    return (b"POST %s HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n" % target.encode()
            + extra + b"\r\n")


def send_until_answered(conn, pieces, timeout=60.0):
    """Writes `pieces` (an iterable of bytes) to `conn` until all are sent or the
    gateway answers, closes or resets the connection: a gateway that rejects early
    stops reading, and the test must not fill its socket forever. Returns the number
    of bytes sent."""
    sock = conn.sock
    deadline = time.monotonic() + timeout
    sent = 0
    try:
        for piece in pieces:
            view = memoryview(piece)
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the gateway neither read %d more bytes nor answered within %ss"
                                         % (len(view), timeout))
                readable, writable, _ = select.select([sock], [sock], [], remaining)
                if readable:
                    return sent
                if writable:
                    n = sock.send(view[:256 * 1024])
                    sent += n
                    view = view[n:]
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def read_final_response(conn):
    """The first non-1xx response, or None if the connection ends without one."""
    try:
        while True:
            r = conn.read_response()
            if r.status // 100 != 1:
                return r
    except (harness.ConnectionClosed, ConnectionResetError):
        return None


class RssSampler:
    """Samples a process's RSS (KiB) from a thread until stopped; .peak is the
    largest value seen."""

    def __init__(self, process):
        self.process = process
        self.baseline = process.rss_kib()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.rss_kib())
            except (OSError, RuntimeError):
                return  # the process is gone
            self._stop.wait(0.005)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return self.peak - self.baseline


class SilentUpstream:
    """A listening socket that nobody serves. Whatever the gateway sends it stays in
    the kernel's buffers (of accepted or not yet accepted connections), so
    received() sees every byte the gateway wrote before it answered its client: a
    deterministic "nothing was forwarded", with no race against an upstream's
    threads."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.data = b""

    def received(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                break
            conn.setblocking(False)
            self.conns.append(conn)
        for conn in self.conns:
            while True:
                try:
                    chunk = conn.recv(1 << 20)
                except (BlockingIOError, ConnectionResetError):
                    break
                if not chunk:
                    break
                self.data += chunk
        return self.data

    def stop(self):
        for conn in self.conns:
            conn.close()
        self.sock.close()


class GatewayPerTest(unittest.TestCase):
    """A demo upstream and a gateway (ROUTES) started for each test."""

    limits = None

    def create_tokens(self):
        pass

    def upstream_yaml(self):
        self.upstream = harness.start_upstream()
        self.addCleanup(self.upstream.stop)
        return "upstreams:\n  echo:\n    url: http://127.0.0.1:%d\n" % self.upstream.port

    def setUp(self):
        self.gw = harness.Gateway(self.upstream_yaml() + harness.DEFAULT_ROLES + ROUTES, limits=self.limits)
        self.addCleanup(self._stop_gateway)
        self.create_tokens()
        self.gw.start()

    def _stop_gateway(self):
        alive = self.gw.process is not None and self.gw.process.alive()
        stderr = self.gw.process.stderr_text() if self.gw.process else ""
        status = self.gw.stop()
        if alive and status not in (None, 0):
            raise AssertionError("the gateway exited with status %s after SIGTERM; its stderr ends with:\n%s"
                                 % (status, stderr))

    def assert_alive(self):
        self.assertTrue(self.gw.process.alive(), "the gateway process died (status %s); its stderr ends with:\n%s"
                        % (self.gw.process.proc.returncode, self.gw.process.stderr_text()[-4000:]))

    def assert_response(self, r, what=""):
        """`r` is not None; if it is, says whether the gateway process is dying
        (a crash closes the connection a moment before the process is gone)."""
        if r is None:
            harness.wait_until(lambda: not self.gw.process.alive(), 5.0, 0.02)
            self.assert_alive()
            self.fail("the connection ended without a response%s" % what)

    def assert_serves(self, conn=None):
        """The gateway still answers: on `conn` (an open keep-alive connection) or a new one."""
        self.assert_alive()
        target = "/public/alive-" + unique_marker()
        if conn is None:
            with self.gw.connect() as c:
                r = c.request("GET", target)
        else:
            try:
                r = conn.request("GET", target)
            except (harness.ConnectionClosed, OSError) as e:
                self.fail("an open keep-alive connection got no answer after the attack (%s); gateway alive: %s"
                          % (e, self.gw.process.alive()))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["target"], target)

    def upstream_entries(self, marker):
        """The demo upstream's log entries whose target holds `marker`, after a
        request through the gateway has been answered (so anything the gateway
        forwarded before answering the case has had its chance to arrive)."""
        with self.gw.connect() as c:
            c.request("GET", "/public/barrier-" + unique_marker())
        return [e for e in harness.upstream_log(self.upstream)["requests"] if marker in e["target"]]

    def assert_nothing_complete_upstream(self, marker):
        complete = [e for e in self.upstream_entries(marker) if e["complete"]]
        self.assertEqual(complete, [], "the upstream received a complete request that was rejected")


# --------------------------------------------------------------------------- finding 1


class HugeTrailerTest(GatewayPerTest):
    """Finding 1: a trailer field over 64 KiB on a public route aborted the process."""

    def check(self, trailer):
        m = unique_marker()
        with self.gw.connect(timeout=30.0) as keep:
            r = keep.request("GET", "/public/keep-alive-" + unique_marker())
            self.assertEqual(r.status, 200, r)
            with self.gw.connect(timeout=30.0) as c:
                send_until_answered(c, [chunked_head("/public/" + m), b"5\r\nhello\r\n0\r\n", trailer])
                r = read_final_response(c)
                self.assert_response(r)
                self.assert_alive()
                self.assertIn(r.status, REJECTED_TOO_LARGE, r)
                self.assertTrue(c.is_closed(10.0), "connection left open after %d" % r.status)
            self.assert_serves(keep)
        self.assert_nothing_complete_upstream(m)

    def test_finding01_65600_byte_trailer_value(self):
        self.check(b"X-T: " + b"b" * 65600 + b"\r\n\r\n")

    def test_finding01_70000_byte_trailer_name(self):
        self.check(b"b" * 70000 + b": v\r\n\r\n")


# --------------------------------------------------------------------------- finding 2


class UnboundedChunkMetadataTest(GatewayPerTest):
    """Finding 2: chunk extensions and trailers were buffered without a bound."""

    LIMIT_KIB = 8 * 1024

    def check(self, pieces):
        m = unique_marker()
        with self.gw.connect() as c:  # warm up the worker and its buffers
            self.assertEqual(c.request("POST", "/public/warm", [("Transfer-Encoding", "chunked")],
                                       b"5;a=b\r\nhello\r\n0\r\nX-T: t\r\n\r\n").status, 200)
        sampler = RssSampler(self.gw.process)
        try:
            with self.gw.connect(timeout=60.0) as c:
                sent = send_until_answered(c, pieces("/public/" + m), timeout=120.0)
                r = read_final_response(c)
        finally:
            growth = sampler.stop()
        what = " (%d bytes sent; RSS grew by %d KiB)" % (sent, growth)
        self.assert_response(r, what)
        self.assert_alive()
        self.assertIn(r.status, REJECTED_TOO_LARGE, "%r%s" % (r, what))
        self.assertLess(growth, self.LIMIT_KIB, "the gateway's RSS grew too much" + what)
        self.assertLess(sent, 16 * MIB, "the gateway read too much before rejecting" + what)
        self.assert_serves()
        self.assert_nothing_complete_upstream(m)

    def test_finding02_32_mib_chunk_extension(self):
        def pieces(target):
            yield chunked_head(target) + b"5;"
            block = b"a" * (64 * 1024)
            for _ in range(32 * 16):
                yield block
            yield b"\r\nhello\r\n0\r\n\r\n"
        self.check(pieces)

    def test_finding02_48_mib_of_small_trailer_fields(self):
        def pieces(target):
            yield chunked_head(target) + b"5\r\nhello\r\n0\r\n"
            field = b"X-T: " + b"v" * 57 + b"\r\n"  # 64 bytes
            block = field * 1024
            for _ in range(48 * 16):
                yield block
            yield b"\r\n"
        self.check(pieces)


# --------------------------------------------------------------------------- finding 3


def wait_unacked_zero(conn, timeout=10.0):
    """Polls until the kernel has no unacknowledged bytes queued on `conn` (TIOCOUTQ):
    everything written has reached the peer's socket."""
    deadline = time.monotonic() + timeout
    buf = bytearray(4)
    while time.monotonic() < deadline:
        fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, buf)
        if int.from_bytes(buf, "little") == 0:
            return True
        time.sleep(0.005)
    return False


class ScriptedGatewayTest(unittest.TestCase):
    """A gateway (one worker, so one pool) in front of test_proxy's ScriptedUpstream,
    started as FaultyUpstreamTest does (its start() and answer_with_target() are
    borrowed, not inherited: inheriting would run its tests here again)."""

    start = test_proxy.FaultyUpstreamTest.start
    answer_real = staticmethod(test_proxy.FaultyUpstreamTest.answer_with_target)


class PooledDesyncTest(ScriptedGatewayTest):
    """Finding 3: bytes an upstream sends after a complete response stayed in the
    pooled connection and answered the next request (anyone's)."""

    POISON = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON"

    def check(self, first_response, first_body, same_client):
        answered = threading.Event()  # the client has the first response
        poisoned = threading.Event()  # the upstream's POISON sits in the gateway's socket
        conns = {}

        def script(index, head, conn):
            target = head.split(b" ")[1]
            conns[target] = conn
            if target == b"/a":
                conn.sendall(first_response)
                answered.wait(30)
                conn.sendall(self.POISON)
                wait_unacked_zero(conn)
                poisoned.set()
                return True
            return self.answer_real(head, conn)

        self.addCleanup(answered.set)  # never leave the upstream's thread waiting
        self.start(script)
        first = self.gw.connect()
        self.addCleanup(first.close)
        r = first.request("GET", "/a")
        self.assertEqual((r.status, r.body), (200, first_body), r)
        answered.set()
        self.assertTrue(poisoned.wait(30), "the scripted upstream did not write its second response")
        if same_client:
            second = first
        else:
            second = self.gw.connect()
            self.addCleanup(second.close)
        try:
            r = second.request("GET", "/b")
        except (harness.ConnectionClosed, OSError) as e:
            self.fail("no answer to the next request (%s)" % e)
        self.assertNotIn(b"POISON", r.body, "the next request was answered with the stray response")
        self.assertEqual((r.status, r.body), (200, b"real:/b"), r)
        self.assertIsNot(conns.get(b"/b"), conns[b"/a"], "the poisoned upstream connection was reused")

    CL_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    CHUNKED_RESPONSE = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"

    def test_finding03_stray_response_after_content_length_same_client(self):
        self.check(self.CL_RESPONSE, b"ok", same_client=True)

    def test_finding03_stray_response_after_content_length_other_client(self):
        self.check(self.CL_RESPONSE, b"ok", same_client=False)

    def test_finding03_stray_response_after_chunked_same_client(self):
        self.check(self.CHUNKED_RESPONSE, b"ok", same_client=True)

    def test_finding03_stray_response_after_chunked_other_client(self):
        self.check(self.CHUNKED_RESPONSE, b"ok", same_client=False)


# --------------------------------------------------------------------------- finding 8


class InvalidResponseFramingTest(ScriptedGatewayTest):
    """Finding 8: a response with an invalid first chunk arriving with its head
    closed the client connection without any response; it must be a 502."""

    def test_finding08_invalid_chunk_in_first_response_bytes_is_502(self):
        def script(index, head, conn):
            if head.split(b" ")[1] == b"/bad":
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
                return True
            return self.answer_real(head, conn)

        self.start(script)
        with self.gw.connect() as c:
            c.send(harness.build_request("GET", "/bad"))
            r = read_final_response(c)
        self.assertIsNotNone(r, "the client connection was closed without a response")
        self.assertEqual(r.status, 502, r)
        self.assertTrue(self.gw.process.alive())
        with self.gw.connect() as c:
            r = c.request("GET", "/next")
        self.assertEqual((r.status, r.body), (200, b"real:/next"), r)


# --------------------------------------------------------------------------- findings 4-7


class AmbiguousRequestTest(GatewayPerTest):
    """Findings 4 to 7: requests docs/http.md calls ambiguous must get 400, have their
    connection closed, and reach the upstream not at all -- not even their head.
    The upstream is a SilentUpstream; upstream_timeout is short so that a gateway
    which forwards a complete request answers (504) soon."""

    limits = {"upstream_timeout": "2s"}

    def upstream_yaml(self):
        self.upstream = SilentUpstream()
        self.addCleanup(self.upstream.stop)
        return "upstreams:\n  echo:\n    url: http://127.0.0.1:%d\n" % self.upstream.port

    def send_and_check(self, raw, marker):
        with self.gw.connect(timeout=30.0) as c:
            send_until_answered(c, [raw])
            r = read_final_response(c)
            self.assert_response(r)
            closed = c.is_closed(10.0)
        got = self.upstream.received()
        self.assertNotIn(marker.encode(), got, "the upstream received (part of) the request: %r" % got[:600])
        self.assertEqual(r.status, 400, r)
        self.assertTrue(closed, "connection left open (or more bytes sent) after %d" % r.status)

    def check(self, lines, body, version=b"HTTP/1.1"):
        m = unique_marker()
        raw = (b"POST /public/%s %s\r\nHost: gateway.test\r\n" % (m.encode(), version)
               + b"".join(l + b"\r\n" for l in lines) + b"\r\n" + body
               + b"GET /public/%s-smuggled HTTP/1.1\r\nHost: gateway.test\r\n\r\n" % m.encode())
        self.send_and_check(raw, m)

    # Finding 4: names that differ from the framing headers only by '_' for '-'.
    def test_finding04_transfer_underscore_encoding_with_content_length(self):
        self.check([b"Transfer_Encoding: chunked", b"Content-Length: 5"], b"hello")

    def test_finding04_transfer_underscore_encoding_alone(self):
        self.check([b"Transfer_Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n")

    def test_finding04_content_underscore_length_with_transfer_encoding(self):
        self.check([b"Content_Length: 5", b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n")

    # Finding 5: Transfer-Encoding on HTTP/1.0, followed by two pipelined requests.
    def test_finding05_transfer_encoding_on_http10(self):
        m = unique_marker()
        raw = (b"POST /public/%s HTTP/1.0\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n" % m.encode()
               + b"GET /public/%s-p1 HTTP/1.1\r\nHost: gateway.test\r\n\r\n" % m.encode()
               + b"GET /public/%s-p2 HTTP/1.1\r\nHost: gateway.test\r\n\r\n" % m.encode())
        self.send_and_check(raw, m)  # one 400, then the close: neither pipelined request answered

    # Finding 6: the bytes that arrive with the head are checked before any is forwarded.
    def check_one_write(self, chunks):
        self.check([b"Transfer-Encoding: chunked"], chunks)

    def test_finding06_invalid_chunk_size_after_a_chunk(self):
        self.check_one_write(b"5\r\nhello\r\nzz\r\n0\r\n\r\n")

    def test_finding06_chunk_data_longer_than_its_size(self):
        self.check_one_write(b"5\r\nhelloXX0\r\n\r\n")

    def test_finding06_content_length_in_trailers(self):
        self.check_one_write(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n")

    def test_finding06_transfer_encoding_in_trailers(self):
        self.check_one_write(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n")

    def test_trailer_value_with_bare_cr(self):
        self.check_one_write(b"5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n")

    # Finding 7: a list-valued Host.
    def test_finding07_list_valued_host(self):
        m = unique_marker()
        self.send_and_check(b"GET /public/%s HTTP/1.1\r\nHost: a, b\r\n\r\n" % m.encode(), m)


# --------------------------------------------------------------------------- finding 12 and trailers


class AllowedRequestTest(GatewayPerTest):
    def create_tokens(self):
        self.token = self.gw.create_token("hardening")

    # Finding 12: hop-by-hop names spelled with '_', Proxy (httpoxy) and Proxy-*.
    def test_finding12_proxy_and_underscore_hop_by_hop_headers_are_removed(self):
        for name, value in (("Proxy", "http://evil"), ("Proxy_Authorization", "x"), ("Keep_Alive", "1"),
                            ("Proxy-Connection", "x")):
            with self.subTest(header=name):
                with self.gw.connect() as c:
                    r = c.request("GET", "/api/" + unique_marker(), [bearer(self.token), (name, value)])
                self.assertEqual(r.status, 200, r)
                folded = name.lower().replace("_", "-")
                got = [(n, v) for n, v in echo_headers(r) if n.lower().replace("_", "-") == folded]
                self.assertEqual(got, [], "the upstream received %s" % name)

    def test_valid_small_trailer_is_accepted(self):
        body = b"hello, trailers"
        with self.gw.connect() as c:
            c.send(b"POST /api/trailer HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer %s\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nA\r\n, trailers\r\n0\r\nX-Checksum: abc\r\n"
                   b"X-Other: 1\r\n\r\n" % self.token.encode())
            r = read_final_response(c)
            self.assertIsNotNone(r)
            self.assertEqual(r.status, 200, r)
            self.assertEqual((r.json()["body_bytes"], r.json()["body_sha256"]),
                             (len(body), hashlib.sha256(body).hexdigest()))
            r = c.request("GET", "/api/after-trailer", [bearer(self.token)])
            self.assertEqual(r.status, 200, r)


if __name__ == "__main__":
    unittest.main()
