"""idp.jwks_fetch against a key server on loopback: what it accepts and what it refuses."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc.jwk import ECKey

from idp import jwks_fetch
from idp.jwks_fetch import (
    FETCH_FAILED,
    INVALID_JWKS,
    MAX_JWKS_BYTES,
    PRIVATE_HOST,
    JwksFetchError,
    check_public_host,
    fetch_jwks,
    max_age,
)


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True  # False: the body ends when the connection closes
    delay: float = 0.0


def jwks_document(kid: str = "k1") -> dict[str, Any]:
    key = ECKey.generate_key("P-256", parameters={"kid": kid})
    return {"keys": [key.as_dict(private=False)]}


def padded(document: dict[str, Any], size: int) -> bytes:
    """The JSON of ``document``, padded with whitespace to exactly ``size`` bytes."""
    body = json.dumps(document).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the fetcher hangs up early on purpose (size cap, timeout)


class KeyServer:
    """An HTTP server on 127.0.0.1 answering each path from ``routes``, recording requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Accept)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Accept")))
                route = outer.routes.get(self.path, Route(b"not found", 404))
                time.sleep(route.delay)
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.content_length:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval: shutdown() waits up to one interval.
        serve = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        serve.start()

    def serve(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.base + path

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def __enter__(self) -> KeyServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    with KeyServer() as server:
        yield server


def refused(url: str, rule: str, **options: Any) -> JwksFetchError:
    options.setdefault("allow_private", True)
    with pytest.raises(JwksFetchError) as caught:
        fetch_jwks(url, **options)
    assert caught.value.rule == rule, caught.value.description
    return caught.value


def test_a_jwks_is_fetched_with_its_max_age(key_server) -> None:
    headers = {"Content-Type": "application/json", "Cache-Control": "public, max-age=120"}
    url = key_server.serve("/jwks", Route(json.dumps(jwks_document("k1")).encode(), 200, headers))
    fetched = fetch_jwks(url, allow_private=True)
    assert [key.kid for key in fetched.keys.keys] == ["k1"]
    assert fetched.max_age == 120
    assert fetched.document["keys"][0]["kid"] == "k1"
    accept = key_server.requests[0][1] or ""
    assert "application/jwk-set+json" in accept  # RFC 7517 §8.5.1


def test_without_cache_control_there_is_no_max_age(key_server) -> None:
    url = key_server.serve("/jwks", Route(json.dumps(jwks_document()).encode()))
    assert fetch_jwks(url, allow_private=True).max_age is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=60", 60),
        ("public, max-age=300, must-revalidate", 300),
        ("Public, MAX-AGE=5", 5),
        ('max-age="7"', 7),
        ("no-cache, max-age=0", 0),
        ("s-maxage=9", None),
        ("max-age=abc", None),
        ("max-age=-1", None),
        ("max-age=", None),
        ("no-store", None),
        ("", None),
    ],
)
def test_max_age_directive(value: str, expected: int | None) -> None:
    assert max_age(value) == expected


@pytest.mark.parametrize("content_length", [True, False], ids=["sized", "unsized"])
def test_the_size_cap_holds_at_the_byte(key_server, content_length) -> None:
    document = jwks_document()
    limit = len(json.dumps(document)) + 100
    exact = key_server.serve(
        "/exact", Route(padded(document, limit), content_length=content_length)
    )
    over = key_server.serve(
        "/over", Route(padded(document, limit + 1), content_length=content_length)
    )
    assert fetch_jwks(exact, allow_private=True, max_bytes=limit).keys.keys
    error = refused(over, FETCH_FAILED, max_bytes=limit)
    assert f"exceeds {limit} bytes" in error.description


def test_the_default_cap_is_64_kib(key_server) -> None:
    url = key_server.serve("/big", Route(padded(jwks_document(), MAX_JWKS_BYTES + 1)))
    assert MAX_JWKS_BYTES == 64 * 1024
    refused(url, FETCH_FAILED)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed(key_server, status) -> None:
    target = key_server.serve("/jwks", Route(json.dumps(jwks_document()).encode()))
    url = key_server.serve("/moved", Route(b"", status, {"Location": target}))
    error = refused(url, FETCH_FAILED)
    assert error.description == f"jwks_uri answered {status}"
    assert key_server.paths() == ["/moved"]  # the target was never asked


