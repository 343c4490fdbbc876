"""Shapes of the OAuth endpoints, for the OpenAPI document (the endpoints themselves are
validated by idp.oauth.request_checks and Authlib)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Form(BaseModel):
    model_config = ConfigDict(extra="allow")


class TokenRequest(_Form):
    grant_type: str = Field(
        description="client_credentials, password, refresh_token or "
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    )
    scope: str | None = None
    sub: str | None = Field(
        default=None, description="client_credentials: a user id of the client's own users"
    )
    assertion: str | None = Field(
        default=None, description="jwt-bearer: a JWT signed by a trusted issuer"
    )
    username: str | None = None
    password: str | None = None
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    client_assertion_type: str | None = None
    client_assertion: str | None = None


class TokenResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    scope: str | None = None
    refresh_token: str | None = None
    refresh_token_expires_in: int | None = None
    id_token: str | None = None


class TokenOperationRequest(_Form):
    token: str
    token_type_hint: str | None = None


class IntrospectionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    active: bool
    scope: str | None = None
    client_id: str | None = None
    sub: str | None = None
    username: str | None = None
    token_type: str | None = None
    exp: int | None = None
    iat: int | None = None
    iss: str | None = None
    aud: str | None = None
    jti: str | None = None


class OAuthError(BaseModel):
    error: str
    error_description: str | None = None


class UserInfo(BaseModel):
    sub: str
    preferred_username: str | None = None
    email: str | None = None


class JsonWebKeySet(BaseModel):
    keys: list[dict[str, str]]
