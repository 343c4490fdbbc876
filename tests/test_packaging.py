"""The package metadata builds on the setuptools releases it names: the license is an SPDX
expression with its file in the source tree (PEP 639; the TOML-table form is deprecated
and stops building in setuptools from 2027-02-18), and the build backend is pinned to a
range with an upper bound, so a future major release cannot change the build unseen.
(Building the wheel itself is left out: it needs the network and takes seconds.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_is_an_spdx_expression_with_its_file() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_the_build_backend_is_pinned_to_a_range_that_reads_spdx_licenses() -> None:
    build = PYPROJECT["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    [setuptools] = [Requirement(r) for r in build["requires"] if r.startswith("setuptools")]
    spec = setuptools.specifier
    # 77 is the first release that reads license strings and license-files.
    assert not spec.contains(Version("76.1.0")) and spec.contains(Version("77.0.3"))
    assert any(s.operator in ("<", "<=", "==", "~=") for s in spec), f"unbounded: {spec}"
