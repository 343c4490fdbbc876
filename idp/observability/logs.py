"""Log set-up and request ids.

idp's loggers write one line per event to stderr (gunicorn's error log), each with the
``X-Request-ID`` of the request it belongs to, so a log line, an audit event and a
client's report of a failure can be tied together.

A record is one line whatever a request held: the handler's formatter is a
:class:`~idp.observability.one_line.OneLineFormatter`.

Nothing logged by idp carries a secret, password, assertion or token: audit events
log identifiers only, and errors log exception class names rather than messages that
could echo input.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys

from flask import g, has_request_context, request

from idp.observability.one_line import OneLineFormatter, one_line_handlers

FORMAT = "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"
REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128
# No space, "=", quote or control character: a caller's id is one field of a log line
# and cannot pose as another ("x status=200 user=admin").
_ACCEPTABLE_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID_LENGTH}}}")
_G_KEY = "idp_request_id"


def acceptable_request_id(value: str | None) -> bool:
    """A caller's id is kept when it is 1-128 characters of ``A-Z a-z 0-9 . _ : -``."""
    # fullmatch, not match with "$": "$" also matches before a final newline.
    return value is not None and _ACCEPTABLE_REQUEST_ID.fullmatch(value) is not None


def request_id() -> str | None:
    """The current request's id (the caller's, or one generated once per request);
    None outside a request, e.g. in a CLI command."""
    if not has_request_context():
        return None
    current: str | None = g.get(_G_KEY)
    if current is None:
        sent = request.headers.get(REQUEST_ID_HEADER)
        # 128 random bits: unique enough to find one request among billions of log lines.
        current = sent if acceptable_request_id(sent) else secrets.token_hex(16)
        setattr(g, _G_KEY, current)
    return current


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id`` attribute for the format ("-" outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Outside a request, a record may bring its own (the access line, written by
        # idp.serving.asgi once the request is answered).
        record.request_id = request_id() or getattr(record, "request_id", "-")
        return True


def configure_logging(level: int = logging.INFO) -> None:
    logger = logging.getLogger("idp")
    if logger.handlers:
        # Configured already (a second app in the same process, or by the host); the
        # host's format is kept, made one line.
        one_line_handlers(logger)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(logging.Formatter(FORMAT)))
    # On the handler, not the logger: a logger's filters skip records of its child loggers.
    handler.addFilter(RequestIdFilter())
    logger.addHandler(handler)
    logger.setLevel(level)
