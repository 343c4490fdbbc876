"""The /users blueprint: a thin layer over idp.users.service."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.models import Client, Tenant, User, db, utcnow
from idp.runtime import runtime
from idp.users import paging, policy, service
from idp.users.passwords import WeakPasswordError
from idp.users.records import Record, user_record
from idp.users.schemas import (
    MAX_OFFSET,
    ChangeOwnPassword,
    CreateUser,
    ListQuery,
    LockStatus,
    ResetPassword,
    RevokedCount,
    UpdateUser,
    UserList,
    UserOut,
)
from idp.users.usernames import InvalidUsername
from idp.verify import AccessToken
from idp.web.json_api import ApiProblem, JsonApi, current_token_user_id, not_found

# One answer for a wrong password and a locked user: the lock must not confirm a guess.
WRONG_CURRENT_PASSWORD = "the current password was not accepted (wrong, or the user is locked)"  # noqa: S105

blueprint = Blueprint("users", __name__)
api = JsonApi(blueprint, lambda: runtime().verifier)


def tenant_of(token: AccessToken) -> Tenant:
    """The tenant the token was issued in."""
    tenant = db.session.query(Tenant).filter_by(name=token.claims.get("tenant")).one_or_none()
    if tenant is None:
        raise ApiProblem(401, "Unauthorized", "the token's tenant does not exist")
    return tenant


def user_of(token: AccessToken, user_id: str) -> User:
    """The live user ``user_id`` of the token's tenant, or 404."""
    user = service.find_user(tenant_of(token).id, user_id)
    if user is None:
        raise not_found()
    return user


def _held_scopes(token: AccessToken, tenant: Tenant) -> list[str]:
    """The acting principal's own scopes: the client's registered ones for a client token,
    the acting user's for a user token (in ``tenant``, the token's)."""
    if token.is_user_token:
        actor = service.find_user(tenant.id, token.subject)
        return list(actor.scopes) if actor is not None else []
    client = db.session.get(Client, str(token.claims["client_id"]))
    return list(client.scopes) if client is not None else []


def _within_ceiling(token: AccessToken, tenant: Tenant, scopes: list[str] | None) -> None:
    if not scopes:
        return
    try:
        policy.check_scope_ceiling(scopes, _held_scopes(token, tenant))
    except policy.ScopesNotHeld as exc:
        errors = [
            {"field": "scopes", "message": f"not held by the caller: {name}"} for name in exc.scopes
        ]
        raise ApiProblem(403, "Forbidden", str(exc), errors) from None


def own_user(token: AccessToken) -> User:
    """The user the token was issued to (a ``user:self`` route)."""
    user = service.find_user(tenant_of(token).id, current_token_user_id(token))
    if user is None:
        raise ApiProblem(401, "Unauthorized", "the token's user no longer exists")
    return user


def commit(conflict: str = "a user with that username or clientUserId exists") -> None:
    """The request's one commit; a unique constraint lost to a concurrent write is 409."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ApiProblem(409, "Conflict", conflict) from None


def _out(user: User) -> Record:
    """The user in the API's shape (``UserOut``), as the CLI prints it too."""
    return user_record(user)


def _weak(exc: WeakPasswordError) -> ApiProblem:
    return ApiProblem(400, "Bad Request", str(exc), [{"field": "password", "message": str(exc)}])


@api.route(
    "/users", "POST", summary="Create a user", scope="user:create", body=CreateUser,
    response=UserOut, status=201, errors=(409,),
)  # fmt: skip
def create_user(token: AccessToken, body: CreateUser) -> Record:
    tenant = tenant_of(token)
    _within_ceiling(token, tenant, body.scopes)
    try:
        user = service.new_user(
            tenant,
            username=body.username,
            password=body.password,
            email=body.email,
            scopes=list(dict.fromkeys(body.scopes or [])),
            client_id=str(token.claims["client_id"]),
            client_user_id=body.clientUserId,
            first_name=body.firstName,
            last_name=body.lastName,
        )
    except service.Conflict as exc:
        raise ApiProblem(409, "Conflict", str(exc)) from None
    except WeakPasswordError as exc:
        raise _weak(exc) from None
    except InvalidUsername as exc:
        errors = [{"field": "username", "message": str(exc)}]
        raise ApiProblem(400, "Bad Request", str(exc), errors) from None
    commit()
    return _out(user)


@api.route(
    "/users", "GET", summary="List users", scope="user:read", query=ListQuery, response=UserList
)
def list_users(token: AccessToken, query: ListQuery) -> Record:
    if query.after is not None and query.offset is not None:
        raise ApiProblem(
            400, "Bad Request", "after and offset cannot be combined: after alone continues a list"
        )
    if query.offset is not None and query.offset > MAX_OFFSET:
        raise ApiProblem(
            400,
            "Bad Request",
            f"offset is at most {MAX_OFFSET}; to page further, pass the nextCursor of a page"
            " as after",
            [{"field": "offset", "message": f"at most {MAX_OFFSET}; use after=<nextCursor>"}],
        )
    tenant = tenant_of(token)
    filters = query.model_dump(exclude={"limit", "offset", "after"}, exclude_none=True)
    cursor_key = runtime().server_secrets.get(paging.SECRET_NAME)
    after = None
    if query.after is not None:
        try:
            after = paging.decode(cursor_key, tenant.id, filters, query.after)
        except paging.InvalidCursor as exc:
            raise ApiProblem(
                400, "Bad Request", str(exc), [{"field": "after", "message": str(exc)}]
            ) from None
    page = service.list_page(tenant.id, filters, query.limit, query.offset or 0, after)
    next_cursor = None
    if page.next_position is not None:
        next_cursor = paging.encode(cursor_key, tenant.id, filters, page.next_position)
    return {  # UserList
        "users": [_out(u) for u in page.users],
        "limit": query.limit,
        "offset": None if after is not None else (query.offset or 0),
        "total": page.total,
        "nextCursor": next_cursor,
    }


