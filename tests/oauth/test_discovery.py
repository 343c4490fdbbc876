from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from idp import registry
from idp.keys import ring
from idp.runtime import runtime
from tests.conftest import ISSUER

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.mark.parametrize(
    "path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]
)
def test_discovery_documents_name_the_issuer_and_jwks(http: FlaskClient, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 200
    body = response.get_json()
    assert body["issuer"] == ISSUER
    assert body["jwks_uri"] == f"{ISSUER}/oidc/jwks"


def test_metadata_is_derived_from_the_registry(http: FlaskClient) -> None:
    body = http.get("/.well-known/openid-configuration").get_json()
    assert body["grant_types_supported"] == list(registry.GRANT_TYPES)
    for name in ("token", "revocation", "introspection"):
        assert body[f"{name}_endpoint_auth_methods_supported"] == list(registry.AUTH_METHODS)
    assert body["token_endpoint_auth_signing_alg_values_supported"] == list(
        registry.ACCEPTED_JWT_ALGS
    )
    assert body["id_token_signing_alg_values_supported"] == list(registry.SIGNING_ALGS)
    assert body["scopes_supported"] == list(registry.SCOPES_SUPPORTED)
    # The contract's names, so that a registry edit cannot drop one unnoticed.
    assert {"client_credentials", "password", "refresh_token"} <= set(registry.GRANT_TYPES)
    assert {"none", "HS256"}.isdisjoint(registry.ACCEPTED_JWT_ALGS)


def test_jwks_publishes_next_and_active_public_keys_only(http: FlaskClient, app) -> None:
    response = http.get("/oidc/jwks")
    assert response.status_code == 200
    assert response.mimetype == "application/jwk-set+json"
    keys = response.get_json()["keys"]
    with app.app_context():
        records = runtime(app).key_store.records()
    assert {k["kid"] for k in keys} == {r.kid for r in records}
    assert len(keys) == 2
    for key in keys:
        assert not PRIVATE_MEMBERS & key.keys()
        assert key["use"] == "sig" and key["alg"] == "ES256"
    active = next(r.kid for r in records if r.state == "active")
    assert keys[0]["kid"] == active


def test_jwks_caching_headers_and_conditional_get(make_app) -> None:
    http = make_app(IDP_JWKS_MAX_AGE="120").test_client()
    first = http.get("/oidc/jwks")
    assert first.headers["Cache-Control"] == "public, max-age=120"
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')

    not_modified = http.get("/oidc/jwks", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.data == b""
    assert not_modified.headers["ETag"] == etag
    assert not_modified.headers["Cache-Control"] == "public, max-age=120"

    stale = http.get("/oidc/jwks", headers={"If-None-Match": '"something-else"'})
    assert stale.status_code == 200 and stale.headers["ETag"] == etag


def test_jwks_etag_changes_after_rotation(
    app, http: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ring, "CHECK_INTERVAL", 0.0)
    etag = http.get("/oidc/jwks").headers["ETag"]
    with app.app_context():
        runtime(app).key_store.rotate("ES256", min_next_age=0)
    response = http.get("/oidc/jwks", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    assert len(response.get_json()["keys"]) == 3


def test_unknown_path_is_a_json_404(http: FlaskClient) -> None:
    response = http.get("/no-such-thing")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
