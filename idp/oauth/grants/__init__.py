"""The token endpoint's grants, one module each, on Authlib's grant classes.

``GRANT_CLASSES`` serves each grant type ``idp.registry.GRANTS`` names; the authorization
server registers them (idp.oauth.server).
"""

from __future__ import annotations

from authlib.oauth2.rfc6749.grants import BaseGrant

from idp.oauth.grants.client_credentials import ClientCredentialsGrant
from idp.oauth.grants.jwt_bearer import JWTBearerGrant
from idp.oauth.grants.password import PasswordGrant
from idp.oauth.grants.refresh_token import RefreshTokenGrant

GRANT_CLASSES: dict[str, type[BaseGrant]] = {
    grant.GRANT_TYPE: grant
    for grant in (ClientCredentialsGrant, PasswordGrant, RefreshTokenGrant, JWTBearerGrant)
}
