"""One line per log record, whatever the request held.

:class:`OneLineFormatter` escapes line breaks and every other unprintable character of
a finished record (message, values taken from a request, a traceback), so no input can
start a line of its own that looks like a genuine record, in idp's log or a server's.
Any server that logs through :mod:`logging` gets the same guarantee by handing its
loggers to :func:`one_line_handlers` (gunicorn: ``gunicorn_conf.AccessLogger``).

Kept free of Flask: the gunicorn master imports it before any worker patches the
standard library.
"""

from __future__ import annotations

import logging


def escape_unprintable(text: str) -> str:
    """``text`` with each unprintable character written as its Python escape (``\\n``,
    ``\\x1b``, ``\\u2028``), which leaves one line of printable characters.

    Unprintable is what :meth:`str.isprintable` says: control characters (CR, LF, NEL),
    line and paragraph separators, format characters such as bidi overrides, which can
    make a line display as something else, and lone surrogates. Backslashes are left as
    they are, so an audit line (JSON, already escaped) stays valid JSON.
    """
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


class OneLineFormatter(logging.Formatter):
    """Formats a record as ``inner`` does, then makes it one line (see
    :func:`escape_unprintable`); a traceback becomes part of that line."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return escape_unprintable(self.inner.format(record))


def one_line_handlers(*loggers: logging.Logger) -> None:
    """Make every handler of ``loggers`` write one line per record, keeping its format."""
    for logger in loggers:
        for handler in logger.handlers:
            if not isinstance(handler.formatter, OneLineFormatter):
                handler.setFormatter(OneLineFormatter(handler.formatter))
