"""Authlib's AuthorizationServer wired to idp's clients, grants, token format and stores."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from flask import Flask, Response, current_app

from idp.oauth.client_auth import PrivateKeyJWTAuth
from idp.oauth.client_keys import ClientKeyResolver
from idp.oauth.clients import query_client
from idp.oauth.grants import (
    CLIENT_AUTH_METHODS,
    ClientCredentialsGrant,
    PasswordGrant,
    RefreshTokenGrant,
)
from idp.oauth.refresh_tokens import new_refresh_token
from idp.oauth.token_endpoints import IdpIntrospectionEndpoint, IdpRevocationEndpoint
from idp.oauth.token_format import AccessTokenGenerator
from idp.observability.metrics import TOKEN_FAILURES, TOKENS_ISSUED
from idp.runtime import Runtime

SERVER_KEY = "idp.oauth"
GRANT_TYPES_SUPPORTED = ["client_credentials", "password", "refresh_token"]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
UNAUTHENTICATED = (
    "client authentication failed: unknown client, wrong secret, no credentials, "
    "or a method the client is not registered for"
)
__all__ = ["CLIENT_AUTH_METHODS", "GRANT_TYPES_SUPPORTED", "init_authorization_server"]


class IdpAuthorizationServer(AuthorizationServer):
    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        if error.error == "invalid_client":
            # RFC 6749 §5.2 lets any client-auth failure be 401; idp always answers 401.
            error.status_code = 401
            if (error.description or "").startswith("The client cannot authenticate"):
                # Authlib's catch-all after every method declined: say what that means.
                error.description = UNAUTHENTICATED
                error.rule = "credentials"  # type: ignore[attr-defined]
        TOKEN_FAILURES.labels(error.error, getattr(error, "rule", "protocol")).inc()
        return super().handle_error_response(request, error)

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        response = super().handle_response(status_code, payload, headers)
        response.headers.update(NO_STORE)
        return response


def _save_token(token: dict[str, Any], request: Any) -> None:
    # Access tokens are self-contained JWTs and grants store refresh tokens themselves;
    # the endpoint commits once the whole response is ready.
    TOKENS_ISSUED.labels(request.payload.grant_type, request.auth_method).inc()


def init_authorization_server(app: Flask, rt: Runtime) -> IdpAuthorizationServer:
    server = IdpAuthorizationServer()
    server.init_app(app, query_client=query_client, save_token=_save_token)
    generator = AccessTokenGenerator(rt.settings, rt.key_ring, new_refresh_token)
    server.register_token_generator("default", generator)
    server.register_client_auth_method(
        "private_key_jwt",
        PrivateKeyJWTAuth(
            rt.settings, rt.replay_store, ClientKeyResolver(rt.settings.insecure_jwks_uri)
        ),
    )
    for grant in (ClientCredentialsGrant, PasswordGrant, RefreshTokenGrant):
        server.register_grant(grant)
    server.register_endpoint(IdpRevocationEndpoint)
    server.register_endpoint(IdpIntrospectionEndpoint)
    app.extensions[SERVER_KEY] = server
    return server


def authorization_server() -> IdpAuthorizationServer:
    return current_app.extensions[SERVER_KEY]
