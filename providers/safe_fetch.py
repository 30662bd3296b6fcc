"""Fetching a URL that a user gave us, without letting it reach inside our network.

An ``image_url`` (and, later, a callback URL) is chosen by whoever calls our
API, but the request is made from our servers, which can reach things the
caller cannot: the loopback interface, the private network, the cloud
metadata service at 169.254.169.254. So a URL is only fetched when:

- its scheme is http or https, it has no user name or password, its port is
  1-65535 and its host is a full host name or a plainly written IP address
  (odd spellings such as ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` or
  ``127.1``, which resolvers quietly turn into 127.0.0.1, are judged by the
  address they stand for and never reach the resolver);
- every address its host resolves to is public (one private answer among
  public ones is enough to refuse: a resolver may hand out any of them);
- the connection is made to one of those vetted addresses, never by name, so
  a DNS answer that changes between the check and the connection (a "rebind")
  cannot move it, and the socket's peer is checked again once connected;
- every redirect is followed by hand and its target checked the same way
  before anything is sent to it;
- the body stops at a byte cap, and the whole fetch (lookups, connections,
  headers, body, redirects) at a deadline: a watchdog cuts the socket when it
  passes, so a server that trickles bytes cannot hold a worker.

``SAFE_FETCH_ALLOW`` (a list of exact ``ip:port`` strings) lets tests and
local demos reach a loopback server; it matches the address and the port, so
a redirect from an allowed server to any other local address is still refused.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from requests.utils import requote_uri
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_URL_LENGTH = 4096
CHUNK_SIZE = 64 * 1024
USER_AGENT = "i2v-fetch/1"

# Ranges that are never public, listed here rather than trusted to
# ``ipaddress`` alone: its idea of "global" has changed between Python
# releases (and still calls 224.0.0.0/4 and fec0::/10 global).
_NOT_PUBLIC_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # old 6to4 relays
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
)
_NOT_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/128",
        "::1/128",
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo among them
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # old site-local
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class FetchRefused(Exception):
    """A URL we would not fetch, or a fetch that did not work.

    ``code`` is short and stable, for programs and for the job's
    ``error_code``; ``message`` is one sentence the API user can act on;
    ``detail`` keeps what went wrong underneath, for staff and logs.
    """

    def __init__(self, code: str, message: str, *, detail: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.status = status

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed every check, with the only addresses we may connect to."""

    url: str
    scheme: str
    host: str  # ASCII host name or IP address (IPv6 without brackets)
    port: int
    target: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class FetchResult:
    content: bytes
    content_type: str
    final_url: str


# --- Which addresses are public ---------------------------------------------


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, for forms that lead to it.

    ``::ffff:127.0.0.1`` connects to 127.0.0.1 on a dual-stack host, and
    NAT64 / 6to4 / IPv4-compatible forms are translated to their IPv4 address
    somewhere on the way, so they are only as public as that address.
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _ipv4_is_public(ip: ipaddress.IPv4Address) -> bool:
    if any(ip in net for net in _NOT_PUBLIC_V4):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_private)


