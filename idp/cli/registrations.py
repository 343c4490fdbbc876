"""``idp tenants``, ``idp clients`` and ``idp issuers``: who may ask idp for tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup

from idp.cli.output import emit, json_option, operator
from idp.errors import IdpError
from idp.models import DEFAULT_TENANT, db
from idp.registrations import clients as client_admin
from idp.registrations import issuers as issuer_admin
from idp.registrations import tenants as tenant_admin
from idp.registry import AUTH_METHODS, GRANT_TYPES
from idp.runtime import runtime

tenants = AppGroup("tenants", help="Manage tenants.")


def _tenant_record(tenant: Any) -> dict[str, Any]:
    return {"name": tenant.name, "created_at": tenant.created_at.isoformat(timespec="seconds")}


@tenants.command("create")
@click.argument("name")
@json_option
def tenants_create(name: str, as_json: bool) -> None:
    """Add the tenant NAME (1-64 of a-z, 0-9, '-', '_')."""
    tenant = tenant_admin.create_tenant(name, operator())
    db.session.commit()
    emit(_tenant_record(tenant), as_json)


@tenants.command("list")
@json_option
def tenants_list(as_json: bool) -> None:
    """List the tenants."""
    emit([_tenant_record(t) for t in tenant_admin.list_tenants()], as_json)


# -- clients ----------------------------------------------------------------------

clients = AppGroup("clients", help="Manage OAuth clients.")


def _read_jwks_file(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise IdpError(f"cannot read JWKS file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise IdpError(f"JWKS file {path} is not valid JSON: {exc}") from None


@clients.command("create")
@click.option("--name", required=True, help="A name for operators (1-200 characters).")
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True, help="The client's tenant.")
@click.option(
    "--auth-method",
    required=True,
    type=click.Choice(AUTH_METHODS),
    help="How the client authenticates at the token endpoint.",
)
@click.option(
    "--jwks-file",
    type=click.Path(dir_okay=False),
    help="File with the client's public JWKS (private_key_jwt).",
)
@click.option("--jwks-uri", help="https:// URL of the client's public JWKS (private_key_jwt).")
@click.option(
    "--grant-types",
    default="client_credentials",
    show_default=True,
    help=f"Comma-separated, among {', '.join(GRANT_TYPES)}.",
)
@click.option("--scope", default="", help="Space-separated scopes the client may ask for.")
@click.option("--access-token-ttl", type=int, help="Seconds (default: IDP_ACCESS_TOKEN_TTL).")
@click.option("--refresh-token-ttl", type=int, help="Seconds (default: IDP_REFRESH_TOKEN_TTL).")
@click.option(
    "--refresh-reuse-grace",
    type=int,
    help="Seconds a used refresh token may be presented again as a retry (default: setting).",
)
@click.option(
    "--resource",
    "resources",
    multiple=True,
    help="An absolute URI the client may ask tokens for (RFC 8707); repeatable.",
)
@click.option("--dpop-bound", is_flag=True, help="Every token request must carry a DPoP proof.")
@click.option("--profile", type=click.Choice(client_admin.PROFILES), help="Follow FAPI 2.0.")
@click.option("--tls-subject-dn", help="tls_client_auth: the certificate's subject (RFC 4514).")
@click.option("--tls-san-dns", help="tls_client_auth: a dNSName of the certificate.")
@click.option("--tls-san-uri", help="tls_client_auth: a uniformResourceIdentifier.")
@click.option(
    "--tls-bound-tokens", is_flag=True, help="Bind access tokens to the client certificate."
)
@json_option
def clients_create(
    name: str,
    tenant: str,
    auth_method: str,
    jwks_file: str | None,
    jwks_uri: str | None,
    grant_types: str,
    scope: str,
    access_token_ttl: int | None,
    refresh_token_ttl: int | None,
    refresh_reuse_grace: int | None,
    resources: tuple[str, ...],
    dpop_bound: bool,
    profile: str | None,
    tls_subject_dn: str | None,
    tls_san_dns: str | None,
    tls_san_uri: str | None,
    tls_bound_tokens: bool,
    as_json: bool,
) -> None:
    """Register a client; a generated client_secret is shown once."""
    spec = client_admin.ClientSpec(
        name=name,
        tenant=tenant,
        auth_method=auth_method,
        grant_types=[g.strip() for g in grant_types.split(",") if g.strip()],
        scope=scope,
        jwks=_read_jwks_file(jwks_file),
        jwks_uri=jwks_uri,
        access_token_ttl=access_token_ttl,
        refresh_token_ttl=refresh_token_ttl,
        refresh_reuse_grace=refresh_reuse_grace,
        resources=resources,
        dpop_bound=dpop_bound,
        profile=profile,
        tls_subject_dn=tls_subject_dn,
        tls_san_dns=tls_san_dns,
        tls_san_uri=tls_san_uri,
        tls_bound_tokens=tls_bound_tokens,
    )
    client, secret = client_admin.create_client(
        spec, runtime().settings.insecure_jwks_uri, operator()
    )
    db.session.commit()
    record = client_admin.client_record(client)
    if secret:
        record["client_secret"] = secret
    emit(record, as_json)


@clients.command("list")
@json_option
def clients_list(as_json: bool) -> None:
    """List the clients of every tenant (never a secret)."""
    emit([client_admin.client_record(c) for c in client_admin.list_clients()], as_json)


@clients.command("show")
@click.argument("client_id")
@json_option
def clients_show(client_id: str, as_json: bool) -> None:
    """Show the client CLIENT_ID (never its secret)."""
    emit(client_admin.client_record(client_admin.get_client(client_id)), as_json)


@clients.command("delete")
@click.argument("client_id")
@json_option
def clients_delete(client_id: str, as_json: bool) -> None:
    """Delete the client CLIENT_ID and revoke every token it holds."""
    client = client_admin.delete_client(client_id, runtime().revoker, operator())
    db.session.commit()
    emit({"client_id": client.id, "deleted": True}, as_json)


@clients.command("rotate-secret")
@click.argument("client_id")
@json_option
def clients_rotate_secret(client_id: str, as_json: bool) -> None:
    """Replace the secret of CLIENT_ID; the new one is shown once, the old stops working."""
    client, secret = client_admin.rotate_client_secret(client_id, operator())
    db.session.commit()
    emit({"client_id": client.id, "client_secret": secret}, as_json)


# -- issuers ----------------------------------------------------------------------

issuers = AppGroup("issuers", help="Manage trusted assertion issuers (jwt-bearer grant).")


@issuers.command("add")
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True, help="The tenant trusting it.")
@click.option("--issuer", required=True, help="The 'iss' of the assertions.")
@click.option(
    "--jwks-file", type=click.Path(dir_okay=False), help="File with the issuer's public JWKS."
)
@click.option("--jwks-uri", help="https:// URL of the issuer's public JWKS.")
@click.option("--provision", is_flag=True, help="Create a user for an unknown subject.")
@click.option("--scope", default=None, help="Most a token from its assertions may carry.")
@json_option
def issuers_add(
    tenant: str,
    issuer: str,
    jwks_file: str | None,
    jwks_uri: str | None,
    provision: bool,
    scope: str | None,
    as_json: bool,
) -> None:
    """Trust the assertions of an issuer for the jwt-bearer grant in a tenant."""
    spec = issuer_admin.IssuerSpec(
        tenant=tenant,
        issuer=issuer,
        jwks=_read_jwks_file(jwks_file),
        jwks_uri=jwks_uri,
        provision=provision,
        scope=scope,
    )
    row = issuer_admin.add_issuer(spec, runtime().settings.insecure_jwks_uri, operator())
    db.session.commit()
    emit(issuer_admin.issuer_record(row), as_json)


@issuers.command("list")
@click.option("--tenant", default=None, help="Only this tenant's issuers.")
@json_option
def issuers_list(tenant: str | None, as_json: bool) -> None:
    """List the trusted issuers (of every tenant unless --tenant)."""
    rows = issuer_admin.list_issuers(tenant)
    emit([issuer_admin.issuer_record(row) for row in rows], as_json)


@issuers.command("remove")
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True, help="The issuer's tenant.")
@click.option("--issuer", required=True, help="The 'iss' to stop trusting.")
@json_option
def issuers_remove(tenant: str, issuer: str, as_json: bool) -> None:
    """Stop trusting an issuer: its assertions are refused at once, its users stay."""
    removed = issuer_admin.remove_issuer(tenant, issuer, operator())
    record = issuer_admin.issuer_record(removed)
    db.session.commit()
    emit(record, as_json)


# -- users ------------------------------------------------------------------------
