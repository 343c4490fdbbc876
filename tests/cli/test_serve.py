"""``idp serve --port N`` advertises the URL it serves on as issuer, unless IDP_ISSUER (in
the environment or the IDP_CONFIG file) says otherwise: a server on another port than
8000 accepts assertions aimed at its own URL, and an operator's issuer always wins."""

from __future__ import annotations

from pathlib import Path

import requests

from idp.settings import is_configured
from tests.conftest import ISSUER
from tests.oauth.helpers import assertion, assertion_form, client_key, register

PUBLIC_ISSUER = "https://id.example.com"


def metadata(base_url: str) -> dict[str, str]:
    response = requests.get(f"{base_url}/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200
    return response.json()


def test_the_issuer_follows_the_port(app, idp_env, live_server) -> None:
    env = {name: value for name, value in idp_env.items() if name != "IDP_ISSUER"}
    base_url = live_server(env, workers=1)
    assert base_url != ISSUER  # served on another port than the default issuer's
    served = metadata(base_url)
    assert served["issuer"] == base_url
    assert served["token_endpoint"] == f"{base_url}/oidc/token"

    key = client_key()
    client_id, _ = register(app, key=key, scope="accounts:read")
    to_self = assertion_form(assertion(key, client_id, aud=base_url))
    token = requests.post(served["token_endpoint"], data=to_self, timeout=10)
    assert token.status_code == 200, token.text
    # The control: an assertion for the default issuer is not for this server.
    to_default = assertion_form(assertion(key, client_id, aud=ISSUER))
    refused = requests.post(served["token_endpoint"], data=to_default, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_an_issuer_in_the_environment_wins(app, idp_env, live_server) -> None:
    base_url = live_server(idp_env | {"IDP_ISSUER": PUBLIC_ISSUER}, workers=1)
    assert metadata(base_url)["issuer"] == PUBLIC_ISSUER


def test_an_issuer_in_the_config_file_counts_as_configured(tmp_path: Path) -> None:
    """What serve asks before it sets the issuer (without a server: it starts in seconds)."""
    config = tmp_path / "idp.toml"
    config.write_text(f'issuer = "{PUBLIC_ISSUER}"\n')
    assert is_configured("issuer", {"IDP_CONFIG": str(config)})
    assert is_configured("issuer", {"IDP_ISSUER": PUBLIC_ISSUER})
    config.write_text("access_token_ttl = 900\n")
    assert not is_configured("issuer", {"IDP_CONFIG": str(config)})
    assert not is_configured("issuer", {})
