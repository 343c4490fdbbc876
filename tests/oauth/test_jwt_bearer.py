"""The jwt-bearer grant (RFC 7523 §2.1): users vouched for by a trusted issuer.

Each assertion rule is broken once and refused with invalid_grant, beside a positive
control; provisioning, linking, the issuer's scope cap, removal and the replay race
across two gunicorn workers are shown as a client would see them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from idp.models import Tenant, User, db
from idp.registrations.issuers import remove_issuer
from idp.runtime import runtime
from idp.users.linked import provision_linked_user
from idp.verify import LocalJwks, TokenVerifier
from tests.conftest import ISSUER
from tests.oauth.helpers import (
    TOKEN_URL,
    assertion,
    assertion_form,
    basic,
    client_key,
    register,
    trust_issuer,
    unsigned,
)
from tests.users.conftest import client_token

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DAUTH = "https://dauth.example.net"
SUBJECT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
CLIENT_SCOPE = "openid profile user:self user:read user:update"


@pytest.fixture
def issuer_key():
    return client_key("RS256", kid="dauth-1")


@pytest.fixture
def dauth(app, issuer_key):
    """A provisioning issuer and a client allowed the grant (client_secret_basic)."""
    add(app, issuer_key, provision=True)
    client_id, secret = register(
        app,
        auth_method="client_secret_basic",
        grant_types=[GRANT, "refresh_token"],
        scope=CLIENT_SCOPE,
    )
    return client_id, secret


def add(app, key, issuer=DAUTH, tenant="default", **fields: Any) -> None:
    trust_issuer(app, key, issuer, tenant, **fields)


def statement(key, subject: str = SUBJECT, **claims: Any) -> str:
    claims.setdefault("aud", ISSUER)
    return assertion(key, DAUTH, iss=DAUTH, sub=subject, **claims)


def grant(http, client, signed: str | None, **extra: str):
    form = {"grant_type": GRANT, **extra}
    if signed is not None:
        form["assertion"] = signed
    return http.post("/oidc/token", data=form, headers=basic(*client))


def assert_invalid_grant(response, fragment: str = "") -> None:
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == "invalid_grant", body
    assert fragment in body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"


def users_linked(app, subject: str = SUBJECT) -> list[User]:
    with app.app_context():
        rows = (
            db.session.query(User).filter_by(provider=DAUTH, subject=subject, deleted_at=None).all()
        )
        db.session.expunge_all()
        return rows


def test_a_new_subject_is_provisioned_then_recognised(app, http, dauth, issuer_key) -> None:
    first = grant(http, dauth, statement(issuer_key, preferred_username="alice.eth"))
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["token_type"].lower() == "bearer" and body["refresh_token"]
    [user] = users_linked(app)
    assert (user.username, user.provider, user.password_hash) == ("alice.eth", DAUTH, None)

    again = grant(http, dauth, statement(issuer_key))
    assert again.status_code == 200
    assert len(users_linked(app)) == 1  # the same user, not a second one

    for token in (body["access_token"], again.get_json()["access_token"]):
        with app.app_context():
            claims = _verifier(app).verify(token).claims
        assert claims["sub"] == user.id and claims["client_id"] == dauth[0]
        assert claims["tenant"] == "default" and claims["sid"]
    me = http.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.get_json()["provider"] == DAUTH
    assert me.get_json()["username"] == "alice.eth"


def test_a_provisioned_user_refreshes_and_cannot_use_the_password_grant(
    app, http, dauth, issuer_key
) -> None:
    body = grant(http, dauth, statement(issuer_key)).get_json()
    renewed = http.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        headers=basic(*dauth),
    )
    assert renewed.status_code == 200, renewed.get_json()


def test_the_username_defaults_to_the_subject(app, http, dauth, issuer_key) -> None:
    assert grant(http, dauth, statement(issuer_key)).status_code == 200
    [user] = users_linked(app)
    assert user.username == SUBJECT


def test_without_provision_an_unknown_subject_is_refused(app, http, issuer_key) -> None:
    add(app, issuer_key)
    client = register(app, auth_method="client_secret_basic", grant_types=[GRANT], scope="openid")
    assert_invalid_grant(grant(http, client, statement(issuer_key)), "no user is linked")
    assert users_linked(app) == []


def _verifier(app) -> TokenVerifier:
    ring = runtime(app).key_ring
    return TokenVerifier(
        ISSUER, ISSUER, LocalJwks(lambda: (ring.current().etag, ring.current().jwks_body))
    )


def _now() -> int:
    return int(time.time())


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"aud": "https://other.example"}, "'aud'"),
        ({"aud": [ISSUER, "https://other.example"]}, "'aud' array"),
        ({"exp": _now() - 3600, "iat": _now() - 3700}, "exp"),
        ({"iat": _now(), "exp": _now() + 3600}, "lifetime"),
        ({"exp": None}, "exp"),
        ({"jti": None}, "'jti'"),
        ({"nbf": _now() + 3600}, "nbf"),
        ({"sub": ""}, "'sub'"),
    ],
    ids=["wrong_aud", "aud_array", "expired", "too_long", "no_exp", "no_jti", "nbf", "no_sub"],
)
def test_each_assertion_rule_broken_is_invalid_grant(
    app, http, dauth, issuer_key, claims, fragment
) -> None:
    subject = claims.pop("sub", SUBJECT)
    assert_invalid_grant(grant(http, dauth, statement(issuer_key, subject, **claims)), fragment)
    assert users_linked(app) == []
    assert grant(http, dauth, statement(issuer_key)).status_code == 200  # control


@pytest.mark.parametrize(
    ("subject", "claims", "fragment"),
    [
        ("s" * 256, {}, "'sub' is longer"),
        (SUBJECT, {"preferred_username": "n" * 201}, "longer than 200"),
        (SUBJECT, {"preferred_username": "a b"}, "not acceptable"),
        (SUBJECT, {"preferred_username": "aliсe"}, "not acceptable"),  # noqa: RUF001 -- Cyrillic
    ],
    ids=["long_sub", "long_username", "space", "mixed_scripts"],
)
def test_a_subject_or_name_that_cannot_be_stored_is_refused(
    app, http, dauth, issuer_key, subject, claims, fragment
) -> None:
    assert_invalid_grant(grant(http, dauth, statement(issuer_key, subject, **claims)), fragment)
    assert users_linked(app, subject) == []


def test_a_name_taken_at_the_issuer_is_refused_for_another_subject(
    app, http, dauth, issuer_key
) -> None:
    first = grant(http, dauth, statement(issuer_key, preferred_username="satoshi"))
    assert first.status_code == 200
    other = statement(issuer_key, "0xother", preferred_username="Satoshi")
    assert_invalid_grant(grant(http, dauth, other), "taken")
    assert users_linked(app, "0xother") == []
    # A local user of the same name is another person: the issuer's name does not clash.
    from tests.oauth.helpers import make_user

    make_user(app, "satoshi")


def test_alg_none_is_refused(app, http, dauth, issuer_key) -> None:
    now = _now()
    claims = {"iss": DAUTH, "sub": SUBJECT, "aud": ISSUER, "iat": now, "exp": now + 60}
    forged = unsigned({"alg": "none", "kid": "dauth-1"}, claims | {"jti": str(uuid.uuid4())})
    assert_invalid_grant(grant(http, dauth, forged))
    assert users_linked(app) == []


def test_hs256_signed_with_the_public_key_is_refused(app, http, dauth, issuer_key) -> None:
    # The classic key-confusion forgery: an HMAC keyed with the issuer's public key.
    public_pem = issuer_key.as_pem(private=False)
    now = _now()
    claims = {"iss": DAUTH, "sub": SUBJECT, "aud": ISSUER, "iat": now, "exp": now + 60}
    claims["jti"] = str(uuid.uuid4())
    header_and_claims = unsigned({"alg": "HS256", "kid": "dauth-1"}, claims)[:-1]
    mac = hmac.new(public_pem, header_and_claims.encode(), hashlib.sha256).digest()
    forged = header_and_claims + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert_invalid_grant(grant(http, dauth, forged))
    assert users_linked(app) == []


def test_a_replayed_assertion_is_refused(http, dauth, issuer_key) -> None:
    signed = statement(issuer_key)
    assert grant(http, dauth, signed).status_code == 200
    assert_invalid_grant(grant(http, dauth, signed), "already used")


def test_an_issuer_jti_never_collides_with_a_client_jti(app, http, dauth, issuer_key) -> None:
    """The same jti string spent by a client and by an issuer: both are first uses."""
    jti = "shared-jti"
    key = client_key()
    client_id, _ = register(app, key=key)
    assert http.post("/oidc/token", data=assertion_form(assertion(key, client_id, jti=jti)))
    assert grant(http, dauth, statement(issuer_key, jti=jti)).status_code == 200


def test_an_unknown_issuer_or_key_is_refused(app, http, dauth, issuer_key) -> None:
    stranger = client_key("RS256", kid="dauth-1")
    assert_invalid_grant(grant(http, dauth, statement(stranger)), "signature")
    unregistered_kid = client_key("RS256", kid="dauth-2")
    assert_invalid_grant(grant(http, dauth, statement(unregistered_kid)), "kid")
    other = assertion(issuer_key, "x", iss="https://evil.example", sub=SUBJECT, aud=ISSUER)
    assert_invalid_grant(grant(http, dauth, other), "trusted issuer")
    assert users_linked(app) == []


def test_an_issuer_of_another_tenant_is_unknown(app, http, issuer_key) -> None:
    from idp.registrations.tenants import create_tenant

    with app.app_context():
        create_tenant("acme")
        db.session.commit()
    add(app, issuer_key, tenant="acme", provision=True)
    client = register(app, auth_method="client_secret_basic", grant_types=[GRANT], scope="openid")
    assert_invalid_grant(grant(http, client, statement(issuer_key)), "trusted issuer")
    acme_client = register(
        app, auth_method="client_secret_basic", grant_types=[GRANT], scope="openid", tenant="acme"
    )
    assert grant(http, acme_client, statement(issuer_key)).status_code == 200  # control


def test_a_removed_issuer_is_refused(app, http, dauth, issuer_key) -> None:
    assert grant(http, dauth, statement(issuer_key)).status_code == 200
    with app.app_context():
        remove_issuer("default", DAUTH)
        db.session.commit()
    assert_invalid_grant(grant(http, dauth, statement(issuer_key)), "trusted issuer")


def test_the_issuer_scope_caps_the_token(app, http, issuer_key) -> None:
    add(app, issuer_key, provision=True, scope="openid user:read")
    client = register(
        app, auth_method="client_secret_basic", grant_types=[GRANT], scope=CLIENT_SCOPE
    )
    body = grant(http, client, statement(issuer_key)).get_json()
    assert set(body["scope"].split()) == {"openid", "user:read"}
    beyond = grant(http, client, statement(issuer_key), scope="openid user:update")
    assert beyond.status_code == 400 and beyond.get_json()["error"] == "invalid_scope"
    narrower = grant(http, client, statement(issuer_key), scope="openid")
    assert narrower.get_json()["scope"] == "openid"


def test_request_errors(app, http, dauth, issuer_key) -> None:
    missing = grant(http, dauth, None)
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_request"
    not_allowed = register(app, auth_method="client_secret_basic", scope="openid")
    refused = grant(http, not_allowed, statement(issuer_key))
    assert refused.status_code == 400 and refused.get_json()["error"] == "unauthorized_client"
    bad_secret = grant(http, (dauth[0], "wrong"), statement(issuer_key))
    assert bad_secret.status_code == 401 and bad_secret.get_json()["error"] == "invalid_client"
    assert users_linked(app) == []


def every_user_linked(app, subject: str = SUBJECT) -> list[tuple[str, bool]]:
    """(id, deleted) of each user ever linked to (DAUTH, subject), deleted ones too."""
    with app.app_context():
        rows = db.session.query(User).filter_by(provider=DAUTH, subject=subject).all()
        return [(row.id, row.deleted_at is not None) for row in rows]


def test_a_locked_user_is_refused(app, http, dauth, issuer_key) -> None:
    assert grant(http, dauth, statement(issuer_key)).status_code == 200
    [user] = users_linked(app)
    with app.app_context():
        db.session.get(User, user.id).locked = True
        db.session.commit()
    assert_invalid_grant(grant(http, dauth, statement(issuer_key)), "may not sign in")
    with app.app_context():
        db.session.get(User, user.id).locked = False
        db.session.commit()
    assert grant(http, dauth, statement(issuer_key)).status_code == 200  # control


def test_a_deleted_user_is_refused_and_never_provisioned_again(
    app, http, dauth, issuer_key
) -> None:
    first = grant(http, dauth, statement(issuer_key, preferred_username="alice.eth"))
    assert first.status_code == 200
    [user] = users_linked(app)
    admin = {"Authorization": f"Bearer {client_token(http, app, scope='user:delete')}"}
    assert http.delete(f"/users/{user.id}", headers=admin).status_code == 204
    # Each assertion is fresh (its own jti), some under another name: the issuer vouches
    # for the subject again and again, and the deleted user stays deleted.
    for claims in ({}, {"preferred_username": "alice.eth"}, {"preferred_username": "bob"}):
        assert_invalid_grant(grant(http, dauth, statement(issuer_key, **claims)), "may not sign")
    assert every_user_linked(app) == [(user.id, True)]
    # Controls: another subject is provisioned, and may take the deleted user's name (a
    # name is freed by the deletion, the link is not).
    other = grant(http, dauth, statement(issuer_key, "0xother", preferred_username="alice.eth"))
    assert other.status_code == 200, other.get_json()
    [newcomer] = users_linked(app, "0xother")
    assert newcomer.username == "alice.eth" and newcomer.id != user.id


def test_a_deleted_user_is_refused_without_provisioning_too(app, http, issuer_key) -> None:
    add(app, issuer_key)
    client = register(app, auth_method="client_secret_basic", grant_types=[GRANT], scope="openid")
    user_id = link_user(app, SUBJECT)
    assert grant(http, client, statement(issuer_key)).status_code == 200  # control
    admin = {"Authorization": f"Bearer {client_token(http, app, scope='user:delete')}"}
    assert http.delete(f"/users/{user_id}", headers=admin).status_code == 204
    assert_invalid_grant(grant(http, client, statement(issuer_key)), "may not sign in")
    assert every_user_linked(app) == [(user_id, True)]


def link_user(app, subject: str) -> str:
    """A user linked to (DAUTH, subject), as an operator would set one up ahead of use."""
    with app.app_context():
        tenant = db.session.query(Tenant).filter_by(name="default").one()
        user = provision_linked_user(tenant, DAUTH, subject, "linked", [], "operator")
        db.session.commit()
        return user.id


def test_discovery_lists_the_grant(http) -> None:
    metadata = http.get("/.well-known/oauth-authorization-server").get_json()
    assert GRANT in metadata["grant_types_supported"]


def test_a_replay_race_on_two_workers_has_one_winner(app, idp_env, live_server, issuer_key):
    add(app, issuer_key, provision=True)
    client = register(app, auth_method="client_secret_basic", grant_types=[GRANT], scope="openid")
    base_url = live_server(idp_env, workers=2)
    form = {"grant_type": GRANT, "assertion": statement(issuer_key)}
    barrier = threading.Barrier(20)

    def send(_: int) -> tuple[int, str]:
        barrier.wait(10)
        answer = requests.post(
            f"{base_url}/oidc/token", data=form, headers=basic(*client), timeout=30
        )
        return answer.status_code, answer.json().get("error", "")

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(send, range(20)))
    assert results.count((200, "")) == 1, results
    assert results.count((400, "invalid_grant")) == 19, results
    assert len(users_linked(app)) == 1


def test_the_cli_registers_lists_and_removes_an_issuer(app, http, run_idp, tmp_path) -> None:
    key = client_key("RS256", kid="cli-1")
    jwks_file = tmp_path / "dauth.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    added = run_idp(
        "issuers", "add", "--issuer", DAUTH, "--jwks-file", str(jwks_file),
        "--provision", "--scope", "openid user:read", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    record = json.loads(added.stdout)
    assert record["tenant"] == "default" and record["issuer"] == DAUTH
    assert record["provision"] is True and record["scope"] == "openid user:read"
    assert record["jwks"]["keys"][0]["kid"] == "cli-1" and record["jwks_uri"] is None
    assert record["created_at"]
    listed = json.loads(run_idp("issuers", "list", "--json").stdout)
    assert [item["issuer"] for item in listed] == [DAUTH]

    client = register(app, auth_method="client_secret_basic", grant_types=[GRANT], scope="openid")
    assert grant(http, client, statement(key)).status_code == 200

    duplicate = run_idp("issuers", "add", "--issuer", DAUTH, "--jwks-file", str(jwks_file))
    assert duplicate.returncode != 0 and "already registered" in duplicate.stderr
    removed = run_idp("issuers", "remove", "--issuer", DAUTH, "--json")
    assert removed.returncode == 0 and json.loads(removed.stdout)["issuer"] == DAUTH
    assert json.loads(run_idp("issuers", "list", "--json").stdout) == []
    assert_invalid_grant(grant(http, client, statement(key)), "trusted issuer")


def test_the_cli_names_the_grant_jwt_bearer(run_idp) -> None:
    created = run_idp(
        "clients", "create", "--name", "obp", "--auth-method", "client_secret_basic",
        "--grant-types", "jwt-bearer,refresh_token", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["grant_types"] == [GRANT, "refresh_token"]


def test_token_url_audience_is_accepted(http, dauth, issuer_key) -> None:
    assert grant(http, dauth, statement(issuer_key, aud=TOKEN_URL)).status_code == 200


def test_each_login_is_audited_as_the_password_grant_audits_its_own(
    app, http, dauth, issuer_key
) -> None:
    from idp.models import AuditEvent

    def logins() -> list[AuditEvent]:
        with app.app_context():
            return list(db.session.query(AuditEvent).filter_by(event="login_success"))

    refused = grant(http, dauth, statement(issuer_key, aud="https://elsewhere.example"))
    assert refused.status_code == 400 and logins() == []  # a refusal is no login
    for _ in range(2):
        assert grant(http, dauth, statement(issuer_key)).status_code == 200
    first, second = logins()
    [user] = users_linked(app)
    for event in (first, second):
        assert (event.user_id, event.client_id, event.tenant) == (user.id, dauth[0], "default")
        assert event.detail == {"issuer": DAUTH}


def test_a_request_without_an_assertion_is_invalid_request(http, dauth) -> None:
    refused = grant(http, dauth, None)
    assert refused.status_code == 400, refused.get_json()
    assert refused.get_json()["error"] == "invalid_request"
    assert "assertion" in refused.get_json()["error_description"]


def test_a_client_not_allowed_the_grant_spends_no_assertion(app, http, dauth, issuer_key) -> None:
    """The client is checked before the assertion's jti is recorded, so the assertion
    still works from a client that may use the grant."""
    other = register(app, auth_method="client_secret_basic", grant_types=["client_credentials"])
    signed = statement(issuer_key)
    not_allowed = grant(http, other, signed)
    assert not_allowed.status_code == 400, not_allowed.get_json()
    assert not_allowed.get_json()["error"] == "unauthorized_client"
    accepted = grant(http, dauth, signed)
    assert accepted.status_code == 200, accepted.get_json()
    replayed = grant(http, dauth, signed)  # positive control: now it is spent
    assert replayed.status_code == 400 and replayed.get_json()["error"] == "invalid_grant"
