"""RFC 8414 / OIDC discovery documents and the public JWKS."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from idp.registry import (
    ACCEPTED_JWT_ALGS,
    AUTH_METHODS,
    GRANT_TYPES,
    SCOPES_SUPPORTED,
    SIGNING_ALGS,
)
from idp.runtime import runtime
from idp.web.errors import retry_later

blueprint = Blueprint("discovery", __name__)


def server_metadata() -> dict[str, Any]:
    settings = runtime().settings
    issuer = settings.issuer
    return {
        "issuer": issuer,
        "token_endpoint": settings.token_endpoint,
        "jwks_uri": f"{issuer}/oidc/jwks",
        "revocation_endpoint": f"{issuer}/oidc/revoke",
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint": f"{issuer}/oidc/introspect",
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "userinfo_endpoint": f"{issuer}/oidc/userinfo",
        "scopes_supported": list(SCOPES_SUPPORTED),
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ACCEPTED_JWT_ALGS),
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(SIGNING_ALGS),
    }


@blueprint.get("/.well-known/openid-configuration")
@blueprint.get("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    response = jsonify(server_metadata())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@blueprint.get("/oidc/jwks")
def jwks() -> Response:
    keys = runtime().key_ring.current()
    if keys.active is None:
        # A worker that never loaded a usable key store: an empty set would be cached by
        # every resource server for max-age and fail every token until it expires.
        response = jsonify(
            {
                "error": "temporarily_unavailable",
                "error_description": "no signing keys are available; try again later",
            }
        )
        response.status_code = 503
        return retry_later(response)
    max_age = runtime().settings.jwks_max_age
    if request.if_none_match.contains(keys.etag):
        response = Response(status=304)
    else:
        response = Response(keys.jwks_body, mimetype="application/jwk-set+json")
    response.set_etag(keys.etag)
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    return response
