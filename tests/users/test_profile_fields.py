"""Profile fields on a user (firstName, lastName, the read-only provider) and the list
filters for the managing client and for usernames across providers. Each refusal has a
positive control beside it."""

from __future__ import annotations

import json

import pytest

from idp.models import Tenant, User, db, utcnow
from idp.models.base import new_uuid
from idp.users.usernames import username_key
from tests.oauth.helpers import bearer
from tests.users.conftest import client_token
from tests.users.test_users_api import assert_problem, create

ISSUER_URL = "https://issuer.example.com"


def error_fields(body: dict) -> set[str]:
    return {error["field"] for error in body.get("errors", [])}


def test_names_are_stored_returned_and_listed(http, admin) -> None:
    created = create(http, admin, username="ada", firstName="Ada", lastName="Lovelace")
    assert created.status_code == 201, created.get_json()
    user = created.get_json()
    assert (user["firstName"], user["lastName"], user["provider"]) == ("Ada", "Lovelace", "local")
    assert http.get(f"/users/{user['userId']}", headers=admin).get_json() == user
    listed = http.get("/users?username=ada", headers=admin).get_json()["users"]
    assert listed == [user]


def test_names_are_optional_and_null_when_absent(http, admin) -> None:
    user = create(http, admin, username="plain").get_json()
    assert user["firstName"] is None and user["lastName"] is None
    assert user["provider"] == "local"
    explicit = create(http, admin, username="nulls", firstName=None, lastName=None)
    assert explicit.status_code == 201
    assert explicit.get_json()["firstName"] is None


def test_patch_sets_clears_and_leaves_names(http, admin) -> None:
    user = create(http, admin, username="grace", firstName="Grace", lastName="Hopper").get_json()
    path = f"/users/{user['userId']}"
    renamed = http.patch(path, json={"firstName": "Amazing Grace"}, headers=admin)
    assert renamed.status_code == 200
    assert (renamed.get_json()["firstName"], renamed.get_json()["lastName"]) == (
        "Amazing Grace", "Hopper",
    )  # fmt: skip
    cleared = http.patch(path, json={"lastName": None}, headers=admin).get_json()
    assert (cleared["firstName"], cleared["lastName"]) == ("Amazing Grace", None)
    untouched = http.patch(path, json={"email": "g@example.com"}, headers=admin).get_json()
    assert untouched["firstName"] == "Amazing Grace" and untouched["email"] == "g@example.com"
    assert http.get(path, headers=admin).get_json() == untouched


def test_provider_is_read_only(http, admin) -> None:
    attack = create(http, admin, username="mallory", provider=ISSUER_URL)
    body = assert_problem(attack, 400)
    assert "provider" in error_fields(body)
    assert http.get("/users?username=mallory", headers=admin).get_json()["total"] == 0
    # Positive control: the same body without provider is accepted, as a local user.
    assert create(http, admin, username="mallory").get_json()["provider"] == "local"
    user_id = http.get("/users?username=mallory", headers=admin).get_json()["users"][0]["userId"]
    patch = http.patch(f"/users/{user_id}", json={"provider": ISSUER_URL}, headers=admin)
    assert "provider" in error_fields(assert_problem(patch, 400))
    assert http.get(f"/users/{user_id}", headers=admin).get_json()["provider"] == "local"


@pytest.mark.parametrize(
    "body",
    [
        {"firstName": "x" * 201},
        {"lastName": "y" * 201},
        {"firstName": 5},
        {"lastName": ["Lovelace"]},
        {"firstName": "tab\there"},
        {"lastName": "nul\x00byte"},
    ],
)
def test_bad_names_are_400(http, admin, body) -> None:
    field = next(iter(body))
    problem = assert_problem(create(http, admin, username="badname", **body), 400)
    assert field in error_fields(problem)
    user = create(http, admin, username="goodname").get_json()
    patch = http.patch(f"/users/{user['userId']}", json=body, headers=admin)
    assert field in error_fields(assert_problem(patch, 400))


def test_names_of_200_characters_and_any_script_are_accepted(http, admin) -> None:
    wide = "\uff38" * 200  # full-width X: 200 characters, 600 bytes in UTF-8
    long = create(http, admin, username="long", firstName="x" * 200, lastName=wide)
    assert long.status_code == 201
    assert long.get_json()["firstName"] == "x" * 200 and long.get_json()["lastName"] == wide
    accented = create(http, admin, username="zoe", firstName="Zoë", lastName="Ørsted-Ñúñez")
    assert accented.get_json()["lastName"] == "Ørsted-Ñúñez"


