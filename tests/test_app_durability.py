"""A 2xx means the write is durable: every worker of a real two-worker server and a fresh
process see it, and it is still there once the server has stopped.

The fault this guards against: on SQLite in WAL mode, a worker that lost its file locks
(idp.app once opened and closed the database file beside live connections) went on
committing into a write-ahead log another process had deleted; its answers were 201 and
nothing was stored. Every kind of write is made here between fresh-process reads, which
are what removed the log, and each is read back over fresh connections (each may land on
either worker) and by a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt as pyjwt
import requests
from joserfc.jwk import Key

from idp.models import db
from tests.conftest import run_cli
from tests.oauth.helpers import ASSERTION_TYPE, PASSWORD, assertion, client_key

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ISSUER_URL = "https://dauth.durability.example"
READS_PER_CHECK = 6  # fresh connections per check, spread over both workers
NEW_PASSWORD = "Another-Horse-42"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh process: what the database holds, read through the app's own models.
DUMP_SCRIPT = """
import json, sys
from sqlalchemy import select
from idp.app import create_app
from idp.models import AuditEvent, User, db
app = create_app(web=False)
with app.app_context():
    users = {
        u.id: {"email": u.email, "locked": u.locked, "deleted": u.deleted_at is not None}
        for u in db.session.scalars(select(User))
    }
    events = [[e.event, e.user_id] for e in db.session.scalars(select(AuditEvent))]
json.dump({"users": users, "events": events}, sys.stdout)
"""


class Scenario:
    """A live two-worker server and the ways to read its state back."""

    def __init__(self, base_url: str, idp_env: dict[str, str], cwd: Path) -> None:
        self.base_url = base_url
        self.idp_env = idp_env
        self.cwd = cwd

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        # A fresh connection per request: the next one may be accepted by the other worker.
        headers = {"Connection": "close", **kwargs.pop("headers", {})}
        return requests.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)

    def everywhere(self, read: Callable[[], Any], expected: Any, what: str) -> None:
        """``read`` answers ``expected`` on every one of several fresh connections, sent in
        pairs at once so that both workers take some."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(pool.map(lambda _: read(), range(READS_PER_CHECK)))
        assert answers == [expected] * READS_PER_CHECK, f"{what}: {answers}"

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = run_cli([sys.executable, "-m", "idp"], self.idp_env, self.cwd, *args, input=stdin)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def stored(self) -> dict[str, Any]:
        """The database as a process that has never talked to the server reads it."""
        done = subprocess.run(
            [sys.executable, "-c", DUMP_SCRIPT],
            env=_clean_environ() | self.idp_env | {"PYTHONPATH": str(REPO_ROOT)},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}


def _status(response: requests.Response) -> int:
    return response.status_code


