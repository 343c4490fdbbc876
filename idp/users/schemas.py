"""Request and response shapes of the /users API: validation and the OpenAPI document
both come from these models, so they cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from idp.users.passwords import MAX_LENGTH as MAX_PASSWORD_LENGTH

# No control characters anywhere: PostgreSQL refuses NUL in text, and none belongs in a name.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE)]
PersonName = Annotated[str, StringConstraints(max_length=200, pattern=PRINTABLE)]
Username = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x20\x7f]([^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?$",
    ),
]
Email = Annotated[
    str,
    StringConstraints(
        min_length=3, max_length=320, pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$"
    ),
]
Password = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH, pattern=r"^[^\x00]*$")
]
Filter = Annotated[str, StringConstraints(max_length=320, pattern=PRINTABLE)]
Scope = Annotated[str, StringConstraints(pattern=r"^[\x21\x23-\x5B\x5D-\x7E]{1,128}$")]
Scopes = Annotated[list[Scope], Field(max_length=64)]
AttributeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
AttributeType = Literal["STRING", "INTEGER", "DOUBLE", "DATE_WITH_DAY"]
# Whether the value parses as its type is checked by idp.users.attributes.
AttributeValue = Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^\x00]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateUser(_Strict):
    clientUserId: Text200 | None = None
    username: Username | None = None
    email: Email | None = None
    password: Password | None = None
    scopes: Scopes | None = None
    firstName: PersonName | None = None
    lastName: PersonName | None = None


class UpdateUser(_Strict):
    clientUserId: Text200 | None = None
    email: Email | None = None
    scopes: Scopes | None = None
    firstName: PersonName | None = None
    lastName: PersonName | None = None


class ResetPassword(_Strict):
    newPassword: Password


class ChangeOwnPassword(_Strict):
    currentPassword: Password
    newPassword: Password


# Offsets are read row by row; past this, paging goes on with ``after`` alone.
MAX_OFFSET = 10_000
Cursor = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")
]


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=200)
    # Checked against MAX_OFFSET by the endpoint, whose answer says to use ``after``.
    offset: int | None = Field(
        default=None,
        ge=0,
        le=10_000_000,
        description=f"rows to skip, at most {MAX_OFFSET}; beyond, page with after",
    )
    after: Cursor | None = Field(
        default=None,
        description="the nextCursor of the previous page (same filters); not with offset",
    )
    locked: bool | None = None
    username: Filter | None = None
    email: Filter | None = None
    clientUserId: Filter | None = None
    clientId: Filter | None = None


class UserOut(BaseModel):
    userId: str
    clientUserId: str | None
    clientId: str | None
    tenant: str
    username: str | None
    email: str | None
    firstName: str | None
    lastName: str | None
    provider: str
    scopes: list[str]
    userType: str
    managedBy: str | None
    createdAt: str
    updatedAt: str
    lastAccessed: str | None
    deletedAt: str | None
    locked: bool


class UserList(BaseModel):
    users: list[UserOut]
    limit: int
    offset: int | None = Field(description="the offset asked for; null on a page read by after")
    total: int
    nextCursor: str | None = Field(
        description="pass as after for the next page (same filters); null on the last page"
    )


TypedValue = Annotated[
    AttributeValue,
    Field(
        description="must parse as the type: INTEGER an optional sign and digits, DOUBLE"
        " a finite decimal number, DATE_WITH_DAY a calendar date YYYY-MM-DD"
    ),
]


class CreateAttribute(_Strict):
    name: AttributeName
    type: AttributeType
    value: TypedValue
    isPersonal: Annotated[
        bool,
        Field(
            description="visible to the user alone: made at /users/me/attributes (true is"
            " refused with 403 at /users/{userId}/attributes)"
        ),
    ] = False


class UpdateAttribute(_Strict):
    value: Annotated[TypedValue, Field(description="must parse as the attribute's type")]


class AttributeOut(BaseModel):
    attributeId: str
    name: str
    type: str
    value: str
    isPersonal: bool
    createdAt: str


class AttributeList(BaseModel):
    attributes: list[AttributeOut]


class LockStatus(BaseModel):
    username: str | None
    locked: bool
    badAttemptsSinceLastSuccessOrReset: int
    lastFailureDate: str | None


class RevokedCount(BaseModel):
    revoked: int


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None
