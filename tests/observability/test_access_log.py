"""idp's access log line, built from the few atoms it uses rather than all of gunicorn's."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger, SafeAtoms

from idp.observability import gunicorn_conf

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
