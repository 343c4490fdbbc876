"""The /users/.../attributes routes: a user's attributes, kept by the clients that manage
the user, and one's own personal attributes, kept by the user alone (idp.users.attributes)."""

from __future__ import annotations

from flask import Blueprint

from idp.models import User, UserAttribute
from idp.runtime import runtime
from idp.users import attributes, service
from idp.users.api import commit, own_user, user_of
from idp.users.records import attribute_record
from idp.users.schemas import AttributeList, AttributeOut, CreateAttribute, UpdateAttribute
from idp.verify import AccessToken
from idp.web.json_api import ApiProblem, JsonApi, not_found

blueprint = Blueprint("user_attributes", __name__)
api = JsonApi(blueprint, lambda: runtime().verifier)


@api.route(
    "/users/me/attributes", "GET", summary="One's own personal attributes", scope="user:self",
    response=AttributeList,
)  # fmt: skip
def list_own_attributes(token: AccessToken) -> AttributeList:
    return _attribute_list(attributes.list_attributes(own_user(token), personal=True))


@api.route(
    "/users/me/attributes", "POST", summary="Add a personal attribute to one's own account",
    scope="user:self", body=CreateAttribute, response=AttributeOut, status=201, errors=(409,),
)  # fmt: skip
def create_own_attribute(token: AccessToken, body: CreateAttribute) -> AttributeOut:
    return _add_attribute(token, own_user(token), body, personal=True)


@api.route(
    "/users/me/attributes/<attribute_id>", "PUT",
    summary="Change the value of one of one's own personal attributes", scope="user:self",
    body=UpdateAttribute, response=AttributeOut, errors=(404,),
)  # fmt: skip
def update_own_attribute(
    token: AccessToken, body: UpdateAttribute, attribute_id: str
) -> AttributeOut:
    return _update_attribute(token, own_user(token), attribute_id, body, personal=True)


@api.route(
    "/users/me/attributes/<attribute_id>", "DELETE",
    summary="Remove one of one's own personal attributes", scope="user:self", status=204,
    errors=(404,),
)  # fmt: skip
def delete_own_attribute(token: AccessToken, attribute_id: str) -> None:
    _delete_attribute(token, own_user(token), attribute_id, personal=True)


def _attribute_list(found: list[UserAttribute]) -> AttributeList:
    return AttributeList(
        attributes=[AttributeOut.model_validate(attribute_record(a)) for a in found]
    )


def _add_attribute(
    token: AccessToken, user: User, body: CreateAttribute, *, personal: bool
) -> AttributeOut:
    try:
        attribute = attributes.add_attribute(
            user,
            name=body.name,
            type_=body.type,
            value=body.value,
            personal=personal,
            actor=token.claims["client_id"],
        )
    except attributes.InvalidAttribute as exc:
        raise _invalid(exc) from None
    except service.Conflict as exc:
        raise ApiProblem(409, "Conflict", str(exc)) from None
    commit(f"the user already has an attribute named {body.name!r}")
    return AttributeOut.model_validate(attribute_record(attribute))


def _update_attribute(
    token: AccessToken, user: User, attribute_id: str, body: UpdateAttribute, *, personal: bool
) -> AttributeOut:
    attribute = attributes.find_attribute(user, attribute_id, personal=personal)
    if attribute is None:
        raise not_found("attribute")
    try:
        attributes.update_attribute(user, attribute, body.value, token.claims["client_id"])
    except attributes.InvalidAttribute as exc:
        raise _invalid(exc) from None
    commit()
    return AttributeOut.model_validate(attribute_record(attribute))


def _invalid(exc: attributes.InvalidAttribute) -> ApiProblem:
    return ApiProblem(400, "Bad Request", str(exc), [{"field": exc.field, "message": str(exc)}])


@api.route(
    "/users/<user_id>/attributes", "GET", summary="A user's attributes (not the personal ones)",
    scope="user:read", response=AttributeList, errors=(404,),
)  # fmt: skip
def list_attributes(token: AccessToken, user_id: str) -> AttributeList:
    return _attribute_list(attributes.list_attributes(user_of(token, user_id), personal=False))


@api.route(
    "/users/<user_id>/attributes", "POST",
    summary="Add an attribute to a user (not a personal one)",
    scope="user:update", body=CreateAttribute, response=AttributeOut, status=201,
    errors=(404, 409),
)  # fmt: skip
def create_attribute(token: AccessToken, body: CreateAttribute, user_id: str) -> AttributeOut:
    user = user_of(token, user_id)
    if body.isPersonal:
        # A personal attribute is the user's own word: no one makes one on its behalf.
        raise ApiProblem(
            403,
            "Forbidden",
            "personal attributes are made by their user alone, at /users/me/attributes",
            [{"field": "isPersonal", "message": "must be false on this route"}],
        )
    return _add_attribute(token, user, body, personal=False)


@api.route(
    "/users/<user_id>/attributes/<attribute_id>", "PUT",
    summary="Change the value of a user's attribute (not a personal one)", scope="user:update",
    body=UpdateAttribute, response=AttributeOut, errors=(404,),
)  # fmt: skip
def update_attribute(
    token: AccessToken, body: UpdateAttribute, user_id: str, attribute_id: str
) -> AttributeOut:
    return _update_attribute(token, user_of(token, user_id), attribute_id, body, personal=False)


@api.route(
    "/users/<user_id>/attributes/<attribute_id>", "DELETE", summary="Remove a user's attribute",
    scope="user:update", status=204, errors=(404,),
)  # fmt: skip
def delete_attribute(token: AccessToken, user_id: str, attribute_id: str) -> None:
    _delete_attribute(token, user_of(token, user_id), attribute_id, personal=False)


def _delete_attribute(token: AccessToken, user: User, attribute_id: str, *, personal: bool) -> None:
    attribute = attributes.find_attribute(user, attribute_id, personal=personal)
    if attribute is None:
        raise not_found("attribute")
    attributes.delete_attribute(user, attribute, token.claims["client_id"])
    commit()
