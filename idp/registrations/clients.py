"""Client registration: validation of methods, grants, keys and TTLs; secrets shown once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp import audit
from idp.errors import IdpError
from idp.models import Client, db
from idp.models.clients import hash_client_secret
from idp.registrations.cache import bump_clients_version
from idp.registrations.tenants import require_tenant
from idp.registry import AUTH_METHODS, GRANT_TYPES, SECRET_AUTH_METHODS, grant_type_named
from idp.scopes import parse_scope
from idp.tokens.revocations import Revoker

SECRET_BYTES = 32  # 256 bits
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass(frozen=True)
class ClientSpec:
    name: str
    tenant: str
    auth_method: str
    grant_types: list[str]
    scope: str
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    access_token_ttl: int | None = None
    refresh_token_ttl: int | None = None
    refresh_reuse_grace: int | None = None


def new_client_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def validate_client_jwks(jwks: Any) -> dict[str, Any]:
    """A public JWKS joserfc can import, with a distinct kid on each key when there are several."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise IdpError('client JWKS must be a JSON object {"keys": [...]} with at least one key')
    for key in jwks["keys"]:
        if not isinstance(key, dict) or PRIVATE_MEMBERS & key.keys():
            raise IdpError("client JWKS must hold public keys only (no private members)")
    try:
        KeySet.import_key_set(cast(Any, jwks))
    except (JoseError, ValueError, TypeError) as exc:
        raise IdpError(f"client JWKS is not valid: {exc}") from None
    kids = [key.get("kid") for key in jwks["keys"]]
    if len(kids) > 1 and (None in kids or len(set(kids)) != len(kids)):
        raise IdpError("client JWKS with several keys needs a distinct 'kid' on each")
    return jwks


def validate_jwks_uri(uri: str, allow_http: bool) -> str:
    parts = urlsplit(uri)
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        hint = "" if allow_http else " (http:// only with IDP_INSECURE_JWKS_URI=true)"
        raise IdpError(f"jwks_uri must be an https:// URL{hint}, got {uri!r}")
    return uri


def _validate_ttl(name: str, value: int | None, minimum: int) -> int | None:
    if value is not None and value < minimum:
        raise IdpError(f"{name} must be at least {minimum}, got {value}")
    return value


def create_client(
    spec: ClientSpec, allow_http_jwks_uri: bool, actor: audit.Actor | None = None
) -> tuple[Client, str | None]:
    if spec.auth_method not in AUTH_METHODS:
        raise IdpError(f"auth method must be one of {', '.join(AUTH_METHODS)}")
    grant_types = [grant_type_named(name) for name in spec.grant_types]
    unknown = [name for name, known in zip(spec.grant_types, grant_types, strict=True) if not known]
    if unknown or not spec.grant_types:
        raise IdpError(f"grant types must be among {', '.join(GRANT_TYPES)}; got {unknown or '[]'}")
    if not spec.name.strip() or len(spec.name) > 200:
        raise IdpError("client name must be 1-200 characters")
    jwks, jwks_uri = spec.jwks, spec.jwks_uri
    if spec.auth_method == "private_key_jwt":
        if (jwks is None) == (jwks_uri is None):
            raise IdpError("private_key_jwt needs exactly one of --jwks-file and --jwks-uri")
        jwks = validate_client_jwks(jwks) if jwks is not None else None
        jwks_uri = validate_jwks_uri(jwks_uri, allow_http_jwks_uri) if jwks_uri else None
    elif jwks is not None or jwks_uri is not None:
        raise IdpError(f"{spec.auth_method} clients take no JWKS; use private_key_jwt")
    tenant = require_tenant(spec.tenant)
    secret = new_client_secret() if spec.auth_method in SECRET_AUTH_METHODS else None
    client = Client(
        tenant=tenant,
        name=spec.name.strip(),
        auth_method=spec.auth_method,
        secret_hash=hash_client_secret(secret) if secret else None,
        jwks=jwks,
        jwks_uri=jwks_uri,
        grant_types=list(dict.fromkeys(name for name in grant_types if name)),
        scopes=parse_scope(spec.scope),
        access_token_ttl=_validate_ttl("access token TTL", spec.access_token_ttl, 1),
        refresh_token_ttl=_validate_ttl("refresh token TTL", spec.refresh_token_ttl, 0),
        refresh_reuse_grace=_validate_ttl("refresh reuse grace", spec.refresh_reuse_grace, 0),
    )
    db.session.add(client)
    db.session.flush()
    audit.record(
        "client_created",
        tenant=tenant.name,
        client_id=client.id,
        actor=actor,
        auth_method=client.auth_method,
    )
    return client, secret


def get_client(client_id: str) -> Client:
    client = db.session.get(Client, client_id)
    if client is None:
        raise IdpError(f"no client with id {client_id!r}")
    return client


def list_clients() -> list[Client]:
    return list(db.session.scalars(select(Client).order_by(Client.created_at, Client.id)))


def delete_client(client_id: str, revoker: Revoker, actor: audit.Actor | None = None) -> Client:
    client = get_client(client_id)
    # Its tokens are self-contained JWTs: only a revocation stops them before they expire.
    revoker.client_tokens(db.session, client.id)
    bump_clients_version(db.session)
    audit.record("client_deleted", tenant=client.tenant.name, client_id=client.id, actor=actor)
    db.session.delete(client)
    db.session.flush()
    return client


def rotate_client_secret(client_id: str, actor: audit.Actor | None = None) -> tuple[Client, str]:
    client = get_client(client_id)
    if client.auth_method not in SECRET_AUTH_METHODS:
        raise IdpError(f"client {client_id} uses {client.auth_method}, which has no secret")
    secret = new_client_secret()
    client.secret_hash = hash_client_secret(secret)
    bump_clients_version(db.session)
    audit.record(
        "client_secret_rotated", tenant=client.tenant.name, client_id=client.id, actor=actor
    )
    return client, secret


def client_record(client: Client) -> dict[str, Any]:
    """The operator-facing view of a client: never the secret hash."""
    return {
        "client_id": client.id,
        "name": client.name,
        "tenant": client.tenant.name,
        "token_endpoint_auth_method": client.auth_method,
        "grant_types": client.grant_types,
        "scope": " ".join(client.scopes),
        "jwks": client.jwks,
        "jwks_uri": client.jwks_uri,
        "access_token_ttl": client.access_token_ttl,
        "refresh_token_ttl": client.refresh_token_ttl,
        "refresh_reuse_grace": client.refresh_reuse_grace,
        "created_at": client.created_at.isoformat(timespec="seconds"),
    }
