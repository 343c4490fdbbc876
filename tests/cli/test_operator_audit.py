"""Every change an operator makes at the command line is one audit event naming its actor
(``cli`` and the OS account), and a successful command prints nothing on stderr.

The commands run as the real ``idp`` in its own process, one after the other on one
database, which is what an operator's session looks like.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

from flask import Flask
from joserfc.jwk import ECKey

from idp.models import AuditEvent, db
from tests.users.conftest import client_token

CLI = {"actor": "cli", "os_user": getpass.getuser()}
PASSWORD = "Correct-Horse-9\n"


class Trail:
    """The audit events recorded since the last look."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.seen = 0

    def new(self) -> list[AuditEvent]:
        with self.app.app_context():
            rows = list(
                db.session.query(AuditEvent)
                .filter(AuditEvent.id > self.seen)
                .order_by(AuditEvent.id)
            )
            db.session.expunge_all()
        if rows:
            self.seen = rows[-1].id
        return rows


def test_each_operator_action_leaves_one_event_and_a_quiet_stderr(
    app: Flask, run_idp: Any, tmp_path: Path
) -> None:
    trail = Trail(app)
    trail.new()
    jwks = tmp_path / "issuer-jwks.json"
    jwks.write_text(json.dumps({"keys": [ECKey.generate_key("P-256").as_dict(private=False)]}))
    found: dict[str, Any] = {}

    def act(event: str | None, *args: str, input: str | None = None) -> dict[str, Any]:
        result = run_idp(*args, "--json", input=input)
        assert result.returncode == 0, result.stderr
        # No log or audit line on a success; a rotation with nothing to do says so.
        assert result.stderr == "" or result.stderr.startswith("idp: nothing done:"), args
        events = trail.new()
        if event is None:  # nothing changed, so nothing to record
            assert events == [], [e.event for e in events]
        else:
            assert [e.event for e in events] == [event], args
            assert CLI.items() <= events[0].detail.items()
            assert events[0].request_id is None
        printed: Any = json.loads(result.stdout)
        return printed

    act(None, "init")  # the database is initialised already
    act("tenant_created", "tenants", "create", "acme")
    client = act(
        "client_created", "clients", "create", "--name", "c", "--auth-method", "client_secret_post"
    )["client_id"]
    act("client_secret_rotated", "clients", "rotate-secret", client)
    act("client_deleted", "clients", "delete", client)
    act("issuer_added", "issuers", "add", "--issuer", "https://i.example", "--jwks-file", str(jwks))
    act("issuer_removed", "issuers", "remove", "--issuer", "https://i.example")
    user = act(
        "user_created", "users", "create", "--username", "u", "--password-stdin", input=PASSWORD
    )
    found["user"] = user["userId"]
    act("user_locked", "users", "lock", found["user"])
    act("user_unlocked", "users", "unlock", "--username", "u")
    act(
        "password_reset",
        "users",
        "reset-password",
        found["user"],
        "--password-stdin",
        input=PASSWORD,
    )
    act("tokens_revoked", "users", "revoke-tokens", found["user"])
    act("user_deleted", "users", "delete", found["user"])
    act("key_generated", "keys", "generate")
    act(None, "keys", "rotate", "--if-older-than", "90d")
    act("keys_rotated", "keys", "rotate", "--force")
    act("keys_pruned", "keys", "prune", "--force")

    with app.app_context():
        by_name = {e.event: e for e in db.session.query(AuditEvent)}
        assert by_name["user_locked"].detail == CLI | {"reason": "cli"}
        assert by_name["client_secret_rotated"].client_id == client
        assert by_name["issuer_added"].detail == CLI | {
            "issuer": "https://i.example",
            "provision": False,
        }
        assert by_name["tenant_created"].tenant == "acme"


def test_a_change_through_the_api_names_the_client_and_the_request(app: Flask, http: Any) -> None:
    """The control beside the CLI's events: a client acting is the event's client_id, with
    the request's id, and no CLI actor."""
    from tests.oauth.helpers import make_user

    token = client_token(http, app, scope="user:update")
    alice = make_user(app, "alice")
    locked = http.post(
        f"/users/{alice}/lock",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "lock-1"},
    )
    assert locked.status_code == 200, locked.get_json()
    with app.app_context():
        event = db.session.query(AuditEvent).filter_by(event="user_locked").one()
        assert event.detail == {"reason": "api"}
        assert event.request_id == "lock-1" and event.client_id is not None
