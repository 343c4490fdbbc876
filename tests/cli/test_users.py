"""The ``idp users`` commands: the operator's side of the /users API.

Each command runs with ``--json`` (through Flask's CLI runner, and the ones an operator
runs most also as the installed console script in its own process), and its effect is
checked where it matters: at the token endpoint and the users API, with real tokens.
"""

from __future__ import annotations

import getpass
import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

from idp.cli import cli
from idp.models import AuditEvent, User, db, utcnow
from idp.models.base import new_uuid
from idp.users.usernames import username_key
from tests.conftest import CliResult, run_cli
from tests.oauth.helpers import PASSWORD, bearer, login, make_user, password_client, refresh
from tests.users.conftest import client_token

USER_SCOPES = "openid user:self"
# Who an event made at the command line names as its actor.
CLI = {"actor": "cli", "os_user": getpass.getuser()}
NEW_PASSWORD = "Another-Horse-7"


def invoke(app: Flask, *args: str, input: str | None = None) -> Result:
    return app.test_cli_runner().invoke(cli, list(args), input=input)


def invoke_json(app: Flask, *args: str, input: str | None = None) -> Any:
    result = invoke(app, *args, "--json", input=input)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def script_json(run: Any, *args: str, input: str | None = None) -> Any:
    result = run(*args, "--json", input=input)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result: CliResult, message: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.fixture
def idp_script(idp_env: dict[str, str], tmp_path: Path) -> Any:
    """The installed ``idp`` console script, run as an operator would from any folder."""
    script = Path(sys.executable).with_name("idp")
    if not script.exists():
        pytest.skip("no idp console script beside the interpreter")

    def run(*args: str, input: str | None = None) -> CliResult:
        return run_cli([str(script)], idp_env, tmp_path, *args, input=input)

    return run


@pytest.fixture
def client(app: Flask) -> tuple[str, str]:
    return password_client(app, scope="openid profile email user:self offline_access")


@pytest.fixture
def admin(http: Any, app: Flask) -> dict[str, str]:
    return bearer(client_token(http, app))


@pytest.fixture
def alice(app: Flask) -> str:
    return make_user(app, "alice")


@pytest.fixture
def bob(app: Flask) -> str:
    return make_user(app, "bob")


def sign_in(http: Any, client: tuple[str, str], username: str = "alice", **extra: str) -> Any:
    response = login(http, client, username=username, scope=USER_SCOPES, **extra)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def assert_refused(response: Any) -> None:
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_grant"


def me_status(http: Any, access_token: str) -> int:
    return http.get("/users/me", headers=bearer(access_token)).status_code


def events(app: Flask, user_id: str, *names: str) -> list[tuple[str, str | None, str | None, Any]]:
    """The user's audit events of the given names, oldest first."""
    with app.app_context():
        rows = (
            db.session.query(AuditEvent)
            .filter(AuditEvent.user_id == user_id, AuditEvent.event.in_(names))
            .order_by(AuditEvent.id)
        )
        return [(e.event, e.tenant, e.client_id, e.detail) for e in rows]


def test_list_defaults_to_every_tenant_and_filters(app: Flask, alice: str, run_idp: Any) -> None:
    invoke_json(app, "tenants", "create", "acme")
    carol = make_user(app, "carol", tenant="acme")
    listed = invoke_json(app, "users", "list")
    assert [(u["userId"], u["tenant"]) for u in listed] == [(alice, "default"), (carol, "acme")]
    assert [u["userId"] for u in invoke_json(app, "users", "list", "--tenant", "acme")] == [carol]
    assert [u["userId"] for u in invoke_json(app, "users", "list", "--tenant", "default")] == [
        alice
    ]
    # Usernames match as sign-in compares them; one tenant's name is not another's.
    assert [u["userId"] for u in invoke_json(app, "users", "list", "--username", "ALICE")] == [
        alice
    ]
    assert invoke_json(app, "users", "list", "--tenant", "acme", "--username", "alice") == []
    # In its own process: an unknown tenant is one clear line, a listing a JSON array.
    assert_one_line_error(run_idp("users", "list", "--tenant", "nope"), "no tenant named 'nope'")
    assert [u["userId"] for u in script_json(run_idp, "users", "list", "--tenant", "acme")] == [
        carol
    ]


def test_show_prints_the_api_record_and_an_unknown_id_fails(
    app: Flask, http: Any, admin: dict[str, str], alice: str, run_idp: Any
) -> None:
    shown = invoke_json(app, "users", "show", alice)
    assert shown == http.get(f"/users/{alice}", headers=admin).get_json()
    assert shown["userId"] == alice and shown["username"] == "alice"
    assert shown["locked"] is False and shown["deletedAt"] is None
    plain = invoke(app, "users", "show", alice)
    assert plain.exit_code == 0 and f"userId={alice}" in plain.stdout
    for unknown in (str(uuid.uuid4()), "not-a-user-id"):
        assert_one_line_error(run_idp("users", "show", unknown), f"no user with id {unknown!r}")


