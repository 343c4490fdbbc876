"""The JWT bearer grant (RFC 7523 §2.1) on Authlib's JWTBearerGrant, for users vouched for
by a trusted issuer (``idp issuers add``).

Authlib's version takes the assertion's issuer for the client. Here the client
authenticates as at every grant, and the issuer is a third party registered for the
client's tenant: its assertion is held to the same rules as a client assertion (the
shared ``AssertionValidator``, raising ``invalid_grant``), its ``jti`` values recorded
under their own namespace, and its ``sub`` names the user at that issuer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import UnauthorizedClientError
from authlib.oauth2.rfc7523 import JWTBearerGrant as AuthlibJWTBearerGrant

from idp import audit
from idp.models import Tenant, TrustedIssuer, db, utcnow
from idp.oauth.assertions import AssertionRules, AssertionValidator
from idp.oauth.client_keys import KeyPicker
from idp.oauth.clients import OAuthClient
from idp.oauth.errors import GrantRefused
from idp.oauth.grants.base import CLIENT_AUTH_METHODS, IdpUser, UserTokenGrant, token_scope
from idp.registrations.issuers import find_issuer
from idp.settings import Settings
from idp.stores import ReplayStore
from idp.text import is_storable
from idp.tokens import refresh_tokens
from idp.users.linked import (
    MAX_SUBJECT_LENGTH,
    ProvisioningRefused,
    find_linked_user,
    provision_linked_user,
)
from idp.users.policy import may_sign_in

if TYPE_CHECKING:
    from idp.models import User

# An issuer's jti is recorded as "issuer:<iss>:<jti>", a client's as "<client_id>:<jti>":
# client ids never contain ':', so the two can never meet.
ISSUER_REPLAY_NAMESPACE = "issuer:"


@dataclass(frozen=True)
class IssuerRegistration:
    """What the grant needs of a trusted issuer, detached from the session."""

    id: str  # names the issuer's parsed keys in the worker's cache
    issuer: str
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    provision: bool
    scopes: tuple[str, ...] | None

    @classmethod
    def of(cls, row: TrustedIssuer) -> IssuerRegistration:
        return cls(
            id=f"issuer:{row.tenant_id}:{row.issuer}",
            issuer=row.issuer,
            jwks=row.jwks,
            jwks_uri=row.jwks_uri,
            provision=row.provision,
            scopes=tuple(row.scopes) if row.scopes is not None else None,
        )


def grant_assertion_validator(settings: Settings, replay_store: ReplayStore) -> AssertionValidator:
    rules = AssertionRules.from_settings(settings)
    return AssertionValidator(rules, replay_store, GrantRefused, ISSUER_REPLAY_NAMESPACE)


def _issuer_key_missing(rule: str, description: str) -> GrantRefused:
    return GrantRefused(rule, f"issuer key: {description}")


class JWTBearerGrant(UserTokenGrant, AuthlibJWTBearerGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    # Authlib's validate_token_request runs as it is; these hooks are where idp differs.
    # Authlib takes the assertion's issuer for the client. Here the client authenticates
    # as at every grant, first, and the issuer is a third party its tenant trusts.

    def process_assertion_claims(self, assertion: str) -> dict[str, Any]:
        """The verified claims of ``assertion``, parsed once: its unverified ``iss`` finds
        the trusted issuer, whose keys then verify it. The client is checked before, so
        that a client refused the grant spends no ``jti``."""
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"the client may not use grant_type={self.GRANT_TYPE}")
        self.validate_requested_scope()
        validator = self.server.grant_assertions
        parsed = validator.parse(assertion)
        issuer = self._trusted_issuer(client, parsed.claims)
        picker = KeyPicker(issuer, self.server.key_resolver, _issuer_key_missing)
        claims = validator.validate_parsed(parsed, picker, issuer=issuer.issuer)
        self.request.issuer = issuer
        self.request.assertion_claims = claims
        return claims

    def resolve_issuer_client(self, issuer: str) -> OAuthClient:
        # The token goes to the client that authenticated; the issuer vouches for the user.
        client: OAuthClient = self.request.client
        return client

    def authenticate_user(self, subject: str) -> IdpUser:
        client: OAuthClient = self.request.client
        issuer: IssuerRegistration = self.request.issuer
        user = self._user(client, issuer, subject, self.request.assertion_claims)
        audit.record(
            "login_success",
            user_id=user.id,
            tenant=client.tenant_name,
            client_id=client.get_client_id(),
            issuer=issuer.issuer,
        )
        return IdpUser(user)

    def has_granted_permission(self, client: OAuthClient, user: IdpUser) -> bool:
        # The tenant's trust in the issuer (idp issuers add) is the permission.
        return True

    def _trusted_issuer(
        self, client: OAuthClient, unverified: dict[str, Any]
    ) -> IssuerRegistration:
        # The issuer named by the unverified payload only picks the keys to verify with.
        name = unverified.get("iss")
        storable = isinstance(name, str) and is_storable(name)
        row = find_issuer(client.row.tenant_id, str(name)) if storable else None
        if row is None:
            raise GrantRefused("issuer", "assertion 'iss' is not a trusted issuer of this tenant")
        return IssuerRegistration.of(row)

    def _user(
        self,
        client: OAuthClient,
        issuer: IssuerRegistration,
        subject: str,
        claims: dict[str, Any],
    ) -> User:
        if len(subject) > MAX_SUBJECT_LENGTH:
            raise GrantRefused("sub", f"assertion 'sub' is longer than {MAX_SUBJECT_LENGTH}")
        user = find_linked_user(client.row.tenant_id, issuer.issuer, subject)
        if user is None:
            if not issuer.provision:
                raise GrantRefused("subject", "no user is linked to this issuer and subject")
            user = self._provision(client, issuer, subject, claims.get("preferred_username"))
        if not may_sign_in(user, utcnow()):
            raise GrantRefused("user", "the user may not sign in")
        return user

    def _provision(
        self, client: OAuthClient, issuer: IssuerRegistration, subject: str, name: Any
    ) -> User:
        tenant = db.session.get(Tenant, client.row.tenant_id)
        assert tenant is not None  # the client's tenant outlives the client
        username = name if isinstance(name, str) and name else subject
        try:
            return provision_linked_user(
                tenant, issuer.issuer, subject, username, list(issuer.scopes or ()), client.row.id
            )
        except ProvisioningRefused as exc:
            raise GrantRefused("provision", str(exc)) from None

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: OAuthClient = self.request.client
        user: User = self.request.user.row
        issuer: IssuerRegistration = self.request.issuer
        scope = token_scope(client, user, self.request.payload.scope, cap=issuer.scopes)
        lifetime = self.server.runtime.lifetimes.refresh_token(client.row)
        lineage = refresh_tokens.fresh_lineage(scope, lifetime, utcnow())
        token = self.issue(user, scope, lineage)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER
