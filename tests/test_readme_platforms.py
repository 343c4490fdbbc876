"""The README run as written against a live server, so it cannot rot: the worked example
from its first block to the token verifier, in one shell as a newcomer follows it, and
every shell block of the "Coming from another platform" guide, with bash and curl."""

from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from idp.models import db
from idp.registrations.issuers import IssuerSpec, add_issuer
from tests.conftest import ISSUER
from tests.oauth.helpers import (
    PASSWORD,
    assertion,
    assertion_form,
    client_key,
    make_user,
    register,
)

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MAKE_SERVE_ISSUER = "http://127.0.0.1:8000"
MAKE_SERVE_DATABASE = '"sqlite:///$CHECKOUT/instance/idp.sqlite3"'
GUIDE_TITLE = "## Coming from another platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DAUTH = "https://dauth.example.net"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end != -1 else None]


def walkthrough_script() -> str:
    """The worked example as one bash script, blocks in order: shell blocks as written,
    and each Python block saved under the file name on its first line, as the README
    asks the reader to do."""
    parts = []
    blocks = re.findall(r"```(sh|python)\n(.*?)```", section("## Worked example"), re.S)
    for language, body in blocks:
        if language == "python":
            name = re.match(r"# ([\w.-]+\.py): ", body)
            assert name, f"a Python block without its file name: {body[:60]!r}"
            parts.append(f"cat > {name.group(1)} <<'PYTHON'\n{body}PYTHON\n")
        else:
            parts.append(body)
    return "\n".join(parts)


def test_the_worked_example(app, idp_env, live_server, tmp_path: Path) -> None:
    """From a shell in a checkout to a verified token; what differs from `make serve` is
    only where the server and its database are."""
    env = {name: value for name, value in idp_env.items() if name != "IDP_ISSUER"}
    server = live_server(env, workers=1)  # its issuer is its own URL (idp serve --port)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(REPO / ".venv")
    script = walkthrough_script()
    assert MAKE_SERVE_ISSUER in script and MAKE_SERVE_DATABASE in script
    script = script.replace(MAKE_SERVE_ISSUER, server)
    script = script.replace(MAKE_SERVE_DATABASE, shlex.quote(idp_env["IDP_DATABASE_URL"]))
    scratch_parent = tmp_path / "tmp"
    scratch_parent.mkdir()
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=checkout,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(scratch_parent), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    [scratch] = scratch_parent.iterdir()
    # The secrets and the private key stay in the reader's own folder, not the checkout.
    assert stat.S_IMODE(scratch.stat().st_mode) == 0o700
    assert {p.name for p in checkout.iterdir()} == {".venv"}
    assert {"reporting.json", "client-private.jwk"} <= {p.name for p in scratch.iterdir()}

    secret_token, end = json.JSONDecoder().raw_decode(done.stdout)
    assert secret_token["scope"] == "accounts:read payments:read"
    assert secret_token["token_type"] == "Bearer"
    printed = done.stdout[end:].split()
    ledger_sync = json.loads((scratch / "ledger-sync.json").read_text())["client_id"]
    # get_token.py printed a token; verify_token.py accepted the next one, for its scope.
    assert printed[0].count(".") == 2
    assert printed[1:] == [ledger_sync, "accounts:read"]


def platform_blocks() -> dict[str, list[str]]:
    """Shell blocks by platform (the ### headings of the guide)."""
    blocks: dict[str, list[str]] = {}
    for platform in re.split(r"\n### ", section(GUIDE_TITLE))[1:]:
        name = platform.splitlines()[0].strip()
        blocks[name] = re.findall(r"```sh\n(.*?)```", platform, flags=re.DOTALL)
    return blocks


def run_block(block: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def server(idp_env, live_server) -> str:
    return live_server(idp_env | {"IDP_TOKEN_JSON_BODIES": "true"}, workers=1)


def test_the_guide_covers_each_platform() -> None:
    blocks = platform_blocks()
    assert set(blocks) == {"Moneyhub", "Open Bank Project (DAuth)", "MBanq", "wealthAPI"}
    assert all(len(found) == 1 and "curl" in found[0] for found in blocks.values()), blocks


def test_moneyhub(app, http, server) -> None:
    key = client_key()
    client_id, _ = register(app, key=key, scope="user:create user:self")
    token = http.post(
        "/oidc/token", data=assertion_form(assertion(key, client_id), scope="user:create")
    ).get_json()["access_token"]
    created = http.post(
        "/users", json={"clientUserId": "mh-1"}, headers={"Authorization": f"Bearer {token}"}
    )
    user_id = created.get_json()["userId"]
    env = {
        "IDP": server,
        "USER_ID": user_id,
        "CLIENT_ASSERTION": assertion(key, client_id, aud=ISSUER),
    }
    [block] = platform_blocks()["Moneyhub"]
    body = run_block(block, env)
    assert body["scope"] == "user:self" and "refresh_token" not in body
    me = http.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.get_json()["userId"] == user_id


def test_open_bank_project(app, http, server) -> None:
    issuer_key = client_key("RS256", kid="dauth")
    with app.app_context():
        jwks = {"keys": [issuer_key.as_dict(private=False)]}
        add_issuer(IssuerSpec("default", DAUTH, jwks=jwks, provision=True), True)
        db.session.commit()
    client_id, secret = register(
        app,
        auth_method="client_secret_basic",
        grant_types=[JWT_BEARER, "refresh_token"],
        scope="openid user:self",
    )
    address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    env = {
        "IDP": server,
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": secret,
        "DAUTH_ASSERTION": assertion(issuer_key, DAUTH, sub=address, aud=ISSUER),
    }
    [block] = platform_blocks()["Open Bank Project (DAuth)"]
    body = run_block(block, env)
    assert body["refresh_token"]
    me = http.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.get_json()["username"] == address and me.get_json()["provider"] == DAUTH


def _json_body_env(app, server: str, **fields: Any) -> dict[str, str]:
    make_user(app, "mbanq.user")
    client_id, secret = register(
        app,
        auth_method="client_secret_post",
        grant_types=["password", "refresh_token"],
        scope="openid offline_access user:self",
        **fields,
    )
    return {
        "IDP": server,
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": secret,
        "USERNAME": "mbanq.user",
        "PASSWORD": PASSWORD,
    }


def test_mbanq(app, server) -> None:
    [block] = platform_blocks()["MBanq"]
    body = run_block(block, _json_body_env(app, server))
    assert body["access_token"] and body["refresh_token"]


def test_wealthapi(app, server) -> None:
    [block] = platform_blocks()["wealthAPI"]
    body = run_block(block, _json_body_env(app, server, refresh_token_ttl=86400))
    assert body["scope"] == "openid offline_access" and body["id_token"]
    assert 86000 < body["refresh_token_expires_in"] <= 86400
