"""Fetching a URL a user gave us: public addresses only (also after every redirect),
connections pinned to the vetted address, a byte cap and a deadline.

Everything runs on loopback. DNS is faked for the whole module (names under
``example.test`` resolve to what a test says, anything else fails), so no test
ever asks a real resolver or connects outside this machine: the public address
used below is only ever judged, never connected to.
"""

from __future__ import annotations

import io
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from providers import safe_fetch
from providers.safe_fetch import FetchRefused, check_url, fetch

PUBLIC_IP = "93.184.216.34"  # judged, never connected to
PUBLIC_IP6 = "2606:2800:220:1:248:1893:25c8:1946"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


# --- A loopback server that counts what reaches it ---------------------------


class LoopbackServer:
    """Answers by path and records every connection and request it gets."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.connections = 0
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        self.stopping = threading.Event()
        outer = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

            def process_request(self, request, client_address):
                outer.connections += 1
                super().process_request(request, client_address)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Host", "")))
                url = urlsplit(self.path)
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                try:
                    outer.answer(self, url.path, query)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = Server((host, port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.host = host
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def answer(self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, str]) -> None:
        if path == "/image.png":
            self._send(handler, 200, PNG, {"Content-Type": "image/png"})
        elif path == "/redirect":
            handler.send_response(int(query.get("status", 302)))
            if "to" in query:
                handler.send_header("Location", query["to"])
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif path.startswith("/hops/"):
            left = int(path.rsplit("/", 1)[1])
            if left == 0:
                self._send(handler, 200, PNG, {"Content-Type": "image/png"})
            else:
                handler.send_response(302)
                handler.send_header("Location", f"/hops/{left - 1}")  # relative, on purpose
                handler.send_header("Content-Length", "0")
                handler.end_headers()
        elif path == "/bytes":
            body = b"x" * int(query["size"])
            headers = {"Content-Type": "application/octet-stream"}
            if query.get("length") == "no":
                handler.close_connection = True  # HTTP/1.0: the body ends when the connection does
                handler.send_response(200)
                handler.send_header("Content-Type", "application/octet-stream")
                handler.end_headers()
                handler.wfile.write(body)
            else:
                self._send(handler, 200, body, headers)
        elif path == "/promises-a-lot":
            # Announces 50 MB and sends nothing: reading it would run into the deadline.
            handler.send_response(200)
            handler.send_header("Content-Length", str(50 * 1024 * 1024))
            handler.end_headers()
            handler.wfile.flush()
            self.stopping.wait(10)
        elif path == "/trickle":
            handler.send_response(200)
            handler.send_header("Content-Length", "1000")
            handler.end_headers()
            for _ in range(1000):
                handler.wfile.write(b"x")
                handler.wfile.flush()
                if self.stopping.wait(0.05):
                    return
        elif path == "/trickle-headers":
            handler.wfile.write(b"HTTP/1.0 200 OK\r\n")
            for number in range(1000):
                handler.wfile.write(f"X-Slow-{number}: 1\r\n".encode())
                handler.wfile.flush()
                if self.stopping.wait(0.05):
                    return
        elif path == "/gzip":
            self._send(handler, 200, b"\x1f\x8b not really", {"Content-Encoding": "gzip"})
        else:
            self._send(handler, 404, b"not here", {"Content-Type": "text/plain"})

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class FakeDns:
    """``socket.getaddrinfo`` for the tests: names answer what ``answers`` says
    (a list of answers is used one per lookup, the last one repeating); IP
    literals go to the real function, numeric only (or to ``swap``); any other
    name is unknown."""

    def __init__(self, real) -> None:
        self.real = real
        self.answers: dict[str, list[list[str]]] = {}
        self.swap: dict[str, str] = {}
        self.calls: list[str] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.calls.append(name)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            name = self.swap.get(name, name)
            return self.real(name, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        if name not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        sequence = self.answers[name]
        addresses = sequence.pop(0) if len(sequence) > 1 else sequence[0]
        infos = []
        for address in addresses:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port or 0), 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0))))
        return infos


@pytest.fixture(autouse=True)
def dns(monkeypatch) -> FakeDns:
    fake = FakeDns(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture(autouse=True)
def connections(monkeypatch) -> list:
    """Every address this process connects a socket to during the test.

    Anything but loopback is refused here, so even a broken fetch could not
    send a packet off this machine.
    """
    seen: list = []
    real = socket.socket.connect

    def connect(self, address):
        seen.append(address)
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise ConnectionRefusedError(f"test guard: {address[0]} is not loopback")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


@pytest.fixture
def server():
    started = LoopbackServer()
    yield started
    started.close()


@pytest.fixture
def other_server():
    started = LoopbackServer()
    yield started
    started.close()


@pytest.fixture
def allowed(settings, server) -> LoopbackServer:
    """The loopback server, let through by SAFE_FETCH_ALLOW (its exact address and port only)."""
    settings.SAFE_FETCH_ALLOW = (f"127.0.0.1:{server.port}",)
    return server


def refusal(url: str, **kwargs) -> FetchRefused:
    kwargs.setdefault("max_bytes", 100_000)
    with pytest.raises(FetchRefused) as caught:
        fetch(url, **kwargs)
    return caught.value


# --- Refused before anything is fetched ---------------------------------------

# Each one reaches the loopback server's port on this machine if fetched.
THIS_MACHINE = [
    pytest.param("http://127.0.0.1:{port}/image.png", id="loopback"),
    pytest.param("http://localhost:{port}/image.png", id="localhost"),
    pytest.param("http://sub.localhost:{port}/image.png", id="localhost-subdomain"),
    pytest.param("http://[::1]:{port}/image.png", id="ipv6-loopback"),
    pytest.param("http://[::ffff:127.0.0.1]:{port}/image.png", id="ipv4-mapped-ipv6"),
    pytest.param("http://0.0.0.0:{port}/image.png", id="unspecified"),
    pytest.param("http://0:{port}/image.png", id="zero"),
    pytest.param("http://2130706433:{port}/image.png", id="decimal"),
    pytest.param("http://0177.0.0.1:{port}/image.png", id="octal"),
    pytest.param("http://017700000001:{port}/image.png", id="octal-whole"),
    pytest.param("http://0x7f.1:{port}/image.png", id="hex-short"),
    pytest.param("http://0x7f000001:{port}/image.png", id="hex-whole"),
    pytest.param("http://0x7F.0.0.1:{port}/image.png", id="hex-first-part"),
    pytest.param("http://127.1:{port}/image.png", id="short"),
    pytest.param("http://127.0.1:{port}/image.png", id="three-parts"),
    pytest.param("http://127.0.0.1.:{port}/image.png", id="trailing-dot"),
    pytest.param("http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11:{port}/image.png", id="full-width"),
]


@pytest.mark.parametrize("template", THIS_MACHINE)
def test_a_url_aimed_at_this_machine_is_refused_and_nothing_is_fetched(template, server, connections, dns):
    refused = refusal(template.format(port=server.port))

    assert refused.code == "not_public"
    assert refused.message.startswith("image_url points to a private or local address (")
    assert refused.message.endswith("only public addresses can be fetched.")
    assert connections == []
    assert server.connections == 0 and server.requests == []
    assert dns.calls == []  # not even looked up


def test_an_odd_spelling_of_loopback_is_named_by_the_address_it_stands_for():
    for spelling in ("2130706433", "0177.0.0.1", "0x7f.1", "127.1"):
        refused = refusal(f"http://{spelling}/a.png")
        assert "(127.0.0.1)" in refused.message, spelling


def test_an_ipv4_mapped_address_is_judged_by_the_ipv4_address_inside():
    assert "127.0.0.1" in refusal("http://[::ffff:127.0.0.1]/a.png").message
    checked = check_url(f"http://[::ffff:{PUBLIC_IP}]/a.png")
    assert ipaddress.ip_address(checked.addresses[0]).ipv4_mapped == ipaddress.ip_address(PUBLIC_IP)


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",  # cloud metadata
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "192.0.0.170",
        "198.18.0.1",
        "224.0.0.1",  # multicast
        "255.255.255.255",
        "[fe80::1]",
        "[fe80::1%25eth0]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[fec0::1]",
        "[ff02::1]",
        "[::]",
        "[::127.0.0.1]",  # IPv4-compatible
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
        "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",  # Teredo
        "[2001:db8::1]",
    ],
)
def test_a_private_link_local_or_reserved_address_is_refused_without_connecting(host, connections):
    refused = refusal(f"http://{host}/latest/meta-data/")

    assert refused.code == "not_public"
    assert "only public addresses can be fetched" in refused.message
    assert connections == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://{public}/image.png",
        "gopher://127.0.0.1:{port}/_GET",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "//{public}/image.png",
        "image.png",
    ],
)
def test_a_scheme_other_than_http_or_https_is_refused(url, server, connections, dns):
    refused = refusal(url.format(public=PUBLIC_IP, port=server.port))

    assert refused.code == "bad_scheme"
    assert refused.message == "image_url must use http or https."
    assert connections == [] and dns.calls == [] and server.connections == 0


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://user:pass@images.example.test/a.png", "user name or password"),
        ("http://user@images.example.test/a.png", "user name or password"),
        ("http://@images.example.test/a.png", "user name or password"),
        ("http://127.0.0.1:{port}@images.example.test/a.png", "user name or password"),
        ("http:///a.png", "no host name"),
        (f"http://{PUBLIC_IP}:0/a.png", "port"),
        (f"http://{PUBLIC_IP}:65536/a.png", "port"),
        (f"http://{PUBLIC_IP}:http/a.png", "port"),
        ("http://999.1.1.1/a.png", "invalid IP address"),
        ("http://1.2.3.4.5/a.png", "invalid IP address"),
        ("http://1572395042/a.png", f"write it as {PUBLIC_IP}"),  # a public address, oddly spelt
        ("http://intranet/a.png", "not a full domain name"),
        ("http://bad_-.example.test../a.png", "invalid host name"),
        ("http://[v1.fe]/a.png", "invalid IPv6 address"),
        ("http://[::1/a.png", "not a valid URL"),
        ("http://images.example.test/a b.png", "spaces"),
        ("http://images.example.test/a.png\r\nX-Injected: 1", "control characters"),
        ("", "is empty"),
    ],
)
def test_a_malformed_url_is_refused_before_it_is_looked_up(url, words, server, connections, dns):
    dns.answers["images.example.test"] = [[PUBLIC_IP]]
    refused = refusal(url.format(port=server.port))

    assert refused.code == "bad_url"
    assert refused.message.startswith("image_url ")
    assert words in refused.message
    assert connections == [] and dns.calls == [] and server.connections == 0


# --- Names are judged by every address they resolve to -------------------------


def test_a_name_resolving_only_to_public_addresses_passes_the_check(dns):
    dns.answers["images.example.test"] = [[PUBLIC_IP, PUBLIC_IP6]]

    checked = check_url("https://images.example.test/cat.png?size=large")

    assert checked.addresses == (PUBLIC_IP, PUBLIC_IP6)
    assert (checked.scheme, checked.host, checked.port, checked.target) == (
        "https",
        "images.example.test",
        443,
        "/cat.png?size=large",
    )


@pytest.mark.parametrize(
    "answer",
    [
        [PUBLIC_IP, "10.0.0.7"],
        ["10.0.0.7", PUBLIC_IP],
        [PUBLIC_IP, "::1"],
        ["169.254.169.254"],
        ["::ffff:10.0.0.7"],
        ["127.0.0.1"],
    ],
)
def test_a_name_with_any_private_address_among_its_answers_is_refused(answer, dns, connections):
    dns.answers["images.example.test"] = [answer]

    refused = refusal("http://images.example.test/a.png")

    assert refused.code == "not_public"
    private = next(a for a in answer if a != PUBLIC_IP)
    assert str(ipaddress.ip_address(private)) in refused.message
    assert connections == []


def test_a_name_that_does_not_resolve_is_refused_as_unresolvable(dns):
    refused = refusal("http://nowhere.example.test/a.png")

    assert refused.code == "unresolvable"
    assert refused.message == "image_url has a host name (nowhere.example.test) that could not be found."


def test_the_allow_setting_lets_through_its_exact_address_and_port_only(settings, dns):
    settings.SAFE_FETCH_ALLOW = ("127.0.0.1:8001", "[::1]:8002")
    dns.answers["images.example.test"] = [["127.0.0.1"]]

    assert check_url("http://127.0.0.1:8001/a.png").addresses == ("127.0.0.1",)
    assert check_url("http://[::1]:8002/a.png").addresses == ("::1",)
    assert check_url("http://images.example.test:8001/a.png").addresses == ("127.0.0.1",)
    for url in (
        "http://127.0.0.1:8002/a.png",
        "http://127.0.0.1/a.png",
        "http://[::1]:8001/a.png",
        "http://127.0.0.2:8001/a.png",
        "http://[::ffff:127.0.0.1]:8001/a.png",
    ):
        assert refusal(url).code == "not_public", url


def test_a_malformed_allow_setting_stops_with_a_clear_error(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.SAFE_FETCH_ALLOW = ("localhost:8000",)
    with pytest.raises(ImproperlyConfigured, match="SAFE_FETCH_ALLOW"):
        check_url(f"http://{PUBLIC_IP}/a.png")


# --- Fetching from an allowed server -------------------------------------------


def test_an_image_from_an_allowed_server_is_fetched_whole(allowed):
    result = fetch(allowed.url("/image.png"), max_bytes=100_000)

    assert result.content == PNG
    assert result.content_type == "image/png"
    assert result.final_url == allowed.url("/image.png")
    assert allowed.requests == [("/image.png", f"127.0.0.1:{allowed.port}")]


def test_an_allowed_ipv6_loopback_server_is_fetched_by_its_bracketed_address(settings):
    try:
        started = LoopbackServer(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        settings.SAFE_FETCH_ALLOW = (f"[::1]:{started.port}",)
        result = fetch(started.url("/image.png"), max_bytes=100_000)
        assert result.content == PNG
        assert started.requests == [("/image.png", f"[::1]:{started.port}")]
    finally:
        started.close()


def test_a_name_is_fetched_from_its_vetted_address_with_its_own_host_header(allowed, dns):
    dns.answers["images.example.test"] = [["127.0.0.1"]]

    result = fetch(f"http://images.example.test:{allowed.port}/image.png", max_bytes=100_000)

    assert result.content == PNG
    assert allowed.requests == [("/image.png", f"images.example.test:{allowed.port}")]


def test_the_connection_goes_to_the_address_that_was_checked_even_if_dns_changes_its_answer(allowed, dns, connections):
    # A rebinding resolver: the first answer is the vetted one, every later
    # answer points elsewhere. Connecting by name would ask again and miss.
    dns.answers["images.example.test"] = [["127.0.0.1"], ["127.0.0.2"]]

    result = fetch(f"http://images.example.test:{allowed.port}/image.png", max_bytes=100_000)

    assert result.content == PNG
    assert dns.calls.count("images.example.test") == 1
    assert [address[0] for address in connections] == ["127.0.0.1"]
    assert len(allowed.requests) == 1


def test_a_socket_that_ends_up_at_another_address_is_dropped_before_anything_is_sent(allowed, dns):
    try:
        elsewhere = LoopbackServer(host="127.0.0.2", port=allowed.port)
    except OSError:
        pytest.skip("cannot listen on 127.0.0.2 here")
    try:
        # The connection is diverted below us (the numeric lookup answers
        # another address): only the check of the socket's peer can notice.
        dns.swap["127.0.0.1"] = "127.0.0.2"

        refused = refusal(allowed.url("/image.png"))

        assert refused.code == "not_public"
        assert "127.0.0.2" in refused.message
        assert elsewhere.requests == [] and allowed.requests == []
    finally:
        elsewhere.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_a_public_path_is_followed(allowed, status):
    result = fetch(allowed.url(f"/redirect?status={status}&to=/image.png"), max_bytes=100_000)

    assert result.content == PNG
    assert result.final_url == allowed.url("/image.png")
    assert [path for path, _ in allowed.requests] == [f"/redirect?status={status}&to=/image.png", "/image.png"]


REDIRECT_TARGETS = [
    pytest.param("http://127.0.0.1:{other}/image.png", "not_public", id="loopback-other-port"),
    pytest.param("http://169.254.169.254/latest/meta-data/", "not_public", id="metadata"),
    pytest.param("http://[::1]:{other}/image.png", "not_public", id="ipv6-loopback"),
    pytest.param("http://[::ffff:127.0.0.1]:{other}/image.png", "not_public", id="ipv4-mapped"),
    pytest.param("http://2130706433:{other}/image.png", "not_public", id="decimal"),
    pytest.param("http://0x7f.1:{other}/image.png", "not_public", id="hex"),
    pytest.param("http://localhost:{other}/image.png", "not_public", id="localhost"),
    pytest.param("http://10.0.0.1/image.png", "not_public", id="private"),
    pytest.param("http://private.example.test:{other}/image.png", "not_public", id="name-to-private"),
    pytest.param("file:///etc/passwd", "bad_scheme", id="file"),
    pytest.param("gopher://127.0.0.1:{other}/_x", "bad_scheme", id="gopher"),
    pytest.param("http://user:pw@127.0.0.1:{other}/", "bad_url", id="userinfo"),
]


@pytest.mark.parametrize(("target", "code"), REDIRECT_TARGETS)
def test_a_redirect_to_a_forbidden_address_is_refused_and_its_target_sees_nothing(
    target, code, allowed, other_server, dns, connections
):
    dns.answers["private.example.test"] = [["127.0.0.1"]]
    location = target.format(other=other_server.port)

    refused = refusal(allowed.url("/redirect?to=" + location.replace("&", "%26")))

    assert refused.code == code
    assert refused.message.startswith("image_url redirected to ")
    assert other_server.connections == 0 and other_server.requests == []
    assert [address[:2] for address in connections] == [("127.0.0.1", allowed.port)]


def test_a_redirect_chain_within_the_limit_is_followed_and_a_longer_one_is_refused(allowed):
    result = fetch(allowed.url("/hops/2"), max_bytes=100_000, max_redirects=2)
    assert result.content == PNG
    assert result.final_url == allowed.url("/hops/0")

    allowed.requests.clear()
    refused = refusal(allowed.url("/hops/3"), max_redirects=2)
    assert refused.code == "too_many_redirects"
    assert refused.message == "image_url redirected more than 2 times; give the final address instead."
    assert len(allowed.requests) == 3


def test_a_redirect_without_a_location_is_an_http_error(allowed):
    refused = refusal(allowed.url("/redirect?status=302"))
    assert (refused.code, refused.status) == ("http_error", 302)


# --- Byte cap and deadline -------------------------------------------------------


@pytest.mark.parametrize("length", ["yes", "no"])
def test_a_body_of_exactly_the_cap_is_accepted(allowed, length):
    result = fetch(allowed.url(f"/bytes?size=5000&length={length}"), max_bytes=5000)
    assert len(result.content) == 5000


@pytest.mark.parametrize("length", ["yes", "no"])
def test_a_body_larger_than_the_cap_is_refused(allowed, length):
    refused = refusal(allowed.url(f"/bytes?size=300000&length={length}"), max_bytes=100_000)

    assert refused.code == "too_large"
    assert refused.message == "image_url is larger than the 97.7 KB limit."


def test_a_declared_length_over_the_cap_is_refused_without_reading_the_body(allowed):
    started = time.monotonic()
    # The server never sends the 50 MB it announces: reading would end in too_slow.
    refused = refusal(allowed.url("/promises-a-lot"), max_bytes=10 * 1024 * 1024, deadline=20)

    assert refused.code == "too_large"
    assert refused.message == "image_url is larger than the 10 MB limit."
    assert time.monotonic() - started < 5  # far from the deadline, with room for a busy machine


@pytest.mark.parametrize("path", ["/trickle", "/trickle-headers"])
def test_a_server_that_trickles_bytes_is_cut_off_at_the_deadline(allowed, path):
    started = time.monotonic()
    refused = refusal(allowed.url(path), deadline=0.5)
    elapsed = time.monotonic() - started

    assert refused.code == "too_slow"
    assert refused.message.startswith("image_url took longer than 0.5 seconds to download")
    assert 0.4 < elapsed < 5  # the whole trickle takes 50 s; the rest is room for a busy machine


def test_a_not_found_answer_is_an_http_error_with_its_status(allowed):
    refused = refusal(allowed.url("/missing.png"))

    assert (refused.code, refused.status) == ("http_error", 404)
    assert refused.message == "Fetching image_url failed: the server answered 404 Not Found."


def test_a_compressed_answer_is_refused_rather_than_inflated_past_the_cap(allowed):
    assert refusal(allowed.url("/gzip")).code == "http_error"


def test_a_server_that_is_not_listening_is_unreachable(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.SAFE_FETCH_ALLOW = (f"127.0.0.1:{port}",)

    refused = refusal(f"http://127.0.0.1:{port}/image.png")

    assert refused.code == "unreachable"
    assert "could not be reached" in refused.message


def test_the_label_in_messages_can_name_another_field():
    with pytest.raises(FetchRefused) as caught:
        check_url("ftp://example.test/hook", field="callback_url")
    assert caught.value.message == "callback_url must use http or https."


# --- HTTPS: connected by address, verified by name -------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=images.example.test",
            "-addext",
            "subjectAltName=DNS:images.example.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate, settings, monkeypatch):
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    started = LoopbackServer(tls=context)
    settings.SAFE_FETCH_ALLOW = (f"127.0.0.1:{started.port}",)
    monkeypatch.setattr(safe_fetch, "_ca_bundle", lambda: str(cert))
    yield started
    started.close()


def test_https_connects_to_the_vetted_address_and_verifies_the_certificate_of_the_name(tls_server, dns):
    dns.answers["images.example.test"] = [["127.0.0.1"], ["127.0.0.2"]]

    result = fetch(f"https://images.example.test:{tls_server.port}/image.png", max_bytes=100_000)

    assert result.content == PNG
    assert tls_server.requests == [("/image.png", f"images.example.test:{tls_server.port}")]
    assert dns.calls.count("images.example.test") == 1


def test_https_with_a_certificate_for_another_name_is_refused(tls_server, dns):
    dns.answers["other.example.test"] = [["127.0.0.1"]]

    refused = refusal(f"https://other.example.test:{tls_server.port}/image.png")

    assert refused.code == "unreachable"
    assert "certificate" in refused.message
    assert tls_server.requests == []
