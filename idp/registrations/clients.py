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
from idp.mtls.names import normal_subject_dn
from idp.registrations.cache import bump_clients_version
from idp.registrations.tenants import require_tenant
from idp.registry import (
    AUTH_METHODS,
    GRANT_TYPES,
    PRIVATE_KEY_JWT,
    SECRET_AUTH_METHODS,
    TLS_CLIENT_AUTH,
    grant_type_named,
)
from idp.scopes import parse_scope
from idp.text import is_storable
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
    resources: tuple[str, ...] = ()
    dpop_bound: bool = False
    profile: str | None = None
    tls_subject_dn: str | None = None
    tls_san_dns: str | None = None
    tls_san_uri: str | None = None
    tls_bound_tokens: bool = False


MAX_RESOURCE_LENGTH = 2000
PROFILES = ("fapi2",)
# FAPI 2.0 Security Profile §5.3.2.1: no client secrets.
FAPI2_AUTH_METHODS = (PRIVATE_KEY_JWT,)


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


def validate_resources(resources: tuple[str, ...]) -> list[str]:
    """RFC 8707 §2: each an absolute URI without a fragment; kept once each, in order."""
    for resource in resources:
        parts = urlsplit(resource)
        if (
            not parts.scheme
            or not parts.netloc
            or "#" in resource
            or len(resource) > MAX_RESOURCE_LENGTH
            or not is_storable(resource)
            or any(char.isspace() for char in resource)
        ):
            raise IdpError(f"a resource must be an absolute URI, no fragment: {resource!r}")
    return list(dict.fromkeys(resources))


def _validate_profile(spec: ClientSpec, grant_types: list[str]) -> str | None:
    if spec.profile is None:
        return None
    if spec.profile not in PROFILES:
        raise IdpError(f"profile must be one of {', '.join(PROFILES)}")
    if spec.auth_method not in FAPI2_AUTH_METHODS:
        raise IdpError(f"a fapi2 client authenticates with {' or '.join(FAPI2_AUTH_METHODS)}")
    if "password" in grant_types:
        raise IdpError("a fapi2 client may not use the password grant")
    return spec.profile


def _validate_tls_identity(spec: ClientSpec) -> tuple[str | None, dict[str, str] | None]:
    """RFC 8705 §2.1.2: a tls_client_auth client registers exactly one identity."""
    named = {
        "--tls-subject-dn": spec.tls_subject_dn,
        "--tls-san-dns": spec.tls_san_dns,
        "--tls-san-uri": spec.tls_san_uri,
    }
    given = [option for option, value in named.items() if value is not None]
    if spec.auth_method != TLS_CLIENT_AUTH:
        if given:
            raise IdpError(f"{', '.join(given)} only go with {TLS_CLIENT_AUTH}")
        return None, None
    if len(given) != 1:
        raise IdpError(f"{TLS_CLIENT_AUTH} needs exactly one of {', '.join(named)}")
    if spec.tls_subject_dn is not None:
        return normal_subject_dn(spec.tls_subject_dn), None
    if spec.tls_san_dns is not None:
        return None, {"dns": _tls_name(spec.tls_san_dns)}
    return None, {"uri": _tls_name(spec.tls_san_uri or "")}


def _tls_name(value: str) -> str:
    if not value or len(value) > MAX_RESOURCE_LENGTH or not value.isprintable():
        raise IdpError(f"a certificate name must be 1-{MAX_RESOURCE_LENGTH} printable characters")
    return value


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
    tls_subject_dn, tls_san = _validate_tls_identity(spec)
    granted = [name for name in grant_types if name]
    profile = _validate_profile(spec, granted)
    tenant = require_tenant(spec.tenant)
    secret = new_client_secret() if spec.auth_method in SECRET_AUTH_METHODS else None
    client = Client(
        tenant=tenant,
        name=spec.name.strip(),
        auth_method=spec.auth_method,
        secret_hash=hash_client_secret(secret) if secret else None,
        jwks=jwks,
        jwks_uri=jwks_uri,
        grant_types=list(dict.fromkeys(granted)),
        scopes=parse_scope(spec.scope),
        access_token_ttl=_validate_ttl("access token TTL", spec.access_token_ttl, 1),
        refresh_token_ttl=_validate_ttl("refresh token TTL", spec.refresh_token_ttl, 0),
        refresh_reuse_grace=_validate_ttl("refresh reuse grace", spec.refresh_reuse_grace, 0),
        resources=validate_resources(spec.resources),
        dpop_bound=spec.dpop_bound,
        profile=profile,
        tls_subject_dn=tls_subject_dn,
        tls_san=tls_san,
        tls_bound_tokens=spec.tls_bound_tokens,
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
        "resources": list(client.resources or ()),
        "dpop_bound": bool(client.dpop_bound),
        "profile": client.profile,
        "tls_subject_dn": client.tls_subject_dn,
        "tls_san": client.tls_san,
        "tls_bound_tokens": bool(client.tls_bound_tokens),
        "created_at": client.created_at.isoformat(timespec="seconds"),
    }
