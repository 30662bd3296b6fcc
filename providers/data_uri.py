"""A base64 video inside a JSON body, decoded while the body streams in.

Pipelet answers a result as ``{"video": {"data_uri": "<base64 MP4>"}}``: tens
of MB of JSON. ``json.loads`` then ``b64decode`` holds the body, its text, the
string and the decoded video at once (144 MB for a 40 MB body, DESIGN.md's
"Known traps"); here the body passes through a small scanner that follows the
JSON's structure, finds the string at ``video.data_uri`` (or ``video.data_url``)
and hands its characters, unescaped, to a base64 decoder that writes 64 KiB
pieces straight to a file. What it holds at any time is one network chunk and
less than one decoding piece, whatever the video's size.

The scanner checks the JSON's structure as it goes (a body that is not JSON,
or cut short, is an error that says which), but keeps only object keys and
the first bytes of the body (for staff); other values are skipped unread.
Within the video string it accepts what JSON allows: escapes (``\\/`` is
legal JSON for ``/``, and some servers write every slash that way; ``\\n``
between base64 lines), a ``data:video/mp4;base64,`` prefix or none, and
whitespace or raw line breaks between base64 characters. A value that is an
http(s) link instead (Pipelet's ``x-pipelet-output: binary``) is returned as
the link, for the caller to fetch.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, Literal

DECODE_BYTES = 64 * 1024  # base64 characters decoded at a time (a multiple of 4)
MAX_KEY_BYTES = 256  # keys longer than this are cut: no key we look for is that long
MAX_LINK_BYTES = 8192
MAX_HEADER_BYTES = 512  # "data:video/mp4;base64," and any parameters before the comma
BODY_START_BYTES = 2000  # kept for error details

DataUriProblem = Literal["malformed", "truncated", "missing", "bad_base64", "too_large"]

# A quote, a backslash, or a control character JSON forbids in strings. Tabs and
# line breaks are let through: some servers wrap base64 with raw newlines.
_STRING_STOP = re.compile(rb'["\\\x00-\x08\x0b\x0c\x0e-\x1f]')
_SCALAR = re.compile(rb"^(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?|true|false|null)$")
_SCALAR_END = frozenset(b" \t\r\n,]}")
_WHITESPACE = frozenset(b" \t\r\n")
_ESCAPES = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\x08",
    ord("f"): b"\x0c",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}
_BASE64_SPACE = b" \t\r\n"


class DataUriError(ValueError):
    """The body did not hold a decodable video; ``problem`` says why and
    ``body_start`` keeps the first bytes of the body, for staff."""

    def __init__(self, problem: DataUriProblem, message: str, body_start: bytes = b"") -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message
        self.body_start = body_start


@dataclass(frozen=True)
class Found:
    """What the body's video field held: ``size`` decoded bytes written to the
    output, or a ``link`` (nothing written)."""

    field: str
    size: int = 0
    link: str = ""


class _ValueSink:
    """The video string's characters (unescaped) in; decoded bytes out."""

    def __init__(self, out: BinaryIO, max_bytes: int) -> None:
        self.out = out
        self.max_bytes = max_bytes
        self.kind: Literal["", "base64", "link"] = ""
        self.head = bytearray()  # until we know whether it is base64 or a link
        self.text = bytearray()  # base64 characters not decoded yet
        self.link = bytearray()
        self.written = 0

    def write(self, piece: bytes) -> None:
        if self.kind == "base64":
            self.text += piece
            if len(self.text) >= 2 * DECODE_BYTES:
                self._decode(final=False)
        elif self.kind == "link":
            self.link += piece
            if len(self.link) > MAX_LINK_BYTES:
                raise DataUriError("malformed", "the video link is implausibly long")
        else:
            self.head += piece
            self._decide(final=False)

    def finish(self) -> None:
        if not self.kind:
            self._decide(final=True)
        if self.kind == "base64":
            self._decode(final=True)

    def _decide(self, final: bool) -> None:
        head = bytes(self.head).lstrip(_BASE64_SPACE)
        lower = head[:8].lower()
        if lower.startswith(b"data:"):
            comma = head.find(b",")
            if comma < 0:
                if final or len(head) > MAX_HEADER_BYTES:
                    raise DataUriError("bad_base64", "the data: URI has no comma before its data")
                return
            if not head[5:comma].strip().lower().endswith(b";base64"):
                raise DataUriError("bad_base64", f"the data: URI is not base64 ({head[:comma][:80]!r})")
            kind, rest = "base64", head[comma + 1 :]
        elif lower.startswith((b"https://", b"http://")):
            kind, rest = "link", head
        elif not final and len(head) < 8 and any(p.startswith(lower) for p in (b"data:", b"https://", b"http://")):
            return  # too few characters yet to tell
        else:
            kind, rest = "base64", head
        self.kind = kind
        self.head = bytearray()
        self.write(rest)

    def _decode(self, final: bool) -> None:
        text = self.text.translate(None, _BASE64_SPACE)
        usable = len(text) if final else len(text) - len(text) % DECODE_BYTES
        start = 0
        while start < usable:
            piece = bytes(text[start : min(start + DECODE_BYTES, usable)])
            start += len(piece)
            if final and start >= usable:
                if len(piece) % 4 == 1:
                    raise DataUriError("bad_base64", "the base64 text ends cut short (a stray last character)")
                piece += b"=" * (-len(piece) % 4)  # some encoders leave the padding out
            try:
                data = binascii.a2b_base64(piece, strict_mode=True)
            except binascii.Error as exc:
                raise DataUriError("bad_base64", f"the video is not valid base64 ({exc})") from None
            self.written += len(data)
            if self.written > self.max_bytes:
                raise DataUriError("too_large", f"the video is larger than {self.max_bytes} bytes")
            self.out.write(data)
        self.text = bytearray(text[usable:])