@pytest.mark.parametrize(
    "command", ["show", "lock", "unlock", "delete", "revoke-tokens", "reset-password"]
)
def test_every_command_refuses_an_unknown_id(app: Flask, command: str) -> None:
    unknown = str(uuid.uuid4())
    extra = ["--password-stdin"] if command == "reset-password" else []
    result = invoke(app, "users", command, unknown, *extra, "--json", input=f"{NEW_PASSWORD}\n")
    assert result.exit_code != 0 and result.stdout == ""
    assert str(result.exception) == f"no user with id {unknown!r}"


def test_lock_refuses_login_and_kills_live_tokens_unlock_lets_login_again(
    app: Flask, http: Any, admin: dict[str, str], client: Any, alice: str, bob: str, idp_script: Any
) -> None:
    session = sign_in(http, client)
    bob_token = sign_in(http, client, "bob")["access_token"]
    assert me_status(http, session["access_token"]) == 200

    locked = script_json(idp_script, "users", "lock", alice)
    assert locked["userId"] == alice and locked["locked"] is True
    assert http.get(f"/users/{alice}/lock-status", headers=admin).get_json()["locked"] is True
    assert_refused(login(http, client, scope=USER_SCOPES))
    assert me_status(http, session["access_token"]) == 401
    assert_refused(refresh(http, client, session["refresh_token"]))
    assert me_status(http, bob_token) == 200  # positive control: another user lives on
    # The operator acted, not a client: the event names the CLI and the OS account.
    assert events(app, alice, "user_locked") == [
        ("user_locked", "default", None, CLI | {"reason": "cli"})
    ]

    unlocked = invoke_json(app, "users", "unlock", alice)
    assert unlocked["locked"] is False
    assert events(app, alice, "user_unlocked") == [
        ("user_unlocked", "default", None, CLI | {"reason": "cli"})
    ]
    assert me_status(http, sign_in(http, client)["access_token"]) == 200
    assert me_status(http, session["access_token"]) == 401  # an unlock revives nothing


def test_unlock_lifts_a_bad_password_lock(app: Flask, http: Any, client: Any, alice: str) -> None:
    for _ in range(5):
        assert_refused(login(http, client, password="Wrong-Password-1"))
    assert_refused(login(http, client))
    assert invoke_json(app, "users", "show", alice)["locked"] is True
    assert invoke_json(app, "users", "unlock", alice)["locked"] is False
    sign_in(http, client)


def test_delete_soft_deletes_and_kills_the_users_tokens(
    app: Flask, http: Any, admin: dict[str, str], client: Any, alice: str, bob: str
) -> None:
    session = sign_in(http, client)
    bob_session = sign_in(http, client, "bob")
    deleted = invoke_json(app, "users", "delete", alice)
    assert deleted["userId"] == alice and deleted["deletedAt"] is not None
    assert http.get(f"/users/{alice}", headers=admin).status_code == 404
    assert_refused(refresh(http, client, session["refresh_token"]))
    assert me_status(http, session["access_token"]) == 401
    assert_refused(login(http, client, scope=USER_SCOPES))
    assert events(app, alice, "user_deleted") == [
        ("user_deleted", "default", None, CLI | {"revoked": 1})
    ]
    # The user is gone for the CLI too; bob is untouched.
    assert str(invoke(app, "users", "show", alice).exception) == f"no user with id {alice!r}"
    assert [u["userId"] for u in invoke_json(app, "users", "list")] == [bob]
    assert refresh(http, client, bob_session["refresh_token"]).status_code == 200


def test_revoke_tokens_counts_and_kills_every_session_of_the_user(
    app: Flask, http: Any, client: Any, alice: str, bob: str, run_idp: Any
) -> None:
    first, second = sign_in(http, client), sign_in(http, client)
    bob_session = sign_in(http, client, "bob")
    assert script_json(run_idp, "users", "revoke-tokens", alice) == {"revoked": 2}
    for session in (first, second):
        assert_refused(refresh(http, client, session["refresh_token"]))
        assert me_status(http, session["access_token"]) == 401
    assert events(app, alice, "tokens_revoked")[0] == (
        "tokens_revoked",
        "default",
        None,
        CLI | {"revoked": 2},
    )
    assert invoke_json(app, "users", "revoke-tokens", alice) == {"revoked": 0}
    # Positive controls: bob's session lives, and alice may sign in again.
    assert refresh(http, client, bob_session["refresh_token"]).status_code == 200
    assert me_status(http, sign_in(http, client)["access_token"]) == 200


