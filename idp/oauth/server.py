"""Authlib's AuthorizationServer wired to idp's clients, grants, token format and stores."""

from __future__ import annotations

import importlib
import json
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidClientError, OAuth2Payload, OAuth2Request
from flask import Flask, Response, current_app, g

from idp.oauth.assertions import AssertionValidator
from idp.oauth.client_auth import PrivateKeyJWTAuth
from idp.oauth.client_keys import ClientKeyResolver
from idp.oauth.clients import client_lookup
from idp.oauth.errors import ClientAuthFailed
from idp.oauth.jwt_bearer import grant_assertion_validator
from idp.oauth.request_checks import CheckedRequest
from idp.oauth.revoke_introspect import IdpIntrospectionEndpoint, IdpRevocationEndpoint
from idp.oauth.token_generator import AccessTokenGenerator
from idp.observability.metrics import TOKEN_FAILURES, TOKENS_ISSUED
from idp.refresh_tokens import new_refresh_token
from idp.registry import GRANTS, Grant
from idp.runtime import Runtime

SERVER_KEY = "idp.oauth"
# Set on flask.g when a refusal asks the endpoint to keep what the request wrote.
DURABLE_FAILURE = "idp_durable_failure"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
UNAUTHENTICATED = (
    "client authentication failed: unknown client, wrong secret, no credentials, "
    "or a method the client is not registered for"
)


class FormPayload(OAuth2Payload):
    """The request's parameters as the endpoint's input checks left them: from the body
    only, one value each (``idp.oauth.request_checks`` refuses the rest)."""

    def __init__(self, params: dict[str, str]) -> None:
        self.params = params

    @property
    def data(self) -> dict[str, str]:
        return self.params

    @property
    def datalist(self) -> dict[str, list[str]]:
        return {name: [value] for name, value in self.params.items()}


class EndpointRequest(OAuth2Request):
    """Authlib's view of an OAuth endpoint request, cheaper to build than Authlib's Flask
    request: the checked parameters in a plain dict (a missing one costs no exception),
    and no URL rebuilt from the WSGI environ.

    The URL Authlib checks for TLS is the endpoint's public one, under ``IDP_ISSUER``:
    idp runs behind whatever terminates TLS, so the request it receives is plain HTTP
    with the public host name, which Authlib would refuse (``insecure_transport``). An
    ``http://`` issuer on a host other than loopback is refused as before.
    """

    def __init__(self, checked: CheckedRequest, issuer: str) -> None:
        request = checked.request
        super().__init__(request.method, issuer + request.path)
        # Set here: Authlib's ``headers or {}`` would count the WSGI environ's headers.
        self.headers = request.headers
        self.payload = FormPayload(checked.params)
        self.checked = checked
        # Set by a grant whose only work after client authentication is issuing the token.
        self.defer_replay_checks = False

    @property
    def args(self) -> dict[str, str]:
        return {}  # refused by the input checks

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


class IdpAuthorizationServer(AuthorizationServer):
    """Authlib's server with idp's services on it: grants and endpoints reach settings,
    lifetimes, stores and the verifier through ``self.server.runtime``."""

    runtime: Runtime
    key_resolver: ClientKeyResolver  # public keys of clients and trusted issuers
    grant_assertions: AssertionValidator  # the jwt-bearer grant's assertion rules

    def authenticate_client(self, request: Any, methods: Any, endpoint: str = "token") -> Any:
        """Every endpoint's one way to authenticate a client: idp's own failures pass with
        their rule; Authlib's (no method accepted the request) become one clear answer."""
        try:
            return super().authenticate_client(request, methods, endpoint)
        except ClientAuthFailed:
            raise
        except InvalidClientError:
            raise ClientAuthFailed("credentials", UNAUTHENTICATED) from None

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        if error.error == "invalid_client":
            # RFC 6749 §5.2 lets any client-auth failure be 401; idp always answers 401.
            error.status_code = 401
        if getattr(error, "durable", False):
            g.setdefault(DURABLE_FAILURE, True)
        TOKEN_FAILURES.labels(error.error, getattr(error, "rule", "protocol")).inc()
        return super().handle_error_response(request, error)

    def create_oauth2_request(self, request: CheckedRequest) -> EndpointRequest:
        # The endpoints pass what check_oauth_request returned (idp.oauth.views).
        return EndpointRequest(request, self.runtime.settings.issuer)

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        body = json.dumps(payload) if isinstance(payload, dict) else payload
        response = Response(body, status=status_code, headers=headers)
        # Authlib's token, error and endpoint responses carry these already; kept for any
        # that might not (a response with a token in it must never be cached).
        for name, value in NO_STORE.items():
            if name not in response.headers:
                response.headers[name] = value
        return response


def _save_token(token: dict[str, Any], request: EndpointRequest) -> None:
    # Access tokens are self-contained JWTs and grants store refresh tokens themselves;
    # the endpoint commits once the whole response is ready. The token is signed now:
    # the replay checks it was issued on are answered (or it is refused) before it counts.
    request.checked.deferred.settle()
    TOKENS_ISSUED.labels(request.payload.grant_type, request.auth_method).inc()


def init_authorization_server(app: Flask, rt: Runtime) -> IdpAuthorizationServer:
    server = IdpAuthorizationServer()
    server.runtime = rt
    server.init_app(app, query_client=client_lookup(rt.clients), save_token=_save_token)
    generator = AccessTokenGenerator(rt.settings, rt.lifetimes, rt.key_ring, new_refresh_token)
    server.register_token_generator("default", generator)
    server.key_resolver = ClientKeyResolver(rt.settings.insecure_jwks_uri)
    server.grant_assertions = grant_assertion_validator(rt.settings, rt.replay_store)
    server.register_client_auth_method(
        "private_key_jwt", PrivateKeyJWTAuth(rt.settings, rt.replay_store, server.key_resolver)
    )
    for grant in GRANTS:
        server.register_grant(_grant_class(grant))
    server.register_endpoint(IdpRevocationEndpoint)
    server.register_endpoint(IdpIntrospectionEndpoint)
    app.extensions[SERVER_KEY] = server
    return server


def _grant_class(grant: Grant) -> type:
    module_name, _, class_name = grant.implementation.partition(":")
    implementation = getattr(importlib.import_module(module_name), class_name)
    if grant.grant_type != implementation.GRANT_TYPE:
        raise TypeError(f"{grant.implementation} serves {implementation.GRANT_TYPE!r}")
    return implementation


def authorization_server() -> IdpAuthorizationServer:
    return current_app.extensions[SERVER_KEY]
