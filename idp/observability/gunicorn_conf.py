"""Gunicorn settings used by ``idp serve`` (and by config/gunicorn.conf.py)."""

import os

worker_class = "sync"
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = "info"  # override with GUNICORN_CMD_ARGS="--log-level debug"
# The access log must never carry secrets: no query strings, no headers.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
# Load the app once in the master so a bad setting fails before forking workers.
preload_app = True
# Gunicorn 24+ opens a control socket at a fixed path; several idp servers on one host would clash.
control_socket_disable = True


def child_exit(server, worker):
    # Drop the dead worker's live gauges from the multiprocess metrics files.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
