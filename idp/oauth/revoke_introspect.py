"""RFC 7009 revocation and RFC 7662 introspection on Authlib's endpoint classes."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from idp import audit
from idp.models import User, db
from idp.oauth.clients import OAuthClient
from idp.oauth.token_lookup import PresentedAccessToken, PresentedRefreshToken, find_token
from idp.registry import AUTH_METHODS
from idp.tokens import refresh_tokens

TOKEN_HINTS = ("access_token", "refresh_token")


class IdpRevocationEndpoint(RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return find_token(token_string, token_type_hint, self.server.runtime.verifier)

    def authenticate_token(self, request: Any, client: OAuthClient) -> Any:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        # Another client's token: answer 200 as for an unknown one, and revoke nothing.
        return token if token is not None and token.check_client(client) else None

    def revoke_token(self, token: Any, request: Any) -> None:
        client: OAuthClient = request.client
        subject: dict[str, Any]
        if isinstance(token, PresentedRefreshToken):
            count = refresh_tokens.revoke_family(token.row.family_id)
            revoker = self.server.runtime.revoker
            revoker.session(db.session, token.row.family_id)
            subject = {"user_id": token.row.user_id, "kind": "refresh_token", "revoked": count}
        else:
            assert isinstance(token, PresentedAccessToken)
            self.server.runtime.revoker.access_token(
                db.session, str(token.claims["jti"]), int(token.claims["exp"])
            )
            subject = {"kind": "access_token"}
            if token.token.is_user_token:
                subject["user_id"] = token.token.subject
        audit.record(
            "token_revoked", tenant=client.tenant_name, client_id=client.get_client_id(), **subject
        )


class IdpIntrospectionEndpoint(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return find_token(token_string, token_type_hint, self.server.runtime.verifier)

    def check_permission(self, token: Any, client: OAuthClient, request: Any) -> bool:
        # A client sees only tokens of its own tenant.
        return token.tenant == client.tenant_name

    def introspect_token(self, token: Any) -> dict[str, Any]:
        settings = self.server.runtime.settings
        if isinstance(token, PresentedAccessToken):
            claims = token.claims
            payload = {
                "scope": claims.get("scope", ""),
                "client_id": claims["client_id"],
                "sub": claims["sub"],
                # RFC 9449 §6.2: a DPoP-bound token is introspected as type DPoP.
                "token_type": "DPoP" if "jkt" in claims.get("cnf", {}) else "Bearer",
                "exp": claims["exp"],
                "iat": claims["iat"],
                "iss": claims["iss"],
                "aud": claims["aud"],
                "jti": claims["jti"],
            }
            if "cnf" in claims:
                # RFC 7800 §3.1 confirmation: the key or certificate the token is bound to.
                payload["cnf"] = claims["cnf"]
            username = _username(claims["sub"]) if token.token.is_user_token else None
        else:
            row = token.row
            payload = {
                "scope": row.scope,
                "client_id": row.client_id,
                "sub": row.user_id,
                "token_type": "refresh_token",
                "iat": int(row.issued_at.timestamp()),
                "iss": settings.issuer,
                "aud": row.client_id,
                "jti": row.id,
            }
            if row.expires_at is not None:
                payload["exp"] = int(row.expires_at.timestamp())
            username = _username(row.user_id)
        if username:
            payload["username"] = username
        return {"active": True, **payload}


def _username(user_id: str) -> str | None:
    user = db.session.get(User, user_id)
    return user.username if user is not None else None
