"""Request smuggling: every ambiguous-framing rule of docs/http.md with exact bytes.

Each case must get 400, have its connection closed, and reach the upstream not at all:
every request carries a unique marker in its path (and a smuggled follow-up request
with the marker too), and the demo upstream's /__log shows what it received.
"""

import unittest

import harness
from harness import unique_marker

ROUTES = """\
routes:
  - path: /public/**
    upstream: echo
    public: true
  - path: /api/**
    upstream: echo
"""

SMUGGLED = b"GET /public/%s-smuggled HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


def case(head_lines, body=b"", method="POST"):
    """A request template; {m} in the head lines is replaced by the marker."""
    return method, head_lines, body


# name -> (method, header lines after the request line, bytes after the head)
CASES = {
    "content-length with transfer-encoding": case(
        ["Host: gateway.test", "Content-Length: 6", "Transfer-Encoding: chunked"], b"0\r\n\r\n" + SMUGGLED),
    "transfer-encoding before content-length": case(
        ["Host: gateway.test", "Transfer-Encoding: chunked", "Content-Length: 4"], b"5c\r\n" + SMUGGLED),
    "transfer-encoding gzip": case(
        ["Host: gateway.test", "Transfer-Encoding: gzip"], b"0\r\n\r\n" + SMUGGLED),
    "transfer-encoding gzip, chunked": case(
        ["Host: gateway.test", "Transfer-Encoding: gzip, chunked"], b"0\r\n\r\n" + SMUGGLED),
    "transfer-encoding chunked, chunked": case(
        ["Host: gateway.test", "Transfer-Encoding: chunked, chunked"], b"0\r\n\r\n" + SMUGGLED),
    "two transfer-encoding headers": case(
        ["Host: gateway.test", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
        b"0\r\n\r\n" + SMUGGLED),
    "transfer-encoding xchunked": case(
        ["Host: gateway.test", "Transfer-Encoding: xchunked"], b"0\r\n\r\n" + SMUGGLED),
    "transfer-encoding identity": case(
        ["Host: gateway.test", "Transfer-Encoding: identity", "Content-Length: 0"], SMUGGLED),
    "two content-length headers": case(
        ["Host: gateway.test", "Content-Length: 5", "Content-Length: 5"], b"hello" + SMUGGLED),
    "two different content-length headers": case(
        ["Host: gateway.test", "Content-Length: 0", "Content-Length: 55"], SMUGGLED),
    "list-valued content-length": case(
        ["Host: gateway.test", "Content-Length: 5, 5"], b"hello" + SMUGGLED),
    "content-length with sign": case(
        ["Host: gateway.test", "Content-Length: +5"], b"hello" + SMUGGLED),
    "content-length not a number": case(
        ["Host: gateway.test", "Content-Length: 5x"], b"hello" + SMUGGLED),
    "obs-fold": case(
        ["Host: gateway.test", "Content-Length: 0", "X-Folded: a", " b"], SMUGGLED, method="GET"),
    "obs-fold with tab into transfer-encoding": case(
        ["Host: gateway.test", "Content-Length: 5", "X-Folded: a", "\tTransfer-Encoding: chunked"],
        b"hello" + SMUGGLED),
    "NUL in header value": case(
        ["Host: gateway.test", "X-Nul: a\x00b"], SMUGGLED, method="GET"),
    "CR in header value": case(
        ["Host: gateway.test", "X-Cr: a\rb"], SMUGGLED, method="GET"),
    # A bare LF either sits in a value (400) or ends a line, which makes this CL+TE (400).
    "bare LF in header": case(
        ["Host: gateway.test", "Content-Length: 5", "X-Lf: a\nTransfer-Encoding: chunked"], b"hello" + SMUGGLED),
    # RFC 9112 §5.1: whitespace between the field name and the colon MUST get 400.
    "whitespace before colon": case(
        ["Host: gateway.test", "Content-Length: 5", "Transfer-Encoding : chunked"], b"hello" + SMUGGLED),
    "missing Host": case(["Content-Length: 0"], SMUGGLED, method="GET"),
    "two Host headers": case(["Host: gateway.test", "Host: other.test"], SMUGGLED, method="GET"),
}

# Invalid chunk sizes: the head is fine, so a streaming gateway may already have sent
# the head upstream; it must still never complete the request nor pass the rest on.
CHUNK_CASES = {
    "chunk size zz": b"zz\r\nhello\r\n0\r\n\r\n",
    "negative chunk size": b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk size overflowing 64 bits": b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    "chunk size with 0x prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk data longer than its size": b"3\r\nhello\r\n0\r\n\r\n",
    "invalid chunk size after a valid chunk": b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n",
}


class SmugglingTest(harness.GatewayTestCase):
    @classmethod
    def make_gateway(cls, upstream_port):
        return harness.Gateway(
            "upstreams:\n  echo:\n    url: http://127.0.0.1:%d\n" % upstream_port + harness.DEFAULT_ROLES + ROUTES)

    @classmethod
    def create_tokens(cls):
        cls.token = cls.gw.create_token("smuggler")

    def send_raw(self, raw):
        with self.gw.connect() as c:
            c.send(raw)
            try:
                r = c.read_response()
            except (harness.ConnectionClosed, ConnectionResetError) as e:
                self.fail("no response before the connection ended (%s)" % e)
            closed = c.is_closed()
        return r, closed

    def assert_rejected(self, r, closed):
        self.assertEqual(r.status, 400, r)
        ctype = (r.header("Content-Type") or "").split(";")[0].strip()
        self.assertEqual(ctype, "application/json", r)
        self.assertTrue(closed, "connection left open (or more bytes sent) after a framing error")

    def test_framing_errors(self):
        for name, (method, lines, body) in CASES.items():
            with self.subTest(case=name):
                m = unique_marker()
                head = "%s /public/%s HTTP/1.1\r\n" % (method, m) + "".join(l + "\r\n" for l in lines) + "\r\n"
                raw = head.encode("latin-1") + (body.replace(b"%s", m.encode()) if b"%s" in body else body)
                r, closed = self.send_raw(raw)
                self.assert_rejected(r, closed)
                self.assertEqual(harness.upstream_targets(self.upstream, m), [],
                                 "the upstream received (part of) a request with ambiguous framing")

    def test_invalid_chunk_sizes(self):
        for name, chunks in CHUNK_CASES.items():
            with self.subTest(case=name):
                m = unique_marker()
                raw = (("POST /public/%s HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n" % m)
                       .encode() + chunks + SMUGGLED.replace(b"%s", m.encode()))
                r, closed = self.send_raw(raw)
                self.assert_rejected(r, closed)
                self.assertEqual(harness.upstream_targets(self.upstream, m, complete_only=True), [],
                                 "the upstream received a complete request from an invalid chunked body")
                self.assertEqual(harness.upstream_targets(self.upstream, m + "-smuggled"), [])

    def test_two_authorization_headers(self):
        m = unique_marker()
        raw = ("GET /api/%s HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer %s\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (m, self.token, self.token)).encode()
        r, closed = self.send_raw(raw)
        self.assert_rejected(r, closed)
        self.assertEqual(harness.upstream_targets(self.upstream, m), [])

    def test_control_valid_requests_do_reach_upstream(self):
        # Proves the marker check above can see a forwarded request at all.
        m = unique_marker()
        with self.gw.connect() as c:
            c.send(("POST /public/%s HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n0\r\n\r\n" % m).encode())
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            r = c.request("GET", "/api/%s-2" % m, [harness.bearer(self.token)])
            self.assertEqual(r.status, 200, r)
        self.assertEqual(harness.upstream_targets(self.upstream, m, complete_only=True),
                         ["/public/" + m, "/api/%s-2" % m])


if __name__ == "__main__":
    unittest.main()