def test_every_write_is_seen_by_both_workers_and_a_fresh_process(
    app, idp_env, live_server, tmp_path
) -> None:
    with app.app_context():  # the emptied database and keys are ready; hold no connection
        db.session.remove()
        db.engine.dispose()
    s = Scenario(live_server(idp_env, workers=2), idp_env, tmp_path)

    # -- operator writes (CLI), seen by the workers ------------------------------------
    manager_key = client_key()
    (tmp_path / "manager.json").write_text(
        json.dumps({"keys": [manager_key.as_dict(private=False)]})
    )
    manager = json.loads(
        s.cli(
            "clients", "create", "--name", "manager", "--auth-method", "private_key_jwt",
            "--jwks-file", str(tmp_path / "manager.json"),
            "--scope", "user:create user:read user:update user:delete", "--json",
        )
    )  # fmt: skip
    app_client = json.loads(
        s.cli(
            "clients", "create", "--name", "app", "--auth-method", "client_secret_basic",
            "--grant-types", f"password,refresh_token,{JWT_BEARER}",
            "--scope", "openid user:self", "--json",
        )
    )  # fmt: skip
    issuer_key = client_key()
    (tmp_path / "issuer.json").write_text(json.dumps({"keys": [issuer_key.as_dict(private=False)]}))
    s.cli(
        "issuers", "add", "--issuer", ISSUER_URL, "--jwks-file", str(tmp_path / "issuer.json"),
        "--provision", "--scope", "openid user:self",
    )  # fmt: skip
    basic = (app_client["client_id"], app_client["client_secret"])

    def manager_token() -> str:
        signed = assertion(manager_key, manager["client_id"])
        response = s.request(
            "POST",
            "/oidc/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": signed,
            },
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    admin = {"Authorization": f"Bearer {manager_token()}"}
    s.everywhere(lambda: _status(s.request("POST", "/oidc/token", auth=basic)), 400, "app client")

    # -- jwt-bearer provisioning, then a fresh process reads --------------------------
    provisioned = [_provision(s, basic, issuer_key, f"subject-{n}") for n in range(4)]
    s.cli("users", "list", "--json")
    for user_id in provisioned:
        s.everywhere(
            lambda u=user_id: _status(s.request("GET", f"/users/{u}", headers=admin)),
            200,
            "provisioned user",
        )

    # -- each /users write -------------------------------------------------------------
    created = []
    for n in range(4):
        response = s.request(
            "POST", "/users", headers=admin, json={"username": f"user{n}", "password": PASSWORD}
        )
        assert response.status_code == 201, response.text
        created.append(response.json()["userId"])
        s.cli("audit", "list", "--limit", "1")  # a fresh process between writes
    for user_id in created:
        s.everywhere(
            lambda u=user_id: _status(s.request("GET", f"/users/{u}", headers=admin)),
            200,
            "created user",
        )
    alice, bob, carol, dave = created

    def user_field(user_id: str, field: str) -> Any:
        return s.request("GET", f"/users/{user_id}", headers=admin).json()[field]

    patched = s.request("PATCH", f"/users/{alice}", headers=admin, json={"email": "a@example.com"})
    assert patched.status_code == 200, patched.text
    s.everywhere(lambda: user_field(alice, "email"), "a@example.com", "patched email")

    attribute = s.request(
        "POST",
        f"/users/{alice}/attributes",
        headers=admin,
        json={"name": "tier", "type": "STRING", "value": "gold"},
    )
    assert attribute.status_code == 201, attribute.text

    def attribute_names() -> list[str]:
        listed = s.request("GET", f"/users/{alice}/attributes", headers=admin).json()
        return [a["name"] for a in listed["attributes"]]

    s.everywhere(attribute_names, ["tier"], "attribute")
    attribute_id = attribute.json()["attributeId"]
    changed = s.request(
        "PUT",
        f"/users/{alice}/attributes/{attribute_id}",
        headers=admin,
        json={"value": "platinum"},
    )
    assert changed.status_code == 200, changed.text

    def attribute_values() -> list[str]:
        listed = s.request("GET", f"/users/{alice}/attributes", headers=admin).json()
        return [a["value"] for a in listed["attributes"]]

    s.everywhere(attribute_values, ["platinum"], "attribute value")

    # -- password grant: refusals are remembered, a success resets ----------------------
    def bad_attempts(user_id: str) -> int:
        status = s.request("GET", f"/users/{user_id}/lock-status", headers=admin).json()
        return status["badAttemptsSinceLastSuccessOrReset"]

    for _ in range(2):
        refused = _password_grant(s, basic, "user1", "Wrong-Horse-000")
        assert refused.status_code == 400
    s.everywhere(lambda: bad_attempts(bob), 2, "counted bad passwords")
    signed_in = _password_grant(s, basic, "user1", PASSWORD)
    assert signed_in.status_code == 200, signed_in.text
    s.everywhere(lambda: bad_attempts(bob), 0, "reset counter")

    # -- refresh rotation: each use must find the previous one's write ------------------
    refresh_token = signed_in.json()["refresh_token"]
    for _ in range(4):
        rotated = s.request(
            "POST",
            "/oidc/token",
            auth=basic,
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        assert rotated.status_code == 200, rotated.text
        refresh_token = rotated.json()["refresh_token"]

    revoked = s.request("POST", f"/users/{bob}/revoke-tokens", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked"] >= 1, revoked.text
    refused = s.request(
        "POST",
        "/oidc/token",
        auth=basic,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"

    # -- lock, unlock, password reset, delete -------------------------------------------
    assert s.request("POST", f"/users/{carol}/lock", headers=admin).status_code == 200
    s.everywhere(lambda: user_field(carol, "locked"), True, "API lock")
    assert s.request("POST", f"/users/{carol}/unlock", headers=admin).status_code == 200
    s.everywhere(lambda: user_field(carol, "locked"), False, "API unlock")
    reset = s.request(
        "PUT", f"/users/{carol}/password", headers=admin, json={"newPassword": NEW_PASSWORD}
    )
    assert reset.status_code == 204, reset.text
    s.everywhere(
        lambda: _status(_password_grant(s, basic, "user2", NEW_PASSWORD)), 200, "new password"
    )
    assert s.request("DELETE", f"/users/{dave}", headers=admin).status_code == 204
    s.everywhere(
        lambda: _status(s.request("GET", f"/users/{dave}", headers=admin)), 404, "deleted user"
    )

    # -- CLI user writes, seen by the workers --------------------------------------------
    from_cli = json.loads(
        s.cli("users", "create", "--username", "erin", "--password-stdin", "--json", stdin=PASSWORD)
    )["userId"]
    s.everywhere(
        lambda: _status(s.request("GET", f"/users/{from_cli}", headers=admin)), 200, "CLI user"
    )
    s.cli("users", "lock", from_cli)
    s.everywhere(lambda: user_field(from_cli, "locked"), True, "CLI lock")

    # -- after the server stops, everything answered 2xx is stored ----------------------
    for server in live_server.servers:
        server.stop()
    stored = s.stored()
    users = stored["users"]
    for user_id in [*provisioned, *created, from_cli]:
        assert user_id in users, f"user {user_id} answered 2xx and is not stored"
    assert users[alice]["email"] == "a@example.com"
    assert users[dave]["deleted"] is True
    assert users[from_cli]["locked"] is True
    events = {tuple(event) for event in stored["events"]}
    for user_id in provisioned:
        assert ("user_provisioned", user_id) in events
    for user_id in created:
        assert ("user_created", user_id) in events
    assert ("login_success", bob) in events
    assert ("user_deleted", dave) in events


def _provision(s: Scenario, basic: tuple[str, str], key: Key, subject: str) -> str:
    signed = assertion(
        key, ISSUER_URL, iss=ISSUER_URL, sub=subject, aud=s.idp_env["IDP_ISSUER"],
        preferred_username=f"dauth-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    response = s.request(
        "POST", "/oidc/token", auth=basic, data={"grant_type": JWT_BEARER, "assertion": signed}
    )
    assert response.status_code == 200, response.text
    # The signature is not what this test checks: the claims are read unverified.
    claims = pyjwt.decode(response.json()["access_token"], options={"verify_signature": False})
    return str(claims["sub"])


def _password_grant(
    s: Scenario, basic: tuple[str, str], username: str, password: str
) -> requests.Response:
    return s.request(
        "POST",
        "/oidc/token",
        auth=basic,
        data={"grant_type": "password", "username": username, "password": password},
    )
