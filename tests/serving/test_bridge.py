"""``WsgiBridge.run_app``: the app runs on the event loop's thread while its calls are
quick, and on the threads once one was slow, so a stalled dependency holds up one request
rather than the whole worker."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from idp.serving import asgi

SLOW_SECONDS = asgi.SLOW_CALL + 0.15


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ["PATH_INFO"] == "/slow":
        time.sleep(SLOW_SECONDS)  # a query waiting on a stalled database
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [threading.current_thread().name.encode()]


def scope(path: str) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "client": None}


async def request(bridge: asgi.WsgiBridge, path: str, finished: list[str]) -> bytes:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await bridge(scope(path), receive, send)
    finished.append(path)
    assert sent[0]["status"] == 200
    return sent[1]["body"]


async def slow_and_fast(bridge: asgi.WsgiBridge) -> tuple[list[str], list[bytes]]:
    finished: list[str] = []
    slow = asyncio.create_task(request(bridge, "/slow", finished))
    await asyncio.sleep(0)  # the slow request starts first
    fast = asyncio.create_task(request(bridge, "/fast", finished))
    threads = await asyncio.gather(slow, fast)
    return finished, list(threads)


def test_a_slow_call_sends_the_next_calls_to_the_threads() -> None:
    bridge = asgi.WsgiBridge(app, 1024)

    async def scenario() -> None:
        loop_thread = threading.current_thread().name.encode()
        # Quick calls run on the loop's thread: no hop to another thread.
        assert await request(bridge, "/fast", []) == loop_thread
        # The first slow call runs there too (holding up the worker meanwhile) ...
        assert await request(bridge, "/slow", []) == loop_thread
        # ... after which calls go to the threads: a quick one no longer waits for a slow one.
        finished, threads = await slow_and_fast(bridge)
        assert finished == ["/fast", "/slow"]
        assert all(name.startswith(b"idp-app") for name in threads)

    try:
        asyncio.run(scenario())
    finally:
        bridge.executor.shutdown()


def test_quick_calls_go_back_to_the_loop_once_the_window_has_passed(monkeypatch) -> None:
    bridge = asgi.WsgiBridge(app, 1024)
    monkeypatch.setattr(asgi, "SLOW_WINDOW", 0.3)

    async def scenario() -> None:
        loop_thread = threading.current_thread().name.encode()
        await request(bridge, "/slow", [])
        assert (await request(bridge, "/fast", [])).startswith(b"idp-app")
        await asyncio.sleep(0.35)
        assert await request(bridge, "/fast", []) == loop_thread

    try:
        asyncio.run(scenario())
    finally:
        bridge.executor.shutdown()