def test_reset_password_replaces_the_password_and_ends_sessions(
    app: Flask, http: Any, client: Any, alice: str
) -> None:
    session = sign_in(http, client)
    reset = invoke_json(
        app, "users", "reset-password", alice, "--password-stdin", input=f"{NEW_PASSWORD}\n"
    )
    assert reset["userId"] == alice and "password" not in json.dumps(reset).lower()
    assert_refused(login(http, client, scope=USER_SCOPES))
    assert_refused(refresh(http, client, session["refresh_token"]))
    assert me_status(http, session["access_token"]) == 401
    assert me_status(http, sign_in(http, client, password=NEW_PASSWORD)["access_token"]) == 200
    assert events(app, alice, "password_reset") == [
        ("password_reset", "default", None, CLI | {"revoked": 1})
    ]


def test_reset_password_refuses_a_weak_password_and_changes_nothing(
    app: Flask, http: Any, client: Any, alice: str, run_idp: Any
) -> None:
    session = sign_in(http, client)
    with app.app_context():
        before = db.session.get(User, alice).password_hash
    weak = run_idp("users", "reset-password", alice, "--password-stdin", "--json", input="short\n")
    assert_one_line_error(weak, "password must be")
    # Without --password-stdin the password is asked on a terminal, and a pipe is none.
    missing = run_idp("users", "reset-password", alice, "--json", input=f"{NEW_PASSWORD}\n")
    assert_one_line_error(missing, "no terminal to ask for the new password")
    assert "--password-stdin" in missing.stderr
    empty = run_idp("users", "reset-password", alice, "--password-stdin", input="\n")
    assert_one_line_error(empty, "standard input held no password")
    with app.app_context():
        assert db.session.get(User, alice).password_hash == before
    assert events(app, alice, "password_reset") == []
    assert me_status(http, session["access_token"]) == 200
    assert refresh(http, client, session["refresh_token"]).status_code == 200
    sign_in(http, client, password=PASSWORD)
    assert_refused(login(http, client, password=NEW_PASSWORD, scope=USER_SCOPES))


def test_create_takes_the_profile_fields_by_the_apis_rules(
    app: Flask, http: Any, admin: dict[str, str]
) -> None:
    created = invoke_json(
        app, "users", "create", "--username", "dora", "--first-name", "Dora",
        "--last-name", "Explorer", "--client-user-id", "crm-42", "--email", "dora@example.com",
    )  # fmt: skip
    assert (created["firstName"], created["lastName"]) == ("Dora", "Explorer")
    assert created["clientUserId"] == "crm-42" and created["provider"] == "local"
    assert http.get(f"/users/{created['userId']}", headers=admin).get_json() == created
    refusals = [
        (["--username", "eve", "--client-user-id", "crm-42"], "already exists"),
        (["--username", "eve", "--first-name", "E" * 201], "--first-name: "),
        (["--username", "eve", "--last-name", "a\x07b"], "--last-name: must not hold control"),
        (["--username", "eve", "--email", "not an address"], "--email: must be an address"),
    ]
    for extra, message in refusals:
        result = invoke(app, "users", "create", *extra)
        assert result.exit_code != 0 and message in str(result.exception), extra
    assert [u["username"] for u in invoke_json(app, "users", "list")] == ["dora"]


DAUTH = "https://dauth.example.net"


def linked_user(app: Flask, username: str) -> str:
    """A jwt-bearer user of DAUTH in the default tenant, as a provisioning makes one."""
    from idp.registrations.tenants import require_tenant

    with app.app_context():
        now = utcnow()
        user = User(
            id=new_uuid(),
            tenant=require_tenant("default"),
            provider=DAUTH,
            subject=f"sub-{username}",
            username=username,
            username_key=username_key(username),
            scopes=[],
            created_at=now,
            updated_at=now,
        )
        db.session.add(user)
        db.session.commit()
        return user.id


