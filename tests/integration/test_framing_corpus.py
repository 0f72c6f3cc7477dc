"""A corpus of request-framing cases (RFC 9112, RFC 9110 §5/§8.6, and the public
request-smuggling / desync research: CL.TE, TE.CL, TE.TE obfuscation, "funky chunks",
h2c smuggling, underscore header names) sent as exact bytes through the gateway.

Every case carries a unique marker in its target, and after its body a smuggled
follow-up request `GET /public/<marker>-smuggled`. Each case expects one outcome
(docs/http.md, read strictly):

  REJECT   a 4xx status from the case's allowed set (400 unless said otherwise: 431
           for a size limit, 413 for the body limit, 505 for a version), the
           connection closed afterwards, and nothing with the marker at the upstream
           (for cases whose error lies beyond the first ~16 KiB, a forwarded head is
           tolerated -- docs/http.md, "Request bodies": a message rejected later
           closes the upstream connection -- but never a complete request).
  FORWARD  200 from the demo upstream, which reports exactly the method, target and
           body bytes given here; the upstream saw exactly one request with the
           marker and never the smuggled follow-up.
  EITHER   legitimately ambiguous: either of the above, never a second request.

FORWARD and EITHER cases send `Connection: close` (added after Host unless the case
sets its own), so the follow-up is never a legitimate pipelined request: any
request with the marker other than the case's own is a desync.

The upstream's /__log is read once after all cases (so late arrivals are seen too).
A gateway that dies during a case fails that case and is restarted for the rest.
TOKENGATE_CORPUS_REPORT=1 prints each case's outcome (which way EITHER cases went).
"""

import hashlib
import json
import os
import sys
import unittest

import harness
from harness import unique_marker

ROUTES = """\
routes:
  - path: /public/**
    upstream: echo
    public: true
"""

REJECT, FORWARD, EITHER = "rejected", "forwarded", "either"

M = b"{M}"  # replaced by the case's marker
SMUGGLED = b"GET /public/{M}-smuggled HTTP/1.1\r\nHost: gateway.test\r\n\r\n"
TARGET = "/public/{M}"
CHUNKED = b"Transfer-Encoding: chunked"
CLOSE = b"Connection: close"
HELLO_CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"


class Case:
    def __init__(self, name, expect, lines=(), body=b"", *, rl=b"POST /public/{M} HTTP/1.1", eol=b"\r\n",
                 host=True, close=None, statuses=(400,), fwd_body=b"hello", fwd_method=None, fwd_target=TARGET,
                 late=False, raw=None, tail=SMUGGLED, forbidden=None, check=None):
        self.name = name
        self.expect = expect
        self.lines = list(lines)
        self.body = body
        self.rl = rl
        self.eol = eol
        self.host = host
        # Connection: close for FORWARD/EITHER cases (see the module docstring).
        self.close = (expect != REJECT) if close is None else close
        self.statuses = tuple(statuses)
        self.fwd_body = fwd_body
        self.fwd_method = fwd_method or rl.split()[0].decode("latin-1")
        self.fwd_target = fwd_target
        self.late = late
        self.raw = raw
        self.tail = tail
        # forbidden(entry, marker): True if an upstream log entry belongs to this case
        # (default: its target holds the marker).
        self.forbidden = forbidden
        # check(echo): a list of problems with what the upstream reported receiving.
        self.check = check

    def build(self, marker):
        if self.raw is not None:
            data = self.raw
        else:
            lines = [self.rl]
            if self.host:
                lines.append(b"Host: gateway.test")
            if self.close:
                lines.append(CLOSE)
            lines += self.lines
            data = self.eol.join(lines) + self.eol + self.eol + self.body
        return (data + self.tail).replace(M, marker.encode())

    def belongs(self, entry, marker):
        if self.forbidden is not None:
            return self.forbidden(entry, marker)
        return marker in entry["target"]


CASES = []


def add(*args, **kwargs):
    CASES.append(Case(*args, **kwargs))


def chunked(name, expect, chunks, extra_lines=(), **kw):
    """A chunked POST whose body (chunks, trailers) is `chunks`."""
    add(name, expect, [CHUNKED] + list(extra_lines), chunks, **kw)


def host_case(name, expect, host_lines, version=b"HTTP/1.1", **kw):
    add(name, expect, host_lines, b"", rl=b"GET /public/{M} " + version, host=False, fwd_body=b"", **kw)


def no_header(name):
    """check(): the upstream never saw a header called `name` (any case)."""
    def check(echo):
        got = [v for n, v in echo["headers"] if n.lower() == name.lower()]
        return ["the upstream received %s: %r" % (name, got)] if got else []
    return check


def no_header_value(name, value):
    def check(echo):
        got = [v for n, v in echo["headers"] if n.lower() == name.lower() and value in v]
        return ["the upstream received %s: %r" % (name, got)] if got else []
    return check


# --------------------------------------------------------------------------- Transfer-Encoding

