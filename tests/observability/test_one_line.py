"""One line per log record: the formatter idp's handler and gunicorn's handlers use."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from idp.observability.one_line import OneLineFormatter, escape_unprintable, one_line_handlers

FORGED = '\r\n2026-12-03 19:00:00,000 INFO idp.audit request_id=forged {"event":"user_deleted"}'
BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"]


def _record(msg: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("idp.audit", logging.INFO, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]


def _format(record: logging.LogRecord) -> str:
    return OneLineFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s")).format(record)


def test_a_printable_record_is_written_as_it_is() -> None:
    line = _format(_record('user %s "%s" \\ ok', "caf\u00e9", "\u540d\u524d"))
    assert line == 'INFO idp.audit user caf\u00e9 "\u540d\u524d" \\ ok'


def test_a_forged_line_in_a_message_stays_in_its_record() -> None:
    line = _format(_record("unknown path /nope%s", FORGED))
    assert line.splitlines() == [line]
    assert line == "INFO idp.audit unknown path /nope\\r\\n2026-12-03 19:00:00,000 INFO" + (
        ' idp.audit request_id=forged {"event":"user_deleted"}'
    )


@pytest.mark.parametrize("brk", BREAKS, ids=[repr(b) for b in BREAKS])
def test_every_line_break_is_escaped(brk: str) -> None:
    line = _format(_record(f"a{brk}b"))
    assert line.splitlines() == [line] and line.isprintable()
    assert line == "INFO idp.audit a" + brk.encode("unicode_escape").decode() + "b"


@pytest.mark.parametrize(
    "char",
    ["\x00", "\t", "\x1b", "\x7f", "\u202e", "\u200b", "\ud800", "\U000e0001"],
    ids=["nul", "tab", "escape", "delete", "bidi-override", "zero-width", "surrogate", "tag"],
)
def test_other_unprintable_characters_are_escaped(char: str) -> None:
    assert escape_unprintable(f"a{char}b") == f"a{char.encode('unicode_escape').decode()}b"


def test_a_traceback_is_part_of_its_records_line() -> None:
    try:
        raise ValueError(f"bad input{FORGED}")
    except ValueError:
        record = _record("unhandled error", exc_info=sys.exc_info())
    line = _format(record)
    assert line.splitlines() == [line]
    assert line.startswith("INFO idp.audit unhandled error\\nTraceback (most recent call last):")
    assert line.endswith(
        "ValueError: bad input\\r\\n2026-12-03 19:00:00,000 INFO idp.audit"
        + (' request_id=forged {"event":"user_deleted"}')
    )


def test_an_audit_line_stays_valid_json() -> None:
    detail = {"event": "login_failure", "username": 'a"b\\c' + FORGED + "\u2028\x85\u202e"}
    line = _format(_record(json.dumps(detail)))
    assert line.splitlines() == [line]
    assert json.loads(line.removeprefix("INFO idp.audit ")) == detail


def test_handlers_keep_their_format_once_made_one_line() -> None:
    logger = logging.getLogger("tests.one_line")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    logger.addHandler(handler)
    try:
        one_line_handlers(logger)
        one_line_handlers(logger)  # a second set-up (gunicorn reloads) does not wrap twice
        formatter = handler.formatter
        assert isinstance(formatter, OneLineFormatter)
        assert not isinstance(formatter.inner, OneLineFormatter)
        assert formatter.format(_record("a\nb")) == "[idp.audit] a\\nb"
    finally:
        logger.removeHandler(handler)