def is_public_address(ip: IPAddress) -> bool:
    """Whether anyone on the internet could reach ``ip`` too (so we may)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_is_public(ip)
    if ip.scope_id:
        return False
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return _ipv4_is_public(embedded)
    if any(ip in net for net in _NOT_PUBLIC_V6):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_unspecified or ip.is_site_local)


def _allowed() -> frozenset[tuple[IPAddress, int]]:
    """The exact ``(address, port)`` pairs the ``SAFE_FETCH_ALLOW`` setting lets through."""
    raw = getattr(settings, "SAFE_FETCH_ALLOW", ())
    if isinstance(raw, str):
        raw = [part for part in raw.split(",") if part.strip()]
    allowed = set()
    for entry in raw:
        host, _, port = str(entry).strip().rpartition(":")
        try:
            ip = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
            number = int(port)
            if not 1 <= number <= 65535:
                raise ValueError("port out of range")
        except ValueError:
            raise ImproperlyConfigured(
                f"SAFE_FETCH_ALLOW entry {entry!r} is malformed: expected ip:port, like 127.0.0.1:8000 or [::1]:8000"
            ) from None
        allowed.add((ip, number))
    return frozenset(allowed)


# --- Checking a URL ---------------------------------------------------------

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_ENDS_IN_NUMBER = re.compile(r"(?:^|\.)(?:[0-9]+|0x[0-9a-f]*)$")


def _parse_ipv4_number(part: str) -> int | None:
    if part.startswith("0x"):
        digits, base = part[2:], 16
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if digits == "":
        return 0 if base == 16 else None
    try:
        return int(digits, base)
    except ValueError:
        return None


def _parse_loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any spelling inet_aton (and browsers) accept: decimal,
    octal and hex parts, one to four of them (``2130706433``, ``0x7f.1``)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_parse_ipv4_number(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    *head, last = numbers
    if any(number > 255 for number in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


class _Refuser:
    """Words the refusals for one URL: as given, or as reached by a redirect."""

    def __init__(self, field: str, redirected: bool) -> None:
        self.field = field
        self.redirected = redirected

    def __call__(self, code: str, problem: str, detail: str = "") -> FetchRefused:
        if self.redirected:
            return FetchRefused(code, f"{self.field} redirected to an address that {problem}.", detail=detail)
        return FetchRefused(code, f"{self.field} {problem}.", detail=detail)

    def not_public(self, ip: IPAddress | str) -> FetchRefused:
        where = "redirected to" if self.redirected else "points to"
        shown = str(ip)
        if isinstance(ip, ipaddress.IPv6Address) and _embedded_ipv4(ip) is not None:
            shown = f"{ip}, which is {_embedded_ipv4(ip)}"
        return FetchRefused(
            "not_public",
            f"{self.field} {where} a private or local address ({shown}); only public addresses can be fetched.",
        )


def _resolve(host: str, port: int, timeout: float | None, refuse: _Refuser) -> list[str]:
    """The addresses ``host`` resolves to, within ``timeout`` seconds.

    ``getaddrinfo`` cannot be interrupted, so it runs in a helper thread that
    is left to finish on its own if the deadline passes first.
    """
    outcome: dict[str, object] = {}

    def lookup() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # gaierror, UnicodeError: all mean "no usable answer"
            outcome["error"] = exc

    thread = threading.Thread(target=lookup, name="safe-fetch-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise FetchRefused(
            "too_slow",
            f"Looking up the host in {refuse.field} ({host}) took too long; please try again later.",
        )
    if "error" in outcome or not outcome.get("infos"):
        raise refuse("unresolvable", f"has a host name ({host}) that could not be found", str(outcome.get("error")))
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in outcome["infos"]:  # type: ignore[union-attr]
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _check(url: str, field: str, redirected: bool, timeout: float | None) -> CheckedUrl:
    refuse = _Refuser(field, redirected)
    if not isinstance(url, str) or not url.strip():
        raise refuse("bad_url", "is empty")
    if len(url) > MAX_URL_LENGTH:
        raise refuse("bad_url", f"is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise refuse("bad_url", "contains spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise refuse("bad_url", "is not a valid URL", str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        if redirected:
            raise FetchRefused(
                "bad_scheme",
                f"{field} redirected to a {scheme or 'non-http'}: address; only http and https can be fetched.",
            )
        raise FetchRefused("bad_scheme", f"{field} must use http or https.")
    netloc = parts.netloc
    if not netloc:
        raise refuse("bad_url", "has no host name")
    if "@" in netloc:
        raise refuse("bad_url", "contains a user name or password, which is not allowed")
    if "\\" in netloc:
        raise refuse("bad_url", "has a backslash in its host name")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is None:
        port = 443 if scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise refuse("bad_url", "has a port that is not a number from 1 to 65535")
    host = parts.hostname or ""
    if not host:
        raise refuse("bad_url", "has no host name")

    literal: IPAddress | None = None
    if netloc.startswith("["):
        try:
            literal = ipaddress.IPv6Address(host)
        except ValueError:
            raise refuse("bad_url", f"has an invalid IPv6 address ({host})") from None
        if literal.scope_id:
            raise refuse.not_public(literal)
    else:
        try:
            # IDNA first: it maps look-alikes (full-width digits and dots) to
            # ASCII, which must then be judged like the plain spelling.
            name = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise refuse("bad_url", f"has an invalid host name ({host})") from None
        name = name.removesuffix(".")
        if _ENDS_IN_NUMBER.search(name):
            literal = _parse_loose_ipv4(name)
            if literal is None:
                raise refuse("bad_url", f"has an invalid IP address ({host})")
            if str(literal) != name and is_public_address(literal):
                raise refuse("bad_url", f"writes an IP address in an unusual form ({host}); write it as {literal}")
        else:
            labels = name.split(".")
            if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
                raise refuse("bad_url", f"has an invalid host name ({host})")
            if name == "localhost" or name.endswith(".localhost"):
                raise refuse.not_public(name)
            if len(labels) < 2:
                # A bare name is completed with the resolver's search domains:
                # an internal name, never an address on the internet.
                raise refuse("bad_url", f"has a host name ({host}) that is not a full domain name")
            host = name

    if literal is not None:
        host = str(literal)
        addresses = [host]
    else:
        addresses = _resolve(host, port, timeout, refuse)

    allowed = _allowed()
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if not is_public_address(ip) and (ip, port) not in allowed:
            raise refuse.not_public(ip)

    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return CheckedUrl(
        url=url,
        scheme=scheme,
        host=host,
        port=port,
        target=requote_uri(target),
        addresses=tuple(addresses),
    )


def check_url(url: str, *, field: str = "image_url", timeout: float = 10.0) -> CheckedUrl:
    """Check ``url`` and resolve its host; raise ``FetchRefused`` unless every
    address is public (or exactly allowed by ``SAFE_FETCH_ALLOW``).

    Good for refusing a bad URL when it is submitted, before any work is
    queued. ``fetch`` checks again at fetch time (DNS answers change), and
    connects only to the addresses returned here. ``field`` names the URL in
    messages (``image_url``, ``callback_url``); ``timeout`` bounds the lookup.
    """
    return _check(url, field, redirected=False, timeout=timeout)


# --- Fetching ---------------------------------------------------------------


class _Deadline:
    """The fetch's clock and its watchdog.

    Socket timeouts bound each read, not their sum: a server sending one byte
    a second never trips them. So a timer shuts down the connection's socket
    when the deadline passes, which ends any read blocked on it at once.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return self.ends - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        # A duplicate descriptor: TLS wrapping detaches the original socket
        # object, but shutting down any descriptor ends the connection.
        dup = sock.dup()
        with self._lock:
            self._sockets.append(dup)
            if self.fired:
                _shutdown(dup)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)

    def stop(self) -> bool:
        """Stop the watchdog; say whether it had already fired."""
        self._timer.cancel()
        with self._lock:
            self._done = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()
        return self.fired


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Pin:
    """The one address a connection may end up at, checked on the live socket."""

    def __init__(self, address: str, port: int, deadline: _Deadline, refuse: _Refuser) -> None:
        self.ip = ipaddress.ip_address(address)
        self.port = port
        self.deadline = deadline
        self.refuse = refuse

    def accept(self, sock: socket.socket) -> None:
        peer = sock.getpeername()
        peer_ip = ipaddress.ip_address(str(peer[0]).split("%")[0])
        if (peer_ip, peer[1]) != (self.ip, self.port):
            sock.close()
            raise self.refuse.not_public(peer_ip)
        self.deadline.watch(sock)


