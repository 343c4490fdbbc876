"""Input rules every OAuth endpoint (token, revoke, introspect) enforces before Authlib runs.

RFC 6749 §3.2 and §2.3: parameters come form-encoded in the body, each at most once,
and a client uses exactly one authentication method per request. Every value is text a
database can hold (``idp.text``), so nothing later has to ask.
"""

from __future__ import annotations

import base64
import codecs
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote

from authlib.oauth2 import OAuth2Error
from flask import Request

from idp.oauth.assertions import DeferredClaims
from idp.oauth.errors import ClientAuthFailed, MalformedRequest
from idp.registry import CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, PRIVATE_KEY_JWT
from idp.text import is_storable
from idp.web.json_body import JsonRefused, load_json

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
MAX_PARAMETER_LENGTH = 16384
CLIENT_AUTH_PARAMETERS = frozenset(
    {"client_id", "client_secret", "client_assertion", "client_assertion_type"}
)
MALFORMED_BASIC = "malformed Basic credentials"


@dataclass(frozen=True)
class Presented:
    """The one client authentication method a request presents. ``basic`` holds the
    Basic header's client id and secret, form-decoded (RFC 6749 §2.3.1)."""

    method: str | None
    basic: tuple[str, str] | None = None


NOTHING_PRESENTED = Presented(None)


@dataclass
class CheckedRequest:
    """A request that passed the checks, with its parameters (one string each), the
    client authentication it presents, and the replay checks it left to settle before it
    answers."""

    request: Request
    params: dict[str, str]
    presented: Presented = NOTHING_PRESENTED
    deferred: DeferredClaims = field(default_factory=DeferredClaims)


def check_oauth_request(request: Request, json_bodies: bool = False) -> CheckedRequest:
    """``json_bodies``: also take a JSON object of string values, read as the same form
    (a migration aid for clients written against platforms that send JSON)."""
    if json_bodies and request.mimetype == JSON_TYPE:
        form = _read_json_as_form(request)
    elif request.mimetype != FORM_TYPE:
        raise MalformedRequest("content_type", f"the body must be {FORM_TYPE}")
    else:
        form = _read_form(request)
    if request.args:
        raise MalformedRequest("query", "parameters must be sent in the body, not the URL")
    params: dict[str, str] = {}
    for name, values in form.items():
        if len(values) > 1:
            raise MalformedRequest("duplicate", f"parameter '{name}' is given more than once")
        if len(values[0]) > MAX_PARAMETER_LENGTH:
            raise MalformedRequest("too_long", f"parameter '{name}' is too long")
        if not (is_storable(name) and is_storable(values[0])):
            raise _unstorable(name)
        params[name] = values[0]
    presented = _check_client_authentication(params, request.headers.get("Authorization"))
    return CheckedRequest(request, params, presented)


def _unstorable(name: str) -> OAuth2Error:
    """NUL or a lone surrogate: no stored value can equal it. Client credentials get the
    answer a wrong one gets (invalid_client, as for the Basic header); any other
    parameter is malformed (RFC 6749 §5.2)."""
    if name in CLIENT_AUTH_PARAMETERS:
        return ClientAuthFailed("characters", f"parameter '{name}' holds a NUL or lone surrogate")
    return MalformedRequest(
        "characters", "parameters must not contain NUL or lone surrogate characters"
    )


def _keep_escaped(error: UnicodeError) -> tuple[str, int]:
    """A %-escape of bytes that are not UTF-8 stays escaped text, as in ``request.form``."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return quote(error.object[error.start : error.end], safe=""), error.end


KEEP_ESCAPED = "idp.keep_escaped"
codecs.register_error(KEEP_ESCAPED, _keep_escaped)


def _read_form(request: Request) -> dict[str, list[str]]:
    """The form body's values by name, decoded as ``request.form`` decodes them (the same
    body limit, a body that is not UTF-8 holds no parameters), without building
    werkzeug's form parser and MultiDict for the few fields of an OAuth request."""
    try:
        text = request.get_data(cache=False).decode()
    except UnicodeDecodeError:
        return {}
    form: dict[str, list[str]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, errors=KEEP_ESCAPED):
        form.setdefault(name, []).append(value)
    return form


def _read_json_as_form(request: Request) -> dict[str, list[str]]:
    try:
        data = load_json(request.get_data(cache=False))
    except JsonRefused as exc:
        if exc.name is not None:
            raise MalformedRequest(
                "duplicate", f"parameter '{exc.name}' is given more than once"
            ) from None
        data = None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise MalformedRequest("json", "a JSON body must be an object of string values")
    return {name: [value] for name, value in data.items()}


def _check_client_authentication(form: dict[str, str], authorization: str | None) -> Presented:
    with_secret = "client_secret" in form
    with_assertion = "client_assertion" in form or "client_assertion_type" in form
    if (authorization is not None) + with_secret + with_assertion > 1:
        raise MalformedRequest("auth_methods", "use exactly one client authentication method")
    if authorization is not None:
        return Presented(CLIENT_SECRET_BASIC, _check_basic(authorization))
    if with_assertion:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise ClientAuthFailed(
                "assertion_type", f"client_assertion_type must be {ASSERTION_TYPE}"
            )
        if not form.get("client_assertion"):
            raise ClientAuthFailed("malformed", "client_assertion is missing")
        return Presented(PRIVATE_KEY_JWT)
    return Presented(CLIENT_SECRET_POST) if with_secret else NOTHING_PRESENTED


def _check_basic(authorization: str) -> tuple[str, str]:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise ClientAuthFailed("basic", "only the Basic authorization scheme is accepted here")
    try:
        # ValueError: a header that is not ASCII (binascii.Error is one too).
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except ValueError:
        raise ClientAuthFailed("basic", MALFORMED_BASIC) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id or not secret:
        raise ClientAuthFailed("basic", MALFORMED_BASIC)
    # Both parts are form-encoded (RFC 6749 §2.3.1): a %00 is a NUL once decoded.
    client_id, secret = unquote(client_id), unquote(secret)
    if not (is_storable(client_id) and is_storable(secret)):
        raise ClientAuthFailed("basic", MALFORMED_BASIC)
    return client_id, secret
