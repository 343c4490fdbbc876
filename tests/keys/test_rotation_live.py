"""Key rotation under load across two instances that share PostgreSQL (keys in the
database) and Redis, as a deployment behind a load balancer runs.

A client takes tokens from both instances without pause while an independent resource
server (idp.verify with a JWKS fetched over HTTP and cached for its max-age) checks every
one; meanwhile the real CLI rotates twice, as a scheduler would, and prunes the retired
keys. Not one token may fail. The same pair of instances shows that replay, refresh-token
rotation and revocation hold across instances.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from joserfc.jwk import KeySet

from idp.verify import InvalidToken, RemoteJwks, TokenVerifier, VerifierUnavailable
from tests.conftest import ISSUER
from tests.keys import DB_KEYS
from tests.oauth.helpers import (
    assertion,
    assertion_form,
    basic,
    client_key,
    login,
    make_user,
    password_client,
    refresh,
    register,
)

pytestmark = pytest.mark.production_only

MAX_AGE = 2  # seconds resource servers cache the JWKS, and a next key waits before signing
TOKEN_TTL = 5
SKEW = 1
PRUNE_WINDOW = TOKEN_TTL + SKEW
# Workers look at the key store once a second: a rotation waits that out on top of max-age.
ROTATION_GAP = MAX_AGE + 2
SETTINGS = {
    **DB_KEYS,
    "IDP_JWKS_MAX_AGE": str(MAX_AGE),
    "IDP_ACCESS_TOKEN_TTL": str(TOKEN_TTL),
    "IDP_CLOCK_SKEW": str(SKEW),
}


class Instance:
    """One idp server, spoken to as the test client of helpers' ``http`` parameter."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base_url + path, timeout=10, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=10, **kwargs)


@pytest.fixture
def pair(make_app: Any, idp_env: dict[str, str], live_server: Any) -> Iterator[Any]:
    """(app, first, second): an initialised database key store and two instances on it."""
    app = make_app(**SETTINGS)
    env = idp_env | SETTINGS
    first = Instance(live_server(env, workers=2))
    second = Instance(live_server(env, workers=2))
    yield app, first, second
    first.session.close()
    second.session.close()


