from __future__ import annotations

from pathlib import Path

import pytest

from idp.errors import ConfigurationError
from idp.settings import Settings, load_settings


def test_defaults_match_the_spec() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.issuer == "http://127.0.0.1:8000"
    assert settings.database_url == "sqlite:///instance/idp.sqlite3"
    assert settings.redis_url is None
    assert settings.signing_alg == "ES256"
    assert (settings.access_token_ttl, settings.refresh_token_ttl) == (3600, 0)
    assert settings.assertion_audiences == [
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/oidc/token",
    ]
    assert (settings.max_body, settings.jwks_max_age, settings.clock_skew) == (65536, 300, 30)
    assert settings.database_timeout == 2


def test_environment_overrides_file_which_overrides_defaults(tmp_path: Path) -> None:
    config = tmp_path / "idp.toml"
    config.write_text(
        'issuer = "https://id.example.com"\naccess_token_ttl = 600\nsigning_alg = "RS256"\n'
    )
    settings = load_settings({"IDP_CONFIG": str(config), "IDP_ACCESS_TOKEN_TTL": "120"})
    assert settings.issuer == "https://id.example.com"  # from the file
    assert settings.signing_alg == "RS256"  # from the file
    assert settings.access_token_ttl == 120  # environment wins over the file
    assert settings.refresh_token_ttl == 0  # default


def test_issuer_only_audience_mode() -> None:
    settings = load_settings(
        {"IDP_ISSUER": "https://id.example.com/", "IDP_ASSERTION_AUDIENCE": "issuer"}
    )
    assert settings.issuer == "https://id.example.com"
    assert settings.assertion_audiences == ["https://id.example.com"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IDP_ACCESS_TOKEN_TTL", "an hour", "IDP_ACCESS_TOKEN_TTL must be an integer"),
        ("IDP_ACCESS_TOKEN_TTL", "0", "IDP_ACCESS_TOKEN_TTL must be at least 1"),
        ("IDP_REFRESH_TOKEN_TTL", "-5", "IDP_REFRESH_TOKEN_TTL must be at least 0"),
        ("IDP_SIGNING_ALG", "HS256", "IDP_SIGNING_ALG must be one of"),
        ("IDP_ASSERTION_AUDIENCE", "anything", "IDP_ASSERTION_AUDIENCE must be one of"),
        ("IDP_INSECURE_JWKS_URI", "maybe", "IDP_INSECURE_JWKS_URI must be true or false"),
        ("IDP_ISSUER", "id.example.com", "IDP_ISSUER must be an http(s) URL"),
        (
            "IDP_DATABASE_URL",
            "mysql://x/y",
            "IDP_DATABASE_URL must be a sqlite:// or postgresql://",
        ),
        ("IDP_REDIS_URL", "http://localhost", "IDP_REDIS_URL must be a redis://"),
        ("IDP_MAX_BODY", "12", "IDP_MAX_BODY must be at least 1024"),
        ("IDP_DATABASE_TIMEOUT", "0", "IDP_DATABASE_TIMEOUT must be at least 1"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({name: value})
    assert message in str(caught.value)


def test_bad_config_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("issuer = \n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings({"IDP_CONFIG": str(broken)})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('isuer = "typo"\n')
    with pytest.raises(ConfigurationError, match="unknown keys: isuer"):
        load_settings({"IDP_CONFIG": str(unknown)})
    with pytest.raises(ConfigurationError, match="not found"):
        load_settings({"IDP_CONFIG": str(tmp_path / "missing.toml")})


def test_relative_paths_are_anchored_to_the_project_folder(tmp_path: Path) -> None:
    settings = Settings().anchored(tmp_path)
    assert settings.keys_dir == str(tmp_path / "keys")
    assert settings.database_url == f"sqlite:///{tmp_path}/instance/idp.sqlite3"
    absolute = Settings(database_url="sqlite:////var/idp.db", keys_dir="/k").anchored(tmp_path)
    assert (absolute.database_url, absolute.keys_dir) == ("sqlite:////var/idp.db", "/k")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"IDP_ACCESS_TOKEN_TTL": "soon"}, "idp: error: IDP_ACCESS_TOKEN_TTL must be an integer"),
        ({"IDP_SIGNING_ALG": "none"}, "idp: error: IDP_SIGNING_ALG must be one of"),
    ],
)
def test_cli_stops_with_one_line_and_no_traceback(run_idp, env, expected) -> None:
    result = run_idp("keys", "list", env=env)
    assert result.returncode != 0
    assert result.stderr.strip().startswith(expected)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_init_with_unreachable_database_is_one_clear_line(run_idp) -> None:
    result = run_idp(
        "init", env={"IDP_DATABASE_URL": "postgresql+psycopg://idp:secret@127.0.0.1:9/idp"}
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("idp: error: cannot reach database postgresql+psycopg://idp:***@")
    assert "secret" not in result.stderr
