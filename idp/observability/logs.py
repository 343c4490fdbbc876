"""Log set-up: idp's loggers write one line per event to stderr (gunicorn's error log).

Nothing logged by idp carries a secret, password, assertion or token: audit events
log identifiers only, and errors log exception class names rather than messages that
could echo input.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    logger = logging.getLogger("idp")
    if logger.handlers:
        return  # configured already (a second app in the same process, or by the host)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