class CountingJwks(RemoteJwks):
    """A resource server's JWKS cache that counts its fetches and its unknown-kid refreshes."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.fetches = 0
        self.unknown_kid_refreshes = 0

    def key_set(self, refresh: bool = False) -> KeySet:
        if refresh:
            self.unknown_kid_refreshes += 1
        return super().key_set(refresh)

    def _fetch(self, now: float) -> None:
        self.fetches += 1
        super()._fetch(now)


@dataclass
class Tally:
    issued: int = 0
    refused: list[str] = field(default_factory=list)
    validated: int = 0
    failed: list[str] = field(default_factory=list)
    kids: set[str] = field(default_factory=set)


def _take_tokens(
    instances: list[Instance],
    client: tuple[str, str],
    out: queue.Queue[Any],
    stop: Any,
    tally: Tally,
) -> None:
    form = {"grant_type": "client_credentials"}
    turn = 0
    while not stop.is_set():
        instance = instances[turn % len(instances)]
        turn += 1
        try:
            response = instance.post("/oidc/token", data=form, headers=basic(*client))
        except requests.RequestException as exc:
            tally.refused.append(f"{instance.base_url}: {type(exc).__name__}")
            continue
        if response.status_code != 200:
            tally.refused.append(f"{instance.base_url}: {response.status_code} {response.text}")
            continue
        tally.issued += 1
        out.put(response.json()["access_token"])
    out.put(None)


def _verify_tokens(verifiers: list[TokenVerifier], tokens: queue.Queue[Any], tally: Tally) -> None:
    while (token := tokens.get()) is not None:
        try:
            for verifier in verifiers:
                checked = verifier.verify(token)
            tally.kids.add(checked.header["kid"])
            tally.validated += 1
        except (InvalidToken, VerifierUnavailable) as exc:
            tally.failed.append(str(exc))


def _states(run_idp: Any) -> dict[str, list[str]]:
    listed = run_idp("keys", "list", "--json", env=SETTINGS)
    assert listed.returncode == 0, listed.stderr
    result: dict[str, list[str]] = {"next": [], "active": [], "retired": []}
    for key in json.loads(listed.stdout):
        result[key["state"]].append(key["kid"])
    return result


def test_rotation_under_load_across_two_instances_fails_no_token(
    pair: Any, run_idp: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    app, first, second = pair
    client = register(app, auth_method="client_secret_basic", scope="user:read")
    # A resource server behind the same load balancer: its JWKS from either instance.
    jwks = [CountingJwks(f"{i.base_url}/oidc/jwks") for i in (first, second)]
    verifiers = [TokenVerifier(ISSUER, ISSUER, source, leeway=SKEW) for source in jwks]
    tokens: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    tally = Tally()
    taker = threading.Thread(
        target=_take_tokens, args=([first, second], client, tokens, stop, tally)
    )
    checker = threading.Thread(target=_verify_tokens, args=(verifiers, tokens, tally))
    started = time.monotonic()
    cli_seconds: list[float] = []

    def cli(*args: str) -> Any:
        began = time.monotonic()
        done = run_idp(*args, env=SETTINGS)
        cli_seconds.append(round(time.monotonic() - began, 1))
        return done

    initial = _states(run_idp)
    taker.start()
    checker.start()
    try:
        time.sleep(ROTATION_GAP)  # the next key made by init is now older than max-age
        for _ in range(2):
            rotated = cli("keys", "rotate", "--if-older-than", "1s", "--json")
            assert rotated.returncode == 0, rotated.stderr
            assert "nothing done" not in rotated.stderr, rotated.stderr
            time.sleep(ROTATION_GAP)
        # Both retired keys must outlive every token they signed before they go (the
        # store keeps whole seconds: one more for the rounding).
        time.sleep(max(0.0, PRUNE_WINDOW + 2 - ROTATION_GAP))
        pruned = cli("keys", "prune", "--json")
        assert pruned.returncode == 0, pruned.stderr
        time.sleep(MAX_AGE + 1)  # tokens keep flowing while resource servers refresh
    finally:
        stop.set()
        taker.join(30)
        checker.join(30)
    final = _states(run_idp)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nrotation under load: {tally.issued} tokens issued, {tally.validated} validated, "
            f"{len(tally.failed)} failed, {len(tally.refused)} refused by idp; "
            f"signing kids seen {len(tally.kids)}; JWKS fetches {[j.fetches for j in jwks]}, "
            f"unknown-kid refreshes {[j.unknown_kid_refreshes for j in jwks]}; "
            f"CLI runs {cli_seconds} s; {elapsed:.1f} s in all"
        )
    assert tally.failed == [] and tally.refused == []
    assert tally.validated == tally.issued > 0
    # Three keys signed in turn: init's active key and the two promoted next keys.
    assert len(tally.kids) == 3
    assert initial["active"][0] in tally.kids and initial["next"][0] in tally.kids
    assert len(final["active"]) == 1 and len(final["next"]) == 1
    assert final["retired"] == []  # both retired keys were pruned
    published = {k["kid"] for k in first.get("/oidc/jwks").json()["keys"]}
    assert published == {final["active"][0], final["next"][0]}
    assert all(j.unknown_kid_refreshes == 0 for j in jwks)  # every key was published in time


def test_keys_replay_refresh_reuse_and_revocation_hold_across_instances(pair: Any) -> None:
    app, first, second = pair
    one, two = first.get("/oidc/jwks"), second.get("/oidc/jwks")
    assert one.status_code == two.status_code == 200
    assert one.content == two.content and one.headers["ETag"] == two.headers["ETag"]
    assert one.headers["Cache-Control"] == f"public, max-age={MAX_AGE}"

    key = client_key()
    client_id, _ = register(app, key=key)
    form = assertion_form(assertion(key, client_id))
    assert first.post("/oidc/token", data=form).status_code == 200
    replayed = second.post("/oidc/token", data=form)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"

    make_user(app)
    user_client = password_client(app)
    signed_in = login(first, user_client)
    assert signed_in.status_code == 200, signed_in.text
    original = signed_in.json()["refresh_token"]
    rotated = refresh(first, user_client, original)
    assert rotated.status_code == 200, rotated.text
    reused = refresh(second, user_client, original)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # Reuse revoked the family: the successor handed out by the first instance is dead too.
    successor = refresh(second, user_client, rotated.json()["refresh_token"])
    assert successor.status_code == 400 and successor.json()["error"] == "invalid_grant"

    service = register(app, auth_method="client_secret_basic", scope="user:read")
    token = first.post(
        "/oidc/token", data={"grant_type": "client_credentials"}, headers=basic(*service)
    ).json()["access_token"]
    seen = second.post("/oidc/introspect", data={"token": token}, headers=basic(*service))
    assert seen.json()["active"] is True
    revoked = first.post("/oidc/revoke", data={"token": token}, headers=basic(*service))
    assert revoked.status_code == 200
    after = second.post("/oidc/introspect", data={"token": token}, headers=basic(*service))
    assert after.status_code == 200 and after.json() == {"active": False}
