"""Token endpoint behaviour across real processes: replay races, independent verification,
jwks_uri clients, and failing closed when the replay store is down."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt as pyjwt
import pytest
import requests

from idp.keys import KeyStore
from idp.models import db
from idp.oauth import client_keys
from tests.conftest import ISSUER, migrate_database
from tests.oauth.helpers import assertion, assertion_form, client_key, register


def test_a_replayed_assertion_racing_on_two_workers_succeeds_once(app, idp_env, live_server):
    base_url = live_server(idp_env, workers=2)
    key = client_key()
    client_id, _ = register(app, key=key)
    form = assertion_form(assertion(key, client_id))
    barrier = threading.Barrier(20)

    def send(_: int) -> int:
        barrier.wait(10)
        return requests.post(f"{base_url}/oidc/token", data=form, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(send, range(20)))
    assert statuses.count(200) == 1, statuses
    assert statuses.count(401) == 19, statuses


def test_replay_holds_across_two_server_instances(app, idp_env, live_server):
    first = live_server(idp_env, workers=1)
    second = live_server(idp_env, workers=1)
    key = client_key()
    client_id, _ = register(app, key=key)
    form = assertion_form(assertion(key, client_id))
    assert requests.post(f"{first}/oidc/token", data=form, timeout=30).status_code == 200
    replay = requests.post(f"{second}/oidc/token", data=form, timeout=30)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


@pytest.mark.parametrize("signing_alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_access_tokens_verify_with_an_independent_verifier(app, idp_env, live_server, signing_alg):
    keys_dir = idp_env["IDP_KEYS_DIR"] + f"-{signing_alg}"
    KeyStore(keys_dir).initialise(signing_alg)
    base_url = live_server(idp_env | {"IDP_KEYS_DIR": keys_dir}, workers=1)
    key = client_key()
    client_id, _ = register(app, key=key, scope="user:create user:read", access_token_ttl=300)
    response = requests.post(
        f"{base_url}/oidc/token",
        data=assertion_form(assertion(key, client_id), scope="user:create"),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]

    jwks_client = pyjwt.PyJWKClient(f"{base_url}/oidc/jwks")
    signing_key = jwks_client.get_signing_key_from_jwt(token)
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == signing_alg
    assert header["kid"] == signing_key.key_id
    active = json.loads(requests.get(f"{base_url}/oidc/jwks", timeout=10).text)["keys"][0]["kid"]
    assert header["kid"] == active
    claims = pyjwt.decode(
        token,
        signing_key.key,
        algorithms=[signing_alg],
        audience=ISSUER,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "jti", "sub", "client_id", "scope"]},
    )
    assert claims["client_id"] == client_id and claims["sub"] == client_id
    assert claims["scope"] == "user:create"
    assert claims["tenant"] == "default"
    assert claims["exp"] - claims["iat"] == 300


class _JwksServer:
    """A client's own key server on loopback, counting the fetches it answers."""

    def __init__(self) -> None:
        self.jwks: dict = {"keys": []}
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server() -> Iterator[_JwksServer]:
    server = _JwksServer()
    yield server
    server.close()


def test_a_jwks_uri_client_and_its_key_rotation(make_app, jwks_server, monkeypatch):
    app = make_app(IDP_INSECURE_JWKS_URI="true")
    http = app.test_client()
    old_key, new_key = client_key(kid="k-old"), client_key(kid="k-new")
    jwks_server.jwks = {"keys": [old_key.as_dict(private=False)]}
    client_id, _ = register(app, jwks_uri=jwks_server.url)

    assert (
        http.post("/oidc/token", data=assertion_form(assertion(old_key, client_id))).status_code
        == 200
    )
    assert jwks_server.fetches == 1
    assert (
        http.post("/oidc/token", data=assertion_form(assertion(old_key, client_id))).status_code
        == 200
    )
    assert jwks_server.fetches == 1  # cached

    jwks_server.jwks = {"keys": [new_key.as_dict(private=False)]}
    # Within a minute of the last fetch an unknown kid is refused without a re-fetch.
    early = http.post("/oidc/token", data=assertion_form(assertion(new_key, client_id)))
    assert early.status_code == 401 and jwks_server.fetches == 1
    # Past the interval, the unknown kid triggers exactly one re-fetch and succeeds.
    monkeypatch.setattr(client_keys, "REFETCH_INTERVAL", 0.0)
    rotated = http.post("/oidc/token", data=assertion_form(assertion(new_key, client_id)))
    assert rotated.status_code == 200, rotated.get_json()
    assert jwks_server.fetches == 2


