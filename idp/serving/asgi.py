"""Run idp's WSGI app under an ASGI server (granian) with the request body read first.

A WSGI server lends a thread to a request before its body has arrived, and the thread
then waits on the socket: a few dozen clients sending a body one byte a second hold
every thread. Here the body is read on the event loop, where a waiting client costs a
coroutine, within ``BODY_TIMEOUT`` seconds and ``max_body`` bytes; only a complete
request reaches the WSGI app (on the loop's thread, or on a bounded pool of threads
while calls are slow: see ``WsgiBridge.run_app``). A request over either
bound still reaches the app, with no body to read, so its 413 or 408 has idp's format
and request id; the connection is then closed (RFC 9110 §15.5.9, §15.5.14).
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Seconds a client has to send its whole body once its headers are in. A token request
# body is a few hundred bytes; even a 64 KiB body on a slow mobile link takes well under.
BODY_TIMEOUT = 5.0
# Threads per worker process that run the WSGI app while calls are slow (see run_app).
APP_THREADS = 4
# A call to the app that takes longer than this has waited on something (a stalled
# database, a slow client jwks_uri): calls then go to the threads for SLOW_WINDOW seconds.
SLOW_CALL = 0.25
SLOW_WINDOW = 10.0

# One line per answered request, with the id that ties it to idp's log lines and audit
# events. No query string and no header: the access log must never carry a secret.
access_log = logging.getLogger("idp.access")


class RefusedBody(io.RawIOBase):
    """``wsgi.input`` of a request whose body was not read: reading it raises ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise self.error


class WsgiResponse:
    """What ``start_response`` and the app's iterable produced, gathered in the thread."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self.headers:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        return self.chunks.append


def run_wsgi(app: WsgiApp, environ: dict[str, Any]) -> WsgiResponse:
    """Call the app and drain its iterable (idp answers small documents, never streams)."""
    response = WsgiResponse()
    result = app(environ, response.start_response)
    try:
        response.chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return response


class BodyTooLarge(Exception):
    """More than ``max_body`` bytes arrived (a chunked body, or a wrong Content-Length)."""


async def read_body(receive: Receive, max_body: int) -> bytes | None:
    """The whole body, or None when the client went away before sending it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def wsgi_environ(scope: Scope, body: io.IOBase, content_length: int | None) -> dict[str, Any]:
    """PEP 3333 environ for an ASGI HTTP scope."""
    server_name, server_port = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode().decode("latin-1"),
        # WSGI carries the decoded path as its UTF-8 bytes read as latin-1 (PEP 3333).
        "PATH_INFO": scope["path"].encode().decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server_name),
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": client[0] if client else "",
        "REMOTE_PORT": str(client[1]) if client else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if content_length is not None:
        environ["CONTENT_LENGTH"] = str(content_length)
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper()
        # "X_Client_Cert" would land on the same key as "X-Client-Cert", which a trusted
        # proxy sets: names with an underscore are dropped, as gunicorn and nginx do.
        if "_" in name or name == "CONTENT-LENGTH":
            continue
        value = raw_value.decode("latin-1")
        key = "CONTENT_TYPE" if name == "CONTENT-TYPE" else "HTTP_" + name.replace("-", "_")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class WsgiBridge:
    """ASGI app that reads the body, bounded, then runs ``wsgi_app`` on a thread."""

    def __init__(
        self,
        wsgi_app: WsgiApp,
        max_body: int,
        *,
        body_timeout: float = BODY_TIMEOUT,
        threads: int = APP_THREADS,
    ) -> None:
        self.wsgi_app = wsgi_app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="idp-app")
        self.threaded_until = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        # Anything else (WebSocket) is not served: returning closes it.

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        length = declared_length(scope)
        refused: Exception | None = None
        body = b""
        if length is not None and length > self.max_body:
            refused = RequestEntityTooLarge()
        else:
            try:
                async with asyncio.timeout(self.body_timeout):
                    received = await read_body(receive, self.max_body)
            except TimeoutError:
                refused = RequestTimeout()
            except BodyTooLarge:
                refused, length = RequestEntityTooLarge(), self.max_body + 1
            else:
                if received is None:
                    return  # the client left; nobody to answer
                body, length = received, len(received)
        stream = io.BytesIO(body) if refused is None else RefusedBody(refused)
        environ = wsgi_environ(scope, stream, length)
        response = await self.run_app(environ)
        headers = response.headers
        if refused is not None:
            # The rest of the body was never read: the connection cannot carry another request.
            headers = [*headers, (b"connection", b"close")]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        body_out = b"".join(response.chunks)
        await send({"type": "http.response.body", "body": body_out})
        log_access(scope, response, len(body_out), time.perf_counter() - started)

    async def run_app(self, environ: dict[str, Any]) -> WsgiResponse:
        """The app's answer, computed on the event loop's own thread while calls are quick.

        Handing each call to another thread and back costs more than a third of a token's
        CPU (bench/README.md): the two threads take turns at the GIL. But a call on the
        loop's thread holds up every other request of the worker while it waits, so after
        a slow call (a dependency stalls) calls run on the threads, where their waits
        overlap, until SLOW_WINDOW seconds pass without one.
        """
        started = time.monotonic()
        if started < self.threaded_until:
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(self.executor, run_wsgi, self.wsgi_app, environ)
        else:
            response = run_wsgi(self.wsgi_app, environ)
        finished = time.monotonic()
        if finished - started > SLOW_CALL:
            self.threaded_until = finished + SLOW_WINDOW
        return response

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.executor.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


def log_access(scope: Scope, response: WsgiResponse, sent: int, seconds: float) -> None:
    """gunicorn's access line as idp configures it (idp.observability.gunicorn_conf), so
    a log reader sees the same line on either server."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    request_id = next((v for n, v in response.headers if n == b"x-request-id"), b"-")
    client = scope.get("client")
    path = scope["path"].replace('"', '\\"')
    access_log.info(
        '%s "%s %s" %d %d %.6fs request_id=%s',
        client[0] if client else "-",
        scope["method"],
        path,
        response.status,
        sent,
        seconds,
        request_id.decode("latin-1"),
    )
