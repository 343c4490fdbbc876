"""What idp supports, named once: grant types, client authentication methods, signing
algorithms and scopes. Discovery metadata, the CLI's choices, client validation and the
token endpoint's wiring are all derived from these tables, so adding a grant is one new
module in ``idp.oauth.grants``, its class in ``GRANT_CLASSES`` there, and one line in
``GRANTS``.

Pure data: every layer may import it, and it imports nothing of idp.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grant:
    """A grant type (RFC 6749 §4, RFC 7523 §2.1), served by idp.oauth.grants."""

    grant_type: str
    cli_name: str = ""  # a short name accepted by `idp clients create --grant-types`

    @property
    def names(self) -> tuple[str, ...]:
        return (self.grant_type, self.cli_name) if self.cli_name else (self.grant_type,)


GRANTS: tuple[Grant, ...] = (
    Grant("client_credentials"),
    Grant("password"),
    Grant("refresh_token"),
    Grant("urn:ietf:params:oauth:grant-type:jwt-bearer", cli_name="jwt-bearer"),
)
GRANT_TYPES: tuple[str, ...] = tuple(grant.grant_type for grant in GRANTS)

# RFC 6749 §2.3.1 and RFC 7523 §2.2 / OIDC Core §9.
CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 -- a method name, not a secret
CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105 -- a method name, not a secret
PRIVATE_KEY_JWT = "private_key_jwt"
# RFC 8705 §2: mutual-TLS client authentication.
TLS_CLIENT_AUTH = "tls_client_auth"
SELF_SIGNED_TLS_CLIENT_AUTH = "self_signed_tls_client_auth"
SECRET_AUTH_METHODS: tuple[str, ...] = (CLIENT_SECRET_BASIC, CLIENT_SECRET_POST)
AUTH_METHODS: tuple[str, ...] = (*SECRET_AUTH_METHODS, PRIVATE_KEY_JWT)

# Algorithms idp signs its own tokens with (the key store's keys).
SIGNING_ALGS: tuple[str, ...] = ("ES256", "RS256", "PS256", "EdDSA")
# Algorithms accepted on JWTs idp verifies: client assertions and access tokens. Never
# "none" or HMAC (RFC 8725 §3.1); Ed25519 is the fully specified name of EdDSA (RFC 9864).
ACCEPTED_JWT_ALGS: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA", "Ed25519")

# Scopes every signed-in user holds, on top of the scopes granted to the user record.
USER_BASE_SCOPES: tuple[str, ...] = ("openid", "profile", "email", "offline_access", "user:self")
# Scopes of idp's own user directory API.
USER_API_SCOPES: tuple[str, ...] = ("user:create", "user:read", "user:update", "user:delete")
SCOPES_SUPPORTED: tuple[str, ...] = (*USER_BASE_SCOPES, *USER_API_SCOPES)


def grant_type_named(name: str) -> str | None:
    """The grant type a CLI or config name stands for, or None when unknown."""
    for grant in GRANTS:
        if name in grant.names:
            return grant.grant_type
    return None
