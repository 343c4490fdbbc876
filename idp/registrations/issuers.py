"""Trusted assertion issuers of the jwt-bearer grant (RFC 7523 §2.1), registered per tenant
by the operator: whose signed statements about a user idp accepts as a login."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from idp import audit
from idp.errors import IdpError
from idp.models import TrustedIssuer, db
from idp.registrations.clients import validate_client_jwks, validate_jwks_uri
from idp.registrations.tenants import require_tenant
from idp.scopes import parse_scope

MAX_ISSUER_LENGTH = 2000


@dataclass(frozen=True)
class IssuerSpec:
    tenant: str
    issuer: str
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    provision: bool = False
    scope: str | None = None  # None: no cap on the tokens the issuer's assertions obtain


def add_issuer(
    spec: IssuerSpec, allow_http_jwks_uri: bool, actor: audit.Actor | None = None
) -> TrustedIssuer:
    issuer = spec.issuer
    if not issuer or issuer != issuer.strip() or len(issuer) > MAX_ISSUER_LENGTH:
        raise IdpError(f"issuer must be 1-{MAX_ISSUER_LENGTH} characters without outer spaces")
    if (spec.jwks is None) == (spec.jwks_uri is None):
        raise IdpError("an issuer needs exactly one of --jwks-file and --jwks-uri")
    tenant = require_tenant(spec.tenant)
    if find_issuer(tenant.id, issuer) is not None:
        raise IdpError(f"issuer {issuer!r} is already registered for tenant {tenant.name!r}")
    row = TrustedIssuer(
        tenant=tenant,
        issuer=issuer,
        jwks=validate_client_jwks(spec.jwks) if spec.jwks is not None else None,
        jwks_uri=validate_jwks_uri(spec.jwks_uri, allow_http_jwks_uri) if spec.jwks_uri else None,
        provision=spec.provision,
        scopes=parse_scope(spec.scope) if spec.scope is not None else None,
    )
    db.session.add(row)
    db.session.flush()
    audit.record(
        "issuer_added", tenant=tenant.name, actor=actor, issuer=issuer, provision=spec.provision
    )
    return row


def find_issuer(tenant_id: int, issuer: str) -> TrustedIssuer | None:
    return db.session.scalar(
        select(TrustedIssuer).where(
            TrustedIssuer.tenant_id == tenant_id, TrustedIssuer.issuer == issuer
        )
    )


def list_issuers(tenant: str | None = None) -> list[TrustedIssuer]:
    query = select(TrustedIssuer).order_by(TrustedIssuer.tenant_id, TrustedIssuer.issuer)
    if tenant is not None:
        query = query.where(TrustedIssuer.tenant_id == require_tenant(tenant).id)
    return list(db.session.scalars(query))


def remove_issuer(tenant: str, issuer: str, actor: audit.Actor | None = None) -> TrustedIssuer:
    """Removes the trust, not the users it vouched for: they keep their records, and their
    sessions end with a refresh only if an operator revokes them."""
    row = find_issuer(require_tenant(tenant).id, issuer)
    if row is None:
        raise IdpError(f"no issuer {issuer!r} in tenant {tenant!r}")
    audit.record("issuer_removed", tenant=tenant, actor=actor, issuer=issuer)
    db.session.delete(row)
    db.session.flush()
    return row


def issuer_record(row: TrustedIssuer) -> dict[str, Any]:
    return {
        "tenant": row.tenant.name,
        "issuer": row.issuer,
        "provision": row.provision,
        "scope": " ".join(row.scopes) if row.scopes is not None else None,
        "jwks": row.jwks,
        "jwks_uri": row.jwks_uri,
        "created_at": row.created_at.isoformat(timespec="seconds"),
    }
