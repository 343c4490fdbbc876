"""``idp users``: the operator's side of the /users API."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click
from flask.cli import AppGroup

from idp.cli.output import emit, json_option, operator
from idp.errors import IdpError
from idp.models import DEFAULT_TENANT, User, db
from idp.registrations import tenants as tenant_admin
from idp.runtime import runtime
from idp.users.records import user_record
from idp.users.service import (
    create_user,
    delete_user,
    find_user_in_any_tenant,
    find_users_by_username,
    list_page,
    revoke_sessions,
    set_lock,
    set_password,
)

users = AppGroup("users", help="Manage users: the operator's side of the /users API.")

# The operator's listing spans every tenant, so its cursors are bound to none of them
# (tenant ids start at 1).
EVERY_TENANT = 0

# The CLI options of the API's user fields, to name them in a refusal.
_USER_OPTIONS = {
    "username": "--username",
    "email": "--email",
    "clientUserId": "--client-user-id",
    "firstName": "--first-name",
    "lastName": "--last-name",
}


def _stdin_password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise IdpError("--password-stdin given but standard input held no password")
    return password


def _prompt_password() -> str:
    """Asked twice on a terminal, hidden as typed. Without a terminal no one can answer,
    and a password read from a pipe by accident would end up set."""
    if not sys.stdin.isatty():
        raise IdpError(
            "no terminal to ask for the new password: write it to standard input "
            "and pass --password-stdin"
        )
    return str(click.prompt("New password", hide_input=True, confirmation_prompt=True))


def _user_by_id(user_id: str) -> User:
    """A live user by id, in whichever tenant it lives: the operator sees every tenant."""
    user = find_user_in_any_tenant(user_id)
    if user is None:
        raise IdpError(f"no user with id {user_id!r}")
    return user


def _user_by_name(username: str, tenant: str, provider: str | None) -> User:
    found = find_users_by_username(tenant_admin.require_tenant(tenant).id, username, provider)
    if not found:
        where = f"tenant {tenant!r}" + (f" and provider {provider!r}" if provider else "")
        raise IdpError(f"no user named {username!r} in {where}")
    if len(found) > 1:
        providers = ", ".join(sorted(user.provider for user in found))
        raise IdpError(
            f"users of several providers are named {username!r} in tenant {tenant!r} "
            f"({providers}): pass --provider"
        )
    return found[0]


def _select_user(
    user_id: str | None, username: str | None, tenant: str | None, provider: str | None
) -> User:
    if user_id is not None and username is not None:
        raise IdpError("name the user by USER_ID or by --username, not both")
    if user_id is not None:
        if tenant is not None or provider is not None:
            raise IdpError("--tenant and --provider go with --username, not with USER_ID")
        return _user_by_id(user_id)
    if username is None:
        raise IdpError("name the user: USER_ID, or --username (with --tenant)")
    return _user_by_name(username, tenant or DEFAULT_TENANT, provider)


def user_selector(command: Callable[..., None]) -> Callable[..., None]:
    """The two ways to name one user: USER_ID, or --username in --tenant (--provider
    when users of several providers share the name)."""
    decorators = [
        click.argument("user_id", required=False),
        click.option(
            "--username",
            help="Name the user by username instead of USER_ID (compared as sign-in does).",
        ),
        click.option("--tenant", help=f"The tenant of --username (default: {DEFAULT_TENANT})."),
        click.option(
            "--provider",
            help="The provider of --username ('local', or a jwt-bearer issuer) when users "
            "of several providers share the name.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _emit_user(user: User, as_json: bool) -> None:
    emit(user_record(user), as_json)


def _checked_profile(**fields: str | None) -> dict[str, str]:
    """The given fields, checked by the /users API's own rules."""
    from pydantic import ValidationError

    from idp.users.schemas import CreateUser

    given = {name: value for name, value in fields.items() if value is not None}
    try:
        CreateUser(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0])
        reason = error["msg"]
        if error["type"] == "string_pattern_mismatch":
            reason = (
                "must be an address like name@example.com"
                if field == "email"
                else "must not hold control characters or outer spaces"
            )
        raise IdpError(f"{_USER_OPTIONS.get(field, field)}: {reason}") from None
    return given