class _PinnedConnectionMixin:
    _pin: _Pin

    def __init__(self, *args, pin: _Pin, **kwargs) -> None:
        self._pin = pin
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        self._pin.accept(sock)
        return sock


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


def _ca_bundle() -> str:
    """The CA certificates HTTPS servers are verified against (the same as requests')."""
    return certifi.where()


def _pool(checked: CheckedUrl, address: str, pin: _Pin) -> urllib3.HTTPConnectionPool:
    common = {"port": checked.port, "maxsize": 1, "retries": False, "pin": pin}
    if checked.scheme == "http":
        return _PinnedHTTPPool(address, **common)
    # Connect to the vetted IP, but speak TLS to (and verify the certificate
    # of) the host name the URL gave.
    name = None if checked.host == address else checked.host
    return _PinnedHTTPSPool(
        address,
        cert_reqs="CERT_REQUIRED",
        ca_certs=_ca_bundle(),
        server_hostname=name,
        assert_hostname=name,
        **common,
    )


def _human_bytes(count: int) -> str:
    for unit, size in (("MB", 1024 * 1024), ("KB", 1024)):
        if count >= size:
            return f"{count / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} bytes"


def _too_slow(field: str, deadline: _Deadline, detail: str = "") -> FetchRefused:
    return FetchRefused(
        "too_slow",
        f"{field} took longer than {deadline.seconds:g} seconds to download; use a faster host or a smaller file.",
        detail=detail,
    )


