"""The README's "Coming from another platform" guide, run as written: every shell block of
each platform's section is executed with bash and curl against a live server, so the
guide cannot rot."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from idp.admin.issuers import IssuerSpec, add_issuer
from idp.models import db
from tests.conftest import ISSUER
from tests.oauth.helpers import (
    PASSWORD,
    assertion,
    assertion_form,
    client_key,
    make_user,
    register,
)

README = Path(__file__).resolve().parent.parent / "README.md"
GUIDE_TITLE = "## Coming from another platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DAUTH = "https://dauth.example.net"


def platform_blocks() -> dict[str, list[str]]:
    """Shell blocks by platform (the ### headings of the guide)."""
    text = README.read_text()
    start = text.index(GUIDE_TITLE)
    end = text.find("\n## ", start + len(GUIDE_TITLE))
    guide = text[start : end if end != -1 else None]
    blocks: dict[str, list[str]] = {}
    for section in re.split(r"\n### ", guide)[1:]:
        name = section.splitlines()[0].strip()
        blocks[name] = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
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