@users.command("create")
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True, help="The user's tenant.")
@click.option(
    "--username", required=True, help="Sign-in name, unique in the tenant (RFC 8265 compared)."
)
@click.option("--email", help="Email address.")
@click.option("--first-name", help="Given name (at most 200 characters).")
@click.option("--last-name", help="Family name (at most 200 characters).")
@click.option(
    "--client-user-id",
    help="Your own id for the user, unique among the users the operator created.",
)
@click.option("--scope", default="", help="Space-separated scopes the user may hold.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
def users_create(
    tenant: str,
    username: str,
    email: str | None,
    first_name: str | None,
    last_name: str | None,
    client_user_id: str | None,
    scope: str,
    password_stdin: bool,
    as_json: bool,
) -> None:
    """Add a user (without --password-stdin: one who cannot sign in with a password)."""
    _checked_profile(
        username=username,
        email=email,
        clientUserId=client_user_id,
        firstName=first_name,
        lastName=last_name,
    )
    password = _stdin_password() if password_stdin else None
    user = create_user(
        tenant,
        username,
        password,
        email,
        scope,
        client_user_id=client_user_id,
        first_name=first_name,
        last_name=last_name,
        actor=operator(),
    )
    db.session.commit()
    _emit_user(user, as_json)


@users.command("list")
@click.option("--tenant", help="Only this tenant's users (default: every tenant).")
@click.option("--username", help="Match the username as sign-in does (case, width).")
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="At most this many users: one page.",
)
@click.option("--after", metavar="CURSOR", help="The page after the one whose run printed CURSOR.")
@json_option
def users_list(
    tenant: str | None, username: str | None, limit: int, after: str | None, as_json: bool
) -> None:
    """Live users, oldest first, one page at a time. When more follow, stderr says so
    and names the next page's --after CURSOR; stdout stays the listing alone."""
    from idp.users import paging

    tenant_id = tenant_admin.require_tenant(tenant).id if tenant is not None else None
    bound_to = tenant_id if tenant_id is not None else EVERY_TENANT
    filters = {"username": username} if username is not None else {}
    key = runtime().server_secrets.get(paging.SECRET_NAME)
    try:
        position = paging.decode(key, bound_to, filters, after) if after is not None else None
    except paging.InvalidCursor as exc:
        raise IdpError(f"--after: {exc}") from None
    page = list_page(tenant_id, filters, limit, after=position)
    emit([user_record(u) for u in page.users], as_json)
    if page.next_position is not None:
        cursor = paging.encode(key, bound_to, filters, page.next_position)
        click.echo(
            f"idp: a page of {len(page.users)} of {page.total} users; the next: --after {cursor}",
            err=True,
        )


@users.command("show")
@user_selector
@json_option
def users_show(as_json: bool, **who: str | None) -> None:
    """Show the user USER_ID (or --username in --tenant): the /users API's record."""
    _emit_user(_select_user(**who), as_json)


@users.command("lock")
@user_selector
@json_option
def users_lock(as_json: bool, **who: str | None) -> None:
    """Lock the user: sign-in refused and its access tokens dead until unlocked."""
    _set_lock(_select_user(**who), True, as_json)


@users.command("unlock")
@user_selector
@json_option
def users_unlock(as_json: bool, **who: str | None) -> None:
    """Unlock the user and reset its bad-attempt counter."""
    _set_lock(_select_user(**who), False, as_json)


def _set_lock(user: User, locked: bool, as_json: bool) -> None:
    set_lock(user, locked, operator(), runtime().revoker)
    db.session.commit()
    _emit_user(user, as_json)


@users.command("delete")
@user_selector
@json_option
def users_delete(as_json: bool, **who: str | None) -> None:
    """Soft-delete the user and revoke all its tokens; prints the record with deletedAt."""
    user = _select_user(**who)
    delete_user(user, operator(), runtime().revoker)
    db.session.commit()
    _emit_user(user, as_json)


@users.command("revoke-tokens")
@user_selector
@json_option
def users_revoke_tokens(as_json: bool, **who: str | None) -> None:
    """Revoke every refresh token of the user and every access token issued so far."""
    revoked = revoke_sessions(_select_user(**who), operator(), runtime().revoker)
    db.session.commit()
    emit({"revoked": revoked}, as_json)


@users.command("reset-password")
@user_selector
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the new password from standard input (else asked twice on the terminal).",
)
@json_option
def users_reset_password(password_stdin: bool, as_json: bool, **who: str | None) -> None:
    """Set a new password and end the user's sessions."""
    user = _select_user(**who)
    password = _stdin_password() if password_stdin else _prompt_password()
    set_password(user, password, operator(), "password_reset", runtime().revoker)
    db.session.commit()
    _emit_user(user, as_json)
