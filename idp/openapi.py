"""GET /openapi.json: an OpenAPI 3.1 document generated from the route schemas."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel

from idp import __version__
from idp.oauth import schemas as oauth
from idp.runtime import runtime
from idp.users.api import api as users_api
from idp.users.attributes_api import api as attributes_api
from idp.users.schemas import Problem
from idp.web.json_api import JSON_TYPE, JsonApi, Operation
from idp.web.problems import PROBLEM_TYPE

blueprint = Blueprint("openapi", __name__)
FORM_TYPE = "application/x-www-form-urlencoded"
REF = "#/components/schemas/{model}"

OAUTH_OPERATIONS = (
    Operation("post", "/oidc/token", "Token endpoint (RFC 6749)", None, oauth.TokenRequest,
              None, oauth.TokenResponse, 200, (400, 401, 413, 503), tag="oauth", form_body=True),
    Operation("post", "/oidc/revoke", "Token revocation (RFC 7009)", None,
              oauth.TokenOperationRequest, None, None, 200, (400, 401, 413), tag="oauth",
              form_body=True),
    Operation("post", "/oidc/introspect", "Token introspection (RFC 7662)", None,
              oauth.TokenOperationRequest, None, oauth.IntrospectionResponse, 200,
              (400, 401, 413), tag="oauth", form_body=True),
    Operation("get", "/oidc/userinfo", "OpenID Connect userinfo", "openid", None, None,
              oauth.UserInfo, 200, (401, 403), tag="oauth"),
    Operation("get", "/oidc/jwks", "Published signing keys (RFC 7517)", None, None, None,
              oauth.JsonWebKeySet, 200, (), tag="oauth"),
)  # fmt: skip


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template=REF)
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def _operation_id(op: Operation) -> str:
    words = op.path.strip("/").replace("{", "").replace("}", "").replace("-", "_").split("/")
    return "_".join([op.method, *words])


def _operation(op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    problem = {PROBLEM_TYPE: {"schema": _schema_ref(Problem, components)}}
    error_content = (
        {JSON_TYPE: {"schema": _schema_ref(oauth.OAuthError, components)}}
        if op.tag == "oauth"
        else problem
    )
    success: dict[str, Any] = {"description": "success"}
    if op.response is not None:
        success["content"] = {JSON_TYPE: {"schema": _schema_ref(op.response, components)}}
    elif op.status != 204:
        success["content"] = {JSON_TYPE: {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {str(op.status): success}
    for code in op.errors:
        responses[str(code)] = {"description": "error", "content": error_content}
    document: dict[str, Any] = {
        "summary": op.summary,
        "operationId": _operation_id(op),
        "tags": [op.tag],
        "responses": responses,
    }
    if op.scope is not None:
        document["security"] = [{"bearer": [op.scope]}]
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "maxLength": 64},
        }
        for name in op.path_params
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query)
    if parameters:
        document["parameters"] = parameters
    if op.body is not None:
        media = FORM_TYPE if op.form_body else JSON_TYPE
        document["requestBody"] = {
            "required": True,
            "content": {media: {"schema": _schema_ref(op.body, components)}},
        }
    return document


def build_document(apis: list[JsonApi], issuer: str) -> dict[str, Any]:
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    operations = [op for api in apis for op in api.operations] + list(OAUTH_OPERATIONS)
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _operation(op, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "idp", "version": __version__},
        "servers": [{"url": issuer}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


@blueprint.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(build_document([users_api, attributes_api], runtime().settings.issuer))
