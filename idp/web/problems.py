"""RFC 9457 problem details: the error body of idp's JSON resources (``/users``)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

PROBLEM_TYPE = "application/problem+json"


def problem_response(
    status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None
) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_TYPE
    response.headers["Cache-Control"] = "no-store"
    return response