def test_list_filters_by_managing_client(http, app) -> None:
    first = bearer(client_token(http, app))
    second = bearer(client_token(http, app))
    mine = create(http, first, username="mine-1", email="shared@example.com").get_json()
    create(http, first, username="mine-2")
    theirs = create(http, second, username="theirs", email="shared@example.com").get_json()
    first_id, second_id = mine["clientId"], theirs["clientId"]
    assert first_id != second_id
    for query, expected in (
        (f"clientId={first_id}", ["mine-1", "mine-2"]),
        (f"clientId={second_id}", ["theirs"]),
        (f"clientId={first_id}&email=shared@example.com", ["mine-1"]),
        (f"clientId={second_id}&username=mine-1", []),
        (f"clientId={first_id}&username=MINE-2", ["mine-2"]),
        (f"clientId={first_id}&limit=1&offset=1", ["mine-2"]),
        ("clientId=no-such-client", []),
        ("email=shared@example.com", ["mine-1", "theirs"]),  # control: no clientId, both
    ):
        body = http.get(f"/users?{query}", headers=first).get_json()
        assert [u["username"] for u in body["users"]] == expected, query
        assert all(u["clientId"] in (first_id, second_id) for u in body["users"])
    assert http.get(f"/users?clientId={first_id}", headers=first).get_json()["total"] == 2


@pytest.mark.parametrize("query", ["clientId=a%00b", "clientId=x&clientId=y", "clientid=x"])
def test_bad_client_id_filters_are_400(http, admin, query) -> None:
    assert_problem(http.get(f"/users?{query}", headers=admin), 400)


def test_client_id_filter_stays_within_the_tenant(http, app, admin) -> None:
    with app.app_context():
        from idp.registrations.tenants import create_tenant

        create_tenant("acme")
        db.session.commit()
    outsider = bearer(client_token(http, app, tenant="acme"))
    home = create(http, admin, username="home").get_json()
    away = create(http, outsider, username="away").get_json()
    # Another tenant's client id finds nothing, though the home tenant has a user of it.
    across = http.get(f"/users?clientId={home['clientId']}", headers=outsider).get_json()
    assert across["users"] == [] and across["total"] == 0
    at_home = http.get(f"/users?clientId={home['clientId']}", headers=admin).get_json()
    assert [u["username"] for u in at_home["users"]] == ["home"]
    own = http.get(f"/users?clientId={away['clientId']}", headers=outsider).get_json()
    assert [u["username"] for u in own["users"]] == ["away"]


def _issuer_user(app, username: str, tenant: str = "default") -> str:
    """A user as a jwt-bearer grant would link one: another provider, the issuer's name."""
    with app.app_context():
        now = utcnow()
        user = User(
            id=new_uuid(),
            tenant=db.session.query(Tenant).filter_by(name=tenant).one(),
            username=username,
            username_key=username_key(username),
            provider=ISSUER_URL,
            subject=f"sub-{username}",
            scopes=[],
            created_at=now,
            updated_at=now,
        )
        db.session.add(user)
        db.session.commit()
        return user.id


def test_username_filter_matches_users_of_every_provider(http, app, admin) -> None:
    local = create(http, admin, username="Alice").get_json()
    linked_id = _issuer_user(app, "alice")
    _issuer_user(app, "bob")
    found = http.get("/users?username=ALICE", headers=admin).get_json()
    assert found["total"] == 2
    by_id = {u["userId"]: u for u in found["users"]}
    assert set(by_id) == {local["userId"], linked_id}
    assert by_id[local["userId"]]["provider"] == "local"
    assert by_id[linked_id]["provider"] == ISSUER_URL
    assert by_id[linked_id]["username"] == "alice"
    # Control: another name matches only its holder.
    bob = http.get("/users?username=bob", headers=admin).get_json()
    assert [u["provider"] for u in bob["users"]] == [ISSUER_URL]
    assert http.get(f"/users/{linked_id}", headers=admin).get_json()["provider"] == ISSUER_URL


def test_cli_json_shows_the_profile_fields(app, run_idp) -> None:
    result = run_idp("users", "create", "--username", "cli-user", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["provider"] == "local"
    assert "firstName" in record and record["firstName"] is None
    assert "lastName" in record and record["lastName"] is None