def test_a_user_is_named_by_username_in_a_tenant_and_provider(app: Flask, alice: str) -> None:
    invoke_json(app, "tenants", "create", "acme")
    acme_alice = make_user(app, "alice", tenant="acme")
    dauth_alice = linked_user(app, "alice")
    # The same name at two providers of one tenant: the operator must say which.
    ambiguous = invoke(app, "users", "show", "--username", "ALICE")
    assert ambiguous.exit_code != 0
    assert str(ambiguous.exception) == (
        "users of several providers are named 'ALICE' in tenant 'default' "
        "(https://dauth.example.net, local): pass --provider"
    )
    shown = invoke_json(app, "users", "show", "--username", "ALICE", "--provider", "local")
    assert shown["userId"] == alice
    linked = invoke_json(app, "users", "show", "--username", "alice", "--provider", DAUTH)
    assert linked["userId"] == dauth_alice
    # In another tenant the name is another user's; locking it leaves the others be.
    locked = invoke_json(app, "users", "lock", "--username", "alice", "--tenant", "acme")
    assert locked["userId"] == acme_alice and locked["locked"] is True
    assert invoke_json(app, "users", "show", alice)["locked"] is False
    unlocked = invoke_json(app, "users", "unlock", "--username", "Alice", "--tenant", "acme")
    assert unlocked["userId"] == acme_alice and unlocked["locked"] is False
    refusals = [
        ([alice, "--username", "alice"], "name the user by USER_ID or by --username, not both"),
        (
            [alice, "--tenant", "acme"],
            "--tenant and --provider go with --username, not with USER_ID",
        ),
        ([], "name the user: USER_ID, or --username (with --tenant)"),
        (["--username", "zoe"], "no user named 'zoe' in tenant 'default'"),
        (["--username", "alice", "--tenant", "nope"], "no tenant named 'nope'"),
    ]
    for args, message in refusals:
        result = invoke(app, "users", "lock", *args)
        assert result.exit_code != 0 and str(result.exception) == message, args
    assert invoke_json(app, "users", "show", alice)["locked"] is False


def test_list_says_when_it_shows_a_page_and_where_the_next_starts(app: Flask) -> None:
    made = [make_user(app, name) for name in ("ann", "ben", "cat")]
    first = invoke(app, "users", "list", "--limit", "2", "--json")
    assert first.exit_code == 0
    assert [u["userId"] for u in json.loads(first.stdout)] == made[:2]
    note, _, cursor = first.stderr.strip().partition("; the next: --after ")
    assert note == "idp: a page of 2 of 3 users" and cursor
    last = invoke(app, "users", "list", "--limit", "2", "--after", cursor, "--json")
    assert [u["userId"] for u in json.loads(last.stdout)] == made[2:]
    assert last.stderr == ""  # the last page: nothing more to say
    everything = invoke(app, "users", "list")
    assert len(everything.stdout.splitlines()) == 3 and everything.stderr == ""
    # A cursor belongs to its listing: not another tenant's, not altered.
    other = invoke(app, "users", "list", "--tenant", "default", "--after", cursor)
    assert other.exit_code != 0 and "--after: the cursor does not belong" in str(other.exception)
    forged = invoke(app, "users", "list", "--limit", "2", "--after", cursor[:-2] + "AA")
    assert forged.exit_code != 0 and "--after" in str(forged.exception)


PROMPTS = (b"New password: ", b"Repeat for confirmation: ")


def _read_prompts(fd: int, buffer: bytearray, count: int) -> None:
    """Read until the terminal has shown ``count`` prompts: an answer written before its
    prompt would be flushed away as the prompt turns echo off."""
    deadline = time.monotonic() + 60
    while sum(buffer.count(prompt) for prompt in PROMPTS) < count:
        assert time.monotonic() < deadline, bytes(buffer)
        if select.select([fd], [], [], 1)[0]:
            buffer.extend(os.read(fd, 1024))


def test_reset_password_asks_twice_on_a_terminal(
    app: Flask, http: Any, client: Any, alice: str, idp_env: dict[str, str], tmp_path: Path
) -> None:
    """A mistyped confirmation asks again; what is typed is never echoed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")} | idp_env
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "idp", "users", "reset-password", alice],
        stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=tmp_path,
    )  # fmt: skip
    os.close(terminal)
    shown = bytearray()
    try:
        answers = ("Typo-Horse-77", "Other-Horse-88", NEW_PASSWORD, NEW_PASSWORD)
        for count, answer in enumerate(answers, start=1):
            _read_prompts(controller, shown, count)
            os.write(controller, answer.encode() + b"\n")
        assert process.wait(timeout=60) == 0, bytes(shown)
        while select.select([controller], [], [], 0.5)[0]:
            try:
                shown.extend(os.read(controller, 1024))
            except OSError:  # the terminal closed with the process
                break
    finally:
        os.close(controller)
        process.kill()
    text = shown.decode()
    assert text.count("New password: ") == 2 and text.count("Repeat for confirmation: ") == 2
    assert "do not match" in text
    assert "Horse" not in text  # hidden input
    assert f"userId={alice}" in text
    sign_in(http, client, password=NEW_PASSWORD)
    assert_refused(login(http, client, scope=USER_SCOPES))  # the old password is gone
