"""User attributes: typed name/value pairs, the personal ones visible to their user alone.
Each refusal has a positive control beside it."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from idp.models import AuditEvent, UserAttribute, db, utcnow
from idp.models.base import new_uuid
from idp.registrations.tenants import create_tenant
from idp.users.attributes import MAX_ATTRIBUTES
from tests.oauth.helpers import bearer, login, make_user, password_client
from tests.users.conftest import client_token, make_self_token
from tests.users.test_users_api import RFC3339, assert_problem, create

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ATTRIBUTE_FIELDS = {"attributeId", "name", "type", "value", "isPersonal", "createdAt"}


def add(http, headers, user_id: str, **body):
    return http.post(f"/users/{user_id}/attributes", json=body, headers=headers)


def listed(http, headers, user_id: str) -> list[dict]:
    response = http.get(f"/users/{user_id}/attributes", headers=headers)
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == {"attributes"}
    return response.get_json()["attributes"]


@pytest.fixture
def user_id(http, admin) -> str:
    return create(http, admin, username="holder").get_json()["userId"]


def test_create_list_and_delete(http, admin, user_id) -> None:
    assert listed(http, admin, user_id) == []
    created = add(http, admin, user_id, name="risk.score", type="INTEGER", value="42")
    assert created.status_code == 201, created.get_json()
    attribute = created.get_json()
    assert set(attribute) == ATTRIBUTE_FIELDS
    assert UUID.match(attribute["attributeId"]) and RFC3339.match(attribute["createdAt"])
    assert (attribute["name"], attribute["type"], attribute["value"]) == (
        "risk.score", "INTEGER", "42",
    )  # fmt: skip
    assert attribute["isPersonal"] is False  # the default
    assert listed(http, admin, user_id) == [attribute]
    path = f"/users/{user_id}/attributes/{attribute['attributeId']}"
    deleted = http.delete(path, headers=admin)
    assert deleted.status_code == 204 and deleted.data == b""
    assert listed(http, admin, user_id) == []
    assert_problem(http.delete(path, headers=admin), 404)  # already gone
    # The name is free again.
    again = add(http, admin, user_id, name="risk.score", type="STRING", value="low")
    assert again.status_code == 201


VALID = [
    ("STRING", ""),
    ("STRING", "anything at all, even 1.5 or nan"),
    ("STRING", "x" * 1024),
    ("INTEGER", "0"),
    ("INTEGER", "-17"),
    ("INTEGER", "+17"),
    ("INTEGER", "123456789012345678901234567890"),
    ("DOUBLE", "1.5"),
    ("DOUBLE", "-0.25"),
    ("DOUBLE", "3"),
    ("DOUBLE", "6.02e23"),
    ("DOUBLE", "1E-9"),
    ("DOUBLE", ".5"),
    ("DATE_WITH_DAY", "2026-02-28"),
    ("DATE_WITH_DAY", "2024-02-29"),
    ("DATE_WITH_DAY", "1999-12-31"),
]

INVALID = [
    ("INTEGER", "1.5"),
    ("INTEGER", ""),
    ("INTEGER", "12a"),
    ("INTEGER", " 12"),
    ("INTEGER", "12\n"),
    ("INTEGER", "1_000"),
    ("INTEGER", "\u0661\u0662"),  # Arabic-Indic digits
    ("INTEGER", "1e3"),
    ("INTEGER", "--1"),
    ("DOUBLE", "nan"),
    ("DOUBLE", "NaN"),
    ("DOUBLE", "inf"),
    ("DOUBLE", "-Infinity"),
    ("DOUBLE", "1e999"),
    ("DOUBLE", ""),
    ("DOUBLE", "1.5.5"),
    ("DOUBLE", "0x1p3"),
    ("DOUBLE", "1_0.5"),
    ("DOUBLE", " 1.5"),
    ("DOUBLE", "1,5"),
    ("DATE_WITH_DAY", "2026-02-30"),
    ("DATE_WITH_DAY", "2025-02-29"),
    ("DATE_WITH_DAY", "2026-13-01"),
    ("DATE_WITH_DAY", "0000-01-01"),
    ("DATE_WITH_DAY", "2026-1-01"),
    ("DATE_WITH_DAY", "20260101"),
    ("DATE_WITH_DAY", "2026-01-01T00:00:00"),
    ("DATE_WITH_DAY", "2026-W01-1"),
    ("DATE_WITH_DAY", "2026-01-01\n"),
    ("DATE_WITH_DAY", "\uff12\uff10\uff12\uff16-01-01"),  # full-width digits
]


@pytest.mark.parametrize(("type_", "value"), VALID)
def test_each_type_accepts_a_valid_value(http, admin, user_id, type_, value) -> None:
    created = add(http, admin, user_id, name="attr", type=type_, value=value)
    assert created.status_code == 201, created.get_json()
    assert (created.get_json()["type"], created.get_json()["value"]) == (type_, value)
    assert [a["value"] for a in listed(http, admin, user_id)] == [value]


@pytest.mark.parametrize(("type_", "value"), INVALID)
def test_each_type_refuses_an_invalid_value(http, admin, user_id, type_, value) -> None:
    body = assert_problem(add(http, admin, user_id, name="attr", type=type_, value=value), 400)
    assert type_ in body["detail"] and "value" in body["detail"]
    assert body["errors"] == [{"field": "value", "message": body["detail"]}]
    assert listed(http, admin, user_id) == []
    # The same name with a value of the type is accepted (nothing was half-written).
    assert add(http, admin, user_id, name="attr", type="STRING", value=value).status_code == 201


def test_values_are_never_quoted_back(http, admin, user_id) -> None:
    secret = "secret-value-1.5"
    body = assert_problem(add(http, admin, user_id, name="n", type="DOUBLE", value=secret), 400)
    assert secret not in str(body)


@pytest.mark.parametrize(
    "name", ["", "a" * 65, "has space", "slash/name", "ümlaut", "semi;colon", "nul\x00", "a\n"]
)
def test_bad_names_are_400(http, admin, user_id, name) -> None:
    body = assert_problem(add(http, admin, user_id, name=name, type="STRING", value="v"), 400)
    assert "name" in {error["field"] for error in body["errors"]}
    assert listed(http, admin, user_id) == []


@pytest.mark.parametrize("name", ["a", "A" * 64, "Risk_Score.v-2", "0", "...", "-_-"])
def test_good_names_are_accepted(http, admin, user_id, name) -> None:
    created = add(http, admin, user_id, name=name, type="STRING", value="v")
    assert created.status_code == 201 and created.get_json()["name"] == name


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"name": "n", "type": "STRING"}',
        b'{"name": "n", "value": "v"}',
        b'{"type": "STRING", "value": "v"}',
        b'{"name": "n", "type": "BOOLEAN", "value": "true"}',
        b'{"name": "n", "type": "string", "value": "v"}',
        b'{"name": "n", "type": "INTEGER", "value": 5}',
        b'{"name": "n", "type": "DOUBLE", "value": 1.5}',
        b'{"name": "n", "type": "STRING", "value": null}',
        b'{"name": 5, "type": "STRING", "value": "v"}',
        b'{"name": "n", "type": "STRING", "value": "v", "isPersonal": "yes"}',
        b'{"name": "n", "type": "STRING", "value": "v", "isPersonal": 1}',
        b'{"name": "n", "type": "STRING", "value": "v", "extra": 1}',
        b'{"name": "n", "type": "STRING", "value": "v", "attributeId": "x"}',
        b'{"name": "n", "type": "STRING", "value": "nul\\u0000byte"}',
        b'{"name": "n", "type": "STRING", "value": "' + b"x" * 1025 + b'"}',
        b'{"name": "n", "type": "STRING", "value": "lone\\ud800"}',
    ],
)
def test_malformed_bodies_are_400(http, admin, user_id, body) -> None:
    response = http.post(
        f"/users/{user_id}/attributes", data=body, content_type="application/json", headers=admin
    )
    assert_problem(response, 400)
    assert listed(http, admin, user_id) == []


def test_non_json_is_415(http, admin, user_id) -> None:
    response = http.post(
        f"/users/{user_id}/attributes", data="name=n", headers=admin,
        content_type="application/x-www-form-urlencoded",
    )  # fmt: skip
    assert_problem(response, 415)


def test_duplicate_name_on_the_same_user_is_409(http, admin, user_id) -> None:
    assert add(http, admin, user_id, name="tier", type="STRING", value="gold").status_code == 201
    body = assert_problem(add(http, admin, user_id, name="tier", type="INTEGER", value="1"), 409)
    assert "tier" in body["detail"]
    assert [a["value"] for a in listed(http, admin, user_id)] == ["gold"]
    # Control: another user may hold the same name, and names differ by case.
    other = create(http, admin, username="other").get_json()["userId"]
    assert add(http, admin, other, name="tier", type="STRING", value="silver").status_code == 201
    assert add(http, admin, user_id, name="Tier", type="STRING", value="x").status_code == 201


def _fill(app, user_id: str, *, personal: bool, count: int) -> None:
    """``count`` attributes of one kind, written directly: the cap, not the route, is tested."""
    with app.app_context():
        for index in range(count):
            name = f"held-{personal}-{index}"
            db.session.add(
                UserAttribute(id=new_uuid(), user_id=user_id, name=name, type="STRING",
                              value="v", is_personal=personal, created_at=utcnow())
            )  # fmt: skip
        db.session.commit()


def test_a_user_holds_at_most_max_attributes_of_each_kind(http, app, admin, self_token) -> None:
    user_id, own = self_token
    _fill(app, user_id, personal=True, count=MAX_ATTRIBUTES - 1)
    body = {"type": "STRING", "value": "v"}
    last = http.post("/users/me/attributes", json=body | {"name": "last"}, headers=own)
    assert last.status_code == 201
    refused = http.post("/users/me/attributes", json=body | {"name": "one-more"}, headers=own)
    assert f"{MAX_ATTRIBUTES} personal" in assert_problem(refused, 409)["detail"]
    own_list = http.get("/users/me/attributes", headers=own).get_json()["attributes"]
    assert len(own_list) == MAX_ATTRIBUTES
    # The other kind is counted apart: a full personal set crowds out no manager's attribute.
    assert add(http, admin, user_id, **body, name="segment").status_code == 201
    _fill(app, user_id, personal=False, count=MAX_ATTRIBUTES - 1)
    full = add(http, admin, user_id, **body, name="another")
    assert f"{MAX_ATTRIBUTES} non-personal" in assert_problem(full, 409)["detail"]
    # Deleting one makes room again.
    first = listed(http, admin, user_id)[0]["attributeId"]
    assert http.delete(f"/users/{user_id}/attributes/{first}", headers=admin).status_code == 204
    assert add(http, admin, user_id, **body, name="another").status_code == 201


def test_a_user_deletes_its_own_personal_attributes_only(http, app, admin, self_token) -> None:
    user_id, own = self_token
    body = {"type": "STRING", "value": "v"}
    mine = http.post("/users/me/attributes", json=body | {"name": "mine"}, headers=own)
    shared = add(http, admin, user_id, **body, name="shared").get_json()["attributeId"]
    _, other = make_self_token(http, app, "other-self")
    theirs = http.post("/users/me/attributes", json=body | {"name": "theirs"}, headers=other)
    # Not one of the other kind, nor another user's, nor a malformed id: each is 404.
    for attribute_id in (shared, theirs.get_json()["attributeId"], "not-an-id"):
        assert_problem(http.delete(f"/users/me/attributes/{attribute_id}", headers=own), 404)
    # Nor may management delete a personal one through its own route.
    attribute_id = mine.get_json()["attributeId"]
    assert_problem(http.delete(f"/users/{user_id}/attributes/{attribute_id}", headers=admin), 404)
    gone = http.delete(f"/users/me/attributes/{attribute_id}", headers=own)
    assert gone.status_code == 204 and gone.get_data() == b""
    assert http.get("/users/me/attributes", headers=own).get_json() == {"attributes": []}
    assert [a["attributeId"] for a in listed(http, admin, user_id)] == [shared]
    assert len(http.get("/users/me/attributes", headers=other).get_json()["attributes"]) == 1
    assert_problem(http.delete(f"/users/me/attributes/{attribute_id}", headers=own), 404)
    with app.app_context():
        deleted = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "user_attribute_deleted")
        ).all()
    assert [(e.user_id, e.detail["attribute_id"]) for e in deleted] == [(user_id, attribute_id)]


def test_unknown_and_deleted_users_are_404(http, admin, user_id) -> None:
    for unknown in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", "x" * 60):
        assert_problem(http.get(f"/users/{unknown}/attributes", headers=admin), 404)
        assert_problem(add(http, admin, unknown, name="n", type="STRING", value="v"), 404)
    attribute = add(http, admin, user_id, name="n", type="STRING", value="v").get_json()
    assert http.delete(f"/users/{user_id}", headers=admin).status_code == 204
    assert_problem(http.get(f"/users/{user_id}/attributes", headers=admin), 404)
    assert_problem(add(http, admin, user_id, name="m", type="STRING", value="v"), 404)
    path = f"/users/{user_id}/attributes/{attribute['attributeId']}"
    assert_problem(http.delete(path, headers=admin), 404)


def test_delete_refuses_unknown_ids_and_other_users_attributes(http, admin, user_id) -> None:
    other = create(http, admin, username="other").get_json()["userId"]
    theirs = add(http, admin, other, name="n", type="STRING", value="v").get_json()
    mine = add(http, admin, user_id, name="n", type="STRING", value="v").get_json()
    for attribute_id in ("00000000-0000-0000-0000-000000000000", "nope", theirs["attributeId"]):
        response = http.delete(f"/users/{user_id}/attributes/{attribute_id}", headers=admin)
        assert "attribute" in assert_problem(response, 404)["detail"]
    assert [a["attributeId"] for a in listed(http, admin, other)] == [theirs["attributeId"]]
    # Control: each is deleted through its own user.
    own = http.delete(f"/users/{user_id}/attributes/{mine['attributeId']}", headers=admin)
    assert own.status_code == 204
    theirs_path = f"/users/{other}/attributes/{theirs['attributeId']}"
    assert http.delete(theirs_path, headers=admin).status_code == 204


def test_other_tenants_users_and_attributes_are_404(http, app, admin, user_id) -> None:
    attribute = add(http, admin, user_id, name="n", type="STRING", value="v").get_json()
    with app.app_context():
        create_tenant("acme")
        db.session.commit()
    outsider = bearer(client_token(http, app, tenant="acme"))
    assert_problem(http.get(f"/users/{user_id}/attributes", headers=outsider), 404)
    assert_problem(add(http, outsider, user_id, name="m", type="STRING", value="v"), 404)
    path = f"/users/{user_id}/attributes/{attribute['attributeId']}"
    assert_problem(http.delete(path, headers=outsider), 404)
    assert listed(http, admin, user_id) == [attribute]  # untouched
    # Control: the outsider manages the attributes of its own tenant's users.
    away = create(http, outsider, username="away").get_json()["userId"]
    assert add(http, outsider, away, name="m", type="STRING", value="v").status_code == 201
    assert len(listed(http, outsider, away)) == 1


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("get", "/users/{id}/attributes", "user:create user:update user:delete"),
        ("post", "/users/{id}/attributes", "user:read user:create user:delete"),
        ("delete", "/users/{id}/attributes/{attr}", "user:read user:create user:delete"),
        ("get", "/users/me/attributes", "user:read user:update"),
        ("post", "/users/me/attributes", "user:read user:update"),
    ],
)
def test_wrong_scope_is_403_insufficient_scope(http, app, admin, user_id, method, path, scope):
    attribute = add(http, admin, user_id, name="n", type="STRING", value="v").get_json()
    url = path.format(id=user_id, attr=attribute["attributeId"])
    headers = bearer(client_token(http, app, scope=scope))
    body = {"name": "m", "type": "STRING", "value": "v"}
    response = getattr(http, method)(url, headers=headers, json=body)
    assert_problem(response, 403)
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert [a["name"] for a in listed(http, admin, user_id)] == ["n"]


def test_each_scope_opens_its_own_route(http, app, admin, user_id) -> None:
    reader = bearer(client_token(http, app, scope="user:read"))
    updater = bearer(client_token(http, app, scope="user:update"))
    created = add(http, updater, user_id, name="n", type="STRING", value="v")
    assert created.status_code == 201
    assert [a["name"] for a in listed(http, reader, user_id)] == ["n"]
    path = f"/users/{user_id}/attributes/{created.get_json()['attributeId']}"
    assert http.delete(path, headers=updater).status_code == 204


def test_no_token_is_401(http, user_id) -> None:
    response = http.get(f"/users/{user_id}/attributes")
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(http.get("/users/me/attributes"), 401)


# -- personal attributes ------------------------------------------------------------


def test_own_attributes_are_personal_and_hidden_from_management(http, admin, self_token) -> None:
    user_id, own = self_token
    assert http.get("/users/me/attributes", headers=own).get_json() == {"attributes": []}
    created = http.post(
        "/users/me/attributes", json={"name": "nickname", "type": "STRING", "value": "Sel"},
        headers=own,
    )  # fmt: skip
    assert created.status_code == 201, created.get_json()
    personal = created.get_json()
    assert set(personal) == ATTRIBUTE_FIELDS and personal["isPersonal"] is True
    shared = add(http, admin, user_id, name="segment", type="STRING", value="retail").get_json()
    # The management view lists the shared one only; the user's own view the personal one.
    assert listed(http, admin, user_id) == [shared]
    assert http.get("/users/me/attributes", headers=own).get_json() == {"attributes": [personal]}
    # Nor can the management routes delete the personal one.
    path = f"/users/{user_id}/attributes/{personal['attributeId']}"
    assert_problem(http.delete(path, headers=admin), 404)
    assert http.get("/users/me/attributes", headers=own).get_json() == {"attributes": [personal]}


def test_is_personal_is_forced_on_own_attributes(http, self_token) -> None:
    _, own = self_token
    for index, flag in enumerate((False, True)):
        response = http.post(
            "/users/me/attributes",
            json={"name": f"n{index}", "type": "STRING", "value": "v", "isPersonal": flag},
            headers=own,
        )
        assert response.status_code == 201 and response.get_json()["isPersonal"] is True
    names = [
        a["name"] for a in http.get("/users/me/attributes", headers=own).get_json()["attributes"]
    ]
    assert sorted(names) == ["n0", "n1"]


def own_attributes(http, own) -> list[dict]:
    response = http.get("/users/me/attributes", headers=own)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["attributes"]


def test_management_cannot_make_a_personal_attribute(http, app, admin, self_token) -> None:
    user_id, own = self_token
    body = {"name": "kyc", "type": "DATE_WITH_DAY", "value": "2026-01-31"}
    refused = add(http, admin, user_id, **body, isPersonal=True)
    problem = assert_problem(refused, 403)
    assert "/users/me/attributes" in problem["detail"]
    assert problem["errors"] == [{"field": "isPersonal", "message": "must be false on this route"}]
    assert own_attributes(http, own) == [] and listed(http, admin, user_id) == []
    with app.app_context():
        assert db.session.query(UserAttribute).count() == 0
        assert db.session.query(AuditEvent).filter_by(event="user_attribute_created").count() == 0
    # Controls: isPersonal false (or left out) makes a non-personal attribute there, and
    # the user makes the personal one itself.
    for flag in ({"isPersonal": False}, {}):
        made = add(http, admin, user_id, **body | {"name": f"kyc{len(flag)}"}, **flag)
        assert made.status_code == 201 and made.get_json()["isPersonal"] is False
    own_made = http.post("/users/me/attributes", json=body, headers=own)
    assert own_made.status_code == 201 and own_made.get_json()["isPersonal"] is True
    assert own_attributes(http, own) == [own_made.get_json()]


def test_a_name_is_unique_per_kind_and_a_clash_reveals_no_personal_name(
    http, admin, self_token
) -> None:
    user_id, own = self_token
    body = {"type": "STRING", "value": "v"}
    personal = http.post("/users/me/attributes", json=body | {"name": "hidden.pin"}, headers=own)
    assert personal.status_code == 201
    # The manager, who cannot see "hidden.pin", may use the name: no 409 tells it exists.
    shared = add(http, admin, user_id, **body, name="hidden.pin")
    assert shared.status_code == 201, shared.get_json()
    assert [a["name"] for a in listed(http, admin, user_id)] == ["hidden.pin"]
    # And the other way round: the user may take a name a manager uses.
    add(http, admin, user_id, **body, name="segment")
    assert http.post("/users/me/attributes", json=body | {"name": "segment"},
                     headers=own).status_code == 201  # fmt: skip
    # Within one kind a name is still unique: 409 on either route.
    again = add(http, admin, user_id, **body, name="hidden.pin")
    assert "hidden.pin" in assert_problem(again, 409)["detail"]
    mine = http.post("/users/me/attributes", json=body | {"name": "segment"}, headers=own)
    assert_problem(mine, 409)
    assert sorted(a["name"] for a in own_attributes(http, own)) == ["hidden.pin", "segment"]
    assert sorted(a["name"] for a in listed(http, admin, user_id)) == ["hidden.pin", "segment"]


def test_own_attributes_follow_the_same_rules(http, self_token) -> None:
    _, own = self_token
    for body, status in (
        ({"name": "age", "type": "INTEGER", "value": "1.5"}, 400),
        ({"name": "born", "type": "DATE_WITH_DAY", "value": "2026-02-30"}, 400),
        ({"name": "ratio", "type": "DOUBLE", "value": "nan"}, 400),
        ({"name": "bad name", "type": "STRING", "value": "v"}, 400),
        ({"name": "n", "type": "STRING", "value": "v", "userId": "x"}, 400),
        ({"name": "age", "type": "INTEGER", "value": "41"}, 201),
        ({"name": "born", "type": "DATE_WITH_DAY", "value": "1985-06-15"}, 201),
        ({"name": "ratio", "type": "DOUBLE", "value": "0.75"}, 201),
        ({"name": "age", "type": "INTEGER", "value": "42"}, 409),
    ):
        response = http.post("/users/me/attributes", json=body, headers=own)
        if status == 201:
            assert response.status_code == 201, (body, response.get_json())
        else:
            assert_problem(response, status)
    own_list = http.get("/users/me/attributes", headers=own).get_json()["attributes"]
    assert {a["name"]: a["value"] for a in own_list} == {
        "age": "41", "born": "1985-06-15", "ratio": "0.75",
    }  # fmt: skip


def test_own_attributes_are_the_callers_alone(http, app, admin, self_token) -> None:
    _, selfie = self_token
    other_id = make_user(app, "neighbour", password="Neighbour-Pass-1")
    client = password_client(app, scope="openid user:self")
    token = login(http, client, username="neighbour", password="Neighbour-Pass-1").get_json()
    neighbour = bearer(token["access_token"])
    http.post("/users/me/attributes", json={"name": "pin", "type": "STRING", "value": "1234"},
              headers=selfie)  # fmt: skip
    assert http.get("/users/me/attributes", headers=neighbour).get_json() == {"attributes": []}
    http.post("/users/me/attributes", json={"name": "pin", "type": "STRING", "value": "9"},
              headers=neighbour)  # fmt: skip
    mine = http.get("/users/me/attributes", headers=selfie).get_json()["attributes"]
    theirs = http.get("/users/me/attributes", headers=neighbour).get_json()["attributes"]
    assert [a["value"] for a in mine] == ["1234"] and [a["value"] for a in theirs] == ["9"]
    assert listed(http, admin, other_id) == []


def test_a_client_token_cannot_use_own_attributes(http, app) -> None:
    headers = bearer(client_token(http, app, scope="user:self"))
    assert_problem(http.get("/users/me/attributes", headers=headers), 403)
    body = {"name": "n", "type": "STRING", "value": "v"}
    assert_problem(http.post("/users/me/attributes", json=body, headers=headers), 403)


def test_a_deleted_users_token_cannot_use_own_attributes(http, admin, self_token) -> None:
    user_id, own = self_token
    assert http.get("/users/me/attributes", headers=own).status_code == 200
    http.delete(f"/users/{user_id}", headers=admin)
    assert_problem(http.get("/users/me/attributes", headers=own), 401)


def test_audit_events_for_attribute_changes(http, app, admin, self_token) -> None:
    user_id, own = self_token
    shared = add(http, admin, user_id, name="segment", type="STRING", value="s3cr3t-v4lue")
    http.post("/users/me/attributes", json={"name": "pet", "type": "STRING", "value": "Rex-9"},
              headers=own)  # fmt: skip
    http.delete(f"/users/{user_id}/attributes/{shared.get_json()['attributeId']}", headers=admin)
    add(http, admin, user_id, name="bad", type="INTEGER", value="x")  # refused: no event
    with app.app_context():
        events = (
            db.session.query(AuditEvent)
            .filter(AuditEvent.event.like("user_attribute_%"))
            .order_by(AuditEvent.id)
            .all()
        )
        seen = [(e.event, e.user_id, e.tenant, e.detail.get("name")) for e in events]
        details = " ".join(str(e.detail) for e in events)
        assert all(e.client_id for e in events)
        assert events[0].detail["attribute_id"] == shared.get_json()["attributeId"]
        assert events[1].detail["personal"] is True
        assert db.session.query(UserAttribute).count() == 1
    assert seen == [
        ("user_attribute_created", user_id, "default", "segment"),
        ("user_attribute_created", user_id, "default", "pet"),
        ("user_attribute_deleted", user_id, "default", "segment"),
    ]
    assert "s3cr3t-v4lue" not in details and "Rex-9" not in details


def test_a_failure_midway_leaves_no_attribute(http, admin, user_id, monkeypatch) -> None:
    from idp.users import attributes

    def broken(*_args, **_kwargs):
        raise RuntimeError("storage failed midway")

    monkeypatch.setattr(attributes.audit, "record", broken)
    response = add(http, admin, user_id, name="n", type="STRING", value="v")
    assert response.status_code == 500 and response.mimetype == "application/problem+json"
    monkeypatch.undo()
    assert listed(http, admin, user_id) == []
    assert add(http, admin, user_id, name="n", type="STRING", value="v").status_code == 201


# -- changing a value ---------------------------------------------------------------


def put(http, headers, path: str, **body):
    return http.put(path, json=body, headers=headers)


def test_management_changes_the_value_of_a_non_personal_attribute(http, admin, user_id) -> None:
    made = add(http, admin, user_id, name="risk", type="INTEGER", value="1").get_json()
    path = f"/users/{user_id}/attributes/{made['attributeId']}"
    changed = put(http, admin, path, value="-7")
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json() == made | {"value": "-7"}  # the id, name, type and date stay
    assert changed.headers["Cache-Control"] == "no-store"
    assert listed(http, admin, user_id) == [changed.get_json()]


def test_a_user_changes_the_value_of_its_own_personal_attribute(http, self_token) -> None:
    _, own = self_token
    made = http.post("/users/me/attributes", json={"name": "born", "type": "DATE_WITH_DAY",
                     "value": "1985-06-15"}, headers=own).get_json()  # fmt: skip
    changed = put(http, own, f"/users/me/attributes/{made['attributeId']}", value="1985-06-16")
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json() == made | {"value": "1985-06-16"}
    assert own_attributes(http, own) == [changed.get_json()]


@pytest.mark.parametrize(("type_", "value"), INVALID)
def test_a_new_value_must_parse_as_the_type(http, admin, user_id, type_, value) -> None:
    good = dict(VALID)[type_]
    made = add(http, admin, user_id, name="attr", type=type_, value=good).get_json()
    path = f"/users/{user_id}/attributes/{made['attributeId']}"
    body = assert_problem(put(http, admin, path, value=value), 400)
    assert body["errors"] == [{"field": "value", "message": body["detail"]}]
    assert type_ in body["detail"]
    assert listed(http, admin, user_id) == [made]  # unchanged
    assert put(http, admin, path, value=good).status_code == 200  # control


def test_own_new_values_follow_the_type_too(http, self_token) -> None:
    _, own = self_token
    made = http.post("/users/me/attributes", json={"name": "age", "type": "INTEGER",
                     "value": "41"}, headers=own).get_json()  # fmt: skip
    path = f"/users/me/attributes/{made['attributeId']}"
    refused = assert_problem(put(http, own, path, value="41.5-s3cr3t"), 400)
    assert "s3cr3t" not in str(refused)  # a personal value is never quoted back
    assert own_attributes(http, own) == [made]
    assert put(http, own, path, value="42").get_json()["value"] == "42"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"{}",
        b"[]",
        b'{"value": null}',
        b'{"value": 5}',
        b'{"value": "v", "name": "other"}',
        b'{"value": "v", "type": "INTEGER"}',
        b'{"value": "v", "isPersonal": true}',
        b'{"value": "v", "extra": 1}',
        b'{"value": "nul\\u0000byte"}',
        b'{"value": "lone\\ud800"}',
        b'{"value": "' + b"x" * 1025 + b'"}',
    ],
)
def test_malformed_update_bodies_are_400(http, admin, user_id, body) -> None:
    made = add(http, admin, user_id, name="n", type="STRING", value="v").get_json()
    path = f"/users/{user_id}/attributes/{made['attributeId']}"
    response = http.put(path, data=body, content_type="application/json", headers=admin)
    assert_problem(response, 400)
    assert listed(http, admin, user_id) == [made]


def test_update_refuses_other_kinds_other_users_and_unknown_ids(http, app, admin, self_token):
    user_id, own = self_token
    body = {"type": "STRING", "value": "v"}
    personal = http.post("/users/me/attributes", json=body | {"name": "mine"}, headers=own)
    personal_id = personal.get_json()["attributeId"]
    shared_id = add(http, admin, user_id, **body, name="shared").get_json()["attributeId"]
    other_id, other = make_self_token(http, app, "other-self")
    theirs = http.post("/users/me/attributes", json=body | {"name": "theirs"}, headers=other)
    theirs_id = theirs.get_json()["attributeId"]
    theirs_shared = add(http, admin, other_id, **body, name="x").get_json()["attributeId"]
    unknown = ("00000000-0000-0000-0000-000000000000", "not-an-id")
    # Management reaches neither the personal attribute nor another user's through this user.
    for attribute_id in (personal_id, theirs_shared, theirs_id, *unknown):
        response = put(http, admin, f"/users/{user_id}/attributes/{attribute_id}", value="new")
        assert "attribute" in assert_problem(response, 404)["detail"]
    # The user reaches neither a non-personal attribute nor another user's personal one.
    for attribute_id in (shared_id, theirs_id, *unknown):
        assert_problem(put(http, own, f"/users/me/attributes/{attribute_id}", value="new"), 404)
    assert {a["value"] for a in own_attributes(http, own) + own_attributes(http, other)} == {"v"}
    assert {a["value"] for a in listed(http, admin, user_id) + listed(http, admin, other_id)} == {
        "v"
    }
    # Controls: each through its own route.
    assert put(http, own, f"/users/me/attributes/{personal_id}", value="a").status_code == 200
    path = f"/users/{user_id}/attributes/{shared_id}"
    assert put(http, admin, path, value="b").status_code == 200


def test_update_of_a_deleted_or_other_tenants_user_is_404(http, app, admin, user_id) -> None:
    made = add(http, admin, user_id, name="n", type="STRING", value="v").get_json()
    path = f"/users/{user_id}/attributes/{made['attributeId']}"
    with app.app_context():
        create_tenant("acme")
        db.session.commit()
    outsider = bearer(client_token(http, app, tenant="acme"))
    assert_problem(put(http, outsider, path, value="x"), 404)
    assert listed(http, admin, user_id) == [made]
    assert put(http, admin, path, value="y").status_code == 200  # control
    assert http.delete(f"/users/{user_id}", headers=admin).status_code == 204
    assert_problem(put(http, admin, path, value="z"), 404)


def test_update_needs_its_scope(http, app, admin, self_token) -> None:
    user_id, own = self_token
    made = add(http, admin, user_id, name="n", type="STRING", value="v").get_json()
    path = f"/users/{user_id}/attributes/{made['attributeId']}"
    for scope in ("user:read user:create user:delete", "user:self"):
        response = put(http, bearer(client_token(http, app, scope=scope)), path, value="x")
        assert_problem(response, 403)
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    mine = http.post("/users/me/attributes", json={"name": "m", "type": "STRING",
                     "value": "v"}, headers=own).get_json()  # fmt: skip
    own_path = f"/users/me/attributes/{mine['attributeId']}"
    # A client token, even one holding user:self, has no personal attributes to change.
    assert_problem(put(http, bearer(client_token(http, app, scope="user:self")), own_path,
                       value="x"), 403)  # fmt: skip
    assert_problem(put(http, admin, own_path, value="x"), 403)  # user:update is not user:self
    assert [a["value"] for a in own_attributes(http, own)] == ["v"]
    assert [a["value"] for a in listed(http, admin, user_id)] == ["v"]
    # Control: user:update alone opens the management route.
    updater = bearer(client_token(http, app, scope="user:update"))
    assert put(http, updater, path, value="x").status_code == 200


def test_an_update_is_audited_without_its_value(http, app, admin, self_token) -> None:
    user_id, own = self_token
    shared = add(http, admin, user_id, name="segment", type="STRING", value="old").get_json()
    mine = http.post("/users/me/attributes", json={"name": "pet", "type": "STRING",
                     "value": "Rex"}, headers=own).get_json()  # fmt: skip
    put(http, admin, f"/users/{user_id}/attributes/{shared['attributeId']}", value="n3w-s3cr3t")
    put(http, own, f"/users/me/attributes/{mine['attributeId']}", value="F1do-s3cr3t")
    put(http, own, f"/users/me/attributes/{mine['attributeId']}", value="x" * 1025)  # refused
    with app.app_context():
        events = (
            db.session.query(AuditEvent)
            .filter_by(event="user_attribute_updated")
            .order_by(AuditEvent.id)
            .all()
        )
        seen = [(e.user_id, e.detail["attribute_id"], e.detail["personal"]) for e in events]
        assert all(e.client_id for e in events)
        text = " ".join(str(e.detail) for e in events)
    assert seen == [
        (user_id, shared["attributeId"], False),
        (user_id, mine["attributeId"], True),
    ]
    assert "s3cr3t" not in text and "old" not in text


def test_a_failed_update_keeps_the_old_value(http, admin, user_id, monkeypatch) -> None:
    from idp.users import attributes

    made = add(http, admin, user_id, name="n", type="STRING", value="old").get_json()
    path = f"/users/{user_id}/attributes/{made['attributeId']}"

    def broken(*_args, **_kwargs):
        raise RuntimeError("storage failed midway")

    monkeypatch.setattr(attributes.audit, "record", broken)
    response = put(http, admin, path, value="new")
    assert response.status_code == 500 and response.mimetype == "application/problem+json"
    monkeypatch.undo()
    assert listed(http, admin, user_id) == [made]
    assert put(http, admin, path, value="new").get_json()["value"] == "new"