chunked("TE chunked (control)", FORWARD, HELLO_CHUNKED)
chunked("TE chunked, two chunks", FORWARD, b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n")
chunked("TE chunked, empty body", FORWARD, b"0\r\n\r\n", fwd_body=b"")
add("TE name lowercase", FORWARD, [b"transfer-encoding: chunked"], HELLO_CHUNKED)
add("TE name uppercase", FORWARD, [b"TRANSFER-ENCODING: chunked"], HELLO_CHUNKED)
add("TE no space after colon", FORWARD, [b"Transfer-Encoding:chunked"], HELLO_CHUNKED)
add("TE surrounded by spaces", FORWARD, [b"Transfer-Encoding:   chunked   "], HELLO_CHUNKED)
add("TE with tab OWS", FORWARD, [b"Transfer-Encoding:\tchunked\t"], HELLO_CHUNKED)
# Transfer codings are case-insensitive (RFC 9112 §7); docs/http.md says exactly `chunked`.
add("TE value Chunked", EITHER, [b"Transfer-Encoding: Chunked"], HELLO_CHUNKED)
add("TE value CHUNKED", EITHER, [b"Transfer-Encoding: CHUNKED"], HELLO_CHUNKED)
add("TE chunked trailing comma", REJECT, [b"Transfer-Encoding: chunked,"], HELLO_CHUNKED)
add("TE leading comma", REJECT, [b"Transfer-Encoding: , chunked"], HELLO_CHUNKED)
add("TE chunked,chunked", REJECT, [b"Transfer-Encoding: chunked,chunked"], HELLO_CHUNKED)
add("TE quoted", REJECT, [b'Transfer-Encoding: "chunked"'], HELLO_CHUNKED)
add("TE chunked;x", REJECT, [b"Transfer-Encoding: chunked;x"], HELLO_CHUNKED)
add("TE chunked;q=1", REJECT, [b"Transfer-Encoding: chunked;q=1"], HELLO_CHUNKED)
add("TE leading vertical tab", REJECT, [b"Transfer-Encoding: \x0bchunked"], HELLO_CHUNKED)
add("TE trailing vertical tab", REJECT, [b"Transfer-Encoding: chunked\x0b"], HELLO_CHUNKED)
add("TE leading form feed", REJECT, [b"Transfer-Encoding: \x0cchunked"], HELLO_CHUNKED)
add("TE duplicated header", REJECT, [CHUNKED, CHUNKED], HELLO_CHUNKED)
add("TE chunked then identity header", REJECT, [CHUNKED, b"Transfer-Encoding: identity"], HELLO_CHUNKED)
add("TE identity", REJECT, [b"Transfer-Encoding: identity"], b"hello")
add("TE identity with CL", REJECT, [b"Transfer-Encoding: identity", b"Content-Length: 5"], b"hello")
add("TE gzip, chunked", REJECT, [b"Transfer-Encoding: gzip, chunked"], HELLO_CHUNKED)
add("TE chunked, identity", REJECT, [b"Transfer-Encoding: chunked, identity"], HELLO_CHUNKED)
add("TE xchunked", REJECT, [b"Transfer-Encoding: xchunked"], HELLO_CHUNKED)
add("TE chunk", REJECT, [b"Transfer-Encoding: chunk"], HELLO_CHUNKED)
add("TE empty value", REJECT, [b"Transfer-Encoding: "], HELLO_CHUNKED)
add("TE chunked and empty TE", REJECT, [CHUNKED, b"Transfer-Encoding:"], HELLO_CHUNKED)
add("TE space before colon", REJECT, [b"Transfer-Encoding : chunked"], HELLO_CHUNKED)
add("TE tab before colon", REJECT, [b"Transfer-Encoding\t: chunked"], HELLO_CHUNKED)
add("TE obs-fold continuation", REJECT, [b"Transfer-Encoding:", b" chunked"], HELLO_CHUNKED)
add("TE hidden by obs-fold into X header", REJECT, [b"Content-Length: 5", b"X-A: a", b" Transfer-Encoding: chunked"],
    b"hello")
# RFC 9112 §2.2: whitespace-preceded line right after the request line: reject, or
# ignore that line (then there is no body at all).
add("whitespace-preceded TE as first field line", EITHER, [], HELLO_CHUNKED,
    host=False, rl=b"POST /public/{M} HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: gateway.test", fwd_body=b"")
add("TE NUL in name", REJECT, [b"Transfer-Encoding\x00: chunked"], HELLO_CHUNKED)
add("TE NUL in value", REJECT, [b"Transfer-Encoding: chunked\x00"], HELLO_CHUNKED)
add("TE bare CR in value", REJECT, [b"Transfer-Encoding: chu\rnked"], HELLO_CHUNKED)
add("TE on HTTP/1.0", REJECT, [CHUNKED], HELLO_CHUNKED, rl=b"POST /public/{M} HTTP/1.0")
add("TE on HTTP/1.0 with keep-alive", REJECT, [CHUNKED, b"Connection: keep-alive"], HELLO_CHUNKED,
    rl=b"POST /public/{M} HTTP/1.0")
add("TE and CL on HTTP/1.0", REJECT, [CHUNKED, b"Content-Length: 5"], HELLO_CHUNKED, rl=b"POST /public/{M} HTTP/1.0")
add("X-Transfer-Encoding is just a header", FORWARD, [b"X-Transfer-Encoding: chunked", b"Content-Length: 5"],
    b"hello")

# --------------------------------------------------------------------------- CL + TE

add("CL then TE", REJECT, [b"Content-Length: 5", CHUNKED], HELLO_CHUNKED)
add("TE then CL", REJECT, [CHUNKED, b"Content-Length: 5"], HELLO_CHUNKED)
add("TE then CL 0", REJECT, [CHUNKED, b"Content-Length: 0"], HELLO_CHUNKED)
add("CL and TE apart", REJECT, [b"Content-Length: 4", b"X-A: 1", b"Accept: */*", CHUNKED], b"5c\r\n" + HELLO_CHUNKED)
add("CL and TE xchunked", REJECT, [b"Content-Length: 5", b"Transfer-Encoding: xchunked"], b"hello")
add("CL and TE with Expect", REJECT, [b"Content-Length: 5", CHUNKED, b"Expect: 100-continue"], HELLO_CHUNKED)

# --------------------------------------------------------------------------- underscore names

add("Transfer_Encoding with CL", REJECT, [b"Transfer_Encoding: chunked", b"Content-Length: 5"], b"hello")
add("Transfer_Encoding alone", REJECT, [b"Transfer_Encoding: chunked"], HELLO_CHUNKED)
add("transfer_encoding lowercase with CL", REJECT, [b"transfer_encoding: chunked", b"Content-Length: 5"], b"hello")
add("Transfer_Encoding gzip with CL", REJECT, [b"Transfer_Encoding: gzip", b"Content-Length: 5"], b"hello")
add("Content_Length with TE", REJECT, [b"Content_Length: 5", CHUNKED], HELLO_CHUNKED)
add("Content_Length alone", REJECT, [b"Content_Length: 5"], b"hello")
add("CONTENT_LENGTH next to CL", REJECT, [b"CONTENT_LENGTH: 0", b"Content-Length: 5"], b"hello")

# --------------------------------------------------------------------------- Content-Length

add("CL 5 (control)", FORWARD, [b"Content-Length: 5"], b"hello")
add("CL name lowercase", FORWARD, [b"content-length: 5"], b"hello")
add("CL no space", FORWARD, [b"Content-Length:5"], b"hello")
add("CL trailing spaces", FORWARD, [b"Content-Length: 5   "], b"hello")
add("CL trailing tab", FORWARD, [b"Content-Length: 5\t"], b"hello")
# RFC 9110 §8.6: Content-Length = 1*DIGIT, so leading zeros are a valid spelling.
add("CL leading zeros", FORWARD, [b"Content-Length: 005"], b"hello")
add("CL 22 digits of leading zeros", EITHER, [b"Content-Length: 0000000000000000000005"], b"hello")
add("CL 0 with bytes after", FORWARD, [b"Content-Length: 0"], b"hello", fwd_body=b"")
add("CL shorter than the bytes", FORWARD, [b"Content-Length: 3"], b"hello", fwd_body=b"hel")
add("CL on GET", FORWARD, [b"Content-Length: 5"], b"hello", rl=b"GET /public/{M} HTTP/1.1")
add("CL on HTTP/1.0", FORWARD, [b"Content-Length: 5"], b"hello", rl=b"POST /public/{M} HTTP/1.0")
add("CL with NUL in body", FORWARD, [b"Content-Length: 5"], b"he\x00lo", fwd_body=b"he\x00lo")
add("CL +5", REJECT, [b"Content-Length: +5"], b"hello")
add("CL -5", REJECT, [b"Content-Length: -5"], b"hello")
add("CL 5 5", REJECT, [b"Content-Length: 5 5"], b"hello")
add("CL 0x5", REJECT, [b"Content-Length: 0x5"], b"hello")
add("CL 5, 5", REJECT, [b"Content-Length: 5, 5"], b"hello")
add("CL 5,5", REJECT, [b"Content-Length: 5,5"], b"hello")
add("CL 5,", REJECT, [b"Content-Length: 5,"], b"hello")
add("CL empty", REJECT, [b"Content-Length: "], b"hello")
add("CL 5.0", REJECT, [b"Content-Length: 5.0"], b"hello")
add("CL 5e0", REJECT, [b"Content-Length: 5e0"], b"hello")
add("CL leading vertical tab", REJECT, [b"Content-Length: \x0b5"], b"hello")
add("CL fullwidth digit", REJECT, [b"Content-Length: \xef\xbc\x95"], b"hello")
add("CL repeated same value", REJECT, [b"Content-Length: 5", b"Content-Length: 5"], b"hello")
add("CL repeated different values", REJECT, [b"Content-Length: 0", b"Content-Length: 5"], b"hello")
add("CL space before colon", REJECT, [b"Content-Length : 5"], b"hello")
add("CL 20 digits (overflow)", REJECT, [b"Content-Length: 99999999999999999999"], b"hello", statuses=(400, 413))
add("CL 2^64", REJECT, [b"Content-Length: 18446744073709551616"], b"hello", statuses=(400, 413))
add("CL over max_body_bytes", REJECT, [b"Content-Length: 20000000"], b"hello", statuses=(413,))

# --------------------------------------------------------------------------- chunk sizes

chunked("chunk size 0x5", REJECT, b"0x5\r\nhello\r\n0\r\n\r\n")
chunked("chunk size +5", REJECT, b"+5\r\nhello\r\n0\r\n\r\n")
chunked("chunk size -5", REJECT, b"-5\r\nhello\r\n0\r\n\r\n")
chunked("chunk size leading space", REJECT, b" 5\r\nhello\r\n0\r\n\r\n")
chunked("chunk size leading tab", REJECT, b"\t5\r\nhello\r\n0\r\n\r\n")
# BWS is only allowed before ';' (RFC 9112 §7.1.1); common parsers differ.
chunked("chunk size trailing space", EITHER, b"5 \r\nhello\r\n0\r\n\r\n")
chunked("chunk size BWS before ext", EITHER, b"5 ;a=b\r\nhello\r\n0\r\n\r\n")
chunked("chunk size zz", REJECT, b"zz\r\nhello\r\n0\r\n\r\n")
chunked("chunk size 5g", REJECT, b"5g\r\nhello\r\n0\r\n\r\n")
chunked("chunk size empty line", REJECT, b"\r\n5\r\nhello\r\n0\r\n\r\n")
chunked("chunk size leading zero", FORWARD, b"05\r\nhello\r\n0\r\n\r\n")
chunked("chunk size uppercase hex", FORWARD, b"A\r\nhelloworld\r\n0\r\n\r\n", fwd_body=b"helloworld")
chunked("chunk size lowercase hex", FORWARD, b"a\r\nhelloworld\r\n0\r\n\r\n", fwd_body=b"helloworld")
chunked("chunk size 30 leading zeros", EITHER, b"0" * 30 + b"5\r\nhello\r\n0\r\n\r\n")
chunked("chunk size overflow FFFFFFFFFFFFFFFFF", REJECT, b"FFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        statuses=(400, 413))
chunked("chunk size 2^64-1", REJECT, b"FFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n", statuses=(400, 413))
chunked("chunk size wraps to 5", REJECT, b"10000000000000005\r\nhello\r\n0\r\n\r\n", statuses=(400, 413))
chunked("chunk size over max_body_bytes", REJECT, b"7FFFFFFF\r\nhello\r\n0\r\n\r\n", statuses=(400, 413))
chunked("chunk data longer than size", REJECT, b"5\r\nhelloXX\r\n0\r\n\r\n")
chunked("chunk data shorter than size", REJECT, b"5\r\nhell\r\n0\r\n\r\n")
chunked("missing CRLF after chunk data", REJECT, b"5\r\nhello0\r\n\r\n")
chunked("bare LF after chunk size", REJECT, b"5\nhello\r\n0\r\n\r\n")
chunked("bare LF after chunk data", REJECT, b"5\r\nhello\n0\r\n\r\n")
chunked("bare LF chunk lines everywhere", REJECT, b"5\nhello\n0\n\n")
chunked("bare CR after chunk size", REJECT, b"5\rhello\r\n0\r\n\r\n")
chunked("last chunk with bare LF", REJECT, b"5\r\nhello\r\n0\n\r\n")
# The blank line ending the trailer section is a field-section line terminator (§2.2 MAY).
chunked("bare LF ends the trailer section", EITHER, b"5\r\nhello\r\n0\r\n\n")
chunked("empty line instead of last chunk", REJECT, b"5\r\nhello\r\n\r\n0\r\n\r\n")
chunked("invalid size after a valid chunk", REJECT, b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n")
# Without the final CRLF the follow-up request is read as a trailer line (no colon).
chunked("follow-up request swallowed as trailer", REJECT, b"5\r\nhello\r\n0\r\n")

# --------------------------------------------------------------------------- chunk extensions

chunked("chunk ext name=value", FORWARD, b"5;foo=bar\r\nhello\r\n0\r\n\r\n")
chunked("chunk ext name only", FORWARD, b"5;foo\r\nhello\r\n0\r\n\r\n")
chunked("chunk ext quoted value", FORWARD, b'5;foo="bar"\r\nhello\r\n0\r\n\r\n')
chunked("chunk ext quoted value with space and ;", EITHER, b'5;foo="a b;c"\r\nhello\r\n0\r\n\r\n')
chunked("chunk ext two extensions", FORWARD, b"5;a=b;c=d\r\nhello\r\n0;e=f\r\n\r\n")
chunked("chunk ext quoted-pair", EITHER, b'5;foo="a\\"b"\r\nhello\r\n0\r\n\r\n')
chunked("chunk ext empty name", EITHER, b"5;\r\nhello\r\n0\r\n\r\n")
chunked("chunk ext unterminated quote", REJECT, b'5;foo="abc\r\nhello\r\n0\r\n\r\n')
chunked("chunk ext bare LF inside", REJECT, b"5;a\nb\r\nhello\r\n0\r\n\r\n")
chunked("chunk ext bare CR inside", REJECT, b"5;a\rb\r\nhello\r\n0\r\n\r\n")
chunked("chunk ext NUL inside", REJECT, b"5;a\x00b\r\nhello\r\n0\r\n\r\n")
chunked("chunk ext oversize (20000 bytes)", REJECT, b"5;" + b"a" * 20000 + b"\r\nhello\r\n0\r\n\r\n",
        statuses=(400, 431), late=True)
chunked("chunk ext many small, 40 KiB in total", REJECT,
        b"".join(b"1;" + b"e" * 200 + b"\r\nx\r\n" for _ in range(200)) + b"0\r\n\r\n",
        statuses=(400, 431), late=True)

# --------------------------------------------------------------------------- trailers

chunked("trailer one field", FORWARD, b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")
chunked("trailer two fields", FORWARD, b"5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n")
chunked("trailer Content-Length", REJECT, b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n")
chunked("trailer content-length lowercase", REJECT, b"5\r\nhello\r\n0\r\ncontent-length: 0\r\n\r\n")
chunked("trailer Transfer-Encoding", REJECT, b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n")
# docs/http.md, "Request bodies": Content-Length/Transfer-Encoding in trailers are
# refused, also spelled with '_'.
chunked("trailer Content_Length", EITHER, b"5\r\nhello\r\n0\r\nContent_Length: 5\r\n\r\n")
# Host in a trailer is prohibited as a routing field (RFC 9110 §6.5.1): drop it or reject.
chunked("trailer Host", EITHER, b"5\r\nhello\r\n0\r\nHost: evil.test\r\n\r\n",
        check=no_header_value("Host", "evil.test"))
chunked("trailer identity header", EITHER, b"5\r\nhello\r\n0\r\nX-Auth-Subject: admin\r\n\r\n",
        check=no_header_value("X-Auth-Subject", "admin"))
chunked("trailer obs-fold", REJECT, b"5\r\nhello\r\n0\r\nX-A: a\r\n b\r\n\r\n")
chunked("trailer bare CR in value", REJECT, b"5\r\nhello\r\n0\r\nX-A: a\rb\r\n\r\n")
chunked("trailer NUL in value", REJECT, b"5\r\nhello\r\n0\r\nX-A: a\x00b\r\n\r\n")
chunked("trailer line without colon", REJECT, b"5\r\nhello\r\n0\r\nnot a field\r\n\r\n")
chunked("trailer space before colon", REJECT, b"5\r\nhello\r\n0\r\nX-A : b\r\n\r\n")
chunked("trailer with bare LF line end", EITHER, b"5\r\nhello\r\n0\r\nX-A: b\n\r\n")
chunked("trailer oversize field (20000 bytes)", REJECT, b"5\r\nhello\r\n0\r\nX-T: " + b"b" * 20000 + b"\r\n\r\n",
        statuses=(400, 431), late=True)
chunked("trailer many fields, 40 KiB in total", REJECT,
        b"5\r\nhello\r\n0\r\n" + b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 90) for i in range(400)) + b"\r\n",
        statuses=(400, 431), late=True)

# --------------------------------------------------------------------------- other head bytes

add("space before colon in X header", REJECT, [b"X-Foo : bar", b"Content-Length: 5"], b"hello")
add("Host with space before colon", REJECT, [b"Host : gateway.test", b"Content-Length: 5"], b"hello", host=False)
add("bare CR as a line end", REJECT, [b"X-A: a\rContent-Length: 5"], b"hello")
add("bare CR in header value", REJECT, [b"X-Cr: a\rb", b"Content-Length: 5"], b"hello")
add("bare LF hides TE next to CL", REJECT, [b"Content-Length: 5", b"X-Lf: a\nTransfer-Encoding: chunked"], b"hello")
# A bare LF is either a line end (RFC 9112 §2.2 MAY) or a forbidden byte in the value.
add("bare LF before CL", EITHER, [b"X-Lf: a\nContent-Length: 5"], b"hello")
add("bare LF ends the request line", EITHER, [b"Content-Length: 5"], b"hello",
    rl=b"POST /public/{M} HTTP/1.1\nHost: gateway.test", host=False)
add("bare LF line ends everywhere", EITHER, [b"Content-Length: 5"], b"hello", eol=b"\n")
add("bare LF ends the head", EITHER, [], b"hello", rl=b"POST /public/{M} HTTP/1.1\r\nHost: gateway.test\r\n"
    b"Connection: close\r\nContent-Length: 5\r\n\n", host=False, close=False, eol=b"")
add("bare CR in the request line", REJECT, [b"Content-Length: 5"], b"hello", rl=b"POST /public/{M}\r HTTP/1.1")
add("NUL in header value", REJECT, [b"X-Nul: a\x00b", b"Content-Length: 5"], b"hello")
add("NUL in header name", REJECT, [b"X-N\x00ul: a", b"Content-Length: 5"], b"hello")
add("NUL in the target", REJECT, [b"Content-Length: 5"], b"hello", rl=b"POST /public/{M}\x00x HTTP/1.1", close=True)
add("space inside header name", REJECT, [b"X Foo: bar", b"Content-Length: 5"], b"hello")
add("header line without colon", REJECT, [b"NoColonHere", b"Content-Length: 5"], b"hello")
add("empty header name", REJECT, [b": value", b"Content-Length: 5"], b"hello")
add("non-ASCII byte in header name", REJECT, [b"X-\xff: a", b"Content-Length: 5"], b"hello")
# RFC 9110 §5.5: obs-text is allowed in values; other CTLs MAY be retained.
add("obs-text in header value", EITHER, [b"X-A: caf\xe9", b"Content-Length: 5"], b"hello")
add("DEL in header value", EITHER, [b"X-A: a\x7fb", b"Content-Length: 5"], b"hello")
add("header over max_header_bytes", REJECT, [b"X-Big: " + b"a" * 17000], b"", statuses=(431,))
add("many headers over max_header_bytes", REJECT, [b"X-H%d: %s" % (i, b"v" * 90) for i in range(200)], b"",
    statuses=(431,))

# --------------------------------------------------------------------------- request line

add("two spaces after the method", EITHER, [b"Content-Length: 5"], b"hello", rl=b"POST  /public/{M} HTTP/1.1")
add("two spaces before the version", EITHER, [b"Content-Length: 5"], b"hello", rl=b"POST /public/{M}  HTTP/1.1")
add("tab as separator", EITHER, [b"Content-Length: 5"], b"hello", rl=b"POST\t/public/{M} HTTP/1.1")
add("HTTP/1.2", EITHER, [b"Content-Length: 5"], b"hello", rl=b"POST /public/{M} HTTP/1.2", statuses=(400, 505))
add("HTTP/2.0 in an HTTP/1 request line", REJECT, [b"Content-Length: 5"], b"hello",
    rl=b"POST /public/{M} HTTP/2.0", statuses=(400, 505))
add("lowercase http/1.1", REJECT, [b"Content-Length: 5"], b"hello", rl=b"POST /public/{M} http/1.1",
    statuses=(400, 505))
add("HTTP/1.10", REJECT, [b"Content-Length: 5"], b"hello", rl=b"POST /public/{M} HTTP/1.10", statuses=(400, 505))
add("HTTP/01.1", REJECT, [b"Content-Length: 5"], b"hello", rl=b"POST /public/{M} HTTP/01.1", statuses=(400, 505))
add("no version (HTTP/0.9 style)", REJECT, [b"Content-Length: 5"], b"hello", rl=b"POST /public/{M}",
    statuses=(400, 505))
# A bad target is not a framing error: after its 400 a bodiless request's connection
# may stay open and its follow-up would be a legitimate request, so these (like the
# NUL in the target above) send Connection: close.
add("space inside the target", REJECT, [b"Content-Length: 5"], b"hello", rl=b"POST /public/{M} x HTTP/1.1", close=True)
add("fragment in the target", REJECT, [b"Content-Length: 5"], b"hello", rl=b"POST /public/{M}#x HTTP/1.1", close=True)
add("absolute-form", REJECT, [b"Content-Length: 5"], b"hello", rl=b"POST http://gateway.test/public/{M} HTTP/1.1",
    close=True)
add("absolute-form https", REJECT, [], b"", rl=b"GET https://gateway.test/public/{M} HTTP/1.1", close=True)
add("CONNECT", REJECT, [], b"", rl=b"CONNECT {M}.gateway.test:443 HTTP/1.1", close=True)
add("GET *", REJECT, [], b"", rl=b"GET * HTTP/1.1", close=True,
    forbidden=lambda e, m: e["method"] == "GET" and e["target"] == "*")
add("HTTP/2 connection preface", REJECT, raw=b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", statuses=(400, 505),
    forbidden=lambda e, m: e["method"] == "PRI" or m in e["target"])
add("invalid char in method", REJECT, [b"Content-Length: 5"], b"hello", rl=b"PO<T /public/{M} HTTP/1.1")
# Methods are case-sensitive: "post" is another (unknown) method, forwarded as is or refused.
add("lowercase method", EITHER, [b"Content-Length: 5"], b"hello", rl=b"post /public/{M} HTTP/1.1",
    statuses=(400, 405, 501))
# RFC 9112 §2.2: a server SHOULD ignore an empty line before the request line.
add("empty line before the request line", EITHER, [b"Content-Length: 5"], b"hello",
    rl=b"\r\nPOST /public/{M} HTTP/1.1")
add("request line over max_header_bytes", REJECT, [], b"", rl=b"GET /public/{M}?q=" + b"a" * 17000 + b" HTTP/1.1",
    statuses=(400, 414, 431))
add("Expect 100-continue with its body", FORWARD, [b"Content-Length: 5", b"Expect: 100-continue"], b"hello")

# --------------------------------------------------------------------------- Connection / pipelining

add("pipelined after Connection: close", FORWARD, [CLOSE], b"", rl=b"GET /public/{M} HTTP/1.1", close=False,
    fwd_body=b"")
add("pipelined after Connection: Close", FORWARD, [b"Connection: Close"], b"", rl=b"GET /public/{M} HTTP/1.1",
    close=False, fwd_body=b"")
add("pipelined after Connection: keep-alive, close", FORWARD, [b"Connection: keep-alive, close"], b"",
    rl=b"GET /public/{M} HTTP/1.1", close=False, fwd_body=b"")
add("pipelined after two Connection headers", FORWARD, [b"Connection: keep-alive", CLOSE], b"",
    rl=b"GET /public/{M} HTTP/1.1", close=False, fwd_body=b"")
add("pipelined after HTTP/1.0 without keep-alive", FORWARD, [], b"", rl=b"GET /public/{M} HTTP/1.0", close=False,
    fwd_body=b"")
add("pipelined after chunked POST with Connection: close", FORWARD, [CLOSE, CHUNKED], HELLO_CHUNKED, close=False)
add("Upgrade h2c on GET", FORWARD,
    [b"Upgrade: h2c", b"Connection: Upgrade, HTTP2-Settings", b"HTTP2-Settings: AAMAAABkAAQAAP__"], b"",
    rl=b"GET /public/{M} HTTP/1.1", fwd_body=b"",
    check=lambda echo: no_header("Upgrade")(echo) + no_header("HTTP2-Settings")(echo))
add("Upgrade h2c on POST with body", FORWARD,
    [b"Upgrade: h2c", b"Connection: Upgrade, HTTP2-Settings", b"HTTP2-Settings: AAMAAABkAAQAAP__",
     b"Content-Length: 5"], b"hello",
    check=lambda echo: no_header("Upgrade")(echo) + no_header("HTTP2-Settings")(echo))

# --------------------------------------------------------------------------- Host

host_case("Host: a, b", REJECT, [b"Host: a, b"])
host_case("Host: a,b", REJECT, [b"Host: a,b"])
# RFC 9112 §3.2: an empty Host is what a client sends when the target has no authority.
host_case("Host empty", EITHER, [b"Host: "])
host_case("two Host lines", REJECT, [b"Host: a.test", b"Host: b.test"])
host_case("two identical Host lines", REJECT, [b"Host: gateway.test", b"Host: gateway.test"])
host_case("Host missing", REJECT, [])
host_case("Host missing on HTTP/1.0", EITHER, [], version=b"HTTP/1.0")
host_case("Host: a b", REJECT, [b"Host: a b"])
host_case("Host: a@b", REJECT, [b"Host: a@b"])
host_case("Host: a/b", REJECT, [b"Host: a/b"])
host_case("Host: a?b", REJECT, [b"Host: a?b"])
host_case("Host quoted", REJECT, [b'Host: "gateway.test"'])
host_case("Host port not a number", REJECT, [b"Host: gateway.test:abc"])
host_case("Host two ports", REJECT, [b"Host: gateway.test:80:80"])
host_case("Host unclosed IPv6 literal", REJECT, [b"Host: [::1"])
host_case("Host vertical tab", REJECT, [b"Host: gateway\x0b.test"])
host_case("Host with port", FORWARD, [b"Host: gateway.test:8080"])
host_case("Host IPv6 literal with port", FORWARD, [b"Host: [::1]:8080"])
host_case("Host no space after colon", FORWARD, [b"Host:gateway.test"])
host_case("Host trailing whitespace", FORWARD, [b"Host: gateway.test \t"])
host_case("Host name uppercase", FORWARD, [b"HOST: gateway.test"])
host_case("Host with underscore (reg-name)", FORWARD, [b"Host: exa_mple.test"])
host_case("Host empty port", EITHER, [b"Host: gateway.test:"])
host_case("Host port out of range", EITHER, [b"Host: 127.0.0.1:99999"])
host_case("Host pct-encoded reg-name", EITHER, [b"Host: a%41b.test"])


def upstream_drained(port):
    """True when no TCP socket on local port `port` has unread bytes (/proc/net/tcp
    rx_queue): the demo upstream has read everything the gateway sent it, so its
    log is complete up to the moment it parses what it read."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, queues = fields[1], fields[4]
            if int(local.split(":")[1], 16) == port and int(queues.split(":")[1], 16) != 0:
                return False
    return True


class FramingCorpusTest(unittest.TestCase):
    """Runs every case against one gateway in front of the demo upstream."""

    @classmethod
    def setUpClass(cls):
        cls.upstream = harness.start_upstream()
        cls.gw = None
        try:
            cls.gw = cls.start_gateway()
        except BaseException:
            cls.upstream.stop()
            raise

    @classmethod
    def start_gateway(cls):
        gw = harness.Gateway("upstreams:\n  echo:\n    url: http://127.0.0.1:%d\n" % cls.upstream.port
                             + harness.DEFAULT_ROLES + ROUTES)
        try:
            return gw.start()
        except BaseException:
            gw.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        status = cls.gw.stop() if cls.gw else None
        cls.upstream.stop()
        if status not in (None, 0):
            raise AssertionError("the gateway exited with status %s after SIGTERM; its stderr ends with:\n%s"
                                 % (status, cls.gw.process.stderr_text()))

    def test_corpus_is_large_enough(self):
        names = [c.name for c in CASES]
        self.assertEqual(len(names), len(set(names)), "duplicate case names")
        self.assertGreaterEqual(len(CASES), 100)

    def run_case(self, case):
        """Sends one case; returns (outcome, problems, marker), where outcome is
        REJECT, FORWARD or None (no valid response)."""
        marker = unique_marker()
        problems = []
        outcome = None
        with harness.RawConnection(self.gw.host, self.gw.port, timeout=15.0) as c:
            try:
                c.send(case.build(marker))
            except OSError as e:
                problems.append("sending failed (%s)" % e)
            try:
                while True:
                    r = c.read_response(case.fwd_method if case.fwd_method == "HEAD" else "GET")
                    if r.status // 100 != 1:
                        break
            except (harness.ConnectionClosed, OSError, ValueError) as e:
                problems.append("no response (%s: %s)" % (type(e).__name__, e))
                return outcome, problems, marker
            if r.status == 200:
                outcome = FORWARD
                if case.expect == REJECT:
                    problems.append("forwarded (200) although it must be rejected with %s" % (case.statuses,))
                try:
                    echo = json.loads(r.body.decode("utf-8", "replace"))
                except ValueError:
                    problems.append("200 without the demo upstream's echo: %r" % r)
                    echo = None
                if echo is not None:
                    want_target = case.fwd_target.replace("{M}", marker)
                    got = (echo.get("method"), echo.get("target"), echo.get("body_bytes"))
                    want = (case.fwd_method, want_target, len(case.fwd_body))
                    if got != want or echo.get("body_sha256") != hashlib.sha256(case.fwd_body).hexdigest():
                        problems.append("the upstream received (method, target, body bytes) %r, expected %r "
                                        "with body %r" % (got, want, case.fwd_body))
                    if case.check:
                        problems += case.check(echo)
                # Every FORWARD/EITHER case asks for the close (Connection: close or HTTP/1.0).
                if (case.close or case.expect != REJECT) and not c.is_closed():
                    problems.append("connection left open after a response to Connection: close")
            elif r.status in case.statuses:
                outcome = REJECT
                if case.expect == FORWARD:
                    problems.append("rejected with %d although it must be forwarded: %r" % (r.status, r))
                if not c.is_closed():
                    problems.append("connection left open (or more bytes sent) after rejecting with %d" % r.status)
            else:
                problems.append("status %d, expected %s: %r"
                                % (r.status, "200" if case.expect == FORWARD else
                                   "one of %s" % (case.statuses,) if case.expect == REJECT else
                                   "200 or one of %s" % (case.statuses,), r))
        return outcome, problems, marker

    def check_log(self, case, outcome, marker, log):
        mine = [e for e in log if case.belongs(e, marker)]
        smuggled = [e for e in log if marker + "-smuggled" in e["target"]]
        if smuggled:
            return ["the follow-up sent after the body reached the upstream as its own request: %r" % smuggled]
        if outcome == FORWARD or (outcome is None and case.expect == FORWARD):
            want = case.fwd_target.replace("{M}", marker)
            if [(e["target"], e["complete"]) for e in mine] != [(want, True)]:
                return ["the upstream should have seen exactly one complete %s, it saw %r" % (want, mine)]
            return []
        if case.late:
            complete = [e for e in mine if e["complete"]]
            return ["a complete request reached the upstream: %r" % complete] if complete else []
        return ["a rejected request reached the upstream: %r" % mine] if mine else []

    def test_corpus(self):
        results = []
        for case in CASES:
            outcome, problems, marker = self.run_case(case)
            if outcome is None:
                # A crash closes the connection a moment before the process is gone.
                harness.wait_until(lambda: not self.gw.process.alive(), 3.0, 0.02)
            if not self.gw.process.alive():
                problems.append("the gateway process died (status %s); stderr ends with:\n%s"
                                % (self.gw.process.proc.returncode, self.gw.process.stderr_text()[-3000:]))
                self.gw.stop()
                self.gw = type(self).gw = self.start_gateway()
            results.append((case, outcome, problems, marker))
        if os.environ.get("TOKENGATE_CORPUS_REPORT"):
            for case, outcome, problems, marker in results:
                sys.stderr.write("%-9s -> %-9s %s%s\n"
                                 % (case.expect, outcome, case.name, " (problems)" if problems else ""))
        harness.wait_until(lambda: upstream_drained(self.upstream.port), 10.0, 0.02)
        log = harness.upstream_log(self.upstream)["requests"]
        for case, outcome, problems, marker in results:
            with self.subTest(case=case.name, expect=case.expect):
                problems = problems + self.check_log(case, outcome, marker, log)
                if problems:
                    self.fail("marker %s: %s" % (marker, "; ".join(problems)))


if __name__ == "__main__":
    unittest.main()
