"""The ASGI application ``idp serve`` hands granian: idp's WSGI app behind
:class:`idp.serving.asgi.WsgiBridge`, built once per worker process as granian imports it."""

from __future__ import annotations

import gc
import logging
import sys

from idp.observability.one_line import OneLineFormatter
from idp.runtime import runtime
from idp.serving.asgi import WsgiBridge, access_log
from idp.wsgi import app as flask_app


def _access_log_to_stdout() -> None:
    """Access lines on stdout and idp's own records on stderr, as under gunicorn; one
    line per request whatever its path held (OneLineFormatter)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(OneLineFormatter(logging.Formatter("%(message)s")))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def build() -> WsgiBridge:
    bridge = WsgiBridge(flask_app, runtime(flask_app).settings.max_body)
    _access_log_to_stdout()
    # What exists now lives as long as the worker. Frozen, it is left out of every later
    # garbage collection: a full collection of idp's startup objects stops the worker for
    # tens of milliseconds, which lands on every request in flight.
    gc.collect()
    gc.freeze()
    return bridge


app = build()
