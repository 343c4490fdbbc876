"""``idp serve`` on granian as an operator runs it: signals, start-up errors, workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from idp.serving import servers
from tests.oauth.helpers import register
from tests.plugins.servers import LOCALHOST
from tests.serving.test_hostile_clients import HEAD, TOKEN_BODY, serve_default


def workers_of(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def wait_for(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def test_it_serves_one_worker_per_core_on_granian(app, idp_env, live_server):
    client_id, secret = register(app, "client_secret_basic")
    base_url = serve_default(live_server, idp_env)
    server = live_server.servers[-1]
    response = requests.post(
        f"{base_url}/oidc/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=10,
    )
    assert response.status_code == 200 and response.headers["server"] == "granian"
    assert len(workers_of(server.process.pid)) == servers.cores()


def test_sigterm_answers_the_request_in_flight_then_stops(app, idp_env, live_server):
    base_url = serve_default(live_server, idp_env)
    server = live_server.servers[-1]
    port = int(base_url.rsplit(":", 1)[1])
    with socket.create_connection((LOCALHOST, port), 5) as sock:
        sock.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(TOKEN_BODY) + TOKEN_BODY[:5])
        time.sleep(0.5)  # the request is in the worker, its body half there
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1)
        sock.sendall(TOKEN_BODY[5:])
        sock.settimeout(10)
        answer = sock.recv(4096)
    # No credentials: the request was read whole and answered by the app.
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert server.process.wait(timeout=30) == 0
    with pytest.raises(OSError):
        socket.create_connection((LOCALHOST, port), 1).close()


def test_sighup_replaces_the_workers_and_keeps_serving(app, idp_env, live_server):
    client_id, secret = register(app, "client_secret_basic")
    base_url = serve_default(live_server, idp_env)
    main = live_server.servers[-1].process
    before = workers_of(main.pid)
    main.send_signal(signal.SIGHUP)
    after = wait_for(lambda: (w := workers_of(main.pid)) and not (w & before) and w)
    assert len(after) == len(before)
    assert main.poll() is None
    response = requests.post(
        f"{base_url}/oidc/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=10,
    )
    assert response.status_code == 200


def test_a_port_in_use_is_one_line_and_no_second_server(idp_env, live_server):
    base_url = serve_default(live_server, idp_env)
    port = base_url.rsplit(":", 1)[1]
    argv = [sys.executable, "-m", "idp", "serve", "--host", LOCALHOST, "--port", port]
    result = subprocess.run(
        argv,
        env=os.environ | idp_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    refusal = f"idp: error: cannot listen on {LOCALHOST}:{port}: Address already in use\n"
    assert result.stderr == refusal


def test_a_missing_server_is_named_with_its_extra(monkeypatch):
    real_find_spec = servers.importlib.util.find_spec
    monkeypatch.setattr(
        servers.importlib.util,
        "find_spec",
        lambda name: None if name == "gevent" else real_find_spec(name),
    )
    assert servers.missing("gunicorn") == (
        "cannot serve with gunicorn: gevent not installed (pip install 'idp[gunicorn]')"
    )
    assert servers.missing("granian") is None