class _Frame:
    __slots__ = ("is_object", "key", "state")

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        # object: key_or_end, key, colon, value, in_value, comma_or_end;
        # array: value_or_end, value, in_value, comma_or_end
        self.state = "key_or_end" if is_object else "value_or_end"
        self.key: str | None = None


class JsonVideoScanner:
    """Feed the body's chunks in order, then ``finish()``."""

    def __init__(
        self,
        out: BinaryIO,
        *,
        fields: tuple[tuple[str, ...], ...] = (("video", "data_uri"), ("video", "data_url")),
        max_bytes: int,
    ) -> None:
        self.out = out
        self.fields = fields
        self.max_bytes = max_bytes
        self.stack: list[_Frame] = []
        self.begun = False
        self.done = False
        self.mode: Literal["struct", "string", "scalar"] = "struct"
        self.role: Literal["key", "target", "skip"] = "skip"
        self.key = bytearray()
        self.escape = b""
        self.scalar = bytearray()
        self.sink: _ValueSink | None = None
        self.found: Found | None = None
        self.target_field = ""
        self.body_start = bytearray()

    # --- errors --------------------------------------------------------------

    def _error(self, problem: DataUriProblem, message: str) -> DataUriError:
        return DataUriError(problem, message, bytes(self.body_start))

    # --- input ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if len(self.body_start) < BODY_START_BYTES:
            self.body_start += data[: BODY_START_BYTES - len(self.body_start)]
        try:
            self._feed(data)
        except DataUriError as exc:
            exc.body_start = exc.body_start or bytes(self.body_start)
            raise

    def _feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self.mode == "string":
                i = self._string(data, i)
            elif self.mode == "scalar":
                i = self._scalar(data, i)
            else:
                byte = data[i]
                if byte not in _WHITESPACE:
                    self._struct(byte)
                i += 1

    def finish(self) -> Found:
        if not self.begun:
            raise self._error("truncated" if not self.body_start else "malformed", "the body is empty")
        if self.mode == "scalar" and self.stack:
            raise self._error("truncated", "the body ends in the middle of a value")
        if self.mode != "struct" or self.stack or not self.done:
            raise self._error("truncated", "the body ends before the JSON does (cut short)")
        if self.found is None:
            wanted = " or ".join(".".join(path) for path in self.fields)
            raise self._error("missing", f"the body has no {wanted} string")
        return self.found

    # --- structure -----------------------------------------------------------

    def _struct(self, byte: int) -> None:
        top = self.stack[-1] if self.stack else None
        if byte == ord('"'):
            if top is not None and top.is_object and top.state in ("key_or_end", "key"):
                self._begin_string("key")
            else:
                self._expect_value()
                self._begin_string(self._value_role())
        elif byte in (ord("{"), ord("[")):
            self._expect_value(container=True, is_object=byte == ord("{"))
            self.stack.append(_Frame(byte == ord("{")))
        elif byte == ord("}"):
            if top is None or not top.is_object or top.state not in ("key_or_end", "comma_or_end"):
                raise self._error("malformed", "a stray '}'")
            self.stack.pop()
            self._value_done()
        elif byte == ord("]"):
            if top is None or top.is_object or top.state not in ("value_or_end", "comma_or_end"):
                raise self._error("malformed", "a stray ']'")
            self.stack.pop()
            self._value_done()
        elif byte == ord(":"):
            if top is None or not top.is_object or top.state != "colon":
                raise self._error("malformed", "a stray ':'")
            top.state = "value"
        elif byte == ord(","):
            if top is None or top.state != "comma_or_end":
                raise self._error("malformed", "a stray ','")
            top.state = "key" if top.is_object else "value"
        elif byte in b"-0123456789tfn":
            self._expect_value()
            self.mode, self.scalar = "scalar", bytearray([byte])
        else:
            raise self._error("malformed", f"unexpected {bytes([byte])!r}: not JSON")

    def _expect_value(self, *, container: bool = False, is_object: bool = False) -> None:
        if not self.stack:
            if self.begun:
                raise self._error("malformed", "more data after the end of the JSON")
            if not (container and is_object):
                raise self._error("malformed", "the body is not a JSON object")
            self.begun = True
            return
        top = self.stack[-1]
        if top.state not in ("value", "value_or_end"):
            raise self._error("malformed", "a value where JSON does not allow one")
        top.state = "in_value"

    def _value_done(self) -> None:
        if self.stack:
            self.stack[-1].state = "comma_or_end"
        else:
            self.done = True

    def _value_role(self) -> Literal["target", "skip"]:
        if self.found is not None or self.sink is not None:
            return "skip"
        path = tuple(frame.key for frame in self.stack if frame.is_object)
        if len(path) != len(self.stack) or path not in self.fields:
            return "skip"
        self.target_field = ".".join(path)  # type: ignore[arg-type]
        return "target"

    # --- strings -------------------------------------------------------------

    def _begin_string(self, role: Literal["key", "target", "skip"]) -> None:
        self.mode, self.role = "string", role
        if role == "key":
            self.key = bytearray()
        elif role == "target":
            self.sink = _ValueSink(self.out, self.max_bytes)

    def _emit(self, piece: bytes) -> None:
        if self.role == "target":
            assert self.sink is not None
            self.sink.write(piece)
        elif self.role == "key" and len(self.key) < MAX_KEY_BYTES:
            self.key += piece[: MAX_KEY_BYTES - len(self.key)]

    def _string(self, data: bytes, i: int) -> int:
        n = len(data)
        while i < n:
            if self.escape:
                want = 6 if len(self.escape) >= 2 and self.escape[1] == ord("u") else 2
                take = data[i : i + want - len(self.escape)]
                self.escape += take
                i += len(take)
                if self.escape == b"\\u":
                    continue  # a \u escape: four hex digits to come
                if len(self.escape) < want:
                    return i
                self._emit(self._unescape(self.escape))
                self.escape = b""
                continue
            stop = _STRING_STOP.search(data, i)
            end = stop.start() if stop else n
            if end > i and self.role != "skip":
                self._emit(data[i:end])
            if stop is None:
                return n
            byte = data[end]
            if byte == ord('"'):
                self._end_string()
                return end + 1
            if byte == ord("\\"):
                self.escape = b"\\"
                i = end + 1
                continue
            raise self._error("malformed", "a control character inside a JSON string")
        return i

    def _unescape(self, escape: bytes) -> bytes:
        if escape[1] == ord("u"):
            try:
                code = int(escape[2:6], 16)
            except ValueError:
                raise self._error("malformed", f"a bad \\u escape {escape!r}") from None
            return chr(code).encode("utf-8", "surrogatepass")
        try:
            return _ESCAPES[escape[1]]
        except KeyError:
            raise self._error("malformed", f"a bad escape {escape!r}") from None

    def _end_string(self) -> None:
        self.mode = "struct"
        role, self.role = self.role, "skip"
        if role == "key":
            top = self.stack[-1]
            top.key = self.key.decode("utf-8", "replace")
            top.state = "colon"
            return
        if role == "target":
            assert self.sink is not None
            self.sink.finish()
            sink, self.sink = self.sink, None
            self.found = Found(
                field=self.target_field, size=sink.written, link=sink.link.decode("ascii", "replace").strip()
            )
        self._value_done()

    # --- numbers, true, false, null ------------------------------------------------

    def _scalar(self, data: bytes, i: int) -> int:
        n = len(data)
        while i < n and data[i] not in _SCALAR_END:
            if len(self.scalar) > 64:
                raise self._error("malformed", "an implausibly long number")
            self.scalar.append(data[i])
            i += 1
        if i < n:
            if not _SCALAR.match(bytes(self.scalar)):
                raise self._error("malformed", f"{bytes(self.scalar)[:40]!r} is not a JSON value")
            self.mode = "struct"
            self._value_done()
        return i


def extract(
    chunks: Iterable[bytes],
    out: BinaryIO,
    *,
    max_bytes: int,
    fields: tuple[tuple[str, ...], ...] = (("video", "data_uri"), ("video", "data_url")),
) -> Found:
    """Decode the base64 video at one of ``fields`` of the JSON body arriving
    as ``chunks`` into ``out``. Raises ``DataUriError``; errors of the
    transport (a connection cut) pass through as they are."""
    scanner = JsonVideoScanner(out, fields=fields, max_bytes=max_bytes)
    for chunk in chunks:
        if chunk:
            scanner.feed(chunk)
    return scanner.finish()
