"""Reading a live server's logs."""

from __future__ import annotations

import time
from pathlib import Path


def lines_once_written(path: Path, wanted: list[str], timeout: float = 5.0) -> list[str]:
    """The lines of a log once each wanted text is in it: gunicorn writes an access line
    after the response has gone, so it may lag the client by a moment."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="backslashreplace")
        if all(w in text for w in wanted) or time.monotonic() > deadline:
            return text.splitlines()
        time.sleep(0.05)
