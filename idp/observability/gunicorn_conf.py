"""Gunicorn settings used by ``idp serve`` (and by config/gunicorn.conf.py).

Workers are gevent workers: each connection is a greenlet, so a client that sends
its request slowly holds a greenlet, not a worker. Sync workers are held for the
whole time a request body takes to arrive: two clients trickling a body at one
byte a second stopped both workers of a default server, and 20 stopped /healthz.
The code does not change: gevent patches the standard library (sockets, locks,
``select``) when a worker starts, so redis-py, requests and psycopg 3 (from
3.1.14 it waits with ``select`` when it finds gevent's patches) yield to the other
greenlets while they wait. CPU work (signing, argon2) does not yield, so run at
least one worker per core. The cost: a request waiting for PostgreSQL resumes only
after the CPU work queued before it in its worker, and a transaction keeps its row
locks meanwhile. Measured at 32 connections on 2 cores, with one user signing in
over and over, the password grant did about 70% of the sync workers' rate (30 to
74% across rounds), p99 2.5 to 4.5 s against 0.6 to 1 s; client_credentials about
80% (55 to 103%) with PostgreSQL and Redis, level with SQLite. SQLite calls do not
yield at all: a write waiting for another worker's lock holds up its whole worker.
"""

import gc
import os
import sys

from gunicorn.glogging import Logger

from idp.observability.one_line import one_line_handlers

worker_class = "gevent"
# Connections one worker holds at once (gunicorn's default, stated here).
worker_connections = 1000
timeout = 30
graceful_timeout = 10
# Close the connection after each response. A kept-alive connection stays with the
# worker that accepted it, and a burst of clients that connect at once lands mostly
# on the worker that was not busy at that moment: measured at 32 connections, the
# password grant then had a p99 of 4-9 s against about 1 s with a close per
# response, which lets every request be accepted by whichever worker is free.
keepalive = 0
accesslog = "-"
errorlog = "-"
loglevel = "info"  # override with GUNICORN_CMD_ARGS="--log-level debug"
# The access log must never carry secrets: no query strings, no request headers. The one
# response header logged, X-Request-ID, ties an access line to idp's log lines and audit
# events; idp only echoes a caller's id made of A-Z a-z 0-9 . _ : - (no space or "=").
# The method and the decoded path are quoted (gunicorn escapes '"'), and AccessLogger
# escapes line breaks in every line, so a path cannot add a field or a line of its own.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss request_id=%({x-request-id}o)s'
# gunicorn builds every atom it knows for each line (all request and response headers,
# the whole WSGI environ), then escapes each: about a tenth of a token request's CPU.
# This logger builds the seven the line above uses; any other format gets gunicorn's.
logger_class = "idp.observability.gunicorn_conf.AccessLogger"
# Each worker imports the app itself, after gevent has patched the standard library.
# Imported in the master, before the patches, psycopg would pick its C wait function,
# which stops the whole worker while one query waits, and the app's locks would be
# real thread locks: a greenlet waiting for one held by another greenlet of the same
# worker would wait forever. on_starting refuses that combination.
# (A bad setting still stops `idp serve` before gunicorn starts: it loads them first.)
preload_app = False
# Gunicorn 24+ opens a control socket at a fixed path; several idp servers on one host would clash.
control_socket_disable = True

GEVENT_WORKERS = "gunicorn.workers.ggevent"
REQUEST_ID_ATOM = "{x-request-id}o"


class AccessLogger(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        # Access and error log alike: one line per record, whatever the request held.
        one_line_handlers(self.error_log, self.access_log)

    def atoms(self, resp, req, environ, request_time):
        if self.cfg.access_log_format != access_log_format:
            return super().atoms(resp, req, environ, request_time)
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        request_id = next((v for k, v in resp.headers if k.lower() == "x-request-id"), "-")
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "s": status,
            "b": "-" if sent is None else str(sent),
            "L": f"{request_time.seconds}.{request_time.microseconds:06d}",
            REQUEST_ID_ATOM: request_id,
        }


def on_starting(server):
    if server.cfg.preload_app and server.worker_class.__module__ == GEVENT_WORKERS:
        server.log.error("idp: preload_app does not work with gevent workers (see %s)", __name__)
        sys.exit(1)


def post_worker_init(worker):
    # The app is loaded: what exists now lives as long as the worker. Frozen, it is left
    # out of every later garbage collection: a full collection of idp's ~130,000 startup
    # objects stops the worker for about 40 ms, which lands on every request in flight.
    gc.collect()
    gc.freeze()


def child_exit(server, worker):
    # Drop the dead worker's live gauges from the multiprocess metrics files.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