def _open(
    checked: CheckedUrl,
    accept: str,
    deadline: _Deadline,
    refuse: _Refuser,
    *,
    method: str = "GET",
    body: bytes | None = None,
    extra_headers: dict[str, str] | None = None,
    connect_timeout: float | None = None,
) -> tuple[urllib3.HTTPConnectionPool, urllib3.BaseHTTPResponse]:
    """Send the request to the first vetted address that accepts a connection
    (an address that refuses one was sent nothing, so the next may be tried)."""
    headers = {
        "Host": checked.host_header,
        "Accept": accept,
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
        "Connection": "close",
        **(extra_headers or {}),
    }
    problem: Exception | None = None
    for address in checked.addresses:
        remaining = deadline.remaining()
        if remaining <= 0:
            break
        pool = _pool(checked, address, _Pin(address, checked.port, deadline, refuse))
        try:
            response = pool.urlopen(
                method,
                checked.target,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                release_conn=False,
                timeout=urllib3.Timeout(connect=min(remaining, connect_timeout or remaining), read=remaining),
            )
        except FetchRefused:
            pool.close()
            raise
        except (NewConnectionError, ConnectTimeoutError) as exc:
            # Nothing was sent: another address of the same host may answer.
            pool.close()
            problem = exc
            continue
        except SSLError as exc:
            pool.close()
            if deadline.fired:
                raise _too_slow(refuse.field, deadline, str(exc)) from exc
            raise FetchRefused(
                "unreachable",
                f"The server in {refuse.field} did not present a valid HTTPS certificate for {checked.host}.",
                detail=str(exc),
            ) from exc
        except (HTTPError, OSError) as exc:
            pool.close()
            if deadline.fired or isinstance(exc, Urllib3Timeout | TimeoutError):
                raise _too_slow(refuse.field, deadline, str(exc)) from exc
            raise FetchRefused(
                "unreachable",
                f"The server in {refuse.field} closed the connection without answering.",
                detail=str(exc),
            ) from exc
        return pool, response
    if deadline.remaining() <= 0 or deadline.fired:
        raise _too_slow(refuse.field, deadline, str(problem or ""))
    raise FetchRefused(
        "unreachable",
        f"The server in {refuse.field} could not be reached; check the address and that it is publicly reachable.",
        detail=str(problem or ""),
    )


