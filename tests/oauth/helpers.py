"""Building clients and client assertions for token-endpoint tests."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from flask import Flask
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from idp.models import db
from idp.registrations.clients import ClientSpec, create_client
from idp.registrations.issuers import IssuerSpec, add_issuer
from tests.conftest import ISSUER

TOKEN_URL = f"{ISSUER}/oidc/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def client_key(alg: str = "ES256", kid: str | None = None) -> Key:
    params = {"kid": kid} if kid else None
    if alg == "ES256":
        key = ECKey.generate_key("P-256", parameters=params)
    elif alg in ("RS256", "PS256"):
        key = RSAKey.generate_key(2048, parameters=params)
    else:
        key = OKPKey.generate_key("Ed25519", parameters=params)
    if kid is None:
        key.ensure_kid()
    return key


def register(app: Flask, auth_method: str = "private_key_jwt", **fields: Any) -> tuple[str, Any]:
    """Register a client; returns (client_id, secret or private key)."""
    key = fields.pop("key", None)
    if auth_method == "private_key_jwt" and "jwks" not in fields and "jwks_uri" not in fields:
        key = key or client_key()
        fields["jwks"] = {"keys": [key.as_dict(private=False)]}
    spec = ClientSpec(
        name=fields.pop("name", "test client"),
        tenant=fields.pop("tenant", "default"),
        auth_method=auth_method,
        grant_types=fields.pop("grant_types", ["client_credentials"]),
        scope=fields.pop("scope", "user:create user:read"),
        **fields,
    )
    with app.app_context():
        client, secret = create_client(spec, allow_http_jwks_uri=True)
        db.session.commit()
        return client.id, secret if secret else key


def trust_issuer(app: Flask, key: Key, issuer: str, tenant: str = "default", **fields: Any) -> None:
    """Register ``issuer`` with the public half of ``key`` for the jwt-bearer grant."""
    spec = IssuerSpec(
        tenant=tenant, issuer=issuer, jwks={"keys": [key.as_dict(private=False)]}, **fields
    )
    with app.app_context():
        add_issuer(spec, allow_http_jwks_uri=True)
        db.session.commit()


def assertion(key: Key, client_id: str, alg: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    header = {"alg": alg or _default_alg(key), "kid": key.kid}
    return jwt.encode(header, body, key, algorithms=[header["alg"]])


def _default_alg(key: Key) -> str:
    return {"EC": "ES256", "RSA": "RS256", "OKP": "EdDSA"}[key.key_type]


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand, for inputs no JOSE library would produce."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join(
        [part(json.dumps(header).encode()), part(json.dumps(claims).encode()), part(signature)]
    )


def assertion_form(signed: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
        **extra,
    }


def basic(client_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PASSWORD = "Correct-Horse-9"


def make_user(
    app: Flask,
    username: str = "alice",
    scope: str = "",
    tenant: str = "default",
    password: str = PASSWORD,
    email: str | None = None,
) -> str:
    from idp.users.service import create_user

    with app.app_context():
        user = create_user(tenant, username, password, email or f"{username}@example.com", scope)
        db.session.commit()
        return user.id


def password_client(
    app: Flask,
    scope: str = "openid profile email user:self offline_access",
    grant_types: tuple[str, ...] = ("password", "refresh_token"),
    **fields: Any,
):
    client_id, secret = register(
        app,
        auth_method="client_secret_basic",
        grant_types=list(grant_types),
        scope=scope,
        **fields,
    )
    return client_id, secret


def login(
    http: Any,
    client: tuple[str, str],
    username: str = "alice",
    password: str = PASSWORD,
    **extra: str,
) -> Any:
    form = {"grant_type": "password", "username": username, "password": password, **extra}
    return http.post("/oidc/token", data=form, headers=basic(*client))


def refresh(http: Any, client: tuple[str, str], token: str, **extra: str) -> Any:
    form = {"grant_type": "refresh_token", "refresh_token": token, **extra}
    return http.post("/oidc/token", data=form, headers=basic(*client))
