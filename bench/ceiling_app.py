"""The ceiling for bench/token_bench.py: a token endpoint with no storage at all.

A minimal Flask + joserfc app that does the work every token endpoint must do and
nothing more, so that its throughput bounds what idp can reach with the same
stack (Flask, joserfc, gunicorn with the same worker settings):

* ``POST /oidc/token`` with ``grant_type=client_credentials``:
  - ``client_secret_basic``: SHA-256 of the presented secret compared in constant
    time with the registered hash (idp stores the same hash);
  - ``private_key_jwt``: ``jwt.decode`` with the client's public key and its one
    algorithm, then ``iss`` = ``sub`` = client_id, ``aud`` = the issuer or the token
    endpoint, ``exp`` in the future, ``iat``/``nbf`` not in the future (with skew),
    ``exp - iat`` within the maximum lifetime, ``jti`` present. There is no replay
    store, by design, unless ``replay_redis_url`` is set (the "ceiling-replay" server):
    then the assertion's jti is claimed with idp's own ``RedisReplayStore``, sent once
    the assertion is verified and read once the token is signed, as idp does, and a
    replay is refused (401 ``invalid_client``). That measures what the cross-process
    replay check costs on this stack, apart from everything else idp does;
  - scope = requested ∩ the client's scopes (all of them when none is asked);
  - an ES256 JWT access token (RFC 9068: ``typ: at+jwt``, ``kid``; ``iss, sub, aud,
    exp, iat, jti, client_id, scope``), ``Cache-Control: no-store``;
* ``GET /oidc/jwks``: the public signing key;
* ``GET /healthz``.

Configuration: a JSON file named by ``BENCH_CEILING_CONFIG`` (written by
token_bench.py): ``issuer, token_endpoint, audience, ttl, clock_skew,
max_assertion_lifetime, signing_jwk`` (private), ``replay_redis_url`` (optional) and
``clients``: ``{client_id: {"scope": "...", "secret_sha256": "..."} | {"scope": "...",
"jwk": {...public...}}}``.

Served by ``gunicorn bench.ceiling_app:app`` (token_bench.py passes idp's gunicorn
settings).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from typing import Any
from urllib.parse import unquote

from flask import Flask, Response, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, import_key

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _load_config() -> dict[str, Any]:
    with open(os.environ["BENCH_CEILING_CONFIG"], encoding="utf-8") as handle:
        return json.load(handle)


CONFIG = _load_config()
ISSUER: str = CONFIG["issuer"]
ACCEPTED_AUDIENCES = frozenset({ISSUER, CONFIG["token_endpoint"]})
TTL = int(CONFIG["ttl"])
SKEW = int(CONFIG["clock_skew"])
MAX_LIFETIME = int(CONFIG["max_assertion_lifetime"])
SIGNING_KEY = ECKey.import_key(CONFIG["signing_jwk"])
SIGNING_KID = CONFIG["signing_jwk"]["kid"]
JWKS_BODY = json.dumps(KeySet([SIGNING_KEY]).as_dict(private=False))


class Client:
    def __init__(self, client_id: str, record: dict[str, Any]) -> None:
        self.client_id = client_id
        self.scopes = frozenset(record["scope"].split())
        self.secret_sha256: bytes | None = None
        self.key = None
        self.alg = ""
        if "secret_sha256" in record:
            self.secret_sha256 = record["secret_sha256"].encode()
        else:
            self.key = import_key(record["jwk"])
            self.alg = record["jwk"]["alg"]


def _replay_store() -> Any:
    url = CONFIG.get("replay_redis_url")
    if not url:
        return None
    # Imported only here: the plain ceiling depends on nothing of idp's.
    import redis

    from idp.stores.redis_store import RedisReplayStore

    return RedisReplayStore(redis.Redis.from_url(url, socket_timeout=5))


REPLAY_STORE = _replay_store()
CLIENTS = {client_id: Client(client_id, record) for client_id, record in CONFIG["clients"].items()}

app = Flask(__name__)


def _error(status: int, error: str, description: str) -> Response:
    response = Response(
        json.dumps({"error": error, "error_description": description}),
        status=status,
        mimetype="application/json",
    )
    response.headers["Cache-Control"] = "no-store"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="token"'
    return response


class ClientError(Exception):
    pass


def _basic_client(header: str) -> Client:
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode()
        client_id, _, secret = decoded.partition(":")
    except (ValueError, UnicodeDecodeError):
        raise ClientError("malformed Basic credentials") from None
    client = CLIENTS.get(unquote(client_id))
    presented = hashlib.sha256(unquote(secret).encode()).hexdigest().encode()
    if client is None or client.secret_sha256 is None:
        hmac.compare_digest(presented, presented)  # the same work for an unknown client
        raise ClientError("unknown client")
    if not hmac.compare_digest(presented, client.secret_sha256):
        raise ClientError("wrong secret")
    return client


def _assertion_client(assertion: str, form_client_id: str | None) -> tuple[Client, Any]:
    """The client, and the claim of the assertion's jti when there is a replay store."""
    # The issuer names the client (and so the key): read it before the signature is
    # checked, trust nothing else from the unverified payload.
    try:
        payload = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
        client_id = payload["iss"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ClientError("malformed assertion") from None
    client = CLIENTS.get(client_id) if isinstance(client_id, str) else None
    if client is None or client.key is None:
        raise ClientError("unknown client")
    if form_client_id is not None and form_client_id != client_id:
        raise ClientError("client_id does not match iss")
    try:
        token = jwt.decode(assertion, client.key, algorithms=[client.alg])
    except (JoseError, ValueError) as exc:
        raise ClientError(f"bad assertion: {exc}") from None
    claims = token.claims
    now = int(time.time())
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
    if claims.get("sub") != client_id or aud not in ACCEPTED_AUDIENCES:
        raise ClientError("sub or aud")
    if not isinstance(exp, int) or exp + SKEW <= now:
        raise ClientError("exp")
    if (iat is not None and (not isinstance(iat, int) or iat - SKEW > now)) or (
        nbf is not None and (not isinstance(nbf, int) or nbf - SKEW > now)
    ):
        raise ClientError("iat or nbf")
    if exp - (iat if isinstance(iat, int) else now) > MAX_LIFETIME:
        raise ClientError("lifetime")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise ClientError("jti")
    if REPLAY_STORE is None:
        return client, None
    return client, REPLAY_STORE.begin_claim(f"ceiling:{client_id}:{claims['jti']}", exp)


@app.post("/oidc/token")
def token() -> Response:
    form = request.form
    claim = None
    try:
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            client = _basic_client(header)
        elif form.get("client_assertion_type") == ASSERTION_TYPE and form.get("client_assertion"):
            client, claim = _assertion_client(form["client_assertion"], form.get("client_id"))
        else:
            raise ClientError("no client authentication")
    except ClientError as exc:
        return _error(401, "invalid_client", str(exc))
    try:
        return _issue(form, client, claim)
    finally:
        if claim is not None:
            claim.discard()  # unread when refused before the token was signed


def _issue(form: Any, client: Client, claim: Any) -> Response:
    if form.get("grant_type") != "client_credentials":
        return _error(400, "unsupported_grant_type", "client_credentials only")
    requested = form.get("scope")
    scopes = set(requested.split()) if requested else set(client.scopes)
    if not scopes <= client.scopes:
        return _error(400, "invalid_scope", "scope not allowed")
    scope = " ".join(sorted(scopes))
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": client.client_id,
        "aud": ISSUER,
        "exp": now + TTL,
        "iat": now,
        "jti": secrets.token_urlsafe(16),
        "client_id": client.client_id,
        "scope": scope,
    }
    access_token = jwt.encode(
        {"alg": "ES256", "typ": "at+jwt", "kid": SIGNING_KID}, claims, SIGNING_KEY
    )
    # The replay check's answer, read only now: its round trip overlapped the signing.
    if claim is not None and not claim.result():
        return _error(401, "invalid_client", "assertion replayed")
    body = {"access_token": access_token, "token_type": "Bearer", "expires_in": TTL}
    body["scope"] = scope
    response = Response(json.dumps(body), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@app.get("/oidc/jwks")
def jwks() -> Response:
    response = Response(JWKS_BODY, mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@app.get("/healthz")
def healthz() -> Response:
    return Response('{"status":"ok"}', mimetype="application/json")
