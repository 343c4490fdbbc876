"""idp.verify as an external resource server uses it: over HTTP against /oidc/jwks."""

from __future__ import annotations

import json
import time

import pytest
import requests

from idp import verify
from idp.jwks_fetch import MAX_JWKS_BYTES
from idp.verify import (
    InsufficientScope,
    InvalidToken,
    RemoteJwks,
    TokenVerifier,
    VerifierUnavailable,
)
from tests.conftest import ISSUER
from tests.oauth.helpers import basic, register
from tests.test_jwks_fetch import KeyServer, Route, jwks_document, padded


class CountingJwks(RemoteJwks):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.fetches = 0

    def _fetch(self, now: float) -> None:
        self.fetches += 1
        super()._fetch(now)


def get_token(base_url: str, client: tuple[str, str], scope: str = "user:read") -> str:
    response = requests.post(
        f"{base_url}/oidc/token",
        data={"grant_type": "client_credentials", "scope": scope},
        headers=basic(*client),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_remote_verifier_caches_refetches_and_checks(
    app, idp_env, live_server, run_idp, monkeypatch
):
    monkeypatch.setattr(verify, "MIN_REFETCH_INTERVAL", 0.0)
    base_url = live_server(idp_env | {"IDP_JWKS_MAX_AGE": "2"}, workers=2)
    client = register(app, auth_method="client_secret_basic", scope="user:read user:create")
    jwks = CountingJwks(f"{base_url}/oidc/jwks")
    verifier = TokenVerifier(issuer=ISSUER, audience=ISSUER, jwks=jwks)

    token = verifier.verify(get_token(base_url, client), ["user:read"])
    assert token.claims["client_id"] == client[0] and jwks.fetches == 1
    verifier.verify(get_token(base_url, client))
    assert jwks.fetches == 1  # within max-age: cached

    with pytest.raises(InsufficientScope):
        verifier.verify(get_token(base_url, client), ["user:delete"])
    with pytest.raises(InvalidToken):
        verifier.verify("not.a.jwt")
    wrong_audience = TokenVerifier(issuer=ISSUER, audience="https://other.example", jwks=jwks)
    with pytest.raises(InvalidToken, match="audience"):
        wrong_audience.verify(get_token(base_url, client))

    # Two rotations: the signing key is now one the cached JWKS never listed.
    for _ in range(2):
        assert run_idp("keys", "rotate", "--force").returncode == 0
    time.sleep(1.5)  # workers notice the new manifest within a second
    before = jwks.fetches
    verifier.verify(get_token(base_url, client))
    assert jwks.fetches == before + 1  # exactly one re-fetch for the unknown kid

    time.sleep(2.1)  # past max-age=2
    verifier.verify(get_token(base_url, client))
    assert jwks.fetches == before + 2


def test_remote_jwks_refuses_an_oversized_set_and_does_not_follow_a_redirect() -> None:
    document = jwks_document("k1")
    with KeyServer() as server:
        good = server.serve("/jwks", Route(json.dumps(document).encode()))
        assert [key.kid for key in RemoteJwks(good).key_set().keys] == ["k1"]  # control

        big = server.serve("/big", Route(padded(document, MAX_JWKS_BYTES + 1)))
        with pytest.raises(VerifierUnavailable, match="exceeds"):
            RemoteJwks(big).key_set()

        moved = server.serve("/moved", Route(b"", 302, {"Location": good}))
        with pytest.raises(VerifierUnavailable, match="answered 302"):
            RemoteJwks(moved).key_set()
        assert server.paths() == ["/jwks", "/big", "/moved"]  # the redirect was not followed

        # Private hosts are allowed by default; a resource server can refuse them (SSRF).
        with pytest.raises(VerifierUnavailable, match="non-public"):
            RemoteJwks(good, allow_private=False).key_set()
        assert server.paths() == ["/jwks", "/big", "/moved"]
