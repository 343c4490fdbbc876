"""The command lines ``idp serve`` runs: granian (the default) or gunicorn (an extra).

granian parses HTTP and runs its worker loop in Rust (hyper, tokio), where gunicorn
does both in Python: the same app answers 1.3-2x the token requests per second on
granian (bench/README.md). idp is served through granian's ASGI interface by
:mod:`idp.serving.asgi`, which reads each body on the event loop, bounded in time and
size, before the WSGI app runs on a thread: with granian's WSGI interface a blocking
thread reads the body, and 50 clients sending one byte a second stall every request.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys

GRANIAN_TARGET = "idp.serving.app:app"
GUNICORN_TARGET = "idp.wsgi:app"
# Milliseconds a client has to send a request's headers; granian's default is 30 s, and
# each connection that trickles them holds its memory that long.
HEADER_TIMEOUT_MS = 5000
# Pending connections the kernel keeps per listening socket (granian's default). Requests
# in progress per worker are bounded by granian's backpressure, backlog / workers.
BACKLOG = 1024
# Seconds a worker has to finish its requests at SIGTERM or SIGHUP before it is killed.
WORKER_KILL_TIMEOUT = 15


def cores() -> int:
    """CPU cores this process may run on (its affinity, as a container limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def granian_argv(host: str, port: int, workers: int, target: str = GRANIAN_TARGET) -> list[str]:
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        # One event loop thread per worker: the app runs on the bridge's own threads
        # (idp.serving.asgi.APP_THREADS).
        "--runtime-mode",
        "st",
        # libuv's event loop: the bodies are read and the answers sent on it (bench/README.md).
        "--loop",
        "uvloop",
        "--no-ws",
        "--backlog",
        str(BACKLOG),
        "--http1-header-read-timeout",
        str(HEADER_TIMEOUT_MS),
        "--workers-kill-timeout",
        str(WORKER_KILL_TIMEOUT),
        # idp writes its own access line, with the request id (idp.serving.asgi).
        "--no-access-log",
        "--respawn-failed-workers",
        target,
    ]


def gunicorn_argv(host: str, port: int, workers: int, target: str = GUNICORN_TARGET) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:idp.observability.gunicorn_conf",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        target,
    ]


def missing(server: str) -> str | None:
    """Why ``server`` cannot run here, in one line, or None when it can."""
    modules = ("gunicorn", "gevent") if server == "gunicorn" else (server,)
    absent = [name for name in modules if importlib.util.find_spec(name) is None]
    if not absent:
        return None
    extra = f" (pip install 'idp[{server}]')" if server == "gunicorn" else ""
    return f"cannot serve with {server}: {', '.join(absent)} not installed{extra}"


def cannot_listen(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, in one line, or None when it can.

    granian binds with SO_REUSEPORT, so a second server on a port in use would start
    and share the port with the first; a plain bind here refuses that before it starts.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        return f"cannot listen on {host}:{port}: {exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None