@pytest.mark.parametrize("status", [201, 204, 404, 500, 503])
def test_anything_but_200_is_refused(key_server, status) -> None:
    url = key_server.serve("/jwks", Route(json.dumps(jwks_document()).encode(), status))
    assert refused(url, FETCH_FAILED).description == f"jwks_uri answered {status}"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b'"keys"',
        b'{"not": "a jwks"}',
        b'{"keys": {}}',
        b'{"keys": []}',
        b'{"keys": [{"kty": "EC"}]}',
        b'{"keys": [{"kty": "RSA", "n": 5, "e": "AQAB"}]}',
        b'{"keys": [{}]}',
    ],
    ids=[
        "empty",
        "broken",
        "not-utf8",
        "array",
        "string",
        "no-keys",
        "keys-not-list",
        "no-key",
        "ec-without-curve",
        "rsa-bad-member",
        "no-kty",
    ],
)
def test_a_body_that_is_not_a_jwks_is_refused(key_server, body) -> None:
    url = key_server.serve("/jwks", Route(body, headers={"Content-Type": "application/json"}))
    error = refused(url, INVALID_JWKS)
    assert error.description.startswith("jwks_uri returned no usable JWKS")


def test_a_connection_failure_is_a_fetch_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: the connection is refused
        error = refused(f"http://127.0.0.1:{port}/jwks", FETCH_FAILED)
    assert error.description == "jwks_uri fetch failed (ConnectionError)"


def test_a_slow_server_times_out(key_server) -> None:
    url = key_server.serve("/slow", Route(json.dumps(jwks_document()).encode(), delay=1.0))
    error = refused(url, FETCH_FAILED, timeout=(1.0, 0.2))
    assert "Timeout" in error.description


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_private_host_is_refused_without_a_request(key_server, host) -> None:
    url = key_server.serve("/jwks", Route(json.dumps(jwks_document()).encode()))
    url = url.replace("127.0.0.1", host)
    error = refused(url, PRIVATE_HOST, allow_private=False)
    assert error.description == "jwks_uri points to a non-public address"
    assert key_server.requests == []
    assert fetch_jwks(url, allow_private=True).keys.keys  # the opt-out reaches it


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/jwks",
        "https://10.1.2.3/jwks",
        "https://172.16.0.1/jwks",
        "https://192.168.1.1/jwks",
        "https://100.64.0.1/jwks",  # carrier-grade NAT
        "https://169.254.169.254/latest/jwks",  # cloud metadata
        "https://0.0.0.0/jwks",
        "https://[::1]/jwks",
        "https://[fe80::1]/jwks",
        "https://[fd00::1]/jwks",
        "https://[::ffff:127.0.0.1]/jwks",  # IPv4-mapped
        "https://[64:ff9b::a9fe:a9fe]/jwks",  # NAT64 of 169.254.169.254
        "https://[2002:7f00:1::]/jwks",  # 6to4 of 127.0.0.1
    ],
)
def test_non_public_addresses(url: str) -> None:
    with pytest.raises(JwksFetchError) as caught:
        check_public_host(url)
    assert caught.value.rule == PRIVATE_HOST


@pytest.mark.parametrize(
    "url",
    ["https://8.8.8.8/jwks", "https://[2001:4860:4860::8888]/jwks", "https://[64:ff9b::808:808]/"],
)
def test_public_addresses_pass(url: str) -> None:
    check_public_host(url)


def test_a_name_that_does_not_resolve_is_a_fetch_error(monkeypatch) -> None:
    def no_such_host(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(jwks_fetch.socket, "getaddrinfo", no_such_host)
    error = refused("https://keys.example.invalid/jwks", FETCH_FAILED, allow_private=False)
    assert error.description == "jwks_uri host does not resolve"


def test_a_url_without_a_host_is_a_fetch_error() -> None:
    refused("https:///jwks", FETCH_FAILED, allow_private=False)


def test_the_fetcher_and_the_verifier_import_without_server_dependencies() -> None:
    # A resource server imports idp.verify without Flask, a database or Redis installed.
    blocked = ("flask", "werkzeug", "sqlalchemy", "redis", "authlib", "pydantic", "prometheus")
    script = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0].startswith({blocked!r}):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import idp.jwks_fetch, idp.verify
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