def _read_body(
    response: urllib3.BaseHTTPResponse, max_bytes: int, deadline: _Deadline, field: str, out: BinaryIO | None = None
) -> bytes:
    too_large = FetchRefused("too_large", f"{field} is larger than the {_human_bytes(max_bytes)} limit.")
    declared = (response.headers.get("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        # We asked for identity; decompressing would let a small body expand
        # past the cap before we could count it.
        raise FetchRefused(
            "http_error",
            f"The server in {field} sent a compressed ({encoding}) response; serve the file uncompressed.",
        )
    chunks: list[bytes] = []
    total = 0
    while True:
        if deadline.remaining() <= 0:
            raise _too_slow(field, deadline)
        try:
            chunk = response.read(min(CHUNK_SIZE, max_bytes + 1 - total))
        except (HTTPError, OSError) as exc:
            if deadline.fired or isinstance(exc, Urllib3Timeout | TimeoutError):
                raise _too_slow(field, deadline, str(exc)) from exc
            raise FetchRefused(
                "unreachable",
                f"The server in {field} closed the connection before the whole file arrived.",
                detail=str(exc),
            ) from exc
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise too_large
        if out is not None:
            out.write(chunk)  # a video streams to disk: it is never all in memory
        else:
            chunks.append(chunk)
    return b"".join(chunks)


def fetch(
    url: str,
    *,
    max_bytes: int,
    deadline: float = 20.0,
    accept: str = "image/*",
    max_redirects: int = 5,
    field: str = "image_url",
    out: BinaryIO | None = None,
) -> FetchResult:
    """GET ``url`` if (and only as long as) it stays on public addresses.

    Redirects (301, 302, 303, 307, 308) are followed up to ``max_redirects``
    times, each target checked like the first URL before it is connected to.
    The body may not exceed ``max_bytes`` and everything together may not
    take longer than ``deadline`` seconds. Raises ``FetchRefused`` with one of
    the codes ``bad_scheme``, ``bad_url``, ``not_public``, ``unresolvable``,
    ``too_large``, ``too_slow``, ``too_many_redirects``, ``http_error`` or
    ``unreachable``. With ``out``, the body is written there as it arrives
    (``content`` is then empty).
    """
    clock = _Deadline(deadline)
    try:
        current = url
        for hop in range(max_redirects + 1):
            refuse = _Refuser(field, redirected=hop > 0)
            checked = _check(current, field, redirected=hop > 0, timeout=max(clock.remaining(), 0.0))
            pool, response = _open(checked, accept, clock, refuse)
            try:
                status = response.status
                if status in REDIRECT_STATUSES:
                    location = (response.headers.get("Location") or "").strip()
                    if not location:
                        raise FetchRefused(
                            "http_error",
                            f"The server in {field} answered {status} (a redirect) without saying where to.",
                            status=status,
                        )
                    current = urljoin(checked.url, location)
                    continue
                if not 200 <= status < 300:
                    reason = f" {response.reason}" if response.reason else ""
                    raise FetchRefused(
                        "http_error",
                        f"Fetching {field} failed: the server answered {status}{reason}.",
                        status=status,
                    )
                content = _read_body(response, max_bytes, clock, field, out)
                if clock.stop():  # the watchdog may have cut the body short
                    raise _too_slow(field, clock)
                return FetchResult(
                    content=content,
                    content_type=response.headers.get("Content-Type", ""),
                    final_url=checked.url,
                )
            finally:
                response.close()
                pool.close()
        raise FetchRefused(
            "too_many_redirects",
            f"{field} redirected more than {max_redirects} times; give the final address instead.",
        )
    finally:
        clock.stop()


@dataclass(frozen=True)
class PostAnswer:
    status: int
    body: bytes  # at most the ``body_cap`` asked for
    headers: dict[str, str] = dataclass_field(default_factory=dict)  # names lower-cased


def post(
    url: str,
    body: bytes,
    *,
    headers: dict[str, str],
    timeout: float,
    field: str,
    body_cap: int = 2048,
    connect_timeout: float | None = None,
) -> PostAnswer:
    """POST ``body`` once to ``url`` if it is on public addresses, through the
    same pinned connection as ``fetch``; the answer, whatever its status.

    A redirect is never followed (it is returned as the answer: following it
    would resend the body and its headers to wherever it points), and only the
    first ``body_cap`` bytes of the answer are read. Raises ``FetchRefused``
    when the URL is refused or no answer came within ``timeout`` seconds
    (``connect_timeout``, when given, bounds the wait for a connection).
    """
    clock = _Deadline(timeout)
    try:
        refuse = _Refuser(field, redirected=False)
        checked = _check(url, field, redirected=False, timeout=max(clock.remaining(), 0.0))
        pool, response = _open(
            checked,
            "*/*",
            clock,
            refuse,
            method="POST",
            body=body,
            extra_headers=headers,
            connect_timeout=connect_timeout,
        )
        try:
            try:
                data = response.read(body_cap)
            except (HTTPError, OSError):
                data = b""  # the status is the answer; a body cut short does not change it
            answer_headers = {name.lower(): value for name, value in response.headers.items()}
            return PostAnswer(response.status, data or b"", answer_headers)
        finally:
            response.close()
            pool.close()
    finally:
        clock.stop()
