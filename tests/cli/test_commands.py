from __future__ import annotations

import hashlib
import json
from pathlib import Path

from joserfc.jwk import ECKey

from idp.models import Client, User, db


def run_json(run_idp, *args: str, input: str | None = None):
    result = run_idp(*args, "--json", input=input)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_init_is_idempotent_and_creates_default_tenant_and_two_keys(app, run_idp) -> None:
    first = run_json(run_idp, "init")
    second = run_json(run_idp, "init")
    assert first["keys"] == second["keys"]
    assert sorted(k["state"] for k in first["keys"]) == ["active", "next"]
    assert [t["name"] for t in run_json(run_idp, "tenants", "list")] == ["default"]


def test_tenants_create_and_list(app, run_idp) -> None:
    created = run_json(run_idp, "tenants", "create", "acme")
    assert created["name"] == "acme"
    assert {t["name"] for t in run_json(run_idp, "tenants", "list")} == {"default", "acme"}
    again = run_idp("tenants", "create", "acme")
    assert again.returncode != 0 and "already exists" in again.stderr


def test_secret_client_secret_is_shown_once_and_stored_hashed(app, run_idp) -> None:
    created = run_json(
        run_idp,
        "clients", "create", "--name", "backend", "--auth-method", "client_secret_basic",
        "--grant-types", "client_credentials,password", "--scope", "user:create user:read",
        "--access-token-ttl", "600",
    )  # fmt: skip
    secret = created["client_secret"]
    assert len(secret) >= 43  # 32 random bytes, base64url
    assert created["grant_types"] == ["client_credentials", "password"]
    assert created["scope"] == "user:create user:read"
    assert created["access_token_ttl"] == 600
    shown = run_json(run_idp, "clients", "show", created["client_id"])
    assert "client_secret" not in shown and shown["name"] == "backend"
    listed = run_json(run_idp, "clients", "list")
    assert [c["client_id"] for c in listed] == [created["client_id"]]
    assert "client_secret" not in listed[0]
    with app.app_context():
        stored = db.session.get(Client, created["client_id"])
        assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in json.dumps(shown)
        assert stored.check_secret(secret) and not stored.check_secret(secret + "x")


def test_rotate_secret_replaces_the_old_secret(app, run_idp) -> None:
    created = run_json(
        run_idp, "clients", "create", "--name", "b", "--auth-method", "client_secret_post"
    )
    rotated = run_json(run_idp, "clients", "rotate-secret", created["client_id"])
    assert rotated["client_secret"] != created["client_secret"]
    with app.app_context():
        stored = db.session.get(Client, created["client_id"])
        assert stored.check_secret(rotated["client_secret"])
        assert not stored.check_secret(created["client_secret"])


def test_private_key_jwt_client_with_jwks_file(app, run_idp, tmp_path: Path) -> None:
    public = ECKey.generate_key("P-256", auto_kid=True).as_dict(private=False)
    jwks_file = tmp_path / "client-jwks.json"
    jwks_file.write_text(json.dumps({"keys": [public]}))
    created = run_json(
        run_idp, "clients", "create", "--name", "svc", "--auth-method", "private_key_jwt",
        "--jwks-file", str(jwks_file), "--scope", "user:create",
    )  # fmt: skip
    assert "client_secret" not in created
    assert created["jwks"] == {"keys": [public]}


def test_client_create_refusals_are_one_clear_line(app, run_idp, tmp_path: Path) -> None:
    private = ECKey.generate_key("P-256").as_dict(private=True)
    private_file = tmp_path / "private.json"
    private_file.write_text(json.dumps({"keys": [private]}))
    cases = [
        (["--auth-method", "private_key_jwt"], "needs exactly one of --jwks-file and --jwks-uri"),
        (
            ["--auth-method", "private_key_jwt", "--jwks-file", str(private_file)],
            "public keys only",
        ),
        (
            ["--auth-method", "private_key_jwt", "--jwks-uri", "http://keys.example/jwks"],
            "must be an https:// URL",
        ),
        (["--auth-method", "client_secret_basic", "--grant-types", "implicit"], "grant types"),
        (["--auth-method", "client_secret_basic", "--tenant", "nope"], "no tenant named 'nope'"),
    ]
    for extra, message in cases:
        result = run_idp("clients", "create", "--name", "x", *extra)
        assert result.returncode != 0
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert run_json(run_idp, "clients", "list") == []


def test_clients_delete(app, run_idp) -> None:
    created = run_json(
        run_idp, "clients", "create", "--name", "gone", "--auth-method", "client_secret_basic"
    )
    assert run_json(run_idp, "clients", "delete", created["client_id"])["deleted"] is True
    missing = run_idp("clients", "show", created["client_id"])
    assert missing.returncode != 0 and "no client with id" in missing.stderr


def test_users_create_reads_the_password_from_stdin(app, run_idp) -> None:
    user = run_json(
        run_idp, "users", "create", "--username", "alice", "--email", "alice@example.com",
        "--scope", "user:self", "--password-stdin", input="Correct-horse-9\n",
    )  # fmt: skip
    assert user["username"] == "alice" and user["tenant"] == "default"
    assert user["scopes"] == ["user:self"] and user["locked"] is False
    with app.app_context():
        stored = db.session.get(User, user["userId"])
        assert stored.password_hash.startswith("$argon2id$")
        assert "Correct-horse-9" not in stored.password_hash
    weak = run_idp("users", "create", "--username", "bob", "--password-stdin", input="short\n")
    assert weak.returncode != 0 and "password must be" in weak.stderr


def test_keys_commands_and_their_refusals(app, run_idp) -> None:
    listed = run_json(run_idp, "keys", "list")
    assert sorted(k["state"] for k in listed) == ["active", "next"]
    refused = run_idp("keys", "rotate")
    assert refused.returncode != 0
    assert "IDP_JWKS_MAX_AGE" in refused.stderr and "--force" in refused.stderr
    generated = run_json(run_idp, "keys", "generate")
    assert generated["state"] == "next"

    rotated = run_json(run_idp, "keys", "rotate", "--force")
    old_active = next(k["kid"] for k in listed if k["state"] == "active")
    old_next = next(k["kid"] for k in listed if k["state"] == "next")
    assert next(k["kid"] for k in rotated if k["state"] == "active") == old_next
    assert next(k["kid"] for k in rotated if k["state"] == "retired") == old_active
    # The oldest next key was promoted; the generated one waits, so none was added.
    assert [k["kid"] for k in rotated if k["state"] == "next"] == [generated["kid"]]

    prune = run_idp("keys", "prune")
    assert prune.returncode != 0
    assert old_active in prune.stderr and "--force" in prune.stderr
    assert len(run_json(run_idp, "keys", "list")) == 3
    forced = run_json(run_idp, "keys", "prune", "--force")
    assert [k["kid"] for k in forced] == [old_active]
    assert len(run_json(run_idp, "keys", "list")) == 2


def test_client_ids_never_look_like_an_option() -> None:
    """A generated id starting with '-' would be read as an option by every command
    taking an id, e.g. ``idp clients delete ID``."""
    from idp.models.base import new_client_id

    ids = [new_client_id() for _ in range(5000)]  # ~1 in 64 would start with '-'
    assert not any(client_id.startswith("-") for client_id in ids)
    assert len(set(ids)) == len(ids) and all(len(client_id) == 22 for client_id in ids)
