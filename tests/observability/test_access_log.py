"""idp's access log line, built from the few atoms it uses rather than all of gunicorn's."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from urllib.parse import quote

import pytest
import requests
from gunicorn.config import Config
from gunicorn.glogging import Logger, SafeAtoms

from idp.observability import gunicorn_conf
from idp.observability.one_line import OneLineFormatter
from tests.observability.helpers import lines_once_written

FORGED = '\r\n2026-12-03 19:00:00,000 INFO idp.audit request_id=forged {"event":"user_deleted"}'
ENVIRON = {
    "REMOTE_ADDR": "10.0.0.7",
    "REQUEST_METHOD": "POST",
    "PATH_INFO": '/oidc/"token"',
    "RAW_URI": "/oidc/token",
    "QUERY_STRING": "page=2",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_AUTHORIZATION": "Basic c2VjcmV0",
}


def _response(headers: list[tuple[str, str]], sent: int | None = 812) -> SimpleNamespace:
    return SimpleNamespace(status="200 OK", headers=headers, sent=sent)


def _line(logger_class: type[Logger], access_log_format: str, response: SimpleNamespace) -> str:
    config = Config()
    config.set("access_log_format", access_log_format)
    logger = logger_class(config)
    request = SimpleNamespace(headers=[("AUTHORIZATION", "Basic c2VjcmV0")])
    took = datetime.timedelta(seconds=1, microseconds=2345)
    atoms = logger.atoms(response, request, ENVIRON, took)
    return access_log_format % SafeAtoms(atoms)


@pytest.mark.parametrize(
    "response",
    [
        _response([("Content-Type", "application/json"), ("X-Request-ID", "abc-1")]),
        _response([("Content-Type", "application/json")], sent=None),  # no id, no body
    ],
)
def test_idp_format_gives_the_same_line_as_gunicorn(response: SimpleNamespace) -> None:
    line = _line(gunicorn_conf.AccessLogger, gunicorn_conf.access_log_format, response)
    assert line == _line(Logger, gunicorn_conf.access_log_format, response)
    assert line.startswith('10.0.0.7 "POST /oidc/\\"token\\"" 200 ')
    assert "1.002345s" in line and "page=2" not in line and "c2VjcmV0" not in line


def test_another_format_gets_every_gunicorn_atom() -> None:
    fmt = "%(h)s %({user-agent}i)s %(q)s %(r)s"
    response = _response([("X-Request-ID", "abc-1")])
    assert _line(gunicorn_conf.AccessLogger, fmt, response) == _line(Logger, fmt, response)
    assert "page=2" in _line(gunicorn_conf.AccessLogger, fmt, response)


@pytest.fixture
def access_logger() -> Iterator[gunicorn_conf.AccessLogger]:
    """idp's gunicorn logger as ``idp serve`` sets it up, writing the access log to stdout."""
    config = Config()
    config.set("access_log_format", gunicorn_conf.access_log_format)
    config.set("accesslog", "-")
    loggers = [logging.getLogger("gunicorn.access"), logging.getLogger("gunicorn.error")]
    # pytest adds its capture handlers to these loggers too; they get their formatter back.
    formatters = {h: h.formatter for log in loggers for h in log.handlers}
    yield gunicorn_conf.AccessLogger(config)
    for handler, formatter in formatters.items():
        handler.setFormatter(formatter)


def test_an_access_logger_writes_one_line_per_record(access_logger) -> None:
    handlers = access_logger.access_log.handlers + access_logger.error_log.handlers
    assert handlers and all(isinstance(h.formatter, OneLineFormatter) for h in handlers)
    (access,) = [h for h in access_logger.access_log.handlers if getattr(h, "_gunicorn", False)]
    environ = ENVIRON | {"PATH_INFO": "/nope" + FORGED}
    response = _response([("X-Request-ID", "abc-1")])
    atoms = access_logger.atoms(response, None, environ, datetime.timedelta(seconds=1))
    record = logging.LogRecord(
        "gunicorn.access", logging.INFO, __file__, 1, gunicorn_conf.access_log_format,
        (SafeAtoms(atoms),), None,
    )  # fmt: skip
    assert access.format(record) == (
        '10.0.0.7 "POST /nope\\r\\n2026-12-03 19:00:00,000 INFO idp.audit request_id=forged'
        ' {\\"event\\":\\"user_deleted\\"}" 200 812 1.000000s request_id=abc-1'
    )


def test_a_forged_path_stays_in_its_access_line(app, idp_env, live_server) -> None:
    base_url = live_server(idp_env, workers=1)
    sent = {"X-Request-ID": "forged-path"}
    response = requests.get(base_url + "/nope" + quote(FORGED), headers=sent, timeout=10)
    assert response.status_code == 404 and response.headers["X-Request-ID"] == "forged-path"
    control = requests.get(base_url + "/healthz", headers={"X-Request-ID": "control"}, timeout=10)
    assert control.status_code == 200
    server = live_server.servers[-1]
    access = lines_once_written(
        server.stdout_path, ["request_id=forged-path", "request_id=control"]
    )
    (line,) = [line for line in access if "/nope" in line]
    assert line.startswith(
        '127.0.0.1 "GET /nope\\r\\n2026-12-03 19:00:00,000 INFO idp.audit request_id=forged'
        ' {\\"event\\":\\"user_deleted\\"}" 404 '
    )
    assert line.endswith(" request_id=forged-path")
    assert any(
        line.startswith('127.0.0.1 "GET /healthz" 200 ') and line.endswith(" request_id=control")
        for line in access
    )
    errors = server.stderr_path.read_text(errors="backslashreplace").splitlines()
    assert not any(line.startswith("2026-12-03") for line in access + errors)
