"""The environment contract: supported Pythons (pyproject.toml requires-python) are the ones CI tests, and
requirements/infra.lock pins every infra and dev dependency of pyproject.toml at its pin, with hashes, for `make setup`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "infra.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
SUPPORTED = ("3.11", "3.12", "3.13")
"""The Python minors the project supports."""


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _infra_requirements() -> list[Requirement]:
    project = _project()
    deps = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return [Requirement(d) for d in deps]


def _lock() -> dict[str, tuple[str, int]]:
    """Package -> (version, number of hashes) from the pip-compile output."""
    pins: dict[str, tuple[str, int]] = {}
    current = ""
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


def test_requires_python_admits_exactly_the_supported_minors() -> None:
    spec = SpecifierSet(str(_project()["requires-python"]))
    assert all(f"{minor}.0" in spec for minor in SUPPORTED), spec
    assert "3.10.12" not in spec and "3.14.0" not in spec, spec


def test_ci_tests_the_oldest_and_the_newest_supported_python() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pr.yml").read_text())
    assert workflow["jobs"]["lint-and-test"]["strategy"]["matrix"]["python"] == [SUPPORTED[0], SUPPORTED[-1]]


def test_the_lock_pins_every_infra_dependency_at_its_pyproject_pin() -> None:
    pins = _lock()
    problems = []
    for requirement in _infra_requirements():
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement.name}: not in {LOCK.name}")
        elif requirement.specifier and pins[name][0] not in requirement.specifier:
            problems.append(f"{requirement.name}: locked {pins[name][0]}, pyproject.toml wants {requirement.specifier}")
    assert not problems, "\n".join(problems) + "\nregenerate the lock with `make lock`"


def test_every_locked_package_is_exact_and_hashed() -> None:
    pins = _lock()
    assert len(pins) > len(_infra_requirements()), "the lock holds only the direct dependencies, not the transitive ones"
    unhashed = sorted(name for name, (_, hashes) in pins.items() if hashes == 0)
    assert not unhashed, f"no --hash for {unhashed}; `pip install --require-hashes` would refuse the lock"


def test_setup_installs_from_the_lock_with_hashes_and_shows_progress() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "INFRA_LOCK := requirements/infra.lock" in makefile
    assert "$(BIN)/pip install --progress-bar on --require-hashes -r $(INFRA_LOCK)" in makefile
    recipe = makefile.split("$(VENV)/.infra:", 1)[1].split("\n\n", 1)[0]
    assert " -q " not in recipe and "@echo" in recipe, recipe