@api.route("/users/me", "GET", summary="The signed-in user", scope="user:self", response=UserOut)
def me(token: AccessToken) -> Record:
    return _out(own_user(token))


@api.route(
    "/users/me/password", "PUT", summary="Change one's own password", scope="user:self",
    body=ChangeOwnPassword, status=204,
)  # fmt: skip
def change_own_password(token: AccessToken, body: ChangeOwnPassword) -> None:
    user = own_user(token)
    _check_current_password(user, token, body.currentPassword)
    try:
        service.set_password(user, body.newPassword, None, "password_changed", runtime().revoker)
    except WeakPasswordError as exc:
        raise _weak(exc) from None
    commit()


def _check_current_password(user: User, token: AccessToken, password: str) -> None:
    """The password grant's rules (idp.users.policy.password_refusal): a wrong password
    counts toward the lockout, and a locked user's attempts are refused uncounted."""
    context = {"tenant": user.tenant.name, "client_id": token.claims["client_id"]}
    reason = policy.password_refusal(user, password, runtime().settings, utcnow(), context)
    if reason is None:
        return
    audit.record("password_change_failure", user_id=user.id, reason=reason, **context)
    db.session.commit()
    raise ApiProblem(403, "Forbidden", WRONG_CURRENT_PASSWORD)


@api.route(
    "/users/<user_id>", "GET", summary="Get a user", scope="user:read", response=UserOut,
    errors=(404,),
)  # fmt: skip
def get_user(token: AccessToken, user_id: str) -> Record:
    return _out(user_of(token, user_id))


@api.route(
    "/users/<user_id>", "PATCH", summary="Update a user", scope="user:update", body=UpdateUser,
    response=UserOut, errors=(404, 409),
)  # fmt: skip
def update_user(token: AccessToken, body: UpdateUser, user_id: str) -> Record:
    user = user_of(token, user_id)
    _within_ceiling(token, user.tenant, body.scopes)
    try:
        service.update_user(user, body.model_dump(exclude_unset=True), token.claims["client_id"])
    except service.Conflict as exc:
        raise ApiProblem(409, "Conflict", str(exc)) from None
    commit()
    return _out(user)


@api.route(
    "/users/<user_id>", "DELETE", summary="Delete a user (soft)", scope="user:delete",
    status=204, errors=(404,),
)  # fmt: skip
def delete_user(token: AccessToken, user_id: str) -> None:
    service.delete_user(user_of(token, user_id), token.claims["client_id"], runtime().revoker)
    commit()


@api.route(
    "/users/<user_id>/password", "PUT", summary="Reset a user's password", scope="user:update",
    body=ResetPassword, status=204, errors=(404,),
)  # fmt: skip
def reset_password(token: AccessToken, body: ResetPassword, user_id: str) -> None:
    user = user_of(token, user_id)
    try:
        service.set_password(
            user, body.newPassword, token.claims["client_id"], "password_reset", runtime().revoker
        )
    except WeakPasswordError as exc:
        raise _weak(exc) from None
    commit()


def _set_lock(token: AccessToken, user_id: str, locked: bool) -> LockStatus:
    user = user_of(token, user_id)
    service.set_lock(user, locked, token.claims["client_id"], runtime().revoker)
    commit()
    return LockStatus.model_validate(service.lock_status(user, utcnow()))


@api.route(
    "/users/<user_id>/lock", "POST", summary="Lock a user", scope="user:update",
    response=LockStatus, errors=(404,),
)  # fmt: skip
def lock_user(token: AccessToken, user_id: str) -> LockStatus:
    return _set_lock(token, user_id, True)


@api.route(
    "/users/<user_id>/unlock", "POST", summary="Unlock a user and reset the counter",
    scope="user:update", response=LockStatus, errors=(404,),
)  # fmt: skip
def unlock_user(token: AccessToken, user_id: str) -> LockStatus:
    return _set_lock(token, user_id, False)


@api.route(
    "/users/<user_id>/lock-status", "GET", summary="A user's lock status", scope="user:read",
    response=LockStatus, errors=(404,),
)  # fmt: skip
def lock_status(token: AccessToken, user_id: str) -> LockStatus:
    return LockStatus.model_validate(service.lock_status(user_of(token, user_id), utcnow()))


@api.route(
    "/users/<user_id>/revoke-tokens", "POST", summary="Revoke a user's refresh tokens",
    scope="user:update", response=RevokedCount, errors=(404,),
)  # fmt: skip
def revoke_tokens(token: AccessToken, user_id: str) -> RevokedCount:
    revoked = service.revoke_sessions(
        user_of(token, user_id), token.claims["client_id"], runtime().revoker
    )
    commit()
    return RevokedCount(revoked=revoked)
