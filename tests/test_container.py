"""The container files, checked without Docker: the image's health check and its default
command follow PORT, the entrypoint is run for real with a stand-in ``idp``, and in
compose.yaml only the idp container receives idp.env (the key-encryption key)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.plugins.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "config" / "docker-entrypoint.sh"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def health_check_argv() -> list[str]:
    [arguments] = [rest for word, rest in dockerfile_instructions() if word == "HEALTHCHECK"]
    return json.loads(arguments[arguments.index("CMD ") + len("CMD ") :])


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def test_the_health_check_asks_the_port_in_port(app, idp_env, live_server) -> None:
    argv = health_check_argv()
    assert argv[0] == "python" and "8000" not in " ".join(argv)
    assert image_env()["PORT"] == "8000"
    base_url = live_server(idp_env, workers=1)
    port = base_url.rsplit(":", 1)[1]
    command = [sys.executable, *argv[1:]]

    def check(port: str) -> subprocess.CompletedProcess[str]:
        env = os.environ | {"PORT": port}
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)

    ready = check(port)
    assert ready.returncode == 0, ready.stderr
    elsewhere = check(str(free_port()))
    assert elsewhere.returncode != 0 and "Connection refused" in elsewhere.stderr


@pytest.fixture
def stand_in_idp(tmp_path: Path) -> Path:
    """An ``idp`` that only records its arguments, one call a line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "idp"
    script.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "calls"}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def run_entrypoint(tmp_path: Path, *command: str) -> list[str]:
    env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "PORT": "9123",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), *command], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return (tmp_path / "calls").read_text().splitlines()


def test_the_default_command_serves_on_the_port_in_port(stand_in_idp: Path) -> None:
    # An exec-form CMD would hard-code the port (it cannot read PORT), so there is none.
    assert "CMD" not in {word for word, _ in dockerfile_instructions()}
    calls = run_entrypoint(stand_in_idp)
    assert calls == ["init", "serve --host 0.0.0.0 --port 9123"]


def test_a_command_of_ones_own_runs_as_given(stand_in_idp: Path) -> None:
    assert run_entrypoint(stand_in_idp, "idp", "keys", "list") == ["keys list"]


def env_file_keys(name: str) -> set[str]:
    lines = (ROOT / "config" / name).read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


def test_only_the_idp_container_receives_the_key_encryption_key() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    given = {name: service.get("env_file", []) for name, service in services.items()}
    assert given == {"postgres": ["postgres.env"], "redis": [], "idp": ["idp.env"]}
    # The examples the README copies to those files: the secret is in idp's alone.
    assert "IDP_KEYS_ENCRYPTION_KEY" in env_file_keys("compose.env.example")
    assert env_file_keys("postgres.env.example") == {"POSTGRES_PASSWORD"}
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"/idp.env", "/postgres.env"} <= set(ignored)


def test_the_image_copies_the_license_files_the_build_needs() -> None:
    license_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license-files"]
    copied = [rest.split() for word, rest in dockerfile_instructions() if word == "COPY"]
    [sources] = [args[:-1] for args in copied if args[-1] == "/tmp/src/"]
    assert set(license_files) <= set(sources) and "pyproject.toml" in sources
