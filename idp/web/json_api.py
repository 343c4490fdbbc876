"""JSON resource routes: bearer authentication, input validated in one place by a pydantic
model, one RFC 9457 error format, and an operation record the OpenAPI document is built from."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ValidationError

from idp.verify import AccessToken, TokenVerifier
from idp.web.bearer import BearerError, authenticate, bearer_error_response
from idp.web.json_body import JsonRefused, load_json
from idp.web.problems import problem_response

JSON_TYPE = "application/json"


class ApiProblem(Exception):
    def __init__(
        self, status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors


def not_found(what: str = "user") -> ApiProblem:
    return ApiProblem(404, "Not Found", f"no such {what}")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # OpenAPI form: /users/{userId}
    summary: str
    scope: str | None
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    errors: tuple[int, ...]
    path_params: tuple[str, ...] = ()
    tag: str = "users"
    form_body: bool = False


@dataclass
class JsonApi:
    blueprint: Blueprint
    # The verifier of the bearer tokens, looked up per request by the module that owns
    # the routes (an app's services exist only once the app is built).
    verifier: Callable[[], TokenVerifier]
    operations: list[Operation] = field(default_factory=list)

    def route(
        self,
        rule: str,
        method: str,
        *,
        summary: str,
        scope: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
        path, params = _openapi_path(rule)
        codes = {401, 403, *errors}
        if body is not None:
            codes |= {400, 413, 415}
        if query is not None:
            codes.add(400)
        self.operations.append(
            Operation(
                method.lower(),
                path,
                summary,
                scope,
                body,
                query,
                response,
                status,
                tuple(sorted(codes)),
                params,
            )
        )

        def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
            @functools.wraps(view)
            def handle(**view_args: Any) -> Response:
                try:
                    token = authenticate(self.verifier(), [scope])
                    parsed: dict[str, Any] = {}
                    if query is not None:
                        parsed["query"] = _parse_query(query)
                    if body is not None:
                        parsed["body"] = _parse_body(body)
                    result = view(token, **parsed, **view_args)
                # Database and Redis outages are not caught here: they reach the app's
                # handler in idp.web.errors, the one place that answers them (503).
                except BearerError as exc:
                    return bearer_error_response(exc, problem=True)
                except ApiProblem as exc:
                    return problem_response(exc.status, exc.title, exc.detail, exc.errors)
                return _success(result, status)

            self.blueprint.add_url_rule(rule, view.__name__, handle, methods=[method])
            return handle

        return decorate


def _success(result: BaseModel | Mapping[str, Any] | None, status: int) -> Response:
    """A view answers a model, or a record already in the response model's JSON shape
    (one conversion, not two; the OpenAPI document and its tests hold the shape)."""
    if result is None:
        response = Response(status=204)
    else:
        body = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        response = jsonify(body)
        response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _openapi_path(rule: str) -> tuple[str, tuple[str, ...]]:
    params: list[str] = []
    parts = []
    for part in rule.split("/"):
        if part.startswith("<") and part.endswith(">"):
            head, *rest = part[1:-1].split(":")[-1].split("_")
            name = head + "".join(word.title() for word in rest)  # user_id -> userId
            params.append(name)
            part = "{" + name + "}"
        parts.append(part)
    return "/".join(parts), tuple(params)


def _validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    # Only where and what: never the rejected input, which may be a password.
    return [
        {"field": ".".join(str(p) for p in error["loc"]) or "(body)", "message": error["msg"]}
        for error in exc.errors(include_input=False, include_url=False, include_context=False)
    ]


def _parse_body(model: type[BaseModel]) -> BaseModel:
    if request.mimetype != JSON_TYPE:
        raise ApiProblem(415, "Unsupported Media Type", f"the body must be {JSON_TYPE}")
    raw = request.get_data(cache=False)
    try:
        # pydantic keeps the last of a repeated member; idp refuses the body instead.
        load_json(raw)
    except JsonRefused as exc:
        if exc.name is not None:
            raise ApiProblem(400, "Bad Request", f"body {exc}") from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise ApiProblem(400, "Bad Request", "the body is not valid JSON") from None
        errors = _validation_errors(exc)
        fields = ", ".join(sorted({error["field"] for error in errors}))
        raise ApiProblem(400, "Bad Request", f"invalid body fields: {fields}", errors) from None


def _parse_query(model: type[BaseModel]) -> BaseModel:
    values: dict[str, str] = {}
    for name in request.args:
        found = request.args.getlist(name)
        if len(found) > 1:
            raise ApiProblem(400, "Bad Request", f"query parameter '{name}' given more than once")
        if found[0] != "":
            values[name] = found[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ApiProblem(
            400, "Bad Request", "invalid query parameters", _validation_errors(exc)
        ) from None


def current_token_user_id(token: AccessToken) -> str:
    if not token.is_user_token:
        raise ApiProblem(403, "Forbidden", "this route needs a user's token")
    return token.subject
