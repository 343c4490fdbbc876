"""Authlib's AuthorizationServer wired to idp's clients, grants, token format and stores."""

from __future__ import annotations

import json
from typing import Any

from authlib.common.security import is_secure_transport
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    InsecureTransportError,
    InvalidClientError,
    OAuth2Payload,
    OAuth2Request,
)
from flask import Flask, Response, current_app, g

from idp.oauth.assertions import AssertionValidator, ParsedAssertion
from idp.oauth.client_auth import ClientAuthMethod, client_auth_methods, unauthenticated
from idp.oauth.client_keys import ClientKeyResolver
from idp.oauth.clients import OAuthClient, client_lookup
from idp.oauth.errors import ClientAuthFailed
from idp.oauth.grants import GRANT_CLASSES
from idp.oauth.grants.jwt_bearer import grant_assertion_validator
from idp.oauth.request_checks import CheckedRequest
from idp.oauth.revoke_introspect import IdpIntrospectionEndpoint, IdpRevocationEndpoint
from idp.oauth.token_generator import AccessTokenGenerator
from idp.observability.metrics import TOKEN_FAILURES
from idp.registry import GRANT_TYPES
from idp.runtime import Runtime
from idp.tokens.refresh_tokens import new_refresh_token

SERVER_KEY = "idp.oauth"
# Set on flask.g when a refusal asks the endpoint to keep what the request wrote.
DURABLE_FAILURE = "idp_durable_failure"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


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
    ``http://`` issuer on a host other than loopback is refused as before; the server
    judges the issuer once (``IdpAuthorizationServer.create_oauth2_request``), so the
    attributes of ``OAuth2Request.__init__`` are set here without its per-request check.
    """

    def __init__(self, checked: CheckedRequest, uri: str) -> None:
        request = checked.request
        self.method = request.method
        self.uri = uri
        # Set here: Authlib's ``headers or {}`` would count the WSGI environ's headers.
        self.headers = request.headers
        self._body = None
        self.payload = FormPayload(checked.params)
        self.client = None
        self.auth_method = None
        self.user = None
        self.authorization_code = None
        self.refresh_token = None
        self.credential = None
        self._scope = None
        self.checked = checked
        # The client assertion, parsed once by private_key_jwt (idp.oauth.client_auth).
        self.client_assertion: ParsedAssertion | None = None
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
    client_auth_methods: dict[str, ClientAuthMethod]  # by the name a client registers
    secure_issuer: bool  # Authlib's transport rule, judged once for IDP_ISSUER

    def authenticate_client(self, request: Any, methods: Any, endpoint: str = "token") -> Any:
        """Every endpoint's one way to authenticate a client: the one method the request
        presents (the input checks allow one), in place of Authlib's loop over every
        method the endpoint accepts. The client's registration is checked once, between
        naming the client and checking its credentials. Authlib's own refusals (an
        assertion that does not parse) become the one answer for a failed authentication."""
        method_name = request.checked.presented.method
        method = self.client_auth_methods.get(method_name) if method_name in methods else None
        if method is None:
            raise unauthenticated()
        try:
            client: OAuthClient | None = method.claimed_client(self.query_client, request)
            if client is None:
                raise unauthenticated()
            if not client.check_endpoint_auth_method(method.name, endpoint):
                raise method.unregistered()
            if not method.prove(client, request):
                raise unauthenticated()
        except ClientAuthFailed:
            raise
        except InvalidClientError:
            raise unauthenticated() from None
        request.client = client
        request.auth_method = method.name
        return client

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
        if not self.secure_issuer:
            raise InsecureTransportError()
        return EndpointRequest(request, self.runtime.settings.issuer + request.request.path)

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
    """Nothing to save: access tokens are self-contained JWTs and grants store refresh
    tokens themselves. The endpoint settles the request's replay checks, commits once
    and counts the token when the whole response is ready (idp.oauth.views)."""


def init_authorization_server(app: Flask, rt: Runtime) -> IdpAuthorizationServer:
    server = IdpAuthorizationServer()
    server.runtime = rt
    server.init_app(app, query_client=client_lookup(rt.clients), save_token=_save_token)
    generator = AccessTokenGenerator(rt.settings, rt.lifetimes, rt.key_ring, new_refresh_token)
    server.register_token_generator("default", generator)
    server.key_resolver = ClientKeyResolver(rt.settings.insecure_jwks_uri)
    server.grant_assertions = grant_assertion_validator(rt.settings, rt.replay_store)
    server.client_auth_methods = client_auth_methods(
        rt.settings, rt.replay_store, server.key_resolver
    )
    # Authlib judges the scheme and host only, which every endpoint URL shares with the issuer.
    server.secure_issuer = is_secure_transport(rt.settings.issuer + "/")
    for grant_type in GRANT_TYPES:
        server.register_grant(GRANT_CLASSES[grant_type])
    server.register_endpoint(IdpRevocationEndpoint)
    server.register_endpoint(IdpIntrospectionEndpoint)
    app.extensions[SERVER_KEY] = server
    return server


def authorization_server() -> IdpAuthorizationServer:
    return current_app.extensions[SERVER_KEY]