def test_a_jwks_uri_fetch_failure_is_invalid_client(make_app, jwks_server):
    app = make_app(IDP_INSECURE_JWKS_URI="true")
    key = client_key()
    client_id, _ = register(app, jwks_uri=jwks_server.url)
    jwks_server.jwks = {"not": "a jwks"}
    response = app.test_client().post("/oidc/token", data=assertion_form(assertion(key, client_id)))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert "jwks_uri" in response.get_json()["error_description"]


def test_replay_store_down_fails_closed_with_503(make_app, profile, request, tmp_path):
    if profile == "production":
        redis = request.getfixturevalue("stoppable_redis")
        app = make_app(IDP_REDIS_URL=redis.url(0))
        break_replay_store = redis.stop
    else:
        # Embedded: the replay cache is a table; a private database loses it mid-flight.
        url = f"sqlite:///{tmp_path / 'private.sqlite3'}"
        migrate_database(url, tmp_path / "migrate-keys")
        app = make_app(IDP_DATABASE_URL=url)

        def break_replay_store() -> None:
            with app.app_context():
                db.session.execute(db.text("DROP TABLE replay_entries"))
                db.session.commit()

    key = client_key()
    client_id, _ = register(app, key=key)
    http = app.test_client()
    break_replay_store()
    response = http.post("/oidc/token", data=assertion_form(assertion(key, client_id)))
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    if profile == "production":
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["checks"]["redis"] != "ok"


@pytest.mark.parametrize(
    "uri",
    [
        "https://127.0.0.1:9/jwks.json",
        "https://10.1.2.3/jwks.json",
        "https://169.254.169.254/latest/jwks",
        "https://[::1]/jwks.json",
        "https://localhost/jwks.json",
    ],
)
def test_jwks_uri_on_a_private_address_is_refused_without_a_request(app, uri) -> None:
    key = client_key()
    client_id, _ = register(app, jwks_uri=uri)
    response = app.test_client().post("/oidc/token", data=assertion_form(assertion(key, client_id)))
    assert response.status_code == 401
    assert response.get_json()["error_description"] == "jwks_uri points to a non-public address"


def test_a_jwks_uri_issuer_of_the_jwt_bearer_grant(make_app, jwks_server):
    """Trusted issuers' keys come through the same hardened, cached fetcher as clients'."""
    from idp.registrations.issuers import IssuerSpec, add_issuer
    from tests.oauth.helpers import basic

    app = make_app(IDP_INSECURE_JWKS_URI="true")
    http = app.test_client()
    issuer_key = client_key("RS256", kid="dauth")
    jwks_server.jwks = {"keys": [issuer_key.as_dict(private=False)]}
    issuer = "https://dauth.example.net"
    with app.app_context():
        add_issuer(IssuerSpec("default", issuer, jwks_uri=jwks_server.url, provision=True), True)
        db.session.commit()
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    client = register(app, auth_method="client_secret_basic", grant_types=[grant], scope="openid")

    def exchange(key):
        signed = assertion(key, issuer, iss=issuer, sub="0xabc", aud=ISSUER)
        form = {"grant_type": grant, "assertion": signed}
        return http.post("/oidc/token", data=form, headers=basic(*client))

    assert exchange(issuer_key).status_code == 200
    assert exchange(issuer_key).status_code == 200
    assert jwks_server.fetches == 1  # cached
    stranger = exchange(client_key("RS256", kid="other"))
    assert stranger.status_code == 400 and stranger.get_json()["error"] == "invalid_grant"
    jwks_server.jwks = {"not": "a jwks"}
    assert exchange(issuer_key).status_code == 200  # the cached keys still serve
