"""Gunicorn settings for running idp without the ``idp serve`` wrapper.

From the checkout (or /app in the Docker image):

    gunicorn -c config/gunicorn.conf.py wsgi:app

Every setting comes from ``idp.observability.gunicorn_conf``, the module that
``idp serve`` uses too: gevent workers (a slow client holds a greenlet, not a
worker), the app imported in each worker after gevent's patches (so no
``--preload``), access log without query strings, and so on. gevent is one of
part of idp's ``gunicorn`` extra
(``pip install 'idp[gunicorn]'``). Bind address and worker count below match the ``idp serve``
defaults (one worker per CPU core). To override them:

* on the command line, which wins over this file:
      gunicorn -c config/gunicorn.conf.py --bind 0.0.0.0:8000 --workers 4 wsgi:app
* in the environment:
      export GUNICORN_CMD_ARGS="--bind 0.0.0.0:8000 --workers 4"
      gunicorn -c config/gunicorn.conf.py wsgi:app
* or by editing ``bind`` / ``workers`` in a copy of this file.

``idp serve --host H --port P --workers N`` is the same thing with flags.
"""

import os
import tempfile

from idp.observability.gunicorn_conf import *  # noqa: F403
from idp.serving.servers import cores

bind = "127.0.0.1:8000"
workers = cores()

# Workers pool their Prometheus samples in this folder so /metrics adds them up.
# `idp serve` makes a fresh one per start; do the same here unless one is set.
# prometheus_client reads the variable when it is imported, which happens in
# each worker, after this file has run.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="idp-metrics-")
